//! Verdict cache keyed by content hash.
//!
//! Owns [`VerdictCache`]: an unchanged response costs one SHA-256 of its body and a map lookup
//! instead of three HTML passes. The key also carries the baseline's identity and the policy
//! digest, so an approval or a config change never reuses a stale verdict. Memory is bounded:
//! two generations of at most `capacity / 2` entries each; when the young one fills, the old one
//! is dropped and the young one ages (a cheap approximation of LRU: entries used in the last
//! generation survive by being copied forward on hit).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use super::error::ExtractError;
use super::extract::extract;
use super::features::Features;
use super::policy::CheckPolicy;
use super::verdict::{compare, Verdict};

/// Cache key: hashes of the body, the baseline's identity and the policy digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// Builds the key for `body` compared against the baseline `baseline_id` under
    /// `policy_digest`.
    pub fn new(body: &[u8], baseline_id: &str, policy_digest: &str) -> Self {
        let body_hash = Sha256::digest(body);
        let mut h = Sha256::new();
        h.update(body_hash);
        h.update(baseline_id.as_bytes());
        h.update([0u8]);
        h.update(policy_digest.as_bytes());
        Self(h.finalize().into())
    }
}

#[derive(Default)]
struct Generations {
    young: HashMap<CacheKey, Arc<Verdict>>,
    old: HashMap<CacheKey, Arc<Verdict>>,
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that missed.
    pub misses: u64,
    /// Entries held.
    pub entries: usize,
}

/// Bounded verdict cache, shared across requests.
pub struct VerdictCache {
    generation_size: usize,
    inner: Mutex<(Generations, CacheStats)>,
}

impl std::fmt::Debug for VerdictCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerdictCache")
            .field("stats", &self.stats())
            .finish()
    }
}

impl VerdictCache {
    /// A cache of at most `capacity` entries (at least 2).
    pub fn new(capacity: usize) -> Self {
        Self {
            generation_size: (capacity / 2).max(1),
            inner: Mutex::new((Generations::default(), CacheStats::default())),
        }
    }

    /// The cached verdict for `key`.
    pub fn get(&self, key: &CacheKey) -> Option<Arc<Verdict>> {
        let mut guard = self.inner.lock();
        let (gens, stats) = &mut *guard;
        if let Some(v) = gens.young.get(key) {
            stats.hits += 1;
            return Some(Arc::clone(v));
        }
        if let Some(v) = gens.old.remove(key) {
            stats.hits += 1;
            Self::insert_young(gens, self.generation_size, *key, Arc::clone(&v));
            return Some(v);
        }
        stats.misses += 1;
        None
    }

    fn insert_young(gens: &mut Generations, size: usize, key: CacheKey, v: Arc<Verdict>) {
        if gens.young.len() >= size {
            gens.old = std::mem::take(&mut gens.young);
        }
        gens.young.insert(key, v);
    }

    /// Stores a verdict.
    pub fn insert(&self, key: CacheKey, verdict: Arc<Verdict>) {
        let mut guard = self.inner.lock();
        Self::insert_young(&mut guard.0, self.generation_size, key, verdict);
    }

    /// Returns the cached verdict or computes, stores and returns it.
    pub fn get_or_insert_with<E>(
        &self,
        key: CacheKey,
        compute: impl FnOnce() -> Result<Verdict, E>,
    ) -> Result<Arc<Verdict>, E> {
        if let Some(v) = self.get(&key) {
            return Ok(v);
        }
        let v = Arc::new(compute()?);
        self.insert(key, Arc::clone(&v));
        Ok(v)
    }

    /// The inline check: the verdict for `body` against a baseline, from the cache when this
    /// exact body was judged before against the same baseline and policy (one SHA-256), else
    /// extracted, compared and cached. `baseline_id` identifies the approval (use
    /// [`BaselineRecord::content_sha256`](super::BaselineRecord::content_sha256)).
    pub fn check(
        &self,
        body: &[u8],
        charset: Option<&str>,
        baseline_id: &str,
        baseline: &Features,
        policy: &CheckPolicy,
    ) -> Result<Arc<Verdict>, ExtractError> {
        let context = format!("{}\0{}", policy.digest, charset.unwrap_or(""));
        let key = CacheKey::new(body, baseline_id, &context);
        self.get_or_insert_with(key, || {
            extract(body, charset, policy).map(|current| compare(baseline, &current, policy))
        })
    }

    /// Counters.
    pub fn stats(&self) -> CacheStats {
        let guard = self.inner.lock();
        CacheStats {
            entries: guard.0.young.len() + guard.0.old.len(),
            ..guard.1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(score: u32) -> Verdict {
        Verdict {
            tampered: false,
            score,
            similarity: 1.0,
            indicators: Vec::new(),
        }
    }

    #[test]
    fn keys_depend_on_body_baseline_and_policy() {
        let k = CacheKey::new(b"body", "fp", "pol");
        assert_eq!(k, CacheKey::new(b"body", "fp", "pol"));
        assert_ne!(k, CacheKey::new(b"body2", "fp", "pol"));
        assert_ne!(k, CacheKey::new(b"body", "fp2", "pol"));
        assert_ne!(k, CacheKey::new(b"body", "fp", "pol2"));
    }

    #[test]
    fn bounded_and_keeps_recent_entries() {
        let c = VerdictCache::new(10);
        let keys: Vec<CacheKey> = (0..100u32)
            .map(|i| CacheKey::new(&i.to_le_bytes(), "", ""))
            .collect();
        let hot = keys[0];
        c.insert(hot, Arc::new(verdict(7)));
        for (i, k) in keys.iter().enumerate().skip(1) {
            c.insert(*k, Arc::new(verdict(i as u32)));
            // Keep the hot entry in use.
            assert_eq!(c.get(&hot).map(|v| v.score), Some(7));
            assert!(c.stats().entries <= 10);
        }
        assert!(c.get(&keys[1]).is_none());
        assert_eq!(c.get(&keys[99]).map(|v| v.score), Some(99));
    }

    #[test]
    fn computes_once() {
        let c = VerdictCache::new(4);
        let k = CacheKey::new(b"x", "", "");
        let mut calls = 0;
        for _ in 0..3 {
            let v = c
                .get_or_insert_with(k, || {
                    calls += 1;
                    Ok::<_, ()>(verdict(1))
                })
                .unwrap();
            assert_eq!(v.score, 1);
        }
        assert_eq!(calls, 1);
        assert_eq!(c.stats().hits, 2);
    }
}
