//! Error types of the rate-limiting module: rate strings, configuration, challenge cookies.

use std::num::ParseIntError;
use std::time::Duration;

/// A rate string such as `"100/s"` or a burst could not be turned into a rate.
#[derive(Debug, thiserror::Error)]
pub enum RateParseError {
    /// No `/` between count and unit.
    #[error("rate `{0}` is missing `/`: write it as `<count>/<unit>`, e.g. `100/s` or `600/m`")]
    MissingSlash(String),
    /// The count is not a non-negative integer.
    #[error("rate `{input}`: count is not a whole number: {source}")]
    BadCount {
        /// The rate as written.
        input: String,
        /// Why the count did not parse.
        source: ParseIntError,
    },
    /// The unit is not one of s, m, h, d.
    #[error("rate `{input}`: unknown unit `{unit}` (use s, m, h or d)")]
    UnknownUnit {
        /// The rate as written.
        input: String,
        /// The unit as written.
        unit: String,
    },
    /// A count of zero would block everything; use a deny list for that.
    #[error("rate count is zero: a zero rate blocks everything, use a deny list instead")]
    ZeroCount,
    /// More than one request per nanosecond.
    #[error("rate {count} per {period:?} is faster than one request per nanosecond")]
    TooFast {
        /// Requests per period.
        count: u32,
        /// The period.
        period: Duration,
    },
    /// A burst of zero would block everything.
    #[error("burst is zero: it must allow at least one request")]
    ZeroBurst,
}

/// The rate-limit configuration is invalid. `site` names the site file (`None` for the global
/// section) and `field` the offending field as a dotted path within it
/// (e.g. `ratelimit.policies[login].rate`).
#[derive(Debug, thiserror::Error)]
#[error("rate limit config{}: `{field}`: {reason}", site.as_ref().map(|s| format!(" of site `{s}`")).unwrap_or_default())]
pub struct ConfigError {
    /// The site, or `None` for the global section.
    pub site: Option<String>,
    /// Dotted path of the field.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(field: impl Into<String>, reason: impl ToString) -> Self {
        Self {
            site: None,
            field: field.into(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn in_site(mut self, site: &str) -> Self {
        self.site = Some(site.to_owned());
        self
    }
}

/// A clearance cookie or challenge answer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    /// Not in the expected format (or over the length bound).
    #[error("malformed challenge value")]
    Malformed,
    /// The signature does not match: not issued by us (or by us with another secret).
    #[error("signature does not match (forged or issued with another secret)")]
    Forged,
    /// Issued for another client IP.
    #[error("issued for another client IP")]
    WrongIp,
    /// Past its expiry.
    #[error("expired")]
    Expired,
    /// The proof of work does not have enough leading zero bits.
    #[error("proof of work does not meet difficulty {difficulty}")]
    InsufficientWork {
        /// Leading zero bits required.
        difficulty: u8,
    },
}
