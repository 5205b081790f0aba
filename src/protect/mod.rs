//! Page protection at run time (网页防篡改): checks protected pages against their approved
//! baselines when they are requested (inline) and in the background (prober), serves the
//! approved copy or a maintenance page, and records tampering events.
//!
//! The verdict logic is in [`crate::deface`] (pure); this module owns the I/O around it:
//! fetching pages from origins, the baseline store, events, the webhook, and the per-page status.
//!
//! Protected pages are fetched from the origin by Egret itself rather than streamed through
//! pingora, because the decision (pass, approved copy with a marker header, or 503) must be made
//! before the response header is sent. Pages are small and verdicts are cached by content hash,
//! so an unchanged page costs one fetch and one hash.

pub mod fetch;
pub mod prober;
pub mod shared;

use crate::deface::{
    charset_of, decode_body, is_html, Approval, BaselineRecord, BaselineStore, Features, Mode,
    PageAction, PageRule, TamperEvent, Verdict, VerdictCache,
};
use crate::metrics::Metrics;
use crate::snapshot::{Site, Snapshot};
use fetch::{Fetched, Fetcher};
use serde::Serialize;
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Marker header on every response of a protected page.
pub const MARKER: &str = "x-egret-deface";

/// How long a loaded baseline is trusted before the record file is read again (another node
/// sharing the state directory may have approved a new version).
const BASELINE_TTL: Duration = Duration::from_secs(2);

/// The last verdict of a protected page, for `status` and the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct PageStatus {
    pub site: String,
    pub path: String,
    pub mode: &'static str,
    /// clean, tampered, no_baseline, unchecked, error
    pub state: &'static str,
    pub checked_at: String,
    pub source: &'static str,
    pub score: u32,
    pub indicators: Vec<String>,
}

/// A baseline as loaded (or found missing) at an instant.
type CachedBaseline = (Instant, Option<Arc<LoadedBaseline>>);

struct LoadedBaseline {
    record: BaselineRecord,
    features: Features,
}

/// What to send for a protected page.
pub enum Served {
    /// The origin's page (checked clean, or monitor mode, or not checkable): status, type, body.
    Page {
        status: u16,
        content_type: String,
        content_encoding: Option<String>,
        body: bytes::Bytes,
        relay: Vec<(&'static str, String)>,
        marker: &'static str,
    },
    /// The approved copy, gzip-compressed as stored.
    Approved { gzip: Vec<u8> },
    /// 503 maintenance page.
    Maintenance,
}

/// Shared page-protection state (outlives reloads).
pub struct PageGuard {
    pub fetcher: Fetcher,
    pub cache: VerdictCache,
    baselines: Mutex<HashMap<String, CachedBaseline>>,
    status: Mutex<HashMap<String, PageStatus>>,
    events: Mutex<()>,
    last_pull: Mutex<HashMap<String, Instant>>,
}

fn key(site: &str, path: &str) -> String {
    format!("{site}\0{path}")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Monitor => "monitor",
        Mode::Protect => "protect",
        Mode::Block => "block",
    }
}

impl PageGuard {
    pub fn new(cache_entries: usize) -> PageGuard {
        PageGuard {
            fetcher: Fetcher::default(),
            cache: VerdictCache::new(cache_entries.max(1)),
            baselines: Mutex::new(HashMap::new()),
            status: Mutex::new(HashMap::new()),
            events: Mutex::new(()),
            last_pull: Mutex::new(HashMap::new()),
        }
    }

    /// The baseline store of a snapshot, if configured.
    pub fn store(snap: &Snapshot) -> Option<BaselineStore> {
        snap.deface_settings
            .state_dir
            .as_ref()
            .and_then(|d| BaselineStore::open(d).ok())
    }

    fn baseline(
        &self,
        snap: &Snapshot,
        site: &str,
        path: &str,
        rule: &PageRule,
    ) -> Option<Arc<LoadedBaseline>> {
        let k = key(site, path);
        if let Some((at, b)) = lock(&self.baselines).get(&k) {
            if at.elapsed() < BASELINE_TTL {
                return b.clone();
            }
        }
        let loaded = Self::store(snap).and_then(|store| {
            match store.load(site, path, rule.check.max_body_bytes()) {
                Ok(Some(b)) => match b.features_for(&rule.check) {
                    Ok(f) => Some(Arc::new(LoadedBaseline {
                        features: f.into_owned(),
                        record: b.record,
                    })),
                    Err(e) => {
                        log::warn!("deface: baseline of {site}{path} cannot be read: {e}");
                        None
                    }
                },
                Ok(None) => None,
                Err(e) => {
                    log::warn!("deface: baseline of {site}{path}: {e}");
                    None
                }
            }
        });
        lock(&self.baselines).insert(k, (Instant::now(), loaded.clone()));
        loaded
    }

    /// With Redis configured, pulls other nodes' approval of this page into the local store (at
    /// most every 2 s per page), so that `judge` sees it.
    pub async fn sync_shared(
        &self,
        snap: &Snapshot,
        redis: &crate::ratelimit::shared::RedisLimiter,
        site: &str,
        path: &str,
    ) {
        let Some(settings) = snap.ratelimit.redis() else {
            return;
        };
        let k = key(site, path);
        {
            let mut last = lock(&self.last_pull);
            if last.get(&k).is_some_and(|t| t.elapsed() < BASELINE_TTL) {
                return;
            }
            last.insert(k, Instant::now());
        }
        let Some(store) = Self::store(snap) else {
            return;
        };
        match shared::pull(settings, redis, &store, site, path).await {
            Ok(true) => {
                log::info!("deface: baseline of {site}{path} updated from another node");
                self.invalidate(site, path);
            }
            Ok(false) => {}
            Err(e) => log::warn!("deface: cannot read the shared baseline of {site}{path}: {e}"),
        }
    }

    /// Forgets a cached baseline (after an approval).
    pub fn invalidate(&self, site: &str, path: &str) {
        lock(&self.baselines).remove(&key(site, path));
    }

    /// Judges a fetched page and records the outcome; returns what to serve.
    #[allow(clippy::too_many_arguments)]
    pub fn judge(
        &self,
        snap: &Snapshot,
        metrics: &Metrics,
        site: &Site,
        path: &str,
        rule: &PageRule,
        fetched: Fetched,
        source: &'static str,
    ) -> Served {
        let passthrough = |f: Fetched, marker: &'static str| Served::Page {
            status: f.status,
            content_type: f.content_type,
            content_encoding: f.content_encoding,
            body: f.body,
            relay: f.relay_headers,
            marker,
        };
        if fetched.status != 200 || !is_html(&fetched.content_type) {
            return passthrough(fetched, "unchecked");
        }
        let max = rule.check.max_body_bytes();
        let decoded = match decode_body(fetched.content_encoding.as_deref(), &fetched.body, max) {
            Ok(b) => bytes::Bytes::from(b.into_owned()),
            Err(e) => {
                log::warn!("deface: {}{path}: cannot decode the page: {e}", site.name);
                self.set_status(metrics, site, path, rule, "unchecked", source, None);
                return passthrough(fetched, "unchecked");
            }
        };
        let Some(baseline) = self.baseline(snap, &site.name, path, rule) else {
            self.set_status(metrics, site, path, rule, "no_baseline", source, None);
            metrics
                .deface_checks
                .with_label_values(&[&site.name, "no_baseline"])
                .inc();
            return Served::Page {
                status: 200,
                content_type: fetched.content_type,
                content_encoding: None,
                body: decoded,
                relay: fetched.relay_headers,
                marker: "no-baseline",
            };
        };
        let charset = charset_of(&fetched.content_type);
        let verdict = match self.cache.check(
            &decoded,
            charset,
            &baseline.record.content_sha256,
            &baseline.features,
            &rule.check,
        ) {
            Ok(v) => v,
            Err(e) => {
                log::warn!("deface: {}{path}: cannot parse the page: {e}", site.name);
                self.set_status(metrics, site, path, rule, "unchecked", source, None);
                return passthrough(fetched, "unchecked");
            }
        };
        let action = PageAction::decide(rule.mode, &verdict);
        if action.is_tampered() {
            metrics
                .deface_checks
                .with_label_values(&[&site.name, "tampered"])
                .inc();
            let first = self.set_status(
                metrics,
                site,
                path,
                rule,
                "tampered",
                source,
                Some(&verdict),
            );
            if first {
                self.record_event(
                    snap,
                    site,
                    path,
                    rule,
                    &verdict,
                    &baseline.record.content_sha256,
                    &decoded,
                );
            }
        } else {
            metrics
                .deface_checks
                .with_label_values(&[&site.name, "clean"])
                .inc();
            self.set_status(metrics, site, path, rule, "clean", source, Some(&verdict));
        }
        match action {
            PageAction::Pass => Served::Page {
                status: 200,
                content_type: fetched.content_type,
                content_encoding: None,
                body: decoded,
                relay: fetched.relay_headers,
                marker: "checked",
            },
            PageAction::Alert => Served::Page {
                status: 200,
                content_type: fetched.content_type,
                content_encoding: None,
                body: decoded,
                relay: fetched.relay_headers,
                marker: "tampered-monitored",
            },
            PageAction::ServeApproved => match Self::store(snap)
                .and_then(|s| s.compressed_copy(&site.name, path).ok().flatten())
            {
                Some(gzip) => Served::Approved { gzip },
                None => Served::Maintenance,
            },
            PageAction::Maintenance => Served::Maintenance,
        }
    }

    /// Updates the page's status; returns true when the page just became tampered (or its
    /// evidence changed), so that one event is written per change rather than per request.
    #[allow(clippy::too_many_arguments)]
    fn set_status(
        &self,
        metrics: &Metrics,
        site: &Site,
        path: &str,
        rule: &PageRule,
        state: &'static str,
        source: &'static str,
        verdict: Option<&Verdict>,
    ) -> bool {
        let indicators: Vec<String> = verdict
            .map(|v| {
                v.indicators
                    .iter()
                    .map(|i| format!("{:?}: {}", i.kind, i.evidence))
                    .collect()
            })
            .unwrap_or_default();
        let new = PageStatus {
            site: site.name.clone(),
            path: path.to_string(),
            mode: mode_name(rule.mode),
            state,
            checked_at: crate::access_log::rfc3339_now(),
            source,
            score: verdict.map(|v| v.score).unwrap_or(0),
            indicators,
        };
        let mut map = lock(&self.status);
        let prev = map.insert(key(&site.name, path), new.clone());
        let changed = match &prev {
            Some(p) => p.state != new.state || p.indicators != new.indicators,
            None => true,
        };
        let tampered = map
            .values()
            .filter(|s| s.site == site.name && s.state == "tampered")
            .count();
        metrics
            .deface_tampered
            .with_label_values(&[&site.name])
            .set(tampered as i64);
        state == "tampered" && changed
    }

    /// Every page's last status, sorted.
    pub fn statuses(&self) -> Vec<PageStatus> {
        let mut v: Vec<PageStatus> = lock(&self.status).values().cloned().collect();
        v.sort_by(|a, b| (&a.site, &a.path).cmp(&(&b.site, &b.path)));
        v
    }

    #[allow(clippy::too_many_arguments)]
    fn record_event(
        &self,
        snap: &Snapshot,
        site: &Site,
        path: &str,
        rule: &PageRule,
        verdict: &Verdict,
        baseline_sha: &str,
        body: &[u8],
    ) {
        let event = TamperEvent::new(
            &site.name,
            path,
            rule.mode,
            verdict,
            baseline_sha,
            body,
            SystemTime::now(),
        );
        let line = event.to_json_line();
        log::warn!("deface: page tampered: {line}");
        if let Some(p) = &snap.deface_settings.event_log {
            let _g = lock(&self.events);
            let res = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
            if let Err(e) = res {
                log::error!("deface: cannot write event log {}: {e}", p.display());
            }
        }
        if let Some(url) = snap.deface_settings.webhook_url.clone() {
            tokio::spawn(post_webhook(url, line));
        }
    }
}

/// POSTs an event with a bounded timeout, retrying with backoff; never blocks a request.
async fn post_webhook(url: String, body: String) {
    let Ok(client) = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
    else {
        return;
    };
    let mut delay = Duration::from_millis(500);
    for attempt in 1..=4 {
        match client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => log::warn!(
                "deface webhook {url}: attempt {attempt}: status {}",
                r.status()
            ),
            Err(e) => log::warn!("deface webhook {url}: attempt {attempt}: {e}"),
        }
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
    log::error!("deface webhook {url}: giving up after 4 attempts");
}

/// Fetches `path` of `site` from its origin, trying each backend of the routed pool in turn.
pub async fn fetch_from_origin(
    fetcher: &Fetcher,
    site: &Site,
    path_and_query: &str,
    host: &str,
    limit: usize,
) -> Result<Fetched, String> {
    let path = path_and_query.split('?').next().unwrap_or("/");
    let pool_idx = site.pool_for_path(path);
    let pool = site.pools.get(pool_idx).ok_or("no pool")?;
    let pool_key = format!("{}/{}", site.name, pool.name);
    let mut last = String::from("no available backend");
    let mut tried = Vec::new();
    while let Some(idx) = pool.select(0, &tried) {
        tried.push(idx);
        match fetcher
            .fetch(
                &pool_key,
                pool,
                idx,
                host,
                path_and_query,
                &[],
                site.timeouts.total,
                limit,
            )
            .await
        {
            Ok(f) => return Ok(f),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Fetches the origin's current page and stores it as the approved baseline.
pub async fn approve(
    fetcher: &Fetcher,
    redis: &crate::ratelimit::shared::RedisLimiter,
    snap: &Snapshot,
    site_name: &str,
    path: &str,
) -> Result<BaselineRecord, String> {
    let site = snap
        .sites
        .iter()
        .find(|s| s.name == site_name)
        .ok_or_else(|| format!("no site named {site_name:?}"))?;
    let rule = snap
        .deface
        .page(site_name, path)
        .ok_or_else(|| format!("{path} is not a protected page of site {site_name}"))?;
    let store_dir = snap
        .deface_settings
        .state_dir
        .as_ref()
        .ok_or("no [deface] state_dir configured")?;
    let store = BaselineStore::open(store_dir).map_err(|e| e.to_string())?;
    let host = site.primary_host();
    let max = rule.check.max_body_bytes();
    let f = fetch_from_origin(fetcher, site, path, &host, max).await?;
    if f.status != 200 || !is_html(&f.content_type) {
        return Err(format!(
            "origin answered {} {} for {path}: not an HTML page to approve",
            f.status, f.content_type
        ));
    }
    let html =
        decode_body(f.content_encoding.as_deref(), &f.body, max).map_err(|e| e.to_string())?;
    let approval = Approval {
        site: site_name,
        path,
        html: &html,
        charset: charset_of(&f.content_type),
    };
    let record = store
        .approve(&approval, &rule.check, SystemTime::now())
        .map_err(|e| e.to_string())?;
    if let Some(settings) = snap.ratelimit.redis() {
        shared::publish(settings, redis, &record, &html)
            .await
            .map_err(|e| format!("approved here, but not shared through Redis: {e}"))?;
    }
    Ok(record)
}

/// Exact (non-glob) protected paths of a site.
pub fn exact_paths(snap: &Snapshot, site: &str) -> Vec<String> {
    snap.deface
        .site(site)
        .map(|p| {
            p.pages()
                .iter()
                .map(|r| r.pattern.clone())
                .filter(|p| !p.contains(['*', '?', '[', '{']))
                .collect()
        })
        .unwrap_or_default()
}
