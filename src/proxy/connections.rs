//! Connection-level admission: counts open connections (for the active-connections gauge) and
//! enforces per-client-IP limits on concurrent connections and new connections per second,
//! before any request is read. A refused connection is closed at once.
//!
//! Wraps the HTTP application as a pingora `ServerApp`, whose `process_new` spans a connection's
//! whole life (TLS connections arrive after their handshake).

use super::app::EgretHttpApp;
use crate::state::AppState;
use async_trait::async_trait;
use parking_lot::Mutex;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most client IPs tracked; beyond it new IPs are admitted without per-IP accounting.
const MAX_TRACKED_IPS: usize = 1_000_000;

#[derive(Debug)]
struct Entry {
    active: u32,
    window_start: Instant,
    new_in_window: u32,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TooManyOpen,
    TooManyNew,
}

/// Per-IP connection accounting.
#[derive(Debug, Default)]
pub struct ConnTracker {
    map: Mutex<HashMap<IpAddr, Entry>>,
}

impl ConnTracker {
    /// Admits a connection from `ip` under the limits (0 = no limit), counting it as open.
    pub fn admit(
        &self,
        ip: IpAddr,
        max_open: u32,
        max_new_per_sec: u32,
        now: Instant,
    ) -> Result<(), Refusal> {
        let mut map = self.map.lock();
        if map.len() >= MAX_TRACKED_IPS && !map.contains_key(&ip) {
            map.retain(|_, e| e.active > 0);
            if map.len() >= MAX_TRACKED_IPS {
                return Ok(());
            }
        }
        let e = map.entry(ip).or_insert(Entry {
            active: 0,
            window_start: now,
            new_in_window: 0,
        });
        if now.duration_since(e.window_start) >= Duration::from_secs(1) {
            e.window_start = now;
            e.new_in_window = 0;
        }
        if max_open > 0 && e.active >= max_open {
            return Err(Refusal::TooManyOpen);
        }
        if max_new_per_sec > 0 && e.new_in_window >= max_new_per_sec {
            return Err(Refusal::TooManyNew);
        }
        e.active += 1;
        e.new_in_window += 1;
        Ok(())
    }

    /// Counts a connection from `ip` as closed.
    pub fn release(&self, ip: IpAddr) {
        let mut map = self.map.lock();
        if let Some(e) = map.get_mut(&ip) {
            e.active = e.active.saturating_sub(1);
            if e.active == 0 && e.window_start.elapsed() >= Duration::from_secs(1) {
                map.remove(&ip);
            }
        }
    }
}

/// The proxy service's transport application.
pub struct ConnLimitApp {
    pub inner: Arc<EgretHttpApp>,
    pub state: Arc<AppState>,
}

#[async_trait]
impl ServerApp for ConnLimitApp {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let ip = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let snap = self.state.snapshot.load();
        let limits = snap.global.connections.clone();
        let allowed = ip.is_some_and(|ip| limits.exempt.iter().any(|n| n.contains(&ip)));
        drop(snap);
        let m = &self.state.metrics;
        let tracked = match ip {
            Some(ip) if !allowed => match self.state.connections.admit(
                ip,
                limits.max_per_ip,
                limits.new_per_second_per_ip,
                Instant::now(),
            ) {
                Ok(()) => Some(ip),
                Err(r) => {
                    let reason = match r {
                        Refusal::TooManyOpen => "too_many_open",
                        Refusal::TooManyNew => "too_many_new",
                    };
                    m.connections_refused.with_label_values(&[reason]).inc();
                    log::debug!("connection from {ip} refused: {reason}");
                    return None;
                }
            },
            _ => None,
        };
        m.connections_active.inc();
        let out = self.inner.process_new(stream, shutdown).await;
        m.connections_active.dec();
        if let Some(ip) = tracked {
            self.state.connections.release(ip);
        }
        out
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_open_and_new_connections() {
        let t = ConnTracker::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let now = Instant::now();
        assert!(t.admit(ip, 2, 0, now).is_ok());
        assert!(t.admit(ip, 2, 0, now).is_ok());
        assert_eq!(t.admit(ip, 2, 0, now), Err(Refusal::TooManyOpen));
        t.release(ip);
        assert!(t.admit(ip, 2, 0, now).is_ok());
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(t.admit(other, 0, 2, now).is_ok());
        assert!(t.admit(other, 0, 2, now).is_ok());
        assert_eq!(t.admit(other, 0, 2, now), Err(Refusal::TooManyNew));
        assert!(
            t.admit(other, 0, 2, now + Duration::from_secs(1)).is_ok(),
            "a new second, a new budget"
        );
    }
}
