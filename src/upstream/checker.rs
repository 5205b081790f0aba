//! Active health checks: a background service that probes every backend of every pool that has
//! a `health_check`, at the pool's interval, and updates the backends' health.
//!
//! Plain-HTTP pools get an HTTP/1.1 GET of the check path and must answer with an expected
//! status; TLS pools get a TCP connect check (the proxy's own TLS handshake failures eject them
//! passively).

use super::pool::{HealthCheck, Pool};
use crate::state::AppState;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The background service.
pub struct HealthChecker {
    pub state: Arc<AppState>,
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => self.round(),
            }
        }
    }
}

impl HealthChecker {
    /// Starts the checks that are due and refreshes the backend gauges.
    fn round(&self) {
        let snap = self.state.snapshot.load_full();
        for site in &snap.sites {
            for pool in &site.pools {
                for (i, b) in pool.backends.iter().enumerate() {
                    self.state
                        .metrics
                        .backend_up
                        .with_label_values(&[&site.name, &pool.name, &b.addr.to_string()])
                        .set(b.health.is_available() as i64);
                    let Some(hc) = &pool.health_check else {
                        continue;
                    };
                    if !b.health.claim_check(hc.interval) {
                        continue;
                    }
                    let pool: Arc<Pool> = pool.clone();
                    tokio::spawn(async move {
                        let Some(b) = pool.backends.get(i) else {
                            return;
                        };
                        let Some(hc) = &pool.health_check else { return };
                        let ok = probe(b.addr, &b.host, hc, pool.tls.is_some()).await;
                        if let Some(now_healthy) =
                            b.health
                                .record_check(ok, hc.healthy_threshold, hc.unhealthy_threshold)
                        {
                            if now_healthy {
                                log::info!("backend {} is healthy again", b.key);
                            } else {
                                log::warn!("backend {} failed its health checks", b.key);
                            }
                        }
                    });
                }
            }
        }
    }
}

/// One probe: true when the backend answered as expected within the timeout.
pub async fn probe(addr: SocketAddr, host: &str, hc: &HealthCheck, tls: bool) -> bool {
    let fut = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        if tls {
            return Some(true);
        }
        let host = hc.host.as_deref().unwrap_or(host);
        let req = format!("GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: egret-health-check\r\nConnection: close\r\n\r\n", hc.path);
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = [0u8; 64];
        let mut n = 0;
        while n < 12 {
            let r = s.read(&mut buf[n..]).await.ok()?;
            if r == 0 {
                break;
            }
            n += r;
        }
        let line = std::str::from_utf8(&buf[..n]).ok()?;
        let code: u16 = line.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()?;
        Some(hc.expect_status.contains(&code))
    };
    matches!(tokio::time::timeout(hc.timeout, fut).await, Ok(Some(true)))
}
