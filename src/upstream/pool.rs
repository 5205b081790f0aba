//! Upstream pools: a set of weighted backends and the choice of one for a request.
//!
//! Weighted round-robin uses a precomputed smooth schedule (nginx's algorithm, so weights
//! interleave instead of bursting) walked by an atomic cursor; consistent hashing uses weighted
//! rendezvous hashing on the client IP so that a client sticks to one backend while it is up and
//! moves to another only when it goes down. Unavailable backends (active check failed, or
//! passively ejected) and backends already tried for this request are skipped.

use super::health::BackendHealth;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How a pool picks a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbPolicy {
    RoundRobin,
    ConsistentHash,
}

/// TLS towards the origin.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// Name sent in SNI and checked against the certificate.
    pub sni: String,
    /// Extra trust anchors (DER), when the origin uses a private CA.
    pub ca_der: Option<Arc<Vec<Vec<u8>>>>,
    pub skip_verify: bool,
}

/// Active HTTP health check of a pool.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub path: String,
    pub host: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub expect_status: Vec<u16>,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

/// Passive ejection after connection failures.
#[derive(Debug, Clone, Copy)]
pub struct Passive {
    pub max_failures: u32,
    pub eject_for: Duration,
}

/// One origin server.
#[derive(Debug)]
pub struct Backend {
    pub addr: SocketAddr,
    /// The host as written (name or IP), used for SNI and health-check Host defaults.
    pub host: String,
    pub weight: u32,
    /// Stable key `site/pool/address` for health and metrics.
    pub key: String,
    pub health: Arc<BackendHealth>,
}

/// A named set of backends.
#[derive(Debug)]
pub struct Pool {
    pub name: String,
    pub backends: Vec<Backend>,
    pub lb: LbPolicy,
    pub tls: Option<UpstreamTls>,
    pub health_check: Option<HealthCheck>,
    pub passive: Passive,
    schedule: Vec<u16>,
    cursor: AtomicUsize,
}

/// Longest schedule kept; larger weight sums are scaled down.
const MAX_SCHEDULE: u64 = 4096;

impl Pool {
    /// Builds a pool; `backends` must be non-empty with weights >= 1 (checked by the config compiler).
    pub fn new(
        name: String,
        backends: Vec<Backend>,
        lb: LbPolicy,
        tls: Option<UpstreamTls>,
        health_check: Option<HealthCheck>,
        passive: Passive,
    ) -> Pool {
        let schedule = smooth_schedule(&backends.iter().map(|b| b.weight).collect::<Vec<_>>());
        Pool {
            name,
            backends,
            lb,
            tls,
            health_check,
            passive,
            schedule,
            cursor: AtomicUsize::new(fastrand::usize(..1024)),
        }
    }

    /// Picks an available backend not in `exclude`; `hash_key` is used by consistent hashing.
    /// Returns `None` when no backend can take the request.
    pub fn select(&self, hash_key: u64, exclude: &[usize]) -> Option<usize> {
        match self.lb {
            LbPolicy::RoundRobin => self.select_round_robin(exclude),
            LbPolicy::ConsistentHash => self.select_hash(hash_key, exclude),
        }
    }

    fn usable(&self, i: usize, exclude: &[usize]) -> bool {
        !exclude.contains(&i)
            && self
                .backends
                .get(i)
                .is_some_and(|b| b.health.is_available())
    }

    fn select_round_robin(&self, exclude: &[usize]) -> Option<usize> {
        let n = self.schedule.len();
        if n == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|k| self.schedule[(start + k) % n] as usize)
            .find(|&i| self.usable(i, exclude))
    }

    fn select_hash(&self, key: u64, exclude: &[usize]) -> Option<usize> {
        let mut best: Option<(usize, f64)> = None;
        for (i, b) in self.backends.iter().enumerate() {
            if !self.usable(i, exclude) {
                continue;
            }
            let h = mix(key ^ mix(fnv1a(b.key.as_bytes())));
            // Map to (0, 1) and score = -w / ln(u): weighted rendezvous hashing.
            let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            let score = -(b.weight as f64) / u.ln();
            if best.is_none_or(|(_, s)| score > s) {
                best = Some((i, score));
            }
        }
        best.map(|(i, _)| i)
    }

    /// Number of backends currently available.
    pub fn available(&self) -> usize {
        self.backends
            .iter()
            .filter(|b| b.health.is_available())
            .count()
    }
}

/// Smooth weighted round-robin order (nginx): weights 5,1,1 give a,a,b,a,c,a,a.
fn smooth_schedule(weights: &[u32]) -> Vec<u16> {
    let total: u64 = weights.iter().map(|&w| w.max(1) as u64).sum();
    if total == 0 {
        return Vec::new();
    }
    let scale = if total > MAX_SCHEDULE {
        total.div_ceil(MAX_SCHEDULE)
    } else {
        1
    };
    let w: Vec<i64> = weights
        .iter()
        .map(|&x| ((x.max(1) as u64).div_ceil(scale)) as i64)
        .collect();
    let sum: i64 = w.iter().sum();
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(sum as usize);
    for _ in 0..sum {
        let mut best = 0;
        for i in 0..w.len() {
            current[i] += w[i];
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= sum;
        out.push(best as u16);
    }
    out
}

fn fnv1a(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &x in b {
        h ^= x as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// splitmix64 finaliser.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
}

/// Hash of an IP address for consistent hashing.
pub fn hash_ip(ip: &std::net::IpAddr) -> u64 {
    match ip {
        std::net::IpAddr::V4(v4) => fnv1a(&v4.octets()),
        std::net::IpAddr::V6(v6) => fnv1a(&v6.octets()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(weights: &[u32], lb: LbPolicy) -> Pool {
        let backends = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Backend {
                addr: SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16)),
                host: "127.0.0.1".into(),
                weight: w,
                key: format!("s/p/{i}"),
                health: Arc::new(BackendHealth::default()),
            })
            .collect();
        Pool::new(
            "p".into(),
            backends,
            lb,
            None,
            None,
            Passive {
                max_failures: 3,
                eject_for: Duration::from_secs(10),
            },
        )
    }

    #[test]
    fn smooth_schedule_interleaves() {
        assert_eq!(smooth_schedule(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(smooth_schedule(&[1, 1]), vec![0, 1]);
    }

    #[test]
    fn round_robin_respects_weights() {
        let p = pool(&[3, 1], LbPolicy::RoundRobin);
        let mut counts = [0; 2];
        for _ in 0..400 {
            counts[p.select(0, &[]).unwrap()] += 1;
        }
        assert_eq!(counts, [300, 100]);
    }

    #[test]
    fn skips_unavailable_and_excluded() {
        let p = pool(&[1, 1, 1], LbPolicy::RoundRobin);
        p.backends[1].health.record_check(false, 1, 1);
        for _ in 0..10 {
            let i = p.select(0, &[0]).unwrap();
            assert_eq!(i, 2);
        }
        assert_eq!(p.select(0, &[0, 2]), None);
    }

    #[test]
    fn consistent_hash_is_sticky_and_moves_on_failure() {
        let p = pool(&[1, 1, 1, 1], LbPolicy::ConsistentHash);
        let key = hash_ip(&"10.0.0.7".parse().unwrap());
        let first = p.select(key, &[]).unwrap();
        for _ in 0..10 {
            assert_eq!(p.select(key, &[]), Some(first));
        }
        let other = p.select(key, &[first]).unwrap();
        assert_ne!(other, first);
        // Spread: 1000 clients land on all four backends.
        let mut seen = [0; 4];
        for i in 0..1000u32 {
            let ip = std::net::IpAddr::from(i.to_be_bytes());
            seen[p.select(hash_ip(&ip), &[]).unwrap()] += 1;
        }
        assert!(seen.iter().all(|&c| c > 150), "{seen:?}");
    }
}
