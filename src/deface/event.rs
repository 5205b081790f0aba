//! The JSON event written for every tampering verdict.
//!
//! Owns [`TamperEvent`]: site, path, mode, action, score, indicators with evidence, hashes of
//! the baseline and current bodies and a one-line summary. Writing it to the event log,
//! metrics and the webhook belong to the caller (they are I/O).

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::action::PageAction;
use super::policy::{hex, Mode};
use super::verdict::{Indicator, Verdict};

/// One tampering event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TamperEvent {
    /// Seconds since the Unix epoch.
    pub time: u64,
    /// Site name.
    pub site: String,
    /// Request path.
    pub path: String,
    /// The page's mode.
    pub mode: Mode,
    /// What was done.
    pub action: PageAction,
    /// Verdict score.
    pub score: u32,
    /// Text similarity to the baseline.
    pub similarity: f64,
    /// Evidence.
    pub indicators: Vec<Indicator>,
    /// SHA-256 of the approved copy.
    pub baseline_sha256: String,
    /// SHA-256 of the current (decoded) body.
    pub current_sha256: String,
    /// Short diff summary: indicator kinds and similarity.
    pub summary: String,
}

impl TamperEvent {
    /// Builds the event for `verdict` on (`site`, `path`).
    pub fn new(
        site: &str,
        path: &str,
        mode: Mode,
        verdict: &Verdict,
        baseline_sha256: &str,
        current_body: &[u8],
        now: SystemTime,
    ) -> Self {
        let mut kinds: Vec<String> = Vec::new();
        for i in &verdict.indicators {
            let k = format!("{:?}", i.kind);
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
        Self {
            time: now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            site: site.to_owned(),
            path: path.to_owned(),
            mode,
            action: PageAction::decide(mode, verdict),
            score: verdict.score,
            similarity: verdict.similarity,
            indicators: verdict.indicators.clone(),
            baseline_sha256: baseline_sha256.to_owned(),
            current_sha256: hex(&Sha256::digest(current_body)),
            summary: format!(
                "{} indicator(s): {}; text similarity {:.2}",
                verdict.indicators.len(),
                kinds.join(", "),
                verdict.similarity
            ),
        }
    }

    /// One line of JSON for the event log.
    pub fn to_json_line(&self) -> String {
        // Plain strings and numbers always serialize; keep the line well-formed regardless.
        serde_json::to_string(self).unwrap_or_else(|_| "{\"error\":\"serialize\"}".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deface::verdict::IndicatorKind;

    #[test]
    fn event_json_line() {
        let v = Verdict {
            tampered: true,
            score: 80,
            similarity: 0.95,
            indicators: vec![Indicator {
                kind: IndicatorKind::HiddenLinks,
                evidence: "1 link(s) in hidden blocks: http://x/ (display:none)".into(),
            }],
        };
        let e = TamperEvent::new("www", "/", Mode::Protect, &v, "abc", b"<html>", UNIX_EPOCH);
        let line = e.to_json_line();
        assert!(!line.contains('\n'));
        let back: TamperEvent = serde_json::from_str(&line).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.action, PageAction::ServeApproved);
        assert_eq!(
            back.summary,
            "1 indicator(s): HiddenLinks; text similarity 0.95"
        );
        assert_eq!(back.current_sha256.len(), 64);
    }
}
