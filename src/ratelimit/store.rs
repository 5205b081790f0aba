//! In-process limiter state: GCRA arrival times and ban records, in bounded sharded maps.
//!
//! [`LimiterState`] lives outside the compiled policy snapshot: a config reload builds new
//! [`Policies`](super::Policies) but keeps the same state, and keys are hashed from the stable
//! policy *name*, so counters survive reloads.
//!
//! # Memory
//!
//! A limiter key is stored as a 64-bit keyed SipHash of (policy name, key kind, key value) mapped
//! to its 64-bit TAT: 16 bytes of payload plus 1 control byte per hash-table bucket. Each of the
//! [`SHARDS`] tables is sized to a power-of-two bucket count `B` and holds at most `7B/16` keys
//! (half the table's 7/8 load factor): at that fill, deletions never make the table grow (it
//! rehashes in place instead), so a shard never exceeds `B` buckets. That is
//! `17 × 16/7 ≈ 38.9` bytes per key at the ceiling: **at most 40 bytes per configured key**.
//! `B` is the largest power of two whose `7B/16` fits `max_keys / SHARDS`, so between half and
//! all of `max_keys` keys are kept and the memory ceiling is at most 40 × `max_keys` bytes.
//!
//! When a shard is full it first drops idle keys (TAT in the past: such a key behaves exactly as
//! a fresh one), and if that frees less than 1/8 of the shard it drops the eighth of keys
//! closest to idle (they lose part of their history, which errs toward allowing; counted in
//! [`StoreStats::evicted_active`]). [`LimiterState::memory_bytes`] is the store's own accounting
//! from the real table capacities; [`LimiterState::ceiling_bytes`] is the bound it cannot
//! exceed. Ban records cost 8 + 24 + 1 bytes per bucket (≈ 75 bytes per configured ban key),
//! bounded the same way by `max_ban_keys`.
//!
//! Measured by `million_keys_stay_under_ceiling` (Linux, debug build): `max_keys = 1_000_000`
//! holds 917,504 keys in 35.7 MB of tables (35.7 bytes per configured key, 38.9 per held key)
//! against a ceiling of 36.2 MB; the process's RSS grew by 37.6 to 91 MB between runs (glibc keeps
//! some of the freed smaller tables left behind by growth), which the test bounds at 3x.
//!
//! Hash collisions between two keys (probability about n²/2⁶⁵, 3·10⁻⁸ for a million keys, and
//! not steerable by clients because the hash key is random per process) make two clients share
//! one limit.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::mem::size_of;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use super::flood::FloodMeter;
use super::gcra::{Gcra, GcraOutcome};

/// Number of shards of each map (a power of two).
pub const SHARDS: usize = 64;

/// Default ceiling on limiter keys.
pub const DEFAULT_MAX_KEYS: usize = 1_000_000;

/// Default ceiling on ban records.
pub const DEFAULT_MAX_BAN_KEYS: usize = 100_000;

/// Upper bound on bytes per limiter key stated in the module docs (checked by tests).
pub const MAX_BYTES_PER_KEY: usize = 40;

/// The keys are already SipHash outputs: the tables use them as they are.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed; fold anything else for completeness.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdentityHasher>>;

/// A hashed limiter key: (policy name, key kind, key value) under the state's random hash key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub u64);

/// Ban bookkeeping for one key.
#[derive(Debug, Clone, Copy)]
struct BanEntry {
    /// End of the current violation-counting window (ns since epoch).
    window_end: u64,
    /// Violations in the current window.
    violations: u32,
    /// Banned until (ns since epoch); 0 when not banned.
    banned_until: u64,
}

impl BanEntry {
    fn expires(&self) -> u64 {
        self.window_end.max(self.banned_until)
    }
}

/// Ban rule parameters as the store needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BanRule {
    /// Violations within `window` that trigger a ban.
    pub after: u32,
    /// Window over which violations are counted.
    pub window: Duration,
    /// How long a ban lasts.
    pub duration: Duration,
}

/// Counters for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Limiter keys currently stored.
    pub keys: usize,
    /// Ban records currently stored.
    pub ban_keys: usize,
    /// Idle keys dropped (harmless).
    pub evicted_idle: u64,
    /// Active keys dropped under memory pressure (they restart fresh).
    pub evicted_active: u64,
}

/// Capacity limits, fixed when the state is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateLimits {
    /// Most limiter keys held at once.
    pub max_keys: usize,
    /// Most ban records held at once.
    pub max_ban_keys: usize,
}

impl Default for StateLimits {
    fn default() -> Self {
        Self {
            max_keys: DEFAULT_MAX_KEYS,
            max_ban_keys: DEFAULT_MAX_BAN_KEYS,
        }
    }
}

/// Shared limiter state: create once, keep in an `Arc`, pass to
/// [`Policies::decide`](super::Policies::decide) on every request.
pub struct LimiterState {
    epoch: Instant,
    hasher: RandomState,
    tats: Box<[Mutex<IdMap<u64>>]>,
    bans: Box<[Mutex<IdMap<BanEntry>>]>,
    per_shard_max: usize,
    buckets: usize,
    ban_per_shard_max: usize,
    ban_buckets: usize,
    evicted_idle: AtomicU64,
    evicted_active: AtomicU64,
    pub(super) flood: RwLock<HashMap<String, std::sync::Arc<FloodMeter>>>,
}

impl std::fmt::Debug for LimiterState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimiterState")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

fn shard_of(key: u64) -> usize {
    // The tables use the low bits (bucket) and the top 7 bits (control byte); pick the shard
    // from bits in between so neither is skewed within a shard.
    ((key >> 40) as usize) & (SHARDS - 1)
}

/// Buckets of a hashbrown table with the given `capacity()` (load factor 7/8, power of two).
fn buckets_of_capacity(capacity: usize) -> usize {
    if capacity == 0 {
        0
    } else if capacity < 8 {
        (capacity + 1).next_power_of_two()
    } else {
        (capacity.saturating_mul(8) / 7).next_power_of_two()
    }
}

/// Per-shard key limit and bucket count for a total of `max_keys`: the largest power of two `B`
/// (at least 16) with `7B/16 <= max_keys / SHARDS`, and `7B/16` keys.
fn shard_limit(max_keys: usize) -> (usize, usize) {
    let per_shard = max_keys / SHARDS;
    let mut buckets = 16usize;
    while buckets
        .checked_mul(2)
        .is_some_and(|b| b / 16 * 7 <= per_shard)
    {
        buckets *= 2;
    }
    (buckets / 16 * 7, buckets)
}

fn table_bytes<V>(buckets: usize) -> usize {
    const GROUP_WIDTH: usize = 16;
    if buckets == 0 {
        return size_of::<IdMap<V>>();
    }
    size_of::<IdMap<V>>() + buckets * (size_of::<(u64, V)>() + 1) + GROUP_WIDTH
}

/// Drops idle entries; if less than 1/8 of `max` was freed, drops the eighth closest to idle.
/// Returns (idle dropped, active dropped).
fn evict<V: Copy>(
    map: &mut IdMap<V>,
    max: usize,
    now: u64,
    expiry: impl Fn(&V) -> u64,
) -> (u64, u64) {
    let before = map.len();
    map.retain(|_, v| expiry(v) > now);
    let idle = (before - map.len()) as u64;
    let want = (max / 8).max(1);
    if before - map.len() >= want {
        return (idle, 0);
    }
    let mut expiries: Vec<u64> = map.values().map(&expiry).collect();
    if expiries.is_empty() {
        return (idle, 0);
    }
    let nth = want.min(expiries.len()) - 1;
    let (_, cutoff, _) = expiries.select_nth_unstable(nth);
    let cutoff = *cutoff;
    let before_active = map.len();
    // Drop everything strictly closer to idle than the cutoff, then entries at the cutoff until
    // `want` are gone (many keys can share one expiry).
    map.retain(|_, v| expiry(v) >= cutoff);
    let mut budget = want.saturating_sub(before_active - map.len());
    map.retain(|_, v| {
        if budget > 0 && expiry(v) == cutoff {
            budget -= 1;
            false
        } else {
            true
        }
    });
    (idle, (before_active - map.len()) as u64)
}

impl LimiterState {
    /// Creates empty state with the given limits (at least one key per shard).
    pub fn new(limits: StateLimits) -> Self {
        let (per_shard_max, buckets) = shard_limit(limits.max_keys);
        let (ban_per_shard_max, ban_buckets) = shard_limit(limits.max_ban_keys);
        Self {
            epoch: Instant::now(),
            hasher: RandomState::new(),
            tats: (0..SHARDS).map(|_| Mutex::new(IdMap::default())).collect(),
            bans: (0..SHARDS).map(|_| Mutex::new(IdMap::default())).collect(),
            per_shard_max,
            buckets,
            ban_per_shard_max,
            ban_buckets,
            evicted_idle: AtomicU64::new(0),
            evicted_active: AtomicU64::new(0),
            flood: RwLock::new(HashMap::new()),
        }
    }

    /// Nanoseconds since the state's epoch (0 for instants before it).
    pub fn nanos(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    fn instant(&self, nanos: u64) -> Instant {
        // Config caps ban lengths far below `Instant`'s range; stay total regardless.
        self.epoch
            .checked_add(Duration::from_nanos(nanos))
            .unwrap_or(self.epoch)
    }

    /// Hashes a key from the policy name, the key-kind tag and the value parts.
    pub fn key(&self, policy: &str, kind_tag: u8, parts: &[&[u8]]) -> KeyHash {
        let mut h = self.hasher.build_hasher();
        h.write_usize(policy.len());
        h.write(policy.as_bytes());
        h.write_u8(kind_tag);
        for part in parts {
            h.write_usize(part.len());
            h.write(part);
        }
        KeyHash(h.finish())
    }

    /// Runs GCRA for `key` at `now`, storing the new TAT when allowed.
    pub fn check_rate(&self, key: KeyHash, gcra: &Gcra, now: Instant) -> GcraOutcome {
        let now_ns = self.nanos(now);
        let mut map = self.tats[shard_of(key.0)].lock();
        let tat = map.get(&key.0).copied().unwrap_or(0);
        let outcome = gcra.check(tat, now_ns);
        if let GcraOutcome::Allow { new_tat } = outcome {
            if map.len() >= self.per_shard_max && !map.contains_key(&key.0) {
                let (idle, active) = evict(&mut map, self.per_shard_max, now_ns, |t| *t);
                self.count_evictions(idle, active);
            }
            map.insert(key.0, new_tat);
        }
        outcome
    }

    /// When `key` is banned at `now`, the instant the ban ends.
    pub fn banned_until(&self, key: KeyHash, now: Instant) -> Option<Instant> {
        let now_ns = self.nanos(now);
        let map = self.bans[shard_of(key.0)].lock();
        match map.get(&key.0) {
            Some(e) if e.banned_until > now_ns => Some(self.instant(e.banned_until)),
            _ => None,
        }
    }

    /// Records a rate violation by `key`; returns the ban end when this violation triggers a
    /// ban (the `rule.after`-th violation within `rule.window`).
    pub fn record_violation(&self, key: KeyHash, rule: &BanRule, now: Instant) -> Option<Instant> {
        let now_ns = self.nanos(now);
        let window_ns = u64::try_from(rule.window.as_nanos()).unwrap_or(u64::MAX);
        let ban_ns = u64::try_from(rule.duration.as_nanos()).unwrap_or(u64::MAX);
        let mut map = self.bans[shard_of(key.0)].lock();
        if map.len() >= self.ban_per_shard_max && !map.contains_key(&key.0) {
            let (idle, active) = evict(&mut map, self.ban_per_shard_max, now_ns, BanEntry::expires);
            self.count_evictions(idle, active);
        }
        let entry = map.entry(key.0).or_insert(BanEntry {
            window_end: 0,
            violations: 0,
            banned_until: 0,
        });
        if entry.window_end <= now_ns {
            entry.window_end = now_ns.saturating_add(window_ns);
            entry.violations = 0;
        }
        entry.violations = entry.violations.saturating_add(1);
        if entry.violations >= rule.after.max(1) {
            entry.banned_until = now_ns.saturating_add(ban_ns);
            entry.violations = 0;
            entry.window_end = now_ns;
            return Some(self.instant(entry.banned_until));
        }
        None
    }

    /// Lifts a ban early (ops action).
    pub fn unban(&self, key: KeyHash) -> bool {
        self.bans[shard_of(key.0)].lock().remove(&key.0).is_some()
    }

    /// Drops all idle keys and expired ban records; for a periodic janitor. Returns how many.
    pub fn sweep(&self, now: Instant) -> usize {
        let now_ns = self.nanos(now);
        let mut dropped = 0;
        for shard in self.tats.iter() {
            let mut map = shard.lock();
            let before = map.len();
            map.retain(|_, t| *t > now_ns);
            dropped += before - map.len();
        }
        for shard in self.bans.iter() {
            let mut map = shard.lock();
            let before = map.len();
            map.retain(|_, e| e.expires() > now_ns);
            dropped += before - map.len();
        }
        self.evicted_idle
            .fetch_add(dropped as u64, Ordering::Relaxed);
        dropped
    }

    fn count_evictions(&self, idle: u64, active: u64) {
        self.evicted_idle.fetch_add(idle, Ordering::Relaxed);
        self.evicted_active.fetch_add(active, Ordering::Relaxed);
    }

    /// Current counters.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            keys: self.tats.iter().map(|s| s.lock().len()).sum(),
            ban_keys: self.bans.iter().map(|s| s.lock().len()).sum(),
            evicted_idle: self.evicted_idle.load(Ordering::Relaxed),
            evicted_active: self.evicted_active.load(Ordering::Relaxed),
        }
    }

    /// Bytes used by the limiter and ban tables, from their real capacities.
    pub fn memory_bytes(&self) -> usize {
        let tats: usize = self
            .tats
            .iter()
            .map(|s| table_bytes::<u64>(buckets_of_capacity(s.lock().capacity())))
            .sum();
        let bans: usize = self
            .bans
            .iter()
            .map(|s| table_bytes::<BanEntry>(buckets_of_capacity(s.lock().capacity())))
            .sum();
        tats + bans
    }

    /// The most [`memory_bytes`](Self::memory_bytes) can reach with these limits.
    pub fn ceiling_bytes(&self) -> usize {
        SHARDS * (table_bytes::<u64>(self.buckets) + table_bytes::<BanEntry>(self.ban_buckets))
    }

    /// Most limiter keys held at once (`max_keys` rounded down per shard; see module docs).
    pub fn key_capacity(&self) -> usize {
        SHARDS * self.per_shard_max
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::gcra::Rate;

    fn gcra(rate: &str, burst: u32) -> Gcra {
        Gcra::new(Rate::parse(rate).unwrap(), burst).unwrap()
    }

    #[test]
    fn keys_are_distinct_by_policy_kind_and_value() {
        let s = LimiterState::new(StateLimits::default());
        let a = s.key("p", 1, &[b"1.2.3.4"]);
        assert_eq!(a, s.key("p", 1, &[b"1.2.3.4"]));
        assert_ne!(a, s.key("q", 1, &[b"1.2.3.4"]));
        assert_ne!(a, s.key("p", 2, &[b"1.2.3.4"]));
        assert_ne!(s.key("p", 1, &[b"ab", b"c"]), s.key("p", 1, &[b"a", b"bc"]));
    }

    #[test]
    fn limits_per_key() {
        let s = LimiterState::new(StateLimits::default());
        let g = gcra("1/s", 2);
        let t = Instant::now();
        let k1 = s.key("p", 0, &[b"a"]);
        let k2 = s.key("p", 0, &[b"b"]);
        assert!(matches!(s.check_rate(k1, &g, t), GcraOutcome::Allow { .. }));
        assert!(matches!(s.check_rate(k1, &g, t), GcraOutcome::Allow { .. }));
        assert_eq!(
            s.check_rate(k1, &g, t),
            GcraOutcome::Limit {
                retry_after: Duration::from_secs(1)
            }
        );
        assert!(matches!(s.check_rate(k2, &g, t), GcraOutcome::Allow { .. }));
        assert!(matches!(
            s.check_rate(k1, &g, t + Duration::from_secs(1)),
            GcraOutcome::Allow { .. }
        ));
    }

    #[test]
    fn ban_after_violations_then_unban_on_expiry() {
        let s = LimiterState::new(StateLimits::default());
        let rule = BanRule {
            after: 3,
            window: Duration::from_secs(10),
            duration: Duration::from_secs(60),
        };
        let k = s.key("p", 0, &[b"x"]);
        let t = Instant::now();
        assert_eq!(s.record_violation(k, &rule, t), None);
        assert_eq!(
            s.record_violation(k, &rule, t + Duration::from_secs(1)),
            None
        );
        let until = s.record_violation(k, &rule, t + Duration::from_secs(2));
        assert_eq!(until, Some(t + Duration::from_secs(62)));
        assert_eq!(s.banned_until(k, t + Duration::from_secs(61)), until);
        assert_eq!(s.banned_until(k, t + Duration::from_secs(62)), None);
        // Violations spread wider than the window never ban.
        let k2 = s.key("p", 0, &[b"y"]);
        for i in 0..10 {
            assert_eq!(
                s.record_violation(k2, &rule, t + Duration::from_secs(11 * i)),
                None
            );
        }
        assert!(s.unban(k2));
    }

    #[test]
    fn full_shards_drop_idle_keys_first() {
        let s = LimiterState::new(StateLimits {
            max_keys: SHARDS * 16,
            max_ban_keys: SHARDS,
        });
        let g = gcra("1/s", 1);
        let t = Instant::now();
        for i in 0u32..(SHARDS as u32 * 64) {
            let _ = s.check_rate(s.key("p", 0, &[&i.to_le_bytes()]), &g, t);
        }
        assert!(s.stats().keys <= s.key_capacity());
        assert_eq!(s.key_capacity(), SHARDS * 14);
        assert!(s.stats().evicted_active > 0);
        // Later, every old key is idle: inserting new keys drops them, not active ones.
        let later = t + Duration::from_secs(5);
        let before = s.stats().evicted_active;
        for i in 0u32..(SHARDS as u32 * 2) {
            let _ = s.check_rate(s.key("q", 0, &[&i.to_le_bytes()]), &g, later);
        }
        assert_eq!(s.stats().evicted_active, before);
        let remaining = s.stats().keys;
        assert_eq!(s.sweep(later + Duration::from_secs(5)), remaining);
    }

    /// Resident set size from `/proc/self/status` (Linux only).
    fn rss_bytes() -> Option<usize> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// One million distinct keys: the store's own accounting stays under the stated ceiling of
    /// 40 bytes per configured key (plus ban tables). About 2 s in a debug build.
    #[test]
    fn million_keys_stay_under_ceiling() {
        let _alone = crate::memory_heavy_test();
        const N: u32 = 1_000_000;
        let g = gcra("1/m", 1);
        let t = Instant::now();
        for max_keys in [N as usize, 50_000] {
            let rss_before = rss_bytes();
            let s = LimiterState::new(StateLimits {
                max_keys,
                max_ban_keys: 10_000,
            });
            for i in 0..N {
                let _ = s.check_rate(s.key("per-ip", 0, &[&i.to_be_bytes()]), &g, t);
            }
            let rss_growth = rss_bytes()
                .zip(rss_before)
                .map(|(a, b)| a.saturating_sub(b));
            let stats = s.stats();
            assert!(stats.keys <= s.key_capacity(), "{max_keys}: {stats:?}");
            assert!(s.key_capacity() <= max_keys && s.key_capacity() >= max_keys / 2);
            // All keys are active (TAT a minute ahead): the store is full, not emptied.
            assert!(
                stats.keys >= s.key_capacity() * 7 / 8,
                "{max_keys}: {stats:?}"
            );
            let used = s.memory_bytes();
            let ceiling = s.ceiling_bytes();
            assert!(
                used <= ceiling,
                "{max_keys}: used {used} > ceiling {ceiling}"
            );
            // Cross-check with the process's resident memory (Linux). The tables grow by
            // doubling and the allocator may keep the freed smaller generations (about as much
            // again as the final tables), and other tests run in parallel: allow 3x plus slack.
            if let Some(growth) = rss_growth {
                eprintln!("max_keys {max_keys}: accounted {used} B, ceiling {ceiling} B, RSS growth {growth} B");
                assert!(
                    growth <= ceiling * 3 + 16 * 1024 * 1024,
                    "RSS grew {growth} B"
                );
            }
            let tables = SHARDS * 2 * (size_of::<IdMap<u64>>() + 16);
            assert!(
                ceiling <= max_keys * MAX_BYTES_PER_KEY + 10_000 * 80 + tables,
                "{max_keys}: ceiling {ceiling}"
            );
        }
    }
}
