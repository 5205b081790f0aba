//! Backend health: the state that outlives config reloads.
//!
//! Each backend of each pool has one [`BackendHealth`], kept in the [`HealthRegistry`] under the
//! stable key `site/pool/address`, so a reload that keeps a backend keeps its health. The request
//! path reads only atomics: [`BackendHealth::is_available`]. Active checks
//! ([`super::checker`]) flip `active_healthy`; passive ejection counts connection failures seen
//! by the proxy and takes a backend out for a cool-down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Milliseconds since the first call in this process: a cheap monotonic clock for atomics.
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Health of one backend, shared between the request path and the checker.
#[derive(Debug)]
pub struct BackendHealth {
    active_healthy: AtomicBool,
    consecutive_ok: AtomicU32,
    consecutive_fail: AtomicU32,
    passive_failures: AtomicU32,
    ejected_until_ms: AtomicU64,
    next_check_ms: AtomicU64,
}

impl Default for BackendHealth {
    fn default() -> Self {
        BackendHealth {
            active_healthy: AtomicBool::new(true),
            consecutive_ok: AtomicU32::new(0),
            consecutive_fail: AtomicU32::new(0),
            passive_failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            next_check_ms: AtomicU64::new(0),
        }
    }
}

impl BackendHealth {
    /// Whether the proxy may send a request to this backend now.
    pub fn is_available(&self) -> bool {
        self.active_healthy.load(Ordering::Relaxed)
            && self.ejected_until_ms.load(Ordering::Relaxed) <= now_ms()
    }

    pub fn is_active_healthy(&self) -> bool {
        self.active_healthy.load(Ordering::Relaxed)
    }

    pub fn is_ejected(&self) -> bool {
        self.ejected_until_ms.load(Ordering::Relaxed) > now_ms()
    }

    /// Records a failed connection; ejects the backend for `eject_for` once `max_failures`
    /// consecutive failures are seen (0 turns passive ejection off). Returns true when ejected now.
    pub fn record_connect_failure(&self, max_failures: u32, eject_for: Duration) -> bool {
        if max_failures == 0 {
            return false;
        }
        let n = self.passive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= max_failures {
            self.passive_failures.store(0, Ordering::Relaxed);
            self.ejected_until_ms
                .store(now_ms() + eject_for.as_millis() as u64, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Records a successful exchange: resets the passive failure count.
    pub fn record_success(&self) {
        if self.passive_failures.load(Ordering::Relaxed) != 0 {
            self.passive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// Records an active check result; returns `Some(new_state)` when the state changed.
    pub fn record_check(
        &self,
        ok: bool,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
    ) -> Option<bool> {
        let healthy = self.active_healthy.load(Ordering::Relaxed);
        if ok {
            self.consecutive_fail.store(0, Ordering::Relaxed);
            let n = self.consecutive_ok.fetch_add(1, Ordering::Relaxed) + 1;
            if !healthy && n >= healthy_threshold.max(1) {
                self.active_healthy.store(true, Ordering::Relaxed);
                // A backend that passes its checks again is given a fresh start.
                self.ejected_until_ms.store(0, Ordering::Relaxed);
                return Some(true);
            }
        } else {
            self.consecutive_ok.store(0, Ordering::Relaxed);
            let n = self.consecutive_fail.fetch_add(1, Ordering::Relaxed) + 1;
            if healthy && n >= unhealthy_threshold.max(1) {
                self.active_healthy.store(false, Ordering::Relaxed);
                return Some(false);
            }
        }
        None
    }

    /// Claims the next check slot: true when a check is due, and schedules the one after.
    pub fn claim_check(&self, interval: Duration) -> bool {
        let now = now_ms();
        let due = self.next_check_ms.load(Ordering::Relaxed);
        if now < due {
            return false;
        }
        self.next_check_ms
            .compare_exchange(
                due,
                now + interval.as_millis() as u64,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
    }
}

/// All backends' health by stable key `site/pool/address`.
#[derive(Debug, Default)]
pub struct HealthRegistry {
    map: Mutex<HashMap<String, Arc<BackendHealth>>>,
}

impl HealthRegistry {
    /// The health of a backend, created healthy on first use. Called at config load only.
    pub fn get(&self, key: &str) -> Arc<BackendHealth> {
        let mut map = match self.map.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry(key.to_string()).or_default().clone()
    }

    /// Drops entries whose keys are not in `keep` (backends removed by a reload).
    pub fn retain(&self, keep: &std::collections::HashSet<String>) {
        let mut map = match self.map.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.retain(|k, _| keep.contains(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passive_ejection_after_max_failures() {
        let h = BackendHealth::default();
        assert!(h.is_available());
        assert!(!h.record_connect_failure(2, Duration::from_secs(60)));
        assert!(h.is_available());
        assert!(h.record_connect_failure(2, Duration::from_secs(60)));
        assert!(!h.is_available());
        assert!(h.is_ejected());
    }

    #[test]
    fn success_resets_passive_count() {
        let h = BackendHealth::default();
        h.record_connect_failure(2, Duration::from_secs(60));
        h.record_success();
        assert!(!h.record_connect_failure(2, Duration::from_secs(60)));
    }

    #[test]
    fn active_thresholds() {
        let h = BackendHealth::default();
        assert_eq!(h.record_check(false, 2, 2), None);
        assert_eq!(h.record_check(false, 2, 2), Some(false));
        assert!(!h.is_available());
        assert_eq!(h.record_check(true, 2, 2), None);
        assert_eq!(h.record_check(true, 2, 2), Some(true));
        assert!(h.is_available());
    }

    #[test]
    fn registry_keeps_state_by_key() {
        let r = HealthRegistry::default();
        let a = r.get("s/p/1.2.3.4:80");
        a.record_check(false, 1, 1);
        assert!(!r.get("s/p/1.2.3.4:80").is_available());
        assert!(r.get("s/p/1.2.3.4:81").is_available());
    }
}
