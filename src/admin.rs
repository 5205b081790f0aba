//! The admin listener (default 127.0.0.1:9901), separate from traffic: health, readiness,
//! Prometheus metrics, status and reload. JSON bodies; documented in docs/admin-api.md.

use crate::state::{unix_secs, AppState};
use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The admin HTTP application.
pub struct AdminApp {
    pub state: Arc<AppState>,
}

fn respond(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    let len = r.body().len();
    r.headers_mut()
        .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    r
}

fn json_response(status: StatusCode, v: serde_json::Value) -> Response<Vec<u8>> {
    respond(
        status,
        "application/json",
        serde_json::to_vec_pretty(&v).unwrap_or_default(),
    )
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        let public = matches!(path.as_str(), "/healthz" | "/readyz")
            || (path == "/metrics" && snap_metrics_public(&self.state));
        let snap = self.state.snapshot.load_full();
        let settings = &snap.global.admin;
        if !public {
            if let Some(token) = &settings.token {
                let given = session
                    .req_header()
                    .headers
                    .get(http::header::AUTHORIZATION)
                    .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
                    .unwrap_or(b"");
                if !constant_time_eq(given, token.as_bytes()) {
                    self.state.metrics.admin_auth_failures.inc();
                    let peer = session
                        .client_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                    log::warn!(
                        "admin API: refused {method} {path} from {peer}: missing or wrong token"
                    );
                    let mut r = json_response(
                        StatusCode::UNAUTHORIZED,
                        json!({"error": "a bearer token is required"}),
                    );
                    r.headers_mut().insert(
                        http::header::WWW_AUTHENTICATE,
                        http::HeaderValue::from_static("Bearer"),
                    );
                    return r;
                }
            }
        }
        match (method.as_str(), path.as_str()) {
            ("GET", "/healthz") => respond(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            ("GET", "/readyz") => {
                if self.state.ready.load(Ordering::Relaxed) {
                    respond(StatusCode::OK, "text/plain", b"ready\n".to_vec())
                } else {
                    respond(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        b"starting\n".to_vec(),
                    )
                }
            }
            ("GET", "/metrics") => {
                self.state.metrics.access_log_dropped.reset();
                self.state
                    .metrics
                    .access_log_dropped
                    .inc_by(self.state.access_log.dropped());
                respond(
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    self.state.metrics.render(),
                )
            }
            ("GET", "/api/v1/status") => json_response(StatusCode::OK, self.status()),
            ("GET", "/api/v1/deface/status") => {
                let snap = self.state.snapshot.load_full();
                let records = crate::protect::PageGuard::store(&snap)
                    .and_then(|s| s.list(None).ok())
                    .map(|(r, _)| r.into_iter().map(|r| json!({"site": r.site, "path": r.path, "approved_at": r.approved_at, "sha256": r.content_sha256})).collect::<Vec<_>>())
                    .unwrap_or_default();
                json_response(
                    StatusCode::OK,
                    json!({"pages": self.state.pages.statuses(), "baselines": records}),
                )
            }
            ("POST", "/api/v1/deface/approve") => {
                let query = session.req_header().uri.query().unwrap_or("").to_string();
                let param = |name: &str| query_param(&query, name);
                let (Some(site), Some(path)) = (param("site"), param("path")) else {
                    return json_response(
                        StatusCode::BAD_REQUEST,
                        json!({"error": "query parameters site and path are required"}),
                    );
                };
                let snap = self.state.snapshot.load_full();
                match crate::protect::approve(
                    &self.state.pages.fetcher,
                    &self.state.redis_limiter,
                    &snap,
                    &site,
                    &path,
                )
                .await
                {
                    Ok(rec) => {
                        self.state.pages.invalidate(&site, &path);
                        log::info!(
                            "deface: approved {site}{path} ({}) through the admin API",
                            rec.content_sha256
                        );
                        json_response(
                            StatusCode::OK,
                            json!({"result": "approved", "site": site, "path": path, "sha256": rec.content_sha256}),
                        )
                    }
                    Err(e) => json_response(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        json!({"result": "failure", "error": e}),
                    ),
                }
            }
            ("POST", "/api/v1/reload") => {
                let state = self.state.clone();
                let res = tokio::task::spawn_blocking(move || state.reload()).await;
                match res {
                    Ok(Ok(generation)) => json_response(
                        StatusCode::OK,
                        json!({"result": "success", "generation": generation}),
                    ),
                    Ok(Err(errors)) => json_response(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        json!({"result": "failure", "errors": errors.0.iter().map(|e| e.to_string()).collect::<Vec<_>>()}),
                    ),
                    Err(_) => json_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        json!({"result": "failure"}),
                    ),
                }
            }
            (
                _,
                "/healthz"
                | "/readyz"
                | "/metrics"
                | "/api/v1/status"
                | "/api/v1/reload"
                | "/api/v1/deface/status"
                | "/api/v1/deface/approve",
            ) => json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"error": "method not allowed"}),
            ),
            _ => json_response(StatusCode::NOT_FOUND, json!({"error": "not found"})),
        }
    }
}

fn snap_metrics_public(state: &AppState) -> bool {
    state.snapshot.load().global.admin.metrics_public
}

/// The first value of query parameter `name`, percent-decoded (public for the fuzz target).
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(v))
}

/// Decodes %XX escapes (and '+' as space) of a query value; invalid escapes stay as they are.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Compares secrets in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl AdminApp {
    fn status(&self) -> serde_json::Value {
        let snap = self.state.snapshot.load_full();
        let sites: Vec<_> = snap
            .sites
            .iter()
            .map(|s| {
                json!({
                    "name": s.name,
                    "hosts": s.hosts,
                    "file": s.file.display().to_string(),
                    "pools": s.pools.iter().map(|p| json!({
                        "name": p.name,
                        "available": p.available(),
                        "backends": p.backends.iter().map(|b| json!({
                            "addr": b.addr.to_string(),
                            "weight": b.weight,
                            "healthy": b.health.is_active_healthy(),
                            "ejected": b.health.is_ejected(),
                        })).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let failures = match self.state.recent_failures.lock() {
            Ok(q) => q.iter().cloned().collect::<Vec<_>>(),
            Err(p) => p.into_inner().iter().cloned().collect(),
        };
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "config": {
                "path": snap.config_path.display().to_string(),
                "generation": snap.generation,
                "loaded_at_unix": unix_secs(snap.loaded_at),
            },
            "sites": sites,
            "recent_reload_errors": failures,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_decoding() {
        assert_eq!(super::percent_decode("%2Fzwgk%2Fa.htm"), "/zwgk/a.htm");
        assert_eq!(super::percent_decode("a+b%"), "a b%");
        assert_eq!(super::percent_decode("%zz%4"), "%zz%4");
        assert!(super::constant_time_eq(b"abc", b"abc"));
        assert!(!super::constant_time_eq(b"abc", b"abd"));
        assert!(!super::constant_time_eq(b"abc", b"ab"));
    }
}
