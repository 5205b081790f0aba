//! Process-wide state shared by the proxy, the admin API and background services.

use crate::access_log::AccessLog;
use crate::config::ConfigErrors;
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;
use crate::upstream::HealthRegistry;
use arc_swap::ArcSwap;
use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// A failed reload, kept for the admin API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadFailure {
    pub time: String,
    pub errors: Vec<String>,
}

/// Shared state; one per process.
pub struct AppState {
    pub config_path: PathBuf,
    pub snapshot: ArcSwap<Snapshot>,
    pub health: HealthRegistry,
    pub metrics: Metrics,
    pub access_log: AccessLog,
    /// WAF audit log (blocked and detected requests).
    pub audit_log: AccessLog,
    next_generation: AtomicU64,
    /// Serialises reloads so two never race to swap.
    reload_lock: Mutex<()>,
    pub recent_failures: Mutex<VecDeque<ReloadFailure>>,
    /// Set once listeners are up.
    pub ready: AtomicBool,
    /// The HTTPS listeners' certificate resolver; updated on every swap.
    pub tls_resolver: Arc<crate::tls::SniResolver>,
    /// Rate-limit counters and bans; outlive reloads (sized at start-up).
    pub limiter: Arc<crate::ratelimit::LimiterState>,
    /// Protected pages: verdict cache, baselines, statuses, events.
    pub pages: crate::protect::PageGuard,
    /// ACME HTTP-01 challenge tokens being validated now.
    pub acme_tokens: crate::tls::acme::ChallengeTokens,
    /// Shared rate-limit state in Redis (when configured).
    pub redis_limiter: crate::ratelimit::shared::RedisLimiter,
    /// Open connections per client IP.
    pub connections: crate::proxy::connections::ConnTracker,
}

impl AppState {
    pub fn new(
        config_path: PathBuf,
        first: Snapshot,
        health: HealthRegistry,
        metrics: Metrics,
        access_log: AccessLog,
        audit_log: AccessLog,
    ) -> AppState {
        metrics.config_generation.set(first.generation as i64);
        metrics.last_reload_success.set(unix_secs(first.loaded_at));
        let tls_resolver = Arc::new(crate::tls::SniResolver::default());
        publish_certs(&first, &tls_resolver, &metrics);
        let limiter = Arc::new(crate::ratelimit::LimiterState::new(
            first.ratelimit.state_limits(),
        ));
        let pages = crate::protect::PageGuard::new(first.deface.cache_entries());
        AppState {
            audit_log,
            connections: Default::default(),
            redis_limiter: Default::default(),
            acme_tokens: Default::default(),
            pages,
            limiter,
            tls_resolver,
            config_path,
            next_generation: AtomicU64::new(first.generation + 1),
            snapshot: ArcSwap::from_pointee(first),
            health,
            metrics,
            access_log,
            reload_lock: Mutex::new(()),
            recent_failures: Mutex::new(VecDeque::new()),
            ready: AtomicBool::new(false),
        }
    }

    /// Loads the configuration again and swaps it in if it is valid; otherwise keeps the running
    /// one, logs and counts the errors. Blocking (file I/O, DNS): call from a blocking context.
    pub fn reload(&self) -> Result<u64, ConfigErrors> {
        let _guard = match self.reload_lock.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        match crate::config::load(&self.config_path, &self.health, generation) {
            Ok(snap) => {
                let keep: HashSet<String> = snap
                    .sites
                    .iter()
                    .flat_map(|s| s.pools.iter())
                    .flat_map(|p| p.backends.iter())
                    .map(|b| b.key.clone())
                    .collect();
                self.metrics.config_generation.set(generation as i64);
                self.metrics
                    .last_reload_success
                    .set(unix_secs(snap.loaded_at));
                self.metrics.reloads.with_label_values(&["success"]).inc();
                publish_certs(&snap, &self.tls_resolver, &self.metrics);
                for w in &snap.warnings {
                    log::warn!("{w}");
                }
                self.snapshot.store(Arc::new(snap));
                self.health.retain(&keep);
                self.metrics.backend_up.reset();
                log::info!("configuration reloaded: generation {generation}");
                Ok(generation)
            }
            Err(errors) => {
                self.metrics.reloads.with_label_values(&["failure"]).inc();
                log::error!(
                    "configuration reload failed; still serving generation {}:\n{errors}",
                    self.snapshot.load().generation
                );
                let mut q = match self.recent_failures.lock() {
                    Ok(q) => q,
                    Err(p) => p.into_inner(),
                };
                q.push_back(ReloadFailure {
                    time: crate::access_log::rfc3339_now(),
                    errors: errors.0.iter().map(|e| e.to_string()).collect(),
                });
                while q.len() > 10 {
                    q.pop_front();
                }
                Err(errors)
            }
        }
    }
}

/// Hands a snapshot's certificates to the resolver and the expiry metric.
fn publish_certs(snap: &Snapshot, resolver: &crate::tls::SniResolver, metrics: &Metrics) {
    resolver.store.store(snap.certs.clone());
    metrics.cert_expiry.reset();
    for c in &snap.cert_infos {
        metrics
            .cert_expiry
            .with_label_values(&[&c.site])
            .set(c.not_after_unix as f64);
    }
}

pub fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
