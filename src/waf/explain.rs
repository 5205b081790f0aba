//! `egret rules explain`: evaluate one request (raw HTTP text or a JSONL corpus line) and
//! render which rules matched, on which target, after which transformations, with what score.

use std::fmt;

use super::engine::Engine;
use super::policy::SitePolicy;
use super::testing::OwnedRequest;
use super::verdict::Verdict;

/// A printable explanation of one evaluation.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub request_line: String,
    pub verdict: Verdict,
    pub threshold: u32,
    /// Decoded arguments (`name=value`), to show what the rules saw.
    pub args: Vec<String>,
}

/// Parses `input` (raw HTTP, or JSON when it starts with `{`) and evaluates it.
pub fn explain(engine: &Engine, policy: &SitePolicy, input: &str) -> Result<Explanation, String> {
    let req = if input.trim_start().starts_with('{') {
        OwnedRequest::from_json_line(input.trim())?.0
    } else {
        OwnedRequest::parse_raw(input)?
    };
    let (verdict, args) = req.with_request(|r| {
        let mut tx = engine.transaction(policy, r);
        let v1 = tx.eval_headers();
        let v = if v1.is_block() {
            v1
        } else {
            tx.eval_body(r.body.unwrap_or(&[]))
        };
        let vars = tx.vars();
        let args = vars
            .ids(super::model::Variable::Args)
            .iter()
            .map(|&id| {
                let it = vars.item(id);
                format!("{}={}", it.key, super::verdict::truncate_value(&it.value))
            })
            .collect();
        (v, args)
    });
    Ok(Explanation {
        request_line: format!("{} {} {}", req.method, req.uri, req.version),
        verdict,
        threshold: policy.inbound_threshold,
        args,
    })
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "request: {}", self.request_line)?;
        for a in &self.args {
            writeln!(f, "  arg {a}")?;
        }
        if self.verdict.matches.is_empty() {
            writeln!(f, "no rule matched")?;
        }
        for m in &self.verdict.matches {
            let tr = if m.transformations.is_empty() {
                "none".to_owned()
            } else {
                m.transformations.join(",")
            };
            writeln!(f, "rule {} [{}] {} (+{})", m.id, m.severity, m.msg, m.score)?;
            writeln!(
                f,
                "  target {} after t:{} {} matched {:?}",
                m.target, tr, m.operator, m.value
            )?;
            if !m.tags.is_empty() {
                writeln!(f, "  tags {}", m.tags.join(","))?;
            }
        }
        writeln!(
            f,
            "verdict: {} (score {} / threshold {}{})",
            self.verdict.action,
            self.verdict.score,
            self.threshold,
            if self.verdict.body_over_limit {
                ", body over limit"
            } else {
                ""
            }
        )
    }
}
