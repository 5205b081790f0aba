//! Reload triggers: SIGHUP, changes under the config directory, the rulesets, certificates and
//! CRS directories (debounced), and SIGUSR1 to reopen the access log. A background service;
//! reloads run on a blocking thread.

use crate::state::AppState;
use async_trait::async_trait;
use notify::{RecursiveMode, Watcher};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// The background service.
pub struct Reloader {
    pub state: Arc<AppState>,
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let (Ok(mut hup), Ok(mut usr1)) = (
            signal(SignalKind::hangup()),
            signal(SignalKind::user_defined1()),
        ) else {
            log::error!("cannot install SIGHUP/SIGUSR1 handlers; reload by signal is off");
            return;
        };
        let snap = self.state.snapshot.load_full();
        let (tx, mut rx) = mpsc::channel::<()>(16);
        // Keep the watcher alive for the life of this service.
        let _watcher = if snap.global.reload.watch {
            watch_config(&self.state, tx)
        } else {
            None
        };
        let debounce = snap.global.reload.debounce;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = hup.recv() => {
                    log::info!("SIGHUP: reloading configuration");
                    self.reload().await;
                }
                _ = usr1.recv() => {
                    log::info!("SIGUSR1: reopening the access log");
                    self.state.access_log.reopen();
                }
                Some(()) = rx.recv() => {
                    // Debounce: wait for the burst of events from one edit to settle.
                    tokio::time::sleep(debounce).await;
                    while rx.try_recv().is_ok() {}
                    log::info!("configuration files changed: reloading");
                    self.reload().await;
                }
            }
        }
    }
}

impl Reloader {
    async fn reload(&self) {
        let state = self.state.clone();
        let _ = tokio::task::spawn_blocking(move || state.reload()).await;
    }
}

/// Watches the global file's directory and the sites directory.
fn watch_config(state: &AppState, tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    let snap = state.snapshot.load_full();
    let handler = move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            let relevant = ev.kind.is_modify() || ev.kind.is_create() || ev.kind.is_remove();
            let toml = ev.paths.iter().any(|p| {
                p.extension().is_some_and(|e| {
                    ["toml", "html", "pem", "crt", "key", "data", "txt", "conf"]
                        .iter()
                        .any(|x| e == *x)
                })
            });
            if relevant && toml {
                let _ = tx.try_send(());
            }
        }
    };
    let mut w = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            log::warn!("cannot watch config files ({e}); reload with SIGHUP");
            return None;
        }
    };
    let dir = state
        .config_path
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_else(|| ".".into());
    if let Err(e) = w.watch(&dir, RecursiveMode::Recursive) {
        log::warn!("cannot watch {} ({e}); reload with SIGHUP", dir.display());
        return None;
    }
    if snap.rulesets_dir.is_dir() && !snap.rulesets_dir.starts_with(&dir) {
        if let Err(e) = w.watch(&snap.rulesets_dir, RecursiveMode::Recursive) {
            log::warn!("cannot watch {} ({e})", snap.rulesets_dir.display());
        }
    }
    for crs in &snap.crs_dirs {
        if crs.is_dir() && !crs.starts_with(&dir) {
            if let Err(e) = w.watch(crs, RecursiveMode::Recursive) {
                log::warn!("cannot watch {} ({e})", crs.display());
            }
        }
    }
    if snap.global.certs_dir.is_dir() && !snap.global.certs_dir.starts_with(&dir) {
        if let Err(e) = w.watch(&snap.global.certs_dir, RecursiveMode::Recursive) {
            log::warn!("cannot watch {} ({e})", snap.global.certs_dir.display());
        }
    }
    if !snap.global.sites_dir.starts_with(&dir) {
        if let Err(e) = w.watch(&snap.global.sites_dir, RecursiveMode::Recursive) {
            log::warn!("cannot watch {} ({e})", snap.global.sites_dir.display());
        }
    }
    Some(w)
}
