//! A small origin web server for the demo and the tests: it plays a departmental website.
//!
//! - `/healthz`: 200, or 503 while [`Origin::set_healthy`] is false.
//! - `/slow/MS`: answers after MS milliseconds.
//! - `/`, `*.htm`, `*.html`: an HTML page naming the site and the origin.
//! - `POST /__demo/tamper`: toggles a simulated defacement of the HTML pages.
//! - `/ws` with `Upgrade: websocket`: switches protocols and echoes every byte back.
//! - anything else: a JSON echo of the request (origin name, method, path, query, headers, body length).

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A running origin.
pub struct Origin {
    pub name: String,
    pub addr: SocketAddr,
    healthy: Arc<AtomicBool>,
    hits: Arc<AtomicU64>,
    tampered: Arc<AtomicBool>,
    pages: Pages,
    bodies: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
}

/// A fixed response served at one path (tests and the demo set these).
#[derive(Clone)]
struct Fixed {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Fixed responses by path.
type Pages = Arc<std::sync::Mutex<std::collections::HashMap<String, Fixed>>>;

impl Origin {
    /// Starts an origin on `addr` (port 0 for any free port) in the current tokio runtime.
    pub async fn start(name: &str, addr: SocketAddr) -> std::io::Result<Origin> {
        Self::start_with(name, addr, None).await
    }

    /// Starts an HTTPS origin with the given PEM chain and key. Its JSON echo adds `"sni"`:
    /// the server name the client (Egret) sent.
    pub async fn start_tls(
        name: &str,
        addr: SocketAddr,
        chain_pem: &str,
        key_pem: &str,
    ) -> anyhow::Result<Origin> {
        let certs =
            rustls_pemfile::certs(&mut chain_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
        let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())?
            .ok_or_else(|| anyhow::anyhow!("no key"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Ok(Self::start_with(name, addr, Some(acceptor)).await?)
    }

    async fn start_with(
        name: &str,
        addr: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<Origin> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let healthy = Arc::new(AtomicBool::new(true));
        let hits = Arc::new(AtomicU64::new(0));
        let tampered = Arc::new(AtomicBool::new(false));
        let pages: Pages = Arc::default();
        let bodies = Arc::new(AtomicU64::new(0));
        let (stop, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            name: name.to_string(),
            healthy: healthy.clone(),
            hits: hits.clone(),
            tampered: tampered.clone(),
            pages: pages.clone(),
            bodies: bodies.clone(),
        });
        tokio::spawn(accept_loop(listener, shared, stop_rx, tls));
        Ok(Origin {
            name: name.to_string(),
            addr,
            healthy,
            hits,
            tampered,
            pages,
            bodies,
            stop,
        })
    }

    /// Serves `body` as an HTML page at `path` (with `Content-Encoding: encoding` when given).
    pub fn set_page(&self, path: &str, body: Vec<u8>, encoding: Option<&str>) {
        let mut headers = vec![("content-type", "text/html; charset=utf-8")];
        if let Some(e) = encoding {
            headers.push(("content-encoding", e));
        }
        self.set_response(path, 200, &headers, body);
    }

    /// Serves a fixed response (status, headers, body) at `path`.
    pub fn set_response(&self, path: &str, status: u16, headers: &[(&str, &str)], body: Vec<u8>) {
        let fixed = Fixed {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body,
        };
        if let Ok(mut p) = self.pages.lock() {
            p.insert(path.to_string(), fixed);
        }
    }

    /// Simulates a defacement: HTML pages get a hidden block of gambling links.
    pub fn set_tampered(&self, on: bool) {
        self.tampered.store(on, Ordering::Relaxed);
    }

    pub fn set_healthy(&self, ok: bool) {
        self.healthy.store(ok, Ordering::Relaxed);
    }

    /// Request bodies received whole (non-empty).
    pub fn bodies(&self) -> u64 {
        self.bodies.load(Ordering::Relaxed)
    }

    /// Requests served, health checks excluded.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Stops listening and closes every open connection.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Shared {
    name: String,
    healthy: Arc<AtomicBool>,
    hits: Arc<AtomicU64>,
    tampered: Arc<AtomicBool>,
    pages: Pages,
    bodies: Arc<AtomicU64>,
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let conn = tokio::select! {
            _ = stop.changed() => return,
            c = listener.accept() => c,
        };
        let Ok((stream, _)) = conn else { continue };
        let shared = shared.clone();
        let mut stop = stop.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve(TokioIo::new(stream), shared, None, &mut stop).await,
                Some(acceptor) => {
                    let Ok(s) = acceptor.accept(stream).await else {
                        return;
                    };
                    let sni = s.get_ref().1.server_name().map(str::to_string);
                    serve(
                        TokioIo::new(s),
                        shared,
                        Some(sni.unwrap_or_default()),
                        &mut stop,
                    )
                    .await
                }
            }
        });
    }
}

async fn serve<I>(io: I, shared: Arc<Shared>, sni: Option<String>, stop: &mut watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| handle(shared.clone(), sni.clone(), req));
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, svc)
        .with_upgrades();
    tokio::select! {
        _ = stop.changed() => {}
        _ = conn => {}
    }
}

async fn handle(
    shared: Arc<Shared>,
    sni: Option<String>,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    if path == "/ws" && req.headers().contains_key(hyper::header::UPGRADE) {
        shared.hits.fetch_add(1, Ordering::Relaxed);
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut io = TokioIo::new(upgraded);
                let mut buf = [0u8; 4096];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let mut r = text(101, "text/plain", String::new());
        r.headers_mut().insert(
            hyper::header::UPGRADE,
            hyper::header::HeaderValue::from_static("websocket"),
        );
        r.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("upgrade"),
        );
        return Ok(r);
    }
    if path == "/healthz" {
        let ok = shared.healthy.load(Ordering::Relaxed);
        return Ok(text(
            if ok { 200 } else { 503 },
            "text/plain",
            if ok { "ok\n" } else { "down\n" }.into(),
        ));
    }
    shared.hits.fetch_add(1, Ordering::Relaxed);
    if let Some(ms) = path
        .strip_prefix("/slow/")
        .and_then(|s| s.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms.min(120_000))).await;
    }
    let method = req.method().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let host = req
        .headers()
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let fixed = shared.pages.lock().ok().and_then(|p| p.get(&path).cloned());
    if let Some(f) = fixed {
        let mut r = Response::new(Full::new(Bytes::from(f.body)));
        *r.status_mut() = hyper::StatusCode::from_u16(f.status)
            .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
        for (k, v) in &f.headers {
            if let (Ok(k), Ok(v)) = (
                hyper::header::HeaderName::from_bytes(k.as_bytes()),
                hyper::header::HeaderValue::from_str(v),
            ) {
                r.headers_mut().insert(k, v);
            }
        }
        return Ok(r);
    }
    if path == "/__demo/tamper" && req.method() == hyper::Method::POST {
        let on = !shared.tampered.load(Ordering::Relaxed);
        shared.tampered.store(on, Ordering::Relaxed);
        let msg = if on {
            "tampered: pages now carry hidden gambling links\n"
        } else {
            "restored\n"
        };
        return Ok(text(200, "text/plain", msg.into()));
    }
    if path == "/" || path.ends_with(".htm") || path.ends_with(".html") {
        let injected = if shared.tampered.load(Ordering::Relaxed) {
            "<div style=\"display:none\"><a href=\"http://casino-bet.example/\">澳门赌场</a> \
<a href=\"http://casino-bet.example/bjl\">百家乐 真人娱乐</a></div>"
        } else {
            ""
        };
        let body = format!(
            "<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>{host}</title></head>\
<body><h1>{host}</h1><p>欢迎访问 / Welcome. Served by origin <b class=\"served-by\">{}</b>, path {path}.</p>\
<ul class=\"news-list\"><li>关于做好2026年冬季供暖工作的通知</li><li>市政府常务会议研究部署民生实事</li></ul>{injected}</body></html>\n",
            shared.name
        );
        return Ok(text(200, "text/html; charset=utf-8", body));
    }
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            )
        })
        .collect();
    let body_len = match Limited::new(req.into_body(), 64 * 1024 * 1024)
        .collect()
        .await
    {
        Ok(b) => {
            let n = b.to_bytes().len();
            if n > 0 {
                shared.bodies.fetch_add(1, Ordering::Relaxed);
            }
            n as i64
        }
        Err(_) => -1,
    };
    let v = serde_json::json!({
        "origin": shared.name, "method": method, "path": path, "query": query,
        "headers": headers, "body_len": body_len, "sni": sni,
    });
    Ok(text(200, "application/json", v.to_string()))
}

fn text(status: u16, ct: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = hyper::header::HeaderValue::from_str(ct) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}
