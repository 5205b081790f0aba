//! Rule tests and corpus evaluation: owned requests parsed from raw HTTP text or JSONL
//! corpus lines, the inline rule-test runner behind `egret rules test`, and the corpus
//! runner that measures detection / false-positive rates.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use serde::Deserialize;

use super::engine::Engine;
use super::policy::{Mode, SitePolicy, SitePolicyConfig};
use super::request::Request;
use super::verdict::Verdict;

/// A request owning its bytes (from a test, a corpus line or the command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRequest {
    pub method: String,
    pub uri: String,
    pub version: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub client_ip: IpAddr,
    pub body: Vec<u8>,
}

/// One JSONL corpus line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CorpusLine {
    method: String,
    uri: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    body_b64: Option<String>,
    #[serde(default)]
    ip: Option<IpAddr>,
    #[serde(default)]
    note: String,
}

impl OwnedRequest {
    /// Parses raw HTTP text: request line, header lines, a blank line, the body. `\n` or
    /// `\r\n` line ends; the version defaults to HTTP/1.1. No header is added.
    pub fn parse_raw(text: &str) -> Result<OwnedRequest, String> {
        let text = text.trim_start_matches(['\r', '\n']);
        let crlf = text.find("\r\n\r\n").map(|p| (p, 4));
        let lf = text.find("\n\n").map(|p| (p, 2));
        let split = match (crlf, lf) {
            (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
            (a, b) => a.or(b),
        };
        let (head, body) = match split {
            Some((p, n)) => (&text[..p], &text[p + n..]),
            None => (text, ""),
        };
        let mut lines = head.lines();
        let line = lines.next().ok_or("empty request")?;
        // The target may contain spaces (handy in tests): method first, version last.
        let line = line.trim_end_matches('\r');
        let (method, rest) = line.split_once(' ').ok_or("missing request target")?;
        let (uri, version) = match rest.rsplit_once(' ') {
            Some((u, v)) if v.starts_with("HTTP/") => (u, v),
            _ => (rest, "HTTP/1.1"),
        };
        if uri.is_empty() {
            return Err("missing request target".into());
        }
        let (method, uri, version) = (method.to_owned(), uri.to_owned(), version.to_owned());
        let mut headers = Vec::new();
        for l in lines {
            let l = l.trim_end_matches('\r');
            if l.is_empty() {
                continue;
            }
            let (k, v) = l
                .split_once(':')
                .ok_or_else(|| format!("bad header line {l:?}"))?;
            headers.push((k.trim().to_owned(), v.trim().as_bytes().to_vec()));
        }
        Ok(OwnedRequest {
            method,
            uri,
            version,
            headers,
            client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
            body: body.as_bytes().to_vec(),
        })
    }

    /// Parses one JSONL corpus line; returns the request and its note. A body without a
    /// `Content-Length` or `Transfer-Encoding` line gets `Content-Length`, as every client
    /// sends one (and as the proxy sees it).
    pub fn from_json_line(line: &str) -> Result<(OwnedRequest, String), String> {
        let mut c: CorpusLine = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let body = match (c.body.take(), c.body_b64.take()) {
            (_, Some(b)) => super::transform::base64_decode(b.as_bytes()),
            (Some(b), None) => b.into_bytes(),
            (None, None) => Vec::new(),
        };
        let framed = c.headers.iter().any(|(k, _)| {
            k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
        });
        if !body.is_empty() && !framed {
            c.headers
                .push(("Content-Length".to_owned(), body.len().to_string()));
        }
        Ok((
            OwnedRequest {
                method: c.method,
                uri: c.uri,
                version: c.version.unwrap_or_else(|| "HTTP/1.1".to_owned()),
                headers: c
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes()))
                    .collect(),
                client_ip: c.ip.unwrap_or(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))),
                body,
            },
            c.note,
        ))
    }

    /// Runs `f` on a borrowed [`Request`] view of this request.
    pub fn with_request<R>(&self, f: impl FnOnce(&Request<'_>) -> R) -> R {
        let hs: Vec<(&str, &[u8])> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        let req = Request {
            method: &self.method,
            uri: &self.uri,
            version: &self.version,
            headers: &hs,
            client_ip: self.client_ip,
            body: if self.body.is_empty() {
                None
            } else {
                Some(&self.body)
            },
            content_type: None,
        };
        f(&req)
    }

    /// Evaluates both phases.
    pub fn evaluate(&self, engine: &Engine, policy: &SitePolicy) -> Verdict {
        self.with_request(|r| engine.evaluate(policy, r))
    }
}

/// A response owning its bytes, for the inline tests of response-phase rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedResponse {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl OwnedResponse {
    /// Parses raw HTTP response text: `HTTP/1.1 200 OK`, header lines, a blank line, the body.
    pub fn parse_raw(text: &str) -> Result<OwnedResponse, String> {
        // The same framing as a request: reuse its parser on the status line.
        let r = OwnedRequest::parse_raw(text)?;
        if !r.method.starts_with("HTTP/") {
            return Err(format!("expected a status line, got {:?}", r.method));
        }
        let code = r.uri.split_whitespace().next().unwrap_or("");
        let status = code
            .parse::<u16>()
            .ok()
            .filter(|s| (100..=999).contains(s))
            .ok_or_else(|| format!("bad status code {code:?}"))?;
        Ok(OwnedResponse {
            status,
            headers: r.headers,
            body: r.body,
        })
    }
}

/// Evaluates `req` (both request phases) and then `resp` (phases 3 and 4); the verdict holds
/// the matches of all four phases and the response-side action.
pub fn evaluate_exchange(
    engine: &Engine,
    policy: &SitePolicy,
    req: &OwnedRequest,
    resp: &OwnedResponse,
) -> Verdict {
    req.with_request(|r| {
        let mut tx = engine.transaction(policy, r);
        let mut all = tx.eval_headers();
        if all.is_block() {
            return all;
        }
        all = tx.eval_body(r.body.unwrap_or(&[]));
        if all.is_block() {
            return all;
        }
        let hs: Vec<(&str, &[u8])> = resp
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        let mut v = tx.eval_response_headers(resp.status, &hs);
        if !v.is_block() {
            let b = tx.eval_response_body(&resp.body);
            v.matches.extend(b.matches);
            v.action = b.action;
            v.outbound_score = b.outbound_score;
        }
        let mut matches = all.matches;
        matches.extend(v.matches);
        v.matches = matches;
        v
    })
}

/// The policy rule tests run under: paranoia 4, detect mode, no threshold.
pub fn test_policy(engine: &Engine) -> SitePolicy {
    let cfg = SitePolicyConfig {
        mode: Mode::Detect,
        paranoia: 4,
        inbound_threshold: u32::MAX,
        outbound_threshold: u32::MAX,
        ..SitePolicyConfig::default()
    };
    cfg.compile(engine)
        .unwrap_or_else(|_| SitePolicy::default_for(engine))
}

/// Outcome of one rule's inline tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleTestResult {
    pub rule_id: u32,
    pub origin: String,
    pub passed: usize,
    /// One line per failed test, saying why.
    pub failures: Vec<String>,
}

/// Report of [`run_rule_tests`], printable per rule.
#[derive(Debug, Clone, Default)]
pub struct TestReport {
    pub results: Vec<RuleTestResult>,
    /// Rules without any inline test.
    pub untested: Vec<u32>,
}

impl TestReport {
    pub fn ok(&self) -> bool {
        self.results.iter().all(|r| r.failures.is_empty())
    }

    pub fn failed(&self) -> usize {
        self.results
            .iter()
            .filter(|r| !r.failures.is_empty())
            .count()
    }
}

impl fmt::Display for TestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.results {
            if r.failures.is_empty() {
                writeln!(f, "PASS {} ({} tests) {}", r.rule_id, r.passed, r.origin)?;
            } else {
                writeln!(f, "FAIL {} {}", r.rule_id, r.origin)?;
                for why in &r.failures {
                    writeln!(f, "     {why}")?;
                }
            }
        }
        if !self.untested.is_empty() {
            let ids: Vec<String> = self.untested.iter().map(u32::to_string).collect();
            writeln!(f, "untested: {}", ids.join(","))?;
        }
        writeln!(
            f,
            "{} rules passed, {} failed",
            self.results.len() - self.failed(),
            self.failed()
        )
    }
}

/// Runs every rule's inline tests (`[rule.tests] match = [...]`, `no_match = [...]`).
pub fn run_rule_tests(engine: &Engine) -> TestReport {
    let policy = test_policy(engine);
    let mut report = TestReport::default();
    for rule in engine.rules() {
        if rule.tests.is_empty() {
            report.untested.push(rule.id);
            continue;
        }
        let mut res = RuleTestResult {
            rule_id: rule.id,
            origin: rule.origin.clone(),
            passed: 0,
            failures: Vec::new(),
        };
        for (n, t) in rule.tests.iter().enumerate() {
            let first = t.request.lines().next().unwrap_or("");
            // Response-phase rules are tested with a response to `GET /`.
            let parsed = if rule.phase.is_inbound() {
                OwnedRequest::parse_raw(&t.request).map(|req| req.evaluate(engine, &policy))
            } else {
                OwnedRequest::parse_raw("GET / HTTP/1.1\nHost: test")
                    .and_then(|req| Ok((req, OwnedResponse::parse_raw(&t.request)?)))
                    .map(|(req, resp)| evaluate_exchange(engine, &policy, &req, &resp))
            };
            let v = match parsed {
                Ok(v) => v,
                Err(e) => {
                    res.failures
                        .push(format!("test {n}: unparsable test ({e}): {first}"));
                    continue;
                }
            };
            let hit = v.matches.iter().find(|m| m.id == rule.id);
            match (t.must_match, hit) {
                (true, Some(_)) | (false, None) => res.passed += 1,
                (true, None) => res.failures.push(format!(
                    "test {n}: expected a match, got none ({v}): {first}"
                )),
                (false, Some(m)) => res.failures.push(format!(
                    "test {n}: expected no match, matched {} = {:?}: {first}",
                    m.target, m.value
                )),
            }
        }
        report.results.push(res);
    }
    report
}

/// Result of evaluating a JSONL corpus.
#[derive(Debug, Clone, Default)]
pub struct CorpusReport {
    pub total: usize,
    pub blocked: usize,
    /// `(line, note, verdict)` of every blocked request (for benign corpora) — see
    /// [`CorpusReport::not_blocked`] for attacks.
    pub blocked_lines: Vec<(usize, String, String)>,
    pub not_blocked: Vec<(usize, String, String)>,
}

impl CorpusReport {
    pub fn block_rate(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.blocked as f64 / self.total as f64
        }
    }
}

/// Evaluates every line of a JSONL corpus under `policy`.
pub fn evaluate_corpus(
    engine: &Engine,
    policy: &SitePolicy,
    path: &Path,
) -> Result<CorpusReport, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut rep = CorpusReport::default();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (req, note) = OwnedRequest::from_json_line(line)
            .map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))?;
        let v = req.evaluate(engine, policy);
        rep.total += 1;
        let desc = format!(
            "{} {} {}",
            req.method,
            req.uri.chars().take(100).collect::<String>(),
            summarize(&v)
        );
        if v.is_block() {
            rep.blocked += 1;
            rep.blocked_lines.push((i + 1, note, desc));
        } else {
            rep.not_blocked.push((i + 1, note, desc));
        }
    }
    Ok(rep)
}

fn summarize(v: &Verdict) -> String {
    let ms: Vec<String> = v
        .matches
        .iter()
        .map(|m| {
            format!(
                "{}@{}={:?}",
                m.id,
                m.target,
                m.value.chars().take(40).collect::<String>()
            )
        })
        .collect();
    format!("[{} score={} {}]", v.action, v.score, ms.join(" "))
}
