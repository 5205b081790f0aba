//! Rates and the GCRA decision core.
//!
//! Owns the parsing of rate strings (`"100/s"`, `"600/m"`) into [`Rate`] and the generic cell
//! rate algorithm ([`Gcra`]): a pure function of the stored theoretical arrival time (TAT) and
//! the current time, both in nanoseconds on a monotonic clock chosen by the caller. No clock is
//! read here, so tests drive time by hand.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::error::RateParseError;

/// A rate: `count` requests per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    count: u32,
    period: Duration,
}

impl Rate {
    /// Builds a rate of `count` requests per `period`; both must be non-zero and the resulting
    /// interval between requests at least one nanosecond.
    pub fn new(count: u32, period: Duration) -> Result<Self, RateParseError> {
        if count == 0 {
            return Err(RateParseError::ZeroCount);
        }
        if period.is_zero() || period.as_nanos() < u128::from(count) {
            return Err(RateParseError::TooFast { count, period });
        }
        Ok(Self { count, period })
    }

    /// Parses `"<count>/<unit>"` with unit `s`, `m`, `h` or `d` (also `sec`, `min`, `hour`,
    /// `day`), e.g. `"100/s"`, `"600/m"`.
    pub fn parse(input: &str) -> Result<Self, RateParseError> {
        let trimmed = input.trim();
        let (count, unit) = trimmed
            .split_once('/')
            .ok_or_else(|| RateParseError::MissingSlash(input.to_owned()))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|source| RateParseError::BadCount {
                input: input.to_owned(),
                source,
            })?;
        let period = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            other => {
                return Err(RateParseError::UnknownUnit {
                    input: input.to_owned(),
                    unit: other.to_owned(),
                })
            }
        };
        Self::new(count, period)
    }

    /// Requests per period.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The period the count is measured over.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Time between two requests at a steady rate (the GCRA emission interval `T`).
    pub fn interval(&self) -> Duration {
        self.period / self.count
    }

    /// Requests per second, for meters and logs.
    pub fn per_second(&self) -> f64 {
        f64::from(self.count) / self.period.as_secs_f64()
    }
}

impl FromStr for Rate {
    type Err = RateParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.period.as_secs() {
            1 => "s",
            60 => "m",
            3600 => "h",
            86_400 => "d",
            _ => return write!(f, "{}/{:?}", self.count, self.period),
        };
        write!(f, "{}/{}", self.count, unit)
    }
}

/// Result of one GCRA check.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcraOutcome {
    /// Conforming: store `new_tat` as the key's theoretical arrival time.
    Allow {
        /// The TAT to store for the key, in nanoseconds.
        new_tat: u64,
    },
    /// Not conforming: the stored TAT must stay as it was; the request would conform after
    /// `retry_after`.
    Limit {
        /// How long until one more request would be allowed.
        retry_after: Duration,
    },
}

/// GCRA parameters: emission interval `T` and tolerance `tau = burst * T`.
///
/// With a fresh key (TAT 0 or in the past) `burst` requests are allowed at once; after that one
/// request every `T`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    interval_ns: u64,
    tolerance_ns: u64,
}

impl Gcra {
    /// Builds the algorithm for `rate` allowing `burst` (>= 1) requests at once.
    pub fn new(rate: Rate, burst: u32) -> Result<Self, RateParseError> {
        if burst == 0 {
            return Err(RateParseError::ZeroBurst);
        }
        let interval_ns = u64::try_from(rate.interval().as_nanos()).unwrap_or(u64::MAX);
        let tolerance_ns = interval_ns.saturating_mul(u64::from(burst));
        Ok(Self {
            interval_ns,
            tolerance_ns,
        })
    }

    /// Emission interval `T` in nanoseconds.
    pub fn interval_ns(&self) -> u64 {
        self.interval_ns
    }

    /// Tolerance `tau` (`burst * T`) in nanoseconds.
    pub fn tolerance_ns(&self) -> u64 {
        self.tolerance_ns
    }

    /// Checks one request at `now` against the stored `tat` (0 for a key never seen).
    ///
    /// A stored TAT at or before `now` is the same as a fresh key, which is why idle keys can be
    /// evicted without changing any decision.
    pub fn check(&self, tat: u64, now: u64) -> GcraOutcome {
        let base = tat.max(now);
        let new_tat = base.saturating_add(self.interval_ns);
        let allow_until = now.saturating_add(self.tolerance_ns);
        if new_tat <= allow_until {
            GcraOutcome::Allow { new_tat }
        } else {
            GcraOutcome::Limit {
                retry_after: Duration::from_nanos(new_tat - allow_until),
            }
        }
    }
}

/// Whole seconds for a `Retry-After` header: rounded up, at least 1.
pub fn retry_after_secs(retry_after: Duration) -> u64 {
    let secs = retry_after.as_secs();
    let rounded = if retry_after.subsec_nanos() > 0 {
        secs.saturating_add(1)
    } else {
        secs
    };
    rounded.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn parses_rates() {
        let cases = [
            ("100/s", 100, 1),
            ("600/m", 600, 60),
            (" 10 / h ", 10, 3600),
            ("5/day", 5, 86_400),
        ];
        for (input, count, secs) in cases {
            let rate = Rate::parse(input).unwrap();
            assert_eq!(rate.count(), count, "{input}");
            assert_eq!(rate.period(), Duration::from_secs(secs), "{input}");
        }
        assert_eq!(
            Rate::parse("600/m").unwrap().interval(),
            Duration::from_millis(100)
        );
        assert_eq!(Rate::parse("100/s").unwrap().to_string(), "100/s");
    }

    #[test]
    fn rejects_bad_rates_with_clear_errors() {
        let cases = [
            ("100", "missing"),
            ("x/s", "count"),
            ("0/s", "zero"),
            ("10/fortnight", "unknown unit `fortnight`"),
            ("-1/s", "count"),
            ("4000000000/s", "faster than"),
        ];
        for (input, needle) in cases {
            let err = Rate::parse(input).unwrap_err().to_string();
            assert!(err.contains(needle), "{input}: {err}");
        }
    }

    #[test]
    fn burst_then_steady_rate() {
        // 10/s, burst 5: five at once, then one every 100 ms.
        let gcra = Gcra::new(Rate::parse("10/s").unwrap(), 5).unwrap();
        let now = 100 * SEC;
        let mut tat = 0;
        for i in 0..5 {
            match gcra.check(tat, now) {
                GcraOutcome::Allow { new_tat } => tat = new_tat,
                other => panic!("request {i} limited: {other:?}"),
            }
        }
        match gcra.check(tat, now) {
            GcraOutcome::Limit { retry_after } => {
                assert_eq!(retry_after, Duration::from_millis(100));
            }
            other => panic!("6th request allowed: {other:?}"),
        }
        // 50 ms later: still 50 ms to wait.
        assert_eq!(
            gcra.check(tat, now + SEC / 20),
            GcraOutcome::Limit {
                retry_after: Duration::from_millis(50)
            }
        );
        // 100 ms later: exactly one more.
        let t1 = now + SEC / 10;
        let GcraOutcome::Allow { new_tat } = gcra.check(tat, t1) else {
            panic!("should conform after the interval");
        };
        assert!(matches!(gcra.check(new_tat, t1), GcraOutcome::Limit { .. }));
    }

    #[test]
    fn steady_rate_never_limited() {
        let gcra = Gcra::new(Rate::parse("600/m").unwrap(), 1).unwrap();
        let mut tat = 0;
        let mut now = 7 * SEC;
        for _ in 0..1000 {
            let GcraOutcome::Allow { new_tat } = gcra.check(tat, now) else {
                panic!("steady traffic limited");
            };
            tat = new_tat;
            now += SEC / 10;
        }
        // Twice as fast: every other request is limited.
        let mut limited = 0;
        for _ in 0..100 {
            match gcra.check(tat, now) {
                GcraOutcome::Allow { new_tat } => tat = new_tat,
                GcraOutcome::Limit { .. } => limited += 1,
            }
            now += SEC / 20;
        }
        assert_eq!(limited, 50);
    }

    #[test]
    fn idle_key_is_fresh() {
        let gcra = Gcra::new(Rate::parse("1/s").unwrap(), 3).unwrap();
        let old_tat = 10 * SEC;
        // Any TAT in the past behaves like 0.
        assert_eq!(gcra.check(old_tat, 20 * SEC), gcra.check(0, 20 * SEC));
    }

    #[test]
    fn retry_after_header_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn zero_burst_rejected() {
        assert!(Gcra::new(Rate::parse("1/s").unwrap(), 0).is_err());
    }
}
