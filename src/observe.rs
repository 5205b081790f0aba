//! Step 10 of the pipeline: record every request once, in the access log and in metrics.

use crate::access_log::{rfc3339_now, AccessRecord};
use crate::metrics::{method_class, status_class};
use crate::proxy::ctx::Ctx;
use crate::state::AppState;
use pingora::prelude::*;
use pingora::proxy::Session;

/// Writes the access log line and updates metrics for a finished request.
pub fn record(state: &AppState, session: &Session, e: Option<&Error>, ctx: &mut Ctx) {
    if ctx.in_flight {
        state.metrics.in_flight.dec();
        ctx.in_flight = false;
    }
    let status = session
        .response_written()
        .map(|r| r.status.as_u16())
        .or(ctx.own_status)
        .unwrap_or(0);
    let req = session.req_header();
    let site = ctx
        .site
        .as_ref()
        .map(|s| s.name.as_str())
        .unwrap_or("_unknown");
    let elapsed = ctx.started.elapsed().as_secs_f64();
    let bytes_sent = session.body_bytes_sent() as u64;
    let m = &state.metrics;
    m.requests
        .with_label_values(&[
            site,
            method_class(req.method.as_str()),
            status_class(status),
            ctx.action.as_str(),
        ])
        .inc();
    let unknown;
    let series = match &ctx.site {
        Some(s) => s.series.get_or_init(|| m.site_series(&s.name)),
        None => {
            unknown = m.site_series(site);
            &unknown
        }
    };
    series.request_duration.observe(elapsed);
    if let Some(ms) = ctx.upstream_header_ms {
        series.upstream_duration.observe(ms / 1000.0);
    }
    if ctx.body_bytes_in > 0 {
        series.request_bytes.inc_by(ctx.body_bytes_in);
    }
    if bytes_sent > 0 {
        series.response_bytes.inc_by(bytes_sent);
    }
    if !state.access_log.is_on() {
        return;
    }
    let header = |name: &str| {
        req.headers
            .get(name)
            .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
            .unwrap_or("")
    };
    let upstream_addr = match (&ctx.site, ctx.backend) {
        (Some(site), Some(i)) => site
            .pools
            .get(ctx.pool)
            .and_then(|p| p.backends.get(i))
            .map(|b| b.addr.to_string())
            .unwrap_or_default(),
        _ => String::new(),
    };
    let error_text = match (ctx.error, e) {
        (Some(s), _) => s.to_string(),
        (None, Some(e)) => e.etype().as_str().to_string(),
        _ => String::new(),
    };
    let protocol = if session.is_http2() {
        "HTTP/2"
    } else {
        match req.version {
            http::Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        }
    };
    let rec = AccessRecord {
        time: rfc3339_now(),
        request_id: &ctx.request_id,
        site,
        client_ip: ctx.client_ip.map(|i| i.to_string()).unwrap_or_default(),
        method: req.method.as_str(),
        host: &ctx.host,
        path: req.uri.path(),
        query: req.uri.query().unwrap_or(""),
        protocol,
        status,
        bytes_sent,
        bytes_received: ctx.body_bytes_in,
        upstream_addr,
        upstream_status: ctx.upstream_status,
        duration_ms: elapsed * 1000.0,
        upstream_duration_ms: ctx.upstream_header_ms,
        user_agent: header("user-agent"),
        referer: header("referer"),
        action: ctx.action.as_str(),
        ratelimit_policy: ctx
            .ratelimit
            .as_ref()
            .and_then(|r| r.0.as_deref())
            .unwrap_or(""),
        ratelimit_key: ctx.ratelimit.as_ref().map(|r| r.1).unwrap_or(""),
        ratelimit_action: ctx.ratelimit.as_ref().map(|r| r.2).unwrap_or(""),
        deface_action: ctx.deface_action,
        waf_action: ctx.waf_action,
        waf_rules: &ctx.waf_rules,
        waf_score: ctx.waf_score,
        error: &error_text,
    };
    state.access_log.write(&rec);
}
