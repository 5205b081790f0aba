//! Per-site request-rate meter for automatic flood mode.
//!
//! Owns a sliding-window estimate of a site's request rate (two fixed windows weighted by
//! overlap) with hysteresis: flood mode starts when the rate reaches the `on` threshold and ends
//! once it has stayed below the `off` threshold for `hold`. [`FloodMeter::record`] is called once
//! per request and reports a [`FloodTransition`] only to the request that crosses, so the caller
//! logs and counts each switch once.

use std::time::Duration;

use parking_lot::Mutex;

/// Thresholds for automatic flood detection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FloodThresholds {
    /// Requests per second that switch flood mode on.
    pub on_rps: f64,
    /// Requests per second below which flood mode may switch off.
    pub off_rps: f64,
    /// Length of one counting window.
    pub window: Duration,
    /// How long the rate must stay below `off_rps` before flood mode ends.
    pub hold: Duration,
}

/// A switch of flood mode, reported once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FloodTransition {
    /// The rate crossed the `on` threshold.
    Started {
        /// Estimated requests per second.
        rps: f64,
    },
    /// The rate stayed below the `off` threshold for the hold time.
    Ended {
        /// Estimated requests per second.
        rps: f64,
    },
}

/// What one [`FloodMeter::record`] call observed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeterReading {
    /// Estimated requests per second, this request included.
    pub rps: f64,
    /// Whether automatic flood mode is on after this request.
    pub active: bool,
    /// A switch made by this request, if any.
    pub transition: Option<FloodTransition>,
}

#[derive(Debug, Default)]
struct Inner {
    window_index: u64,
    current: u64,
    previous: u64,
    active: bool,
    below_since: Option<u64>,
}

/// Request-rate meter of one site; times are nanoseconds on the limiter state's clock.
#[derive(Debug, Default)]
pub struct FloodMeter {
    inner: Mutex<Inner>,
}

impl FloodMeter {
    /// Counts one request at `now_ns` and returns the reading.
    pub fn record(&self, now_ns: u64, t: &FloodThresholds) -> MeterReading {
        let window_ns = u64::try_from(t.window.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        let hold_ns = u64::try_from(t.hold.as_nanos()).unwrap_or(u64::MAX);
        let index = now_ns / window_ns;
        let mut m = self.inner.lock();
        if index != m.window_index {
            m.previous = if index == m.window_index + 1 {
                m.current
            } else {
                0
            };
            m.current = 0;
            m.window_index = index;
        }
        m.current = m.current.saturating_add(1);
        let elapsed = (now_ns % window_ns) as f64 / window_ns as f64;
        let estimate = m.previous as f64 * (1.0 - elapsed) + m.current as f64;
        let rps = estimate / t.window.as_secs_f64().max(f64::MIN_POSITIVE);
        let mut transition = None;
        if !m.active {
            if rps >= t.on_rps {
                m.active = true;
                m.below_since = None;
                transition = Some(FloodTransition::Started { rps });
            }
        } else if rps < t.off_rps {
            let since = *m.below_since.get_or_insert(now_ns);
            if now_ns.saturating_sub(since) >= hold_ns {
                m.active = false;
                m.below_since = None;
                transition = Some(FloodTransition::Ended { rps });
            }
        } else {
            m.below_since = None;
        }
        MeterReading {
            rps,
            active: m.active,
            transition,
        }
    }

    /// Whether automatic flood mode is on.
    pub fn is_active(&self) -> bool {
        self.inner.lock().active
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn thresholds() -> FloodThresholds {
        FloodThresholds {
            on_rps: 100.0,
            off_rps: 50.0,
            window: Duration::from_secs(1),
            hold: Duration::from_secs(5),
        }
    }

    #[test]
    fn quiet_site_stays_off() {
        let m = FloodMeter::default();
        for i in 0..600 {
            // 10 requests per second for a minute.
            let r = m.record(i * SEC / 10, &thresholds());
            assert!(!r.active);
            assert_eq!(r.transition, None);
        }
    }

    #[test]
    fn flood_starts_once_and_ends_after_hold() {
        let m = FloodMeter::default();
        let t = thresholds();
        let mut starts = 0;
        // 1,000 requests within one second.
        for i in 0..1000 {
            let r = m.record(10 * SEC + i * SEC / 1000, &t);
            if let Some(FloodTransition::Started { rps }) = r.transition {
                assert!(rps >= 100.0);
                starts += 1;
            }
        }
        assert_eq!(starts, 1);
        assert!(m.is_active());
        // Then 1 request per second: below `off`, ends after the 5 s hold, once.
        let mut ended_at = None;
        for s in 12..30 {
            let r = m.record(s * SEC, &t);
            if let Some(FloodTransition::Ended { .. }) = r.transition {
                assert!(ended_at.is_none());
                ended_at = Some(s);
            }
        }
        assert_eq!(ended_at, Some(17));
        assert!(!m.is_active());
    }
}
