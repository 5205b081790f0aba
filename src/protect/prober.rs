//! The active prober: fetches every exact protected path of every site at the configured
//! interval (with jitter and a concurrency limit), so tampering is found even when nobody visits.

use crate::state::AppState;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;

/// The background service.
pub struct Prober {
    pub state: Arc<AppState>,
}

#[async_trait]
impl BackgroundService for Prober {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // A first round soon after start, then at the interval with ±10% jitter.
        let mut wait = Duration::from_secs(2);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            let snap = self.state.snapshot.load_full();
            self.round(&snap).await;
            let base = snap.deface_settings.probe_interval;
            let jitter = base.as_millis() as u64 / 10;
            wait = base - Duration::from_millis(jitter)
                + Duration::from_millis(fastrand::u64(0..=jitter * 2));
        }
    }
}

impl Prober {
    /// Probes every exact protected page once.
    pub async fn round(&self, snap: &Arc<crate::snapshot::Snapshot>) {
        let sem = Arc::new(tokio::sync::Semaphore::new(
            snap.deface_settings.probe_concurrency,
        ));
        let mut tasks = Vec::new();
        for site in &snap.sites {
            for path in super::exact_paths(snap, &site.name) {
                let (state, snap, site, sem) =
                    (self.state.clone(), snap.clone(), site.clone(), sem.clone());
                tasks.push(tokio::spawn(async move {
                    let Ok(_permit) = sem.acquire().await else {
                        return;
                    };
                    let Some(rule) = snap.deface.page(&site.name, &path) else {
                        return;
                    };
                    let host = site.primary_host();
                    match super::fetch_from_origin(
                        &state.pages.fetcher,
                        &site,
                        &path,
                        &host,
                        rule.check.max_body_bytes(),
                    )
                    .await
                    {
                        Ok(f) => {
                            state
                                .pages
                                .sync_shared(&snap, &state.redis_limiter, &site.name, &path)
                                .await;
                            let _ = state.pages.judge(
                                &snap,
                                &state.metrics,
                                &site,
                                &path,
                                rule,
                                f,
                                "probe",
                            );
                        }
                        Err(e) => log::warn!("deface prober: {}{path}: {e}", site.name),
                    }
                }));
            }
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}
