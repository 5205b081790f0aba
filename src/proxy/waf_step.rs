//! Step 5 of the pipeline: the WAF. Phase 1 (request line, headers, arguments) runs in
//! `request_filter`; phase 2 (the body) runs on the whole body, buffered and held back in
//! `request_body_filter` until it has been inspected, so an origin never receives a body the WAF
//! has not seen (pingora 0.9.1 sends the request header first; a blocked body never follows it).

use super::ctx::Ctx;
use crate::state::AppState;
use crate::waf::{self, Transaction, Verdict};
use bytes::{Bytes, BytesMut};
use pingora::http::{RequestHeader, ResponseHeader};
use serde_json::json;
use std::net::IpAddr;
use std::sync::Arc;

/// A request's WAF state kept between phase 1 and phase 2.
pub struct WafState {
    pub tx: Transaction,
    pub buf: BytesMut,
    pub limit: usize,
    pub over_limit: waf::OverLimit,
    /// Phase 2 already ran (the rest of the body streams through).
    pub done: bool,
    pub content_encoding: Option<String>,
}

/// Runs phase 1 (and phase 2 at once when there is no body). Returns the verdict and, when the
/// request has a body to inspect, the state for phase 2.
pub fn phase1(
    engine: &Arc<waf::Engine>,
    policy: &Arc<waf::SitePolicy>,
    req: &RequestHeader,
    ip: IpAddr,
) -> (Verdict, Option<WafState>) {
    let raw_uri = String::from_utf8_lossy(req.raw_path()).into_owned();
    let headers: Vec<(&str, &[u8])> = req
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_bytes()))
        .collect();
    let header = |n: &str| req.headers.get(n).and_then(|v| v.to_str().ok());
    let version = match req.version {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    };
    let request = waf::Request {
        method: req.method.as_str(),
        uri: &raw_uri,
        version,
        headers: &headers,
        client_ip: ip,
        body: None,
        content_type: header("content-type"),
    };
    let mut tx = Transaction::new(engine.clone(), policy.clone(), &request);
    let verdict = tx.eval_headers();
    let has_body = header("transfer-encoding").is_some()
        || header("content-length").is_some_and(|l| l.trim() != "0");
    if verdict.is_block() {
        return (verdict, None);
    }
    let mut state = WafState {
        tx,
        buf: BytesMut::new(),
        limit: policy.inspect_body_limit,
        over_limit: policy.over_limit,
        done: false,
        content_encoding: header("content-encoding").map(|s| s.trim().to_ascii_lowercase()),
    };
    if has_body {
        return (verdict, Some(state));
    }
    // Most argument rules run in phase 2 (as in CRS): without a body, run it now.
    let verdict = state.tx.eval_body(&[]);
    state.done = true;
    // The transaction lives on only when the response phases will need it.
    let keep =
        !verdict.is_block() && (policy.inspect_response_headers || policy.inspect_response_body);
    (verdict, keep.then_some(state))
}

/// What phase 2 decided for a body chunk.
pub enum BodyStep {
    /// Keep holding the body back.
    Hold,
    /// Forward these bytes; the verdict when inspection just finished (to record matches).
    Forward(Bytes, Option<Verdict>),
    /// Refuse the request with this verdict (403), or 413 when the body is over the limit.
    Block(Verdict),
    TooLarge,
    /// A compressed body that cannot be inspected (a decompression bomb: 413; a corrupt or
    /// unknown coding: 400): refused rather than passed uninspected.
    Undecodable(u16, &'static str),
}

impl WafState {
    /// Feeds a chunk (or the end of the body) to phase 2.
    pub fn feed(&mut self, chunk: Option<Bytes>, end: bool) -> BodyStep {
        if self.done {
            return BodyStep::Forward(chunk.unwrap_or_default(), None);
        }
        if let Some(c) = chunk {
            if self.buf.len() + c.len() > self.limit {
                match self.over_limit {
                    waf::OverLimit::Reject => return BodyStep::TooLarge,
                    waf::OverLimit::InspectPrefix => {
                        let room = self.limit - self.buf.len();
                        self.buf.extend_from_slice(&c[..room]);
                        self.done = true;
                        let verdict = match self.inspect() {
                            Ok(v) => v,
                            Err((code, why)) => return BodyStep::Undecodable(code, why),
                        };
                        if verdict.is_block() {
                            return BodyStep::Block(verdict);
                        }
                        let mut all = std::mem::take(&mut self.buf);
                        all.extend_from_slice(&c[room..]);
                        return BodyStep::Forward(all.freeze(), Some(verdict));
                    }
                }
            }
            self.buf.extend_from_slice(&c);
        }
        if !end {
            return BodyStep::Hold;
        }
        self.done = true;
        let verdict = match self.inspect() {
            Ok(v) => v,
            Err((code, why)) => return BodyStep::Undecodable(code, why),
        };
        if verdict.is_block() {
            return BodyStep::Block(verdict);
        }
        BodyStep::Forward(std::mem::take(&mut self.buf).freeze(), Some(verdict))
    }

    /// Phase 2 on the buffered body, decompressed first when the client compressed it. A
    /// compressed body is inspected decompressed or not at all: decoding past ten times the
    /// inspection limit (a bomb) or a corrupt or unknown coding refuses the request.
    fn inspect(&mut self) -> Result<Verdict, (u16, &'static str)> {
        let decoded = match self.content_encoding.as_deref() {
            None | Some("identity") => None,
            Some(enc) => match crate::deface::decode_body(
                Some(enc),
                &self.buf,
                self.limit.saturating_mul(10),
            ) {
                Ok(d) => Some(d.into_owned()),
                Err(crate::deface::DecodeError::TooLarge { .. }) => {
                    return Err((413, "compressed request body over the inspection limit"))
                }
                Err(_) => return Err((400, "undecodable request body content coding")),
            },
        };
        let body: &[u8] = decoded.as_deref().unwrap_or(&self.buf);
        Ok(self.tx.eval_body(body))
    }
}

/// Records a verdict's matches: metrics, the context's log fields, the audit log.
pub fn record(
    state: &AppState,
    ctx: &mut Ctx,
    site: &str,
    req: &RequestHeader,
    verdict: &Verdict,
    phase: &'static str,
) {
    if verdict.matches.is_empty() {
        return;
    }
    let action = match verdict.action {
        waf::Action::Block => "block",
        waf::Action::Log => "detect",
        waf::Action::Allow => "allow",
    };
    for m in &verdict.matches {
        state
            .metrics
            .waf_matches
            .with_label_values(&[site, &m.id.to_string(), action])
            .inc();
    }
    ctx.waf_action = action;
    ctx.waf_rules = verdict.rule_ids();
    ctx.waf_score = Some(verdict.score);
    if !state.audit_log.is_on() || verdict.action == waf::Action::Allow {
        return;
    }
    let mut v = verdict.clone();
    v.redact_secrets();
    let rules: Vec<_> = v
        .matches
        .iter()
        .map(|m| json!({"id": m.id, "msg": m.msg, "severity": format!("{:?}", m.severity), "target": m.target, "value": m.value, "score": m.score}))
        .collect();
    let line = json!({
        "time": crate::access_log::rfc3339_now(),
        "request_id": ctx.request_id,
        "site": site,
        "client_ip": ctx.client_ip.map(|i| i.to_string()),
        "method": req.method.as_str(),
        "uri": String::from_utf8_lossy(req.raw_path()),
        "phase": phase,
        "action": action,
        "score": v.score,
        "rules": rules,
    });
    state.audit_log.write_json(&line);
}

/// What the response side of the WAF does with one response.
pub enum ResponsePlan {
    /// Nothing to inspect: stream it.
    Pass,
    /// Phase 3 blocked: the response was replaced by this page (written at the end of the
    /// upstream body, or not at all for bodiless responses).
    Replaced(Option<Bytes>),
    /// Hold the body back for phase 4.
    InspectBody(Box<ResponseBody>),
}

/// A response body held back for phase 4.
pub struct ResponseBody {
    buf: BytesMut,
    limit: usize,
    content_encoding: Option<String>,
    /// The response keeps its Content-Length (a body within the limit is held back whole):
    /// a replacement must have exactly this length.
    fixed_len: Option<usize>,
}

/// What phase 4 decided for a response body chunk.
pub enum ResponseStep {
    Hold,
    /// Inspection finished: forward these bytes (the held-back prefix, then each chunk).
    Forward(Bytes, Verdict),
    Block(Verdict),
}

/// Whether phase 4 can read this response: text types only, a body to read, no upgrade.
fn body_inspectable(method: &http::Method, resp: &ResponseHeader) -> bool {
    let status = resp.status.as_u16();
    if method == http::Method::HEAD || status < 200 || status == 204 || status == 304 {
        return false;
    }
    let Some(ct) = resp
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let ct = ct.to_ascii_lowercase();
    ct.starts_with("text/")
        || ct.contains("json")
        || ct.contains("xml")
        || ct.contains("javascript")
}

/// Phase 3 on the response header and, when phase 4 will run, re-framing of the response so
/// that its body can be held back (and replaced by the block page).
pub fn response_headers(
    state: &AppState,
    ctx: &mut Ctx,
    site: &str,
    req: &RequestHeader,
    resp: &mut ResponseHeader,
) -> pingora::Result<ResponsePlan> {
    let Some(mut w) = ctx.waf.take() else {
        return Ok(ResponsePlan::Pass);
    };
    let (check_headers, check_body, limit) = {
        let p = w.tx.policy();
        (
            p.inspect_response_headers,
            p.inspect_response_body,
            p.response_body_limit,
        )
    };
    let status = resp.status.as_u16();
    let mut plan = ResponsePlan::Pass;
    if check_headers {
        let headers: Vec<(&str, &[u8])> = resp
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_bytes()))
            .collect();
        let verdict = w.tx.eval_response_headers(status, &headers);
        record(state, ctx, site, req, &verdict, "response_headers");
        if verdict.is_block() {
            let page = Bytes::from(ctx.error_pages().render(403, &ctx.request_id));
            let bodiless =
                req.method == http::Method::HEAD || status == 204 || status == 304 || status < 200;
            *resp = ResponseHeader::build(403, Some(6))?;
            resp.insert_header("content-type", "text/html; charset=utf-8")?;
            resp.insert_header("cache-control", "no-store")?;
            resp.insert_header("x-request-id", ctx.request_id.as_str())?;
            // pingora calls no body filter for a 204/304 upstream: announce no body then.
            let len = if status == 204 || status == 304 {
                0
            } else {
                page.len()
            };
            resp.insert_header("content-length", len.to_string())?;
            plan = ResponsePlan::Replaced((!bodiless).then_some(page));
        }
    }
    if matches!(plan, ResponsePlan::Pass) && check_body && body_inspectable(&req.method, resp) {
        let content_encoding = resp
            .headers
            .get(http::header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty() && s != "identity");
        let declared = resp
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<usize>().ok());
        // An unencoded body within the limit is held back whole: it keeps its Content-Length
        // (and the connection its keep-alive framing); a replacement is fitted to that length.
        // A longer, unframed or encoded body may be replaced by a page of another length (the
        // gzip-encoded block page, or after only its prefix was seen): it goes out chunked.
        let fixed_len = declared.filter(|&n| n <= limit && content_encoding.is_none());
        if fixed_len.is_none() {
            resp.remove_header("content-length");
            if req.version == http::Version::HTTP_11 {
                resp.insert_header("transfer-encoding", "chunked")?;
            }
        }
        plan = ResponsePlan::InspectBody(Box::new(ResponseBody {
            buf: BytesMut::new(),
            limit,
            content_encoding,
            fixed_len,
        }));
    }
    ctx.waf = Some(w);
    Ok(plan)
}

impl ResponseBody {
    /// Feeds a response chunk; inspects at the end of the body or when the limit is reached.
    pub fn feed(&mut self, tx: &mut Transaction, chunk: Option<Bytes>, end: bool) -> ResponseStep {
        if let Some(c) = chunk {
            self.buf.extend_from_slice(&c);
        }
        if !end && self.buf.len() < self.limit {
            return ResponseStep::Hold;
        }
        let decoded = match self.content_encoding.as_deref() {
            None => None,
            Some(enc) => {
                crate::deface::decode_body(Some(enc), &self.buf, self.limit.saturating_mul(10))
                    .ok()
                    .map(|d| d.into_owned())
            }
        };
        let body: &[u8] = decoded.as_deref().unwrap_or(&self.buf);
        let verdict = tx.eval_response_body(&body[..body.len().min(self.limit)]);
        if verdict.is_block() {
            return ResponseStep::Block(verdict);
        }
        ResponseStep::Forward(std::mem::take(&mut self.buf).freeze(), verdict)
    }

    /// The block page in the response's content coding (gzip is re-encoded; for other
    /// codings `None`: the caller aborts the stream instead of sending garbage).
    pub fn block_page(&self, page: &str, request_id: &str) -> Option<Bytes> {
        if let Some(n) = self.fixed_len {
            // The length is fixed by the header already sent: the page if it fits (padded with
            // spaces), else a one-line notice cut to the length.
            let mut out = if page.len() <= n {
                page.as_bytes().to_vec()
            } else {
                format!("403 blocked by the web application firewall, request id {request_id}\n")
                    .into_bytes()
            };
            out.resize(n, b' ');
            return Some(Bytes::from(out));
        }
        match self.content_encoding.as_deref() {
            None => Some(Bytes::copy_from_slice(page.as_bytes())),
            Some("gzip") | Some("x-gzip") => {
                use std::io::Write;
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(page.as_bytes()).ok()?;
                enc.finish().ok().map(Bytes::from)
            }
            Some(_) => None,
        }
    }
}
