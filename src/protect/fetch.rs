//! Fetching a page from a site's origin ourselves (protected pages, the prober, baselines):
//! through the pool's backends, with the site's Host header and the pool's TLS settings.

use crate::upstream::Pool;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// A page as the origin sent it.
#[derive(Debug)]
pub struct Fetched {
    pub status: u16,
    pub content_type: String,
    pub content_encoding: Option<String>,
    /// Headers worth relaying to the client (cache validators and policy).
    pub relay_headers: Vec<(&'static str, String)>,
    pub body: bytes::Bytes,
    pub backend: std::net::SocketAddr,
}

/// HTTP clients per pool (TLS settings differ), built on first use.
#[derive(Default)]
pub struct Fetcher {
    clients: Mutex<HashMap<String, reqwest::Client>>,
}

const RELAYED: &[&str] = &[
    "cache-control",
    "last-modified",
    "etag",
    "expires",
    "content-language",
];

impl Fetcher {
    fn client(&self, key: &str, pool: &Pool, timeout: Duration) -> Result<reqwest::Client, String> {
        let mut map = match self.clients.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if let Some(c) = map.get(key) {
            return Ok(c.clone());
        }
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)));
        if let Some(tls) = &pool.tls {
            if tls.skip_verify {
                b = b.danger_accept_invalid_certs(true);
            }
            for der in tls.ca_der.iter().flat_map(|v| v.iter()) {
                let cert = reqwest::Certificate::from_der(der)
                    .map_err(|e| format!("CA certificate: {e}"))?;
                b = b.add_root_certificate(cert);
            }
            for backend in &pool.backends {
                b = b.resolve(&tls.sni, backend.addr);
            }
        }
        let c = b
            .build()
            .map_err(|e| format!("cannot build HTTP client: {e}"))?;
        map.insert(key.to_string(), c.clone());
        Ok(c)
    }

    /// GETs `path_and_query` for `host` from backend `idx` of `pool`, reading at most `limit` bytes.
    // The arguments are the request's independent facts; a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub async fn fetch(
        &self,
        pool_key: &str,
        pool: &Pool,
        idx: usize,
        host: &str,
        path_and_query: &str,
        extra_headers: &[(&str, String)],
        timeout: Duration,
        limit: usize,
    ) -> Result<Fetched, String> {
        let backend = pool.backends.get(idx).ok_or("no such backend")?;
        let client = self.client(pool_key, pool, timeout)?;
        let url = match &pool.tls {
            Some(tls) => format!(
                "https://{}:{}{}",
                tls.sni,
                backend.addr.port(),
                path_and_query
            ),
            None => format!("http://{}{}", backend.addr, path_and_query),
        };
        let mut req = client
            .get(&url)
            .header("host", host)
            .header("accept-encoding", "gzip, deflate, br");
        for (k, v) in extra_headers {
            req = req.header(*k, v.as_str());
        }
        let mut resp = req
            .send()
            .await
            .map_err(|e| format!("origin {}: {e}", backend.addr))?;
        let header = |r: &reqwest::Response, n: &str| {
            r.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = header(&resp, "content-type").unwrap_or_default();
        let content_encoding = header(&resp, "content-encoding");
        let relay_headers = RELAYED
            .iter()
            .filter_map(|n| header(&resp, n).map(|v| (*n, v)))
            .collect();
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("origin {}: {e}", backend.addr))?
        {
            if body.len() + chunk.len() > limit {
                return Err(format!(
                    "origin {}: page larger than {limit} bytes",
                    backend.addr
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            status,
            content_type,
            content_encoding,
            relay_headers,
            body: body.into(),
            backend: backend.addr,
        })
    }
}
