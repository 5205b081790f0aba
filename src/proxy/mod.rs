//! The request pipeline: Egret's pingora `ProxyHttp` implementation.
//!
//! Each hook is short and calls into the module that owns its step (see docs/architecture.md):
//! `request_filter` identifies the client, checks framing, finds the site and the route;
//! `upstream_peer` picks a healthy backend; `upstream_request_filter` sets forwarding headers;
//! `fail_to_connect`/`fail_to_proxy` handle origin failures; `logging` records every request once.

pub mod app;
pub mod client_ip;
pub mod connections;
pub mod ctx;
pub mod framing;
pub mod waf_step;

use crate::respond;
use crate::routing::normalize_host;
use crate::state::AppState;
use crate::upstream::pool::hash_ip;
use async_trait::async_trait;
use bytes::Bytes;
use ctx::{Action, Ctx};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::ErrorSource;
use std::sync::Arc;
use std::time::Duration;

/// Interim (1xx) responses relayed per request before the origin's answer counts as broken.
const MAX_INFORMATIONAL: u8 = 4;

// Header names looked up on every request, parsed once: a `&str` name is parsed and validated
// on each lookup.
const X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");
const X_REAL_IP: http::HeaderName = http::HeaderName::from_static("x-real-ip");
const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");
const EMPTY_VALUE: http::HeaderValue = http::HeaderValue::from_static("");
const X_POWERED_BY: http::HeaderName = http::HeaderName::from_static("x-powered-by");
const X_ASPNET_VERSION: http::HeaderName = http::HeaderName::from_static("x-aspnet-version");
/// The security headers added to responses that lack them (pipeline step 9).
const SECURITY_HEADERS: [(http::HeaderName, &str, &str); 3] = [
    (
        http::header::X_CONTENT_TYPE_OPTIONS,
        "X-Content-Type-Options",
        "nosniff",
    ),
    (
        http::header::X_FRAME_OPTIONS,
        "X-Frame-Options",
        "SAMEORIGIN",
    ),
    (
        http::header::REFERRER_POLICY,
        "Referrer-Policy",
        "strict-origin-when-cross-origin",
    ),
];

/// The proxy application; cheap to clone.
pub struct EgretProxy {
    pub state: Arc<AppState>,
}

/// The host a request is for: the URI authority (HTTP/2, absolute-form) or the Host header.
fn request_host(req: &RequestHeader) -> Option<String> {
    if let Some(h) = req.uri.host() {
        return normalize_host(h);
    }
    let h = req.headers.get(http::header::HOST)?;
    normalize_host(std::str::from_utf8(h.as_bytes()).ok()?)
}

impl EgretProxy {
    /// Writes one of Egret's own pages and records it; returns `Ok(true)` for `request_filter`.
    async fn answer(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        status: u16,
        action: Action,
        close: bool,
        extra: respond::ExtraHeaders<'_>,
    ) -> Result<bool> {
        ctx.action = action;
        ctx.own_status = Some(status);
        let pages = ctx.error_pages();
        respond::write_error_page(session, &pages, status, &ctx.request_id, close, extra).await?;
        Ok(true)
    }
}

/// The value of cookie `name` in the request's Cookie headers.
fn cookie_value<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
    req.headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Runs `f` with the rate-limit view of a request (header and cookie lookups borrow it, so the
/// result must not hold them across an await).
fn with_request_info<R>(
    req: &RequestHeader,
    site: &str,
    ip: std::net::IpAddr,
    f: impl FnOnce(&crate::ratelimit::RequestInfo<'_>) -> R,
) -> R {
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    let cookie = |name: &str| cookie_value(req, name);
    let info = crate::ratelimit::RequestInfo {
        site,
        path: req.uri.path(),
        client_ip: ip,
        header: &header,
        cookie: &cookie,
    };
    f(&info)
}

impl EgretProxy {
    /// Steps 3-4: deny/allow lists, rate-limit policies and the flood challenge.
    /// `Some(true)` when Egret answered the request itself.
    async fn rate_limit_step(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &crate::snapshot::Snapshot,
        site: &crate::snapshot::Site,
    ) -> Result<Option<bool>> {
        use crate::ratelimit::{retry_after_secs, Decision, FloodDecision};
        let Some(ip) = ctx.client_ip else {
            return Ok(None);
        };
        let policies = &snap.ratelimit;
        let now = std::time::Instant::now();
        let wall = std::time::SystemTime::now();

        // The challenge answer (POSTed by the challenge page's script).
        if let Some(ch) = policies.challenge() {
            if session.req_header().uri.path() == ch.verify_path()
                && session.req_header().method == http::Method::POST
            {
                let mut body = Vec::new();
                while let Some(chunk) = session.read_request_body().await? {
                    body.extend_from_slice(&chunk);
                    if body.len() > 4096 {
                        break;
                    }
                }
                ctx.ratelimit = Some((None, "ip", "challenge_answer"));
                return match ch.verify_answer(&body, ip, wall) {
                    Ok(cookie) => {
                        ctx.action = Action::Challenged;
                        ctx.own_status = Some(204);
                        let set = ch.set_cookie(&cookie);
                        respond::write_html(
                            session,
                            204,
                            String::new(),
                            &ctx.request_id,
                            false,
                            &[("set-cookie", set)],
                        )
                        .await?;
                        Ok(Some(true))
                    }
                    Err(e) => {
                        ctx.error = Some("challenge answer refused");
                        log::info!("challenge answer from {ip} refused: {e}");
                        self.answer(session, ctx, 403, Action::Denied, false, &[])
                            .await
                            .map(Some)
                    }
                };
            }
        }

        // Shared state in Redis: deny/allow and the GCRA checks run against Redis.
        if let Some(redis) = policies.redis() {
            let plan = with_request_info(session.req_header(), &site.name, ip, |info| {
                policies.shared_plan(info)
            });
            let m = &self.state.metrics;
            use crate::ratelimit::policy::SharedPlan;
            use crate::ratelimit::shared::SharedOutcome;
            match plan {
                SharedPlan::Allowlisted => return Ok(None),
                SharedPlan::Denied => {
                    m.ratelimit_decisions
                        .with_label_values(&[&site.name, "deny_list", "denied"])
                        .inc();
                    ctx.ratelimit = Some((None, "ip", "denied"));
                    ctx.error = Some("client on the deny list");
                    return self
                        .answer(session, ctx, 403, Action::Denied, true, &[])
                        .await
                        .map(Some);
                }
                SharedPlan::Checks(checks) => {
                    match self.state.redis_limiter.check(redis, &checks).await {
                        SharedOutcome::Allow => return Ok(None),
                        SharedOutcome::Limited(i, retry) => {
                            let c = &checks[i.min(checks.len() - 1)];
                            m.ratelimit_decisions
                                .with_label_values(&[site.name.as_str(), &*c.policy, "limited"])
                                .inc();
                            ctx.ratelimit =
                                Some((Some(c.policy.clone()), c.key.as_str(), "limited"));
                            ctx.error = Some("rate limited");
                            let retry = retry_after_secs(retry).to_string();
                            return self
                                .answer(
                                    session,
                                    ctx,
                                    429,
                                    Action::Limited,
                                    false,
                                    &[("retry-after", retry)],
                                )
                                .await
                                .map(Some);
                        }
                        SharedOutcome::Unavailable(e) => {
                            m.ratelimit_redis_errors.inc();
                            log::warn!(
                                "rate limit: redis unavailable ({e}); {}",
                                if redis.fail_open {
                                    "failing open"
                                } else {
                                    "refusing"
                                }
                            );
                            if redis.fail_open {
                                return Ok(None);
                            }
                            ctx.error = Some("rate-limit state unavailable");
                            return self
                                .answer(session, ctx, 503, Action::Limited, false, &[])
                                .await
                                .map(Some);
                        }
                    }
                }
            }
        }

        // Decide synchronously: the lookups borrow the request header and must not cross an await.
        let (decision, flood) = with_request_info(session.req_header(), &site.name, ip, |info| {
            let decision = policies.decide(&self.state.limiter, info, now);
            let flood = match decision {
                Decision::Allow => Some(policies.flood_check(&self.state.limiter, info, now, wall)),
                _ => None,
            };
            (decision, flood)
        });
        let m = &self.state.metrics;
        match decision {
            Decision::Allow | Decision::Allowlisted => {}
            Decision::Denied => {
                m.ratelimit_decisions
                    .with_label_values(&[&site.name, "deny_list", "denied"])
                    .inc();
                ctx.ratelimit = Some((None, "ip", "denied"));
                ctx.error = Some("client on the deny list");
                return self
                    .answer(session, ctx, 403, Action::Denied, true, &[])
                    .await
                    .map(Some);
            }
            Decision::Limited { .. } | Decision::Banned { .. } => {
                let status = decision.status().unwrap_or(429);
                let retry = decision.retry_after(now).map(retry_after_secs).unwrap_or(1);
                let policy: Option<Arc<str>> = decision.policy().map(Arc::from);
                let key = decision.key().map(|k| k.as_str()).unwrap_or("");
                m.ratelimit_decisions
                    .with_label_values(&[
                        &site.name,
                        policy.as_deref().unwrap_or(""),
                        decision.action(),
                    ])
                    .inc();
                ctx.ratelimit = Some((policy, key, decision.action()));
                ctx.error = Some("rate limited");
                let action = if status == 403 {
                    Action::Denied
                } else {
                    Action::Limited
                };
                return self
                    .answer(
                        session,
                        ctx,
                        status,
                        action,
                        false,
                        &[("retry-after", retry.to_string())],
                    )
                    .await
                    .map(Some);
            }
        }
        if let Some(FloodDecision::Challenge { transition, .. }) = &flood {
            if let Some(t) = transition {
                log::warn!("site {}: flood mode {:?}", site.name, t);
            }
            if let Some(ch) = policies.challenge() {
                m.ratelimit_decisions
                    .with_label_values(&[&site.name, "flood", "challenged"])
                    .inc();
                ctx.ratelimit = Some((Some(Arc::from("flood")), "ip", "challenged"));
                ctx.action = Action::Challenged;
                ctx.own_status = Some(503);
                let page = ch.page(ip, wall);
                respond::write_html(session, 503, page, &ctx.request_id, false, &[]).await?;
                return Ok(Some(true));
            }
        } else if let Some(FloodDecision::Inactive {
            transition: Some(t),
        }) = &flood
        {
            log::warn!("site {}: flood mode {:?}", site.name, t);
        }
        Ok(None)
    }
}

impl EgretProxy {
    /// Step 8 for a protected page: fetch it from the origin, judge it against its baseline, and
    /// serve it, the approved copy, or the maintenance page.
    async fn serve_protected(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Arc<crate::snapshot::Snapshot>,
        site: &Arc<crate::snapshot::Site>,
        path: &str,
        rule: &crate::deface::PageRule,
    ) -> Result<bool> {
        use crate::protect::{Served, MARKER};
        let pq = session
            .req_header()
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| path.to_string());
        let host = ctx.host.clone();
        let limit = rule.check.max_body_bytes();
        ctx.upstream_sent_at = Some(std::time::Instant::now());
        let fetched =
            crate::protect::fetch_from_origin(&self.state.pages.fetcher, site, &pq, &host, limit)
                .await;
        let fetched = match fetched {
            Ok(f) => f,
            Err(e) => {
                log::warn!("deface: {}{path}: {e}", site.name);
                ctx.error = Some("protected page: origin fetch failed");
                return self
                    .answer(session, ctx, 502, Action::UpstreamError, false, &[])
                    .await;
            }
        };
        ctx.upstream_status = Some(fetched.status);
        ctx.upstream_header_ms = ctx
            .upstream_sent_at
            .map(|t| t.elapsed().as_secs_f64() * 1000.0);
        self.state
            .pages
            .sync_shared(snap, &self.state.redis_limiter, &site.name, path)
            .await;
        let served = self.state.pages.judge(
            snap,
            &self.state.metrics,
            site,
            path,
            rule,
            fetched,
            "inline",
        );
        let accepts_gzip = session
            .req_header()
            .headers
            .get_all(http::header::ACCEPT_ENCODING)
            .iter()
            .any(|v| v.to_str().is_ok_and(|s| s.contains("gzip")));
        match served {
            Served::Page {
                status,
                content_type,
                content_encoding,
                body,
                mut relay,
                marker,
            } => {
                ctx.deface_action = marker;
                relay.push((MARKER, marker.to_string()));
                if let Some(ce) = content_encoding {
                    relay.push(("content-encoding", ce));
                }
                ctx.own_status = Some(status);
                respond::write_body(
                    session,
                    status,
                    &content_type,
                    body,
                    &ctx.request_id,
                    &relay,
                )
                .await?;
            }
            Served::Approved { gzip } => {
                ctx.deface_action = "approved-copy";
                ctx.action = Action::Substituted;
                ctx.own_status = Some(200);
                let mut extra = vec![
                    (MARKER, "approved-copy".to_string()),
                    ("cache-control", "no-store".to_string()),
                ];
                let body = if accepts_gzip {
                    extra.push(("content-encoding", "gzip".to_string()));
                    bytes::Bytes::from(gzip)
                } else {
                    use std::io::Read;
                    let mut out = Vec::new();
                    let _ = flate2::read::GzDecoder::new(gzip.as_slice())
                        .take(limit as u64)
                        .read_to_end(&mut out);
                    bytes::Bytes::from(out)
                };
                respond::write_body(
                    session,
                    200,
                    "text/html; charset=utf-8",
                    body,
                    &ctx.request_id,
                    &extra,
                )
                .await?;
            }
            Served::Maintenance => {
                ctx.deface_action = "maintenance";
                ctx.action = Action::Substituted;
                ctx.own_status = Some(503);
                let extra = [(MARKER, "maintenance".to_string())];
                respond::write_html(
                    session,
                    503,
                    crate::deface::MAINTENANCE_PAGE.to_string(),
                    &ctx.request_id,
                    false,
                    &extra,
                )
                .await?;
            }
        }
        Ok(true)
    }
}

#[async_trait]
impl ProxyHttp for EgretProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::new()
    }

    /// Identity, framing, site, limits and route. Returns `Ok(true)` when Egret answered itself.
    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let snap = self.state.snapshot.load_full();
        self.state.metrics.in_flight.inc();
        ctx.in_flight = true;
        ctx.https = session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .is_some();

        // 2. identity
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        ctx.peer_trusted = peer.is_some_and(|ip| snap.is_trusted_proxy(&ip));
        let req = session.req_header();
        ctx.client_ip = peer.map(|p| {
            client_ip::resolve_client_ip(
                p,
                ctx.peer_trusted,
                req.headers.get(&X_FORWARDED_FOR).map(|v| v.as_bytes()),
                req.headers.get(&X_REAL_IP).map(|v| v.as_bytes()),
                |ip| snap.is_trusted_proxy(ip),
            )
        });
        ctx.request_id = match req.headers.get(&X_REQUEST_ID) {
            Some(v) if ctx.peer_trusted && client_ip::acceptable_request_id(v.as_bytes()) => {
                String::from_utf8_lossy(v.as_bytes()).into_owned()
            }
            _ => client_ip::new_request_id(),
        };

        // 1. framing, then site
        let raw = session.as_http1().map(|s| s.get_headers_raw_bytes());
        let req = session.req_header();
        let framing = framing::check_framing(req, raw.as_deref());
        let host = request_host(req);
        ctx.snapshot = Some(snap.clone());
        if let Err(r) = framing {
            ctx.error = Some(r.reason);
            return self
                .answer(session, ctx, r.status, Action::Rejected, r.close, &[])
                .await;
        }
        let Some(host) = host else {
            ctx.error = Some("missing or invalid Host");
            return self
                .answer(session, ctx, 400, Action::Rejected, true, &[])
                .await;
        };
        ctx.host = host;
        let Some(site) = snap.site_for_host(&ctx.host).cloned() else {
            ctx.action = Action::UnknownHost;
            let status = snap.global.unknown_host.status;
            ctx.own_status = Some(status);
            match &snap.global.unknown_host.page {
                Some(page) => {
                    respond::write_html(
                        session,
                        status,
                        page.to_string(),
                        &ctx.request_id,
                        false,
                        &[],
                    )
                    .await?
                }
                None => {
                    respond::write_error_page(
                        session,
                        &snap.global.error_pages,
                        status,
                        &ctx.request_id,
                        false,
                        &[],
                    )
                    .await?
                }
            }
            return Ok(true);
        };
        ctx.site = Some(site.clone());

        // ACME HTTP-01 challenges for this gateway's own certificates.
        if let Some(token) = session
            .req_header()
            .uri
            .path()
            .strip_prefix("/.well-known/acme-challenge/")
        {
            if let Some(answer) = self.state.acme_tokens.answer(token) {
                ctx.own_status = Some(200);
                ctx.action = Action::Proxied;
                respond::write_body(
                    session,
                    200,
                    "text/plain",
                    Bytes::from(answer),
                    &ctx.request_id,
                    &[],
                )
                .await?;
                return Ok(true);
            }
        }

        // 1b. TLS: the SNI must name the same site as the Host; plain HTTP may be redirected.
        if ctx.https {
            let sni = session
                .digest()
                .and_then(|d| d.ssl_digest.as_ref())
                .and_then(|s| s.extension.get::<crate::tls::TlsInfo>())
                .and_then(|t| t.sni.clone());
            if let Some(sni) = sni {
                let same = snap
                    .site_for_host(&sni)
                    .is_some_and(|s| Arc::ptr_eq(s, &site));
                if !same {
                    ctx.error = Some("SNI names another site than Host");
                    return self
                        .answer(session, ctx, 421, Action::Rejected, true, &[])
                        .await;
                }
            }
        } else if let Some(t) = &site.tls {
            let path = session.req_header().uri.path();
            if t.redirect_http
                && !t
                    .redirect_exempt
                    .iter()
                    .any(|p| path.starts_with(p.as_str()))
            {
                if let Some(https) = snap.global.https_listen.first() {
                    let port = if https.port() == 443 {
                        String::new()
                    } else {
                        format!(":{}", https.port())
                    };
                    let pq = session
                        .req_header()
                        .uri
                        .path_and_query()
                        .map(|p| p.as_str())
                        .unwrap_or("/");
                    let location = format!("https://{}{port}{pq}", ctx.host);
                    ctx.action = Action::Redirected;
                    ctx.own_status = Some(308);
                    respond::write_redirect(session, 308, &location, &ctx.request_id).await?;
                    return Ok(true);
                }
            }
        }

        if let Err(r) = framing::check_limits(
            session.req_header(),
            raw.as_ref().map(|r| r.len()),
            &site.limits,
        ) {
            ctx.error = Some(r.reason);
            return self
                .answer(session, ctx, r.status, Action::Rejected, r.close, &[])
                .await;
        }
        session.set_read_timeout(Some(site.limits.client_body_timeout));
        // A client that stops reading the response is cut off (slow-read attacks).
        session.set_write_timeout(Some(site.limits.client_send_timeout));

        // 3-4. allow/deny lists, rate limits, flood challenge
        if let Some(done) = self.rate_limit_step(session, ctx, &snap, &site).await? {
            return Ok(done);
        }

        // 5. WAF phase 1 (request line, headers, arguments); phase 2 runs on the body
        if site.waf.mode != crate::waf::Mode::Off {
            if let Some(ip) = ctx.client_ip {
                let (verdict, body_state) =
                    waf_step::phase1(snap.waf_engine(&site), &site.waf, session.req_header(), ip);
                waf_step::record(
                    &self.state,
                    ctx,
                    &site.name,
                    session.req_header(),
                    &verdict,
                    "request_headers",
                );
                if verdict.is_block() {
                    ctx.error = Some("blocked by the WAF");
                    return self
                        .answer(session, ctx, 403, Action::Blocked, false, &[])
                        .await;
                }
                ctx.waf = body_state.map(Box::new);
            }
        }

        // 8. protected pages (defacement): fetched, judged and served by Egret itself
        let method = &session.req_header().method;
        if method == http::Method::GET || method == http::Method::HEAD {
            let path = session.req_header().uri.path().to_string();
            if let Some(rule) = snap.deface.page(&site.name, &path) {
                return self
                    .serve_protected(session, ctx, &snap, &site, &path, rule)
                    .await;
            }
        }

        // 6. route
        ctx.pool = site.pool_for_path(session.req_header().uri.path());
        Ok(false)
    }

    /// Counts body bytes and enforces the body limit on chunked bodies.
    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // Slow-body protection: after the grace time the average rate must stay above the minimum.
        if let Some(site) = &ctx.site {
            let start = *ctx.body_started.get_or_insert_with(std::time::Instant::now);
            let elapsed = start.elapsed();
            let l = &site.limits;
            if l.min_body_rate > 0 && !end_of_stream && elapsed > l.body_rate_grace {
                let rate = ctx.body_bytes_in as f64 / elapsed.as_secs_f64();
                if rate < l.min_body_rate as f64 {
                    ctx.action = Action::Rejected;
                    ctx.error = Some("request body slower than the minimum rate");
                    return Error::e_explain(
                        HTTPStatus(408),
                        "request body slower than the minimum rate",
                    );
                }
            }
        }
        if let Some(b) = body.as_ref() {
            ctx.body_bytes_in += b.len() as u64;
            if let Some(site) = &ctx.site {
                if ctx.body_bytes_in > site.limits.max_body_bytes {
                    ctx.action = Action::Rejected;
                    ctx.error = Some("body too large");
                    return Error::e_explain(HTTPStatus(413), "request body over the limit");
                }
            }
        }
        // WAF phase 2: hold the body back until all of it has been inspected.
        if let Some(mut w) = ctx.waf.take() {
            use waf_step::BodyStep;
            match w.feed(body.take(), end_of_stream) {
                BodyStep::Hold => {
                    // An empty chunk, never None: None would end the upstream body early.
                    *body = Some(Bytes::new());
                    ctx.waf = Some(w);
                }
                BodyStep::Forward(bytes, verdict) => {
                    if let (Some(v), Some(site)) = (verdict, ctx.site.clone()) {
                        waf_step::record(
                            &self.state,
                            ctx,
                            &site.name,
                            session.req_header(),
                            &v,
                            "request_body",
                        );
                    }
                    // Inspection is over: the rest of the body streams through unchanged.
                    if !bytes.is_empty() || !end_of_stream {
                        *body = Some(bytes);
                    }
                    // The transaction stays for the response phases.
                    ctx.waf = Some(w);
                }
                BodyStep::Undecodable(code, why) => {
                    ctx.action = Action::Rejected;
                    ctx.error = Some(why);
                    return Error::e_explain(HTTPStatus(code), why);
                }
                BodyStep::TooLarge => {
                    ctx.action = Action::Rejected;
                    ctx.error = Some("body over the WAF inspection limit");
                    return Error::e_explain(HTTPStatus(413), "body over the WAF inspection limit");
                }
                BodyStep::Block(verdict) => {
                    if let Some(site) = ctx.site.clone() {
                        waf_step::record(
                            &self.state,
                            ctx,
                            &site.name,
                            session.req_header(),
                            &verdict,
                            "request_body",
                        );
                    }
                    ctx.action = Action::Blocked;
                    ctx.error = Some("blocked by the WAF");
                    return Error::e_explain(HTTPStatus(403), "blocked by the WAF (request body)");
                }
            }
        }
        Ok(())
    }

    /// Picks a backend of the routed pool; 503 when none is available.
    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let Some(site) = ctx.site.clone() else {
            return Error::e_explain(HTTPStatus(500), "no site in context");
        };
        let Some(pool) = site.pools.get(ctx.pool) else {
            return Error::e_explain(HTTPStatus(500), "route points at no pool");
        };
        let key = ctx.client_ip.map(|ip| hash_ip(&ip)).unwrap_or(0);
        let Some(idx) = pool.select(key, &ctx.tried) else {
            if !ctx.tried.is_empty() {
                // Every backend we could try failed: the origin side is broken, not absent.
                ctx.action = Action::UpstreamError;
                return Error::e_explain(HTTPStatus(502), "all tried backends failed");
            }
            ctx.action = Action::NoBackend;
            ctx.error = Some("no healthy backend");
            return Error::e_explain(HTTPStatus(503), "no healthy backend");
        };
        ctx.tried.push(idx);
        ctx.backend = Some(idx);
        let b = &pool.backends[idx];
        let t = &site.timeouts;
        let remaining = t.total.saturating_sub(ctx.started.elapsed());
        if remaining.is_zero() {
            return Error::e_explain(HTTPStatus(504), "total timeout spent before connecting");
        }
        let (tls, sni) = match &pool.tls {
            Some(tls) => (true, tls.sni.clone()),
            None => (false, String::new()),
        };
        let mut peer = HttpPeer::new(b.addr, tls, sni);
        peer.options.connection_timeout = Some(t.connect.min(remaining));
        peer.options.total_connection_timeout = Some((t.connect * 2).min(remaining));
        peer.options.read_timeout = Some(t.read.min(remaining));
        peer.options.write_timeout = Some(t.write);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        if let Some(tls) = &pool.tls {
            if tls.skip_verify {
                peer.options.verify_cert = false;
                peer.options.verify_hostname = false;
            }
            if let Some(ca) = &tls.ca_der {
                let list: Vec<pingora::utils::tls::WrappedX509> = ca
                    .iter()
                    .map(|der| {
                        pingora::utils::tls::WrappedX509::new(
                            der.clone(),
                            pingora::utils::tls::parse_x509,
                        )
                    })
                    .collect();
                peer.options.ca = Some(Arc::from(list.into_boxed_slice()));
            }
        }
        Ok(Box::new(peer))
    }

    /// A connection failure: passive ejection and, within the retry budget, another backend.
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let (Some(site), Some(idx)) = (&ctx.site, ctx.backend) {
            if let Some(pool) = site.pools.get(ctx.pool) {
                if let Some(b) = pool.backends.get(idx) {
                    if b.health
                        .record_connect_failure(pool.passive.max_failures, pool.passive.eject_for)
                    {
                        log::warn!(
                            "backend {} ejected for {:?} after connection failures",
                            b.key,
                            pool.passive.eject_for
                        );
                    }
                    let kind = if matches!(e.etype(), ConnectTimedout) {
                        "connect_timeout"
                    } else {
                        "connect"
                    };
                    self.state
                        .metrics
                        .upstream_errors
                        .with_label_values(&[&site.name, &pool.name, &b.addr.to_string(), kind])
                        .inc();
                }
            }
            if ctx.tried.len() <= site.timeouts.retries as usize {
                e.set_retry(true);
            }
        }
        e
    }

    /// Forwarding headers towards the origin.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        up: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let client = match ctx.client_ip {
            Some(ip) => {
                http::HeaderValue::from_maybe_shared(Bytes::from(crate::waf::request::ip_text(ip)))
                    .unwrap_or(EMPTY_VALUE)
            }
            None => EMPTY_VALUE,
        };
        let xff = match (
            ctx.peer_trusted,
            session.req_header().headers.get(&X_FORWARDED_FOR),
        ) {
            (true, Some(prev)) => {
                let peer = session
                    .client_addr()
                    .and_then(|a| a.as_inet())
                    .map(|a| a.ip().to_string())
                    .unwrap_or_default();
                let mut v = Vec::with_capacity(prev.len() + 2 + peer.len());
                v.extend_from_slice(prev.as_bytes());
                v.extend_from_slice(b", ");
                v.extend_from_slice(peer.as_bytes());
                http::HeaderValue::from_bytes(&v).unwrap_or_else(|_| client.clone())
            }
            _ => client.clone(),
        };
        up.insert_header("X-Forwarded-For", xff)?;
        up.insert_header("X-Real-IP", client)?;
        up.insert_header(
            "X-Forwarded-Proto",
            if ctx.https { "https" } else { "http" },
        )?;
        up.insert_header("X-Request-ID", ctx.request_id.as_str())?;
        // HTTP/2 clients send an absolute URI and no Host; origins expect origin-form plus Host.
        // An HTTP/1 absolute-form target (pingora keeps it verbatim for the wire) is sent as
        // origin-form too: old origins misread absolute-form.
        if up.uri.authority().is_some() || !up.raw_path().starts_with(b"/") {
            if up.headers.get(http::header::HOST).is_none() {
                if let Some(a) = up.uri.authority() {
                    let a = a.to_string();
                    up.insert_header(http::header::HOST, a)?;
                }
            }
            let pq = up
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into());
            if let Ok(uri) = pq.parse::<http::Uri>() {
                up.set_uri(uri);
            }
        }
        ctx.upstream_sent_at = Some(std::time::Instant::now());
        Ok(())
    }

    /// The origin answered: record its status and timing; its health is confirmed.
    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.upstream_status = Some(resp.status.as_u16());
        // Each interim response is relayed to the client with Egret's headers: an origin sending
        // a storm of them would have the gateway amplify it. A few are legitimate (100, 103).
        if resp.status.is_informational() && resp.status != http::StatusCode::SWITCHING_PROTOCOLS {
            ctx.informational = ctx.informational.saturating_add(1);
            if ctx.informational > MAX_INFORMATIONAL {
                return Err(Error::create(
                    InvalidHTTPHeader,
                    ErrorSource::Upstream,
                    Some("too many interim (1xx) responses".into()),
                    None,
                ));
            }
        }
        if let Some(t) = ctx.upstream_sent_at {
            ctx.upstream_header_ms = Some(t.elapsed().as_secs_f64() * 1000.0);
        }
        if let (Some(site), Some(idx)) = (&ctx.site, ctx.backend) {
            if let Some(b) = site.pools.get(ctx.pool).and_then(|p| p.backends.get(idx)) {
                b.health.record_success();
            }
        }
        Ok(())
    }

    /// Response headers towards the client: the request ID, so a citizen can quote it.
    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        resp.insert_header("x-request-id", ctx.request_id.as_str())?;
        // WAF phase 3 (and the set-up of phase 4) when the site has response rules.
        if ctx.waf.is_some() {
            if let Some(site) = ctx.site.clone() {
                use waf_step::ResponsePlan;
                match waf_step::response_headers(
                    &self.state,
                    ctx,
                    &site.name,
                    session.req_header(),
                    resp,
                )? {
                    ResponsePlan::Pass => {}
                    ResponsePlan::Replaced(page) => {
                        ctx.action = Action::Blocked;
                        ctx.error = Some("response blocked by the WAF");
                        ctx.response_replacement = page;
                    }
                    ResponsePlan::InspectBody(rb) => ctx.waf_response = Some(rb),
                }
            }
        }
        if ctx.site.as_ref().is_some_and(|s| s.security_headers) {
            // Step 9: hide origin banners, add the basic security headers the origin left out.
            resp.remove_header(&http::header::SERVER);
            resp.remove_header(&X_POWERED_BY);
            resp.remove_header(&X_ASPNET_VERSION);
            for (name, titled, value) in &SECURITY_HEADERS {
                if !resp.headers.contains_key(name) {
                    resp.insert_header(*titled, *value)?;
                }
            }
        }
        if ctx.https {
            if let Some(hsts) = ctx
                .site
                .as_ref()
                .and_then(|s| s.tls.as_ref())
                .and_then(|t| t.hsts.as_deref())
            {
                resp.insert_header("strict-transport-security", hsts)?;
            }
        }
        Ok(())
    }

    /// WAF phase 4: the response body is held back until inspected (or replaced after a
    /// phase 3 or phase 4 block).
    fn response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<std::time::Duration>> {
        if let Some(page) = &ctx.response_replacement {
            // On the response side None does not end the stream: the origin's bytes are dropped.
            *body = end_of_stream.then(|| page.clone());
            return Ok(None);
        }
        let (Some(mut rb), Some(mut w)) = (ctx.waf_response.take(), ctx.waf.take()) else {
            return Ok(None);
        };
        use waf_step::ResponseStep;
        let step = rb.feed(&mut w.tx, body.take(), end_of_stream);
        let site = ctx.site.clone();
        let record = |ctx: &mut Ctx, v: &crate::waf::Verdict| {
            if let Some(site) = &site {
                waf_step::record(
                    &self.state,
                    ctx,
                    &site.name,
                    session.req_header(),
                    v,
                    "response_body",
                );
            }
        };
        match step {
            ResponseStep::Hold => {
                ctx.waf_response = Some(rb);
            }
            ResponseStep::Forward(bytes, verdict) => {
                record(ctx, &verdict);
                // Inspection is over: the held-back bytes go out, the rest streams through.
                *body = Some(bytes);
            }
            ResponseStep::Block(verdict) => {
                record(ctx, &verdict);
                ctx.action = Action::Blocked;
                ctx.error = Some("response blocked by the WAF");
                let page = ctx.error_pages().render(403, &ctx.request_id);
                match rb.block_page(&page, &ctx.request_id) {
                    Some(page) => {
                        *body = end_of_stream.then(|| page.clone());
                        ctx.response_replacement = Some(page);
                    }
                    // A coding Egret cannot produce: cut the stream rather than leak the body.
                    None => {
                        return Error::e_explain(
                            HTTPStatus(403),
                            "response blocked by the WAF (stream aborted)",
                        )
                    }
                }
            }
        }
        ctx.waf = Some(w);
        Ok(None)
    }

    /// Errors after routing: the status, the branded page, and the log fields.
    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let code = match e.etype() {
            HTTPStatus(code) => *code,
            etype => match e.esource() {
                ErrorSource::Upstream => match etype {
                    ConnectTimedout | ReadTimedout | WriteTimedout => 504,
                    _ => 502,
                },
                ErrorSource::Downstream => match etype {
                    WriteError | ReadError | ConnectionClosed => 0,
                    ReadTimedout => 408,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 502,
            },
        };
        if matches!(e.esource(), ErrorSource::Upstream) {
            if ctx.action == Action::Proxied {
                ctx.action = Action::UpstreamError;
            }
            let kind = match e.etype() {
                ConnectTimedout | ReadTimedout | WriteTimedout => "timeout",
                _ => "proxy",
            };
            if let (Some(site), Some(idx)) = (&ctx.site, ctx.backend) {
                if let Some(pool) = site.pools.get(ctx.pool) {
                    if let Some(b) = pool.backends.get(idx) {
                        self.state
                            .metrics
                            .upstream_errors
                            .with_label_values(&[&site.name, &pool.name, &b.addr.to_string(), kind])
                            .inc();
                    }
                }
            }
        }
        if ctx.error.is_none() {
            ctx.error = Some(match e.esource() {
                ErrorSource::Upstream => "upstream error",
                ErrorSource::Downstream => "client error",
                _ => "internal error",
            });
        }
        if code > 0 && session.response_written().is_none() {
            ctx.own_status = Some(code);
            let pages = ctx.error_pages();
            if let Err(err) =
                respond::write_error_page(session, &pages, code, &ctx.request_id, true, &[]).await
            {
                log::debug!("cannot send error page: {err}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// Records the request: access log line and metrics. Runs for every request.
    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        crate::observe::record(&self.state, session, e, ctx);
    }

    /// Called once the request header is read: tells the connection wrapper (see `app`) that the
    /// header deadline no longer applies.
    fn on_connection_reuse(
        &self,
        _session: &mut Session,
        _ctx: &mut Ctx,
        prev: Box<dyn std::any::Any + Send + Sync>,
    ) {
        if let Ok(seen) = prev.downcast::<app::HeaderSeen>() {
            seen.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Quiet the error log for clients that just went away.
    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, error: &Error) -> bool {
        matches!(error.esource(), ErrorSource::Downstream)
            && matches!(error.etype(), ConnectionClosed | ReadError | WriteError)
    }
}
