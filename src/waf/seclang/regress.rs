//! The CRS regression runner behind `egret crs regress`: reads the go-ftw YAML tests of a
//! CRS checkout, rebuilds each request as go-ftw sends it (method, URI, headers, data,
//! `encoded_request` / `raw_request`, `autocomplete_headers`), evaluates it in process, and
//! checks the rules it logs against `expect_ids` / `no_expect_ids` / `match_regex`.
//!
//! Responses for the `RESPONSE-*` tests come from the test itself, as the go-ftw backend
//! (albedo) builds them: a `POST /reflect` whose JSON body gives `status`, `headers` and
//! `body` (or base64 `encodedBody`).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use crate::waf::engine::Engine;
use crate::waf::policy::SitePolicy;
use crate::waf::testing::OwnedRequest;
use crate::waf::verdict::{RuleMatch, Verdict};

/// What one test expects from the log.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    pub ids: Vec<u32>,
    pub no_ids: Vec<u32>,
    pub match_regex: Option<String>,
    pub no_match_regex: Option<String>,
}

/// A response the backend returns (`/reflect`).
#[derive(Debug, Clone)]
pub struct Reflected {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// One stage of one test, ready to evaluate.
#[derive(Debug, Clone)]
pub struct Case {
    /// `911100-1` (rule id and test id; `-s2` for later stages).
    pub name: String,
    /// The test file's directory name (`REQUEST-911-METHOD-ENFORCEMENT`).
    pub group: String,
    pub request: OwnedRequest,
    pub response: Option<Reflected>,
    pub expect: Expect,
}

/// The outcome of a whole run.
#[derive(Debug, Default)]
pub struct Report {
    /// Per group: (passed, failed).
    pub groups: BTreeMap<String, (usize, usize)>,
    pub passed: usize,
    pub failed: usize,
    /// Failed case names with a reason.
    pub failures: Vec<(String, String)>,
    /// Failures listed as known (not counted in `failed`).
    pub known: Vec<String>,
    /// Files that could not be read or parsed.
    pub errors: Vec<String>,
}

impl Report {
    pub fn pass_rate(&self) -> f64 {
        let n = self.passed + self.failed;
        if n == 0 {
            0.0
        } else {
            self.passed as f64 / n as f64
        }
    }
}

/// Every `*.yaml` / `*.yml` file under `dir`, sorted.
pub fn test_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_mapping()?.get(key)
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn ids(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Sequence(s)) => s
            .iter()
            .filter_map(|x| text(x)?.trim().parse().ok())
            .collect(),
        Some(x) => text(x)
            .and_then(|t| t.trim().parse().ok())
            .into_iter()
            .collect(),
        None => Vec::new(),
    }
}

/// Parses one test file into cases.
pub fn parse_file(path: &Path) -> Result<Vec<Case>, String> {
    let raw = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if raw
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        // A placeholder file (comments only).
        return Ok(Vec::new());
    }
    let doc: Value =
        serde_yaml_ng::from_str(&raw).map_err(|e| format!("{}: {e}", path.display()))?;
    let group = path
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let rule_id = get(&doc, "rule_id").and_then(text).unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let mut out = Vec::new();
    let Some(tests) = get(&doc, "tests").and_then(Value::as_sequence) else {
        return Err(format!("{}: no tests", path.display()));
    };
    for (n, t) in tests.iter().enumerate() {
        let test_id = get(t, "test_id")
            .and_then(text)
            .unwrap_or_else(|| (n + 1).to_string());
        let Some(stages) = get(t, "stages").and_then(Value::as_sequence) else {
            continue;
        };
        for (si, stage) in stages.iter().enumerate() {
            // Old format: `- stage: {input, output}`.
            let stage = get(stage, "stage").unwrap_or(stage);
            let name = if si == 0 {
                format!("{rule_id}-{test_id}")
            } else {
                format!("{rule_id}-{test_id}-s{}", si + 1)
            };
            let input = get(stage, "input").cloned().unwrap_or(Value::Null);
            let output = get(stage, "output").cloned().unwrap_or(Value::Null);
            let request = build_request(&input).map_err(|e| format!("{name}: {e}"))?;
            let log = get(&output, "log").cloned().unwrap_or(Value::Null);
            let expect = Expect {
                ids: ids(get(&log, "expect_ids")),
                no_ids: ids(get(&log, "no_expect_ids")),
                match_regex: get(&log, "match_regex").and_then(text),
                no_match_regex: get(&log, "no_match_regex").and_then(text),
            };
            let response = reflected(&request);
            out.push(Case {
                name,
                group: group.clone(),
                request,
                response,
                expect,
            });
        }
    }
    Ok(out)
}

/// Builds the request bytes as go-ftw does, then parses them as a server would.
fn build_request(input: &Value) -> Result<OwnedRequest, String> {
    use base64::Engine as _;
    let raw: Vec<u8> = if let Some(enc) = get(input, "encoded_request").and_then(text) {
        let clean: String = enc.chars().filter(|c| !c.is_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(clean.as_bytes())
            .map_err(|e| format!("encoded_request: {e}"))?
    } else if let Some(r) = get(input, "raw_request").and_then(text) {
        r.into_bytes()
    } else {
        let method = get(input, "method")
            .and_then(text)
            .unwrap_or_else(|| "GET".into());
        let uri = get(input, "uri")
            .and_then(text)
            .unwrap_or_else(|| "/".into());
        let version = get(input, "version")
            .and_then(text)
            .unwrap_or_else(|| "HTTP/1.1".into());
        let mut headers: Vec<(String, String)> = Vec::new();
        if let Some(m) = get(input, "headers").and_then(Value::as_mapping) {
            for (k, v) in m {
                if let (Some(k), Some(v)) = (text(k), text(v)) {
                    headers.push((k, v));
                }
            }
        }
        let data: Vec<u8> = match get(input, "data") {
            Some(Value::Sequence(lines)) => lines
                .iter()
                .filter_map(text)
                .collect::<Vec<_>>()
                .join("\r\n")
                .into_bytes(),
            Some(v) => text(v).unwrap_or_default().into_bytes(),
            None => Vec::new(),
        };
        let autocomplete = get(input, "autocomplete_headers")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let has =
            |h: &[(String, String)], n: &str| h.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
        let mut data = data;
        if autocomplete && !data.is_empty() {
            // go-ftw (`ftwhttp.BuildRequest`): data with no Content-Type is sent as a form,
            // its `key=value` pairs escaped unless unescaping would change them already.
            if !has(&headers, "content-type") {
                headers.push((
                    "Content-Type".into(),
                    "application/x-www-form-urlencoded".into(),
                ));
            }
            let form = headers.iter().any(|(k, v)| {
                k.eq_ignore_ascii_case("content-type") && v == "application/x-www-form-urlencoded"
            });
            if form {
                data = go_encode_form(data);
            }
        }
        if autocomplete {
            // Like go-ftw (Go's HTTP client): a length for any data, and `0` for an empty
            // body of a method that has one.
            let body_method = matches!(method.as_str(), "POST" | "PUT" | "PATCH");
            if (!data.is_empty() || body_method) && !has(&headers, "content-length") {
                headers.push(("Content-Length".into(), data.len().to_string()));
            }
            if !has(&headers, "connection") {
                headers.push(("Connection".into(), "close".into()));
            }
        }
        let mut r = format!("{method} {uri} {version}\r\n").into_bytes();
        for (k, v) in &headers {
            r.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        r.extend_from_slice(b"\r\n");
        r.extend_from_slice(&data);
        r
    };
    parse_raw(&raw)
}

/// go-ftw's `encodeDataParameters`: when Go's `url.QueryUnescape` leaves the data unchanged
/// (no `%XX`, no `+`), each `key=value` pair is escaped with `url.QueryEscape` (a token with no
/// `=` as a whole); otherwise the data is sent as it is.
fn go_encode_form(data: Vec<u8>) -> Vec<u8> {
    let unchanged = !data.contains(&b'+') && !data.contains(&b'%');
    if !unchanged {
        return data;
    }
    fn esc(out: &mut Vec<u8>, s: &[u8]) {
        for &b in s {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b),
                b' ' => out.push(b'+'),
                _ => out.extend_from_slice(format!("%{b:02X}").as_bytes()),
            }
        }
    }
    let mut out = Vec::with_capacity(data.len() * 2);
    for (i, token) in data.split(|&b| b == b'&').enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        match token.iter().position(|&b| b == b'=') {
            Some(eq) => {
                esc(&mut out, &token[..eq]);
                out.push(b'=');
                esc(&mut out, &token[eq + 1..]);
            }
            None => esc(&mut out, token),
        }
    }
    out
}

/// Parses a raw HTTP/1 request: request line, headers up to the blank line, the body
/// (de-chunked when `Transfer-Encoding: chunked`, else cut at `Content-Length`).
pub fn parse_raw(raw: &[u8]) -> Result<OwnedRequest, String> {
    let (head, body) = match memchr::memmem::find(raw, b"\r\n\r\n") {
        Some(p) => (&raw[..p], &raw[p + 4..]),
        None => match memchr::memmem::find(raw, b"\n\n") {
            Some(p) => (&raw[..p], &raw[p + 2..]),
            None => (raw, &b""[..]),
        },
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split('\n').map(|l| l.trim_end_matches('\r'));
    // Leading blanks before the method (a test for the web server's 400) are dropped.
    let line = lines.next().ok_or("empty request")?.trim_start();
    let mut parts = line.splitn(2, ' ');
    let method = parts.next().unwrap_or("").to_owned();
    let rest = parts.next().unwrap_or("");
    let (uri, version) = match rest.rsplit_once(' ') {
        Some((u, v)) if v.starts_with("HTTP/") => (u.to_owned(), v.to_owned()),
        _ => (rest.to_owned(), "HTTP/1.1".to_owned()),
    };
    if method.is_empty() {
        return Err("missing method".into());
    }
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    for l in lines {
        if l.is_empty() {
            continue;
        }
        match l.split_once(':') {
            Some((k, v)) => headers.push((k.trim().to_owned(), v.trim().as_bytes().to_vec())),
            None => headers.push((l.trim().to_owned(), Vec::new())),
        }
    }
    let hv = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| String::from_utf8_lossy(v).to_ascii_lowercase())
    };
    let body = if hv("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        dechunk(body)
    } else if let Some(n) = hv("content-length").and_then(|v| v.trim().parse::<usize>().ok()) {
        body[..n.min(body.len())].to_vec()
    } else {
        body.to_vec()
    };
    Ok(OwnedRequest {
        method,
        uri: if uri.is_empty() { "/".into() } else { uri },
        version,
        headers,
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = memchr::memmem::find(b, b"\r\n") {
        let size = std::str::from_utf8(&b[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok());
        let Some(size) = size else { break };
        b = &b[eol + 2..];
        if size == 0 || size > b.len() {
            break;
        }
        out.extend_from_slice(&b[..size]);
        b = b.get(size + 2..).unwrap_or(&[]);
    }
    out
}

/// The albedo backend's `/reflect` response, when the request asks for one.
fn reflected(req: &OwnedRequest) -> Option<Reflected> {
    use base64::Engine as _;
    let path = req.uri.split('?').next().unwrap_or("");
    if !path.ends_with("/reflect") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&req.body).ok()?;
    let status = v
        .get("status")
        .and_then(serde_json::Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .unwrap_or(200);
    let mut headers = Vec::new();
    if let Some(h) = v.get("headers").and_then(serde_json::Value::as_object) {
        for (k, val) in h {
            if let Some(s) = val.as_str() {
                headers.push((k.clone(), s.as_bytes().to_vec()));
            }
        }
    }
    let body = match (v.get("body"), v.get("encodedBody")) {
        (_, Some(serde_json::Value::String(e))) => base64::engine::general_purpose::STANDARD
            .decode(e.as_bytes())
            .unwrap_or_default(),
        (Some(serde_json::Value::String(b)), _) => b.as_bytes().to_vec(),
        _ => Vec::new(),
    };
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        headers.push(("Content-Type".into(), b"text/plain; charset=utf-8".to_vec()));
    }
    Some(Reflected {
        status,
        headers,
        body,
    })
}

/// The log lines of a transaction, ModSecurity style (`[id "942100"] [msg "..."] [data
/// "... found within ARGS:x: ..."]`), for `match_regex`.
pub fn log_lines(matches: &[RuleMatch]) -> String {
    let mut s = String::new();
    for m in matches {
        let data = if m.data.is_empty() {
            format!(
                "Matched Data: {} found within {}: {}",
                m.value, m.target, m.value
            )
        } else {
            m.data.clone()
        };
        s.push_str(&format!(
            "[id \"{}\"] [msg \"{}\"] [data \"{data}\"]\n",
            m.id, m.msg
        ));
    }
    s
}

/// Evaluates one case through every phase; returns all matches.
pub fn evaluate(engine: &Engine, policy: &SitePolicy, case: &Case) -> Vec<RuleMatch> {
    let req = &case.request;
    let hs: Vec<(&str, &[u8])> = req
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    let view = crate::waf::Request {
        method: &req.method,
        uri: &req.uri,
        version: &req.version,
        headers: &hs,
        client_ip: req.client_ip,
        body: None,
        content_type: None,
    };
    let mut tx = engine.transaction(policy, &view);
    let mut all: Vec<RuleMatch> = Vec::new();
    let v1: Verdict = tx.eval_headers();
    let v2 = tx.eval_body(&req.body);
    let _ = v1;
    all.extend(v2.matches);
    if let Some(r) = &case.response {
        let rh: Vec<(&str, &[u8])> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        all.extend(tx.eval_response_headers(r.status, &rh).matches);
        all.extend(tx.eval_response_body(&r.body).matches);
    }
    all
}

/// Checks one case's matches; `None` when it passes, else why not.
pub fn check(case: &Case, matches: &[RuleMatch]) -> Option<String> {
    let got: Vec<u32> = matches.iter().map(|m| m.id).collect();
    let missing: Vec<u32> = case
        .expect
        .ids
        .iter()
        .copied()
        .filter(|id| !got.contains(id))
        .collect();
    let unexpected: Vec<u32> = case
        .expect
        .no_ids
        .iter()
        .copied()
        .filter(|id| got.contains(id))
        .collect();
    let mut why = Vec::new();
    if !missing.is_empty() {
        why.push(format!("expected {missing:?} not logged"));
    }
    if !unexpected.is_empty() {
        why.push(format!("unexpected {unexpected:?} logged"));
    }
    let log = log_lines(matches);
    if let Some(re) = &case.expect.match_regex {
        if let Ok(r) = regex::Regex::new(re) {
            if !r.is_match(&log) {
                why.push(format!("log does not match /{re}/"));
            }
        }
    }
    if let Some(re) = &case.expect.no_match_regex {
        if let Ok(r) = regex::Regex::new(re) {
            if r.is_match(&log) {
                why.push(format!("log matches /{re}/"));
            }
        }
    }
    if why.is_empty() {
        None
    } else {
        let mut g = got.clone();
        g.sort_unstable();
        g.dedup();
        Some(format!("{} (logged {g:?})", why.join("; ")))
    }
}

/// Known failures: `name = "reason"` lines (TOML-like: `"942100-3" = "why"`), `#` comments.
pub fn read_known(path: &Path) -> Result<HashMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = HashMap::new();
    for (k, v) in table {
        match v {
            toml::Value::String(r) if !r.trim().is_empty() => {
                out.insert(k, r);
            }
            _ => {
                return Err(format!(
                    "{}: {k}: the reason must be a non-empty string",
                    path.display()
                ))
            }
        }
    }
    Ok(out)
}

/// Runs every test file under `tests_dir`.
pub fn run(
    engine: &Engine,
    policy: &SitePolicy,
    tests_dir: &Path,
    known: &HashMap<String, String>,
) -> Result<Report, String> {
    let mut rep = Report::default();
    for f in test_files(tests_dir)? {
        let cases = match parse_file(&f) {
            Ok(c) => c,
            Err(e) => {
                rep.errors.push(e);
                continue;
            }
        };
        for c in cases {
            let m = evaluate(engine, policy, &c);
            let entry = rep.groups.entry(c.group.clone()).or_default();
            match check(&c, &m) {
                None => {
                    rep.passed += 1;
                    entry.0 += 1;
                }
                Some(_) if known.contains_key(&c.name) => rep.known.push(c.name.clone()),
                Some(why) => {
                    rep.failed += 1;
                    entry.1 += 1;
                    rep.failures.push((c.name.clone(), why));
                }
            }
        }
    }
    Ok(rep)
}

/// The blocking-mode check: ordinary requests must pass, attacks must be blocked.
#[derive(Debug, Default)]
pub struct BlockingReport {
    /// Ordinary corpus requests (every note but [`TRICKY_PROSE`]).
    pub benign_total: usize,
    /// Ordinary requests blocked: `(description, rule ids)`.
    pub benign_blocked: Vec<(String, String)>,
    /// Corpus requests whose note starts with [`TRICKY_PROSE`]: reported, not checked.
    pub tricky_total: usize,
    /// Tricky-prose requests blocked: `(description, rule ids)`.
    pub tricky_blocked: Vec<(String, String)>,
    pub attacks_total: usize,
    /// Attacks let through: `(case name, rule ids logged)`.
    pub attacks_passed: Vec<(String, String)>,
}

impl BlockingReport {
    /// Ordinary requests all pass and every attack is blocked.
    pub fn ok(&self) -> bool {
        self.benign_blocked.is_empty() && self.attacks_passed.is_empty()
    }

    /// How often each rule id blocks tricky prose, most frequent first (949110 left out).
    pub fn tricky_rule_counts(&self) -> Vec<(String, usize)> {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for (_, ids) in &self.tricky_blocked {
            for id in ids.split(',').map(str::trim) {
                if !id.is_empty() && id != "949110" {
                    *counts.entry(id.to_owned()).or_default() += 1;
                }
            }
        }
        let mut v: Vec<(String, usize)> = counts.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }
}

/// The corpus note prefix of requests written to look like attacks (`'or'`, `50% off --
/// today`, `etc/passwd 是什么`): CRS's paranoia-1 rules flag some of them by design, so the
/// blocking check reports them apart and does not fail on them.
pub const TRICKY_PROSE: &str = "tricky prose";

/// The attack cases of the suite that paranoia 1 must block on their own: those expecting a
/// paranoia-level-1 rule of critical severity (anomaly score 5, the default threshold).
pub fn pl1_attacks<'c>(engine: &Engine, cases: &'c [Case]) -> Vec<&'c Case> {
    use crate::waf::model::Severity;
    cases
        .iter()
        .filter(|c| {
            c.response.is_none()
                && c.expect.ids.iter().any(|&id| {
                    engine.rule(id).is_some_and(|r| {
                        r.paranoia == 1
                            && r.severity == Severity::Critical
                            && r.has_tag("OWASP_CRS")
                            && r.tags.iter().any(|t| t.starts_with("attack-"))
                            // Protocol limits and allowed methods (911) / content types
                            // are site settings, not attacks.
                            && !r.has_tag("attack-protocol")
                            && r.id / 1000 != 911
                    })
                })
        })
        .collect()
}

/// The body phase 2 inspects, decoded as the proxy decodes it (`src/proxy/waf_step.rs`): a
/// body the client compressed (`Content-Encoding: gzip`, `deflate`, `br`, stacked) is inspected
/// decompressed, up to ten times `limit`; `Err(status)` when the proxy refuses it instead (413
/// for a body decoding past that bound, 400 for a corrupt or unknown coding).
pub fn inspected_body(req: &OwnedRequest, limit: usize) -> Result<Cow<'_, [u8]>, u16> {
    let coding = req
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-encoding"))
        .map(|(_, v)| String::from_utf8_lossy(v).trim().to_ascii_lowercase());
    match coding.as_deref() {
        None | Some("identity") => Ok(Cow::Borrowed(&req.body)),
        Some(enc) => {
            match crate::deface::decode_body(Some(enc), &req.body, limit.saturating_mul(10)) {
                Ok(d) => Ok(Cow::Owned(d.into_owned())),
                Err(crate::deface::DecodeError::TooLarge { .. }) => Err(413),
                Err(_) => Err(400),
            }
        }
    }
}

/// Evaluates the request phases only and returns the verdict, the body decoded as the proxy
/// decodes it ([`inspected_body`]); a body the proxy would refuse gives a block with no match.
pub fn request_verdict(engine: &Engine, policy: &SitePolicy, req: &OwnedRequest) -> Verdict {
    let hs: Vec<(&str, &[u8])> = req
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    let view = crate::waf::Request {
        method: &req.method,
        uri: &req.uri,
        version: &req.version,
        headers: &hs,
        client_ip: req.client_ip,
        body: None,
        content_type: None,
    };
    let mut tx = engine.transaction(policy, &view);
    let v = tx.eval_headers();
    if v.is_block() {
        return v;
    }
    match inspected_body(req, policy.inspect_body_limit) {
        Ok(body) => tx.eval_body(&body),
        Err(_) => Verdict {
            action: crate::waf::verdict::Action::Block,
            ..Verdict::allow()
        },
    }
}

/// Runs the blocking check: `benign` requests (a JSONL corpus: request and note) and the PL1
/// attacks. Requests whose note starts with [`TRICKY_PROSE`] are counted apart.
pub fn blocking_check(
    engine: &Engine,
    policy: &SitePolicy,
    cases: &[Case],
    benign: &[(OwnedRequest, String)],
) -> BlockingReport {
    let mut rep = BlockingReport::default();
    for (r, note) in benign {
        let tricky = note.starts_with(TRICKY_PROSE);
        if tricky {
            rep.tricky_total += 1;
        } else {
            rep.benign_total += 1;
        }
        let v = request_verdict(engine, policy, r);
        if v.is_block() {
            let ids = if v.matches.is_empty() {
                "refused: undecodable Content-Encoding".to_owned()
            } else {
                v.rule_ids()
            };
            let d = format!(
                "{} {} ({note})",
                r.method,
                r.uri.chars().take(80).collect::<String>()
            );
            if tricky {
                rep.tricky_blocked.push((d, ids));
            } else {
                rep.benign_blocked.push((d, ids));
            }
        }
    }
    let attacks = pl1_attacks(engine, cases);
    rep.attacks_total = attacks.len();
    for c in attacks {
        let v = request_verdict(engine, policy, &c.request);
        if !v.is_block() {
            rep.attacks_passed.push((c.name.clone(), v.rule_ids()));
        }
    }
    rep
}

/// Every case of every test file (files that fail to parse are reported as errors).
pub fn all_cases(tests_dir: &Path) -> Result<(Vec<Case>, Vec<String>), String> {
    let mut cases = Vec::new();
    let mut errors = Vec::new();
    for f in test_files(tests_dir)? {
        match parse_file(&f) {
            Ok(mut c) => cases.append(&mut c),
            Err(e) => errors.push(e),
        }
    }
    Ok((cases, errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_raw_and_chunked_requests() {
        let r = parse_raw(b"POST /a?b=1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nHi \r\n3\r\nCRS\r\n0\r\n\r\n")
            .expect("parses");
        assert_eq!(r.method, "POST");
        assert_eq!(r.uri, "/a?b=1");
        assert_eq!(r.body, b"Hi CRS");
        let r = parse_raw(b"GET / HTTP/1.1\r\nContent-Length: 2\r\n\r\nabcd").expect("parses");
        assert_eq!(r.body, b"ab");
    }

    #[test]
    fn builds_requests_like_go_ftw() {
        let input: Value = serde_yaml_ng::from_str(
            "method: POST\nuri: /post\nheaders:\n  Host: localhost\ndata: a=1\n",
        )
        .expect("yaml");
        let r = build_request(&input).expect("builds");
        assert_eq!(r.body, b"a=1");
        assert!(r
            .headers
            .iter()
            .any(|(k, v)| k == "Content-Length" && v == b"3"));
        // Data with no Content-Type goes as a form, its pairs escaped (go-ftw's BuildRequest).
        assert!(r
            .headers
            .iter()
            .any(|(k, v)| k == "Content-Type" && v == b"application/x-www-form-urlencoded"));
        let input: Value = serde_yaml_ng::from_str(
            "method: POST\nuri: /post\ndata: |\n  code=cd /;cat passwd&x\n",
        )
        .expect("yaml");
        let r = build_request(&input).expect("builds");
        assert_eq!(r.body, b"code=cd+%2F%3Bcat+passwd&x%0A");
        // Already escaped data (a `%XX` or `+`) is sent as it is.
        assert_eq!(go_encode_form(b"a=1+2&b=%27".to_vec()), b"a=1+2&b=%27");
    }

    #[test]
    fn blocking_check_decodes_bodies_as_the_proxy() {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b"{\"a\":1}").expect("gzip");
        let gz = e.finish().expect("gzip");
        let req = |enc: &str, body: Vec<u8>| OwnedRequest {
            method: "POST".into(),
            uri: "/".into(),
            version: "HTTP/1.1".into(),
            headers: vec![("Content-Encoding".into(), enc.as_bytes().to_vec())],
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            body,
        };
        let r = req("gzip", gz.clone());
        assert_eq!(&*inspected_body(&r, 1024).expect("decodes"), b"{\"a\":1}");
        assert_eq!(
            inspected_body(&req("gzip", b"not gzip".to_vec()), 1024).err(),
            Some(400)
        );
        assert_eq!(inspected_body(&req("zstd", gz), 1024).err(), Some(400));
        let zeros = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(&vec![0u8; 1 << 20]).expect("gzip");
            e.finish().expect("gzip")
        };
        assert_eq!(inspected_body(&req("gzip", zeros), 1024).err(), Some(413));
        let r = req("identity", b"x".to_vec());
        assert_eq!(&*inspected_body(&r, 1024).expect("plain"), b"x");
    }
}
