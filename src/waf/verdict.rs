//! The engine's answer for one request: an [`Action`], the anomaly score and the matched
//! rules. The proxy turns it into a response (403 or pass) and an audit-log line.

use std::fmt;

use super::model::{Phase, Severity};

/// Maximum characters of a matched value kept in a [`RuleMatch`].
pub const MATCH_VALUE_CHARS: usize = 128;

/// What the proxy must do with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing matched (or an `allow` rule matched): forward the request.
    Allow,
    /// Block with 403 (block mode, threshold reached, or a `deny` rule).
    Block,
    /// Forward, but log: rules matched under the threshold, or the site is in detect mode.
    Log,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Allow => "allow",
            Action::Block => "block",
            Action::Log => "log",
        })
    }
}

/// One matched rule, ready for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMatch {
    pub id: u32,
    pub msg: String,
    pub severity: Severity,
    pub tags: Vec<String>,
    pub phase: Phase,
    /// The matched target, e.g. `ARGS:q` or `REQUEST_HEADERS:User-Agent`.
    pub target: String,
    /// The value the operator saw (after transformations), truncated to 128 characters.
    pub value: String,
    /// Transformation names applied before the operator ran.
    pub transformations: Vec<&'static str>,
    /// The operator, e.g. `@rx` or `!@streq`.
    pub operator: String,
    /// Score this match added to the anomaly score (0 for log-only rules).
    pub score: u32,
    /// The rule's expanded `logdata` (SecLang rules), truncated; empty when it has none.
    pub data: String,
}

/// The verdict for a request so far (after phase 1, or after phase 2).
#[must_use = "a WAF verdict must be enforced or logged"]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub action: Action,
    /// Inbound anomaly score.
    pub score: u32,
    /// Outbound anomaly score (response phases 3 and 4).
    pub outbound_score: u32,
    pub matches: Vec<RuleMatch>,
    /// The body exceeded the site's inspection limit.
    pub body_over_limit: bool,
}

impl Verdict {
    /// A verdict with no matches.
    pub fn allow() -> Verdict {
        Verdict {
            action: Action::Allow,
            score: 0,
            outbound_score: 0,
            matches: Vec::new(),
            body_over_limit: false,
        }
    }

    pub fn is_block(&self) -> bool {
        self.action == Action::Block
    }

    /// Replaces matched values that may carry secrets with `[redacted]`: arguments named like
    /// passwords or tokens, cookies, and the Authorization / Cookie headers. Call before
    /// writing the audit log.
    pub fn redact_secrets(&mut self) {
        const SECRET_HINTS: &[&str] = &[
            "pass",
            "pwd",
            "secret",
            "token",
            "auth",
            "session",
            "cookie",
            "captcha",
            "credential",
            "ticket",
            "key",
        ];
        for m in &mut self.matches {
            let t = m.target.to_ascii_lowercase();
            let secret = t.starts_with("request_cookies:")
                || (t.starts_with("request_cookies") && !t.starts_with("request_cookies_names"))
                || SECRET_HINTS
                    .iter()
                    .any(|h| t.contains(h) && !t.ends_with("_names"));
            if secret {
                m.value = "[redacted]".to_owned();
            }
        }
    }

    /// Matched rule ids, comma-separated (for the access log): `942100,941110`.
    pub fn rule_ids(&self) -> String {
        let mut ids: Vec<String> = Vec::new();
        for m in &self.matches {
            let s = m.id.to_string();
            if !ids.contains(&s) {
                ids.push(s);
            }
        }
        ids.join(",")
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} score={}", self.action, self.score)?;
        if self.body_over_limit {
            f.write_str(" body-over-limit")?;
        }
        if !self.matches.is_empty() {
            write!(f, " rules={}", self.rule_ids())?;
        }
        Ok(())
    }
}

/// Lossy UTF-8, cut at `MATCH_VALUE_CHARS` characters.
pub fn truncate_value(v: &[u8]) -> String {
    let s = String::from_utf8_lossy(&v[..v.len().min(MATCH_VALUE_CHARS * 4)]);
    let mut out: String = s.chars().take(MATCH_VALUE_CHARS).collect();
    if s.chars().count() > MATCH_VALUE_CHARS || v.len() > MATCH_VALUE_CHARS * 4 {
        out.push('…');
    }
    out
}
