//! What happens to a protected page's response once it has a verdict.
//!
//! Owns the mapping (mode, verdict) -> [`PageAction`] and the two fixed pieces the proxy needs
//! to carry it out: the marker header on a served approved copy and the maintenance page of
//! block mode. The proxy's response module turns the action into status, headers and body.

use serde::{Deserialize, Serialize};

use super::policy::Mode;
use super::verdict::Verdict;

/// Response header set when the approved copy is served instead of the origin's response.
pub const APPROVED_COPY_HEADER: &str = "x-egret-deface";
/// Its value.
pub const APPROVED_COPY_VALUE: &str = "approved-copy";

/// Maintenance page served with 503 in block mode.
pub const MAINTENANCE_PAGE: &str = r#"<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="robots" content="noindex">
<title>系统维护中 Under maintenance</title>
<style>body{font-family:sans-serif;text-align:center;margin-top:15%;color:#333}</style>
</head><body>
<h1>网站维护中，请稍后访问</h1>
<p>This page is temporarily unavailable for maintenance. Please try again later.</p>
</body></html>
"#;

/// What to do with a protected page's response.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PageAction {
    /// Not tampered: pass the response on.
    Pass,
    /// Tampered, monitor mode: pass it on, record an event.
    Alert,
    /// Tampered, protect mode: serve the approved copy (with [`APPROVED_COPY_HEADER`]), record
    /// an event. Without an approved copy this falls back to `Maintenance`.
    ServeApproved,
    /// Tampered, block mode: serve [`MAINTENANCE_PAGE`] with 503, record an event.
    Maintenance,
}

impl PageAction {
    /// The action for `verdict` on a page in `mode`.
    pub fn decide(mode: Mode, verdict: &Verdict) -> Self {
        match (verdict.tampered, mode) {
            (false, _) => Self::Pass,
            (true, Mode::Monitor) => Self::Alert,
            (true, Mode::Protect) => Self::ServeApproved,
            (true, Mode::Block) => Self::Maintenance,
        }
    }

    /// Whether an event is recorded.
    pub fn is_tampered(self) -> bool {
        self != Self::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_map_to_actions() {
        let mut v = Verdict {
            tampered: false,
            score: 30,
            similarity: 0.9,
            indicators: Vec::new(),
        };
        for mode in [Mode::Monitor, Mode::Protect, Mode::Block] {
            assert_eq!(PageAction::decide(mode, &v), PageAction::Pass);
        }
        v.tampered = true;
        assert_eq!(PageAction::decide(Mode::Monitor, &v), PageAction::Alert);
        assert_eq!(
            PageAction::decide(Mode::Protect, &v),
            PageAction::ServeApproved
        );
        assert_eq!(PageAction::decide(Mode::Block, &v), PageAction::Maintenance);
        assert!(MAINTENANCE_PAGE.contains("维护"));
    }
}
