//! Assembling the pingora server: proxy service and listeners, admin service, background
//! services (health checks, reloads), and the shutdown settings.

use crate::access_log::AccessLog;
use crate::admin::AdminApp;
use crate::metrics::Metrics;
use crate::proxy::EgretProxy;
use crate::reload::Reloader;
use crate::state::AppState;
use crate::upstream::checker::HealthChecker;
use crate::upstream::HealthRegistry;
use anyhow::Context;
use pingora::apps::http_app::HttpServer;
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use pingora::services::listening::Service;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Loads the configuration and serves until SIGTERM/SIGINT. Never returns on success.
pub fn run(config_path: &Path) -> anyhow::Result<()> {
    let health = HealthRegistry::default();
    let snap = crate::config::load(config_path, &health, 1)
        .map_err(|e| anyhow::anyhow!("configuration is invalid:\n{e}"))?;
    init_logging(snap.global.log_level);
    // Before any TLS config is built: the process-wide crypto provider (TLS policy).
    crate::tls::install_crypto_provider(snap.global.tls.tls13_only);
    for w in &snap.warnings {
        log::warn!("{w}");
    }
    let access_log =
        AccessLog::start(&snap.global.access_log).context("cannot open the access log")?;
    let audit_log =
        AccessLog::start(&snap.global.audit_log).context("cannot open the WAF audit log")?;
    let metrics = Metrics::new().context("cannot create metrics")?;
    let settings = snap.global.server.clone();
    let http_listen = snap.global.http_listen.clone();
    let https_listen = snap.global.https_listen.clone();
    let admin_listen = snap.global.admin_listen;
    if http_listen.is_empty() && https_listen.is_empty() {
        anyhow::bail!(
            "{}: [listen] has no http or https address; nothing to serve",
            config_path.display()
        );
    }
    for a in http_listen
        .iter()
        .chain(https_listen.iter())
        .chain(admin_listen.iter())
    {
        // Fail with a clear message now rather than inside pingora's listener setup.
        std::net::TcpListener::bind(a).with_context(|| format!("cannot listen on {a}"))?;
    }
    let state = Arc::new(AppState::new(
        config_path.to_path_buf(),
        snap,
        health,
        metrics,
        access_log,
        audit_log,
    ));

    let conf = ServerConf {
        threads: settings.threads,
        work_stealing: settings.work_stealing,
        grace_period_seconds: Some(settings.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(settings.shutdown_timeout.as_secs().max(1)),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let app = crate::proxy::app::EgretHttpApp {
        proxy: Arc::new(pingora::proxy::http_proxy(
            &server.configuration,
            EgretProxy {
                state: state.clone(),
            },
        )),
        state: state.clone(),
    };
    let app = crate::proxy::connections::ConnLimitApp {
        inner: Arc::new(app),
        state: state.clone(),
    };
    let mut proxy = Service::new("egret proxy".to_string(), app);
    for a in &http_listen {
        proxy.add_tcp(&a.to_string());
    }
    for a in &https_listen {
        let mut tls = TlsSettings::with_callbacks(Box::new(crate::tls::SniCapture))
            .map_err(|e| anyhow::anyhow!("cannot set up TLS on {a}: {e}"))?;
        tls.set_cert_resolver(state.tls_resolver.clone());
        tls.enable_h2();
        proxy.add_tls_with_settings(&a.to_string(), None, tls);
    }
    server.add_service(proxy);

    if let Some(a) = admin_listen {
        let mut admin = Service::new(
            "egret admin".to_string(),
            HttpServer::new_app(AdminApp {
                state: state.clone(),
            }),
        );
        admin.add_tcp(&a.to_string());
        server.add_service(admin);
    }
    server.add_service(background_service(
        "health checks",
        HealthChecker {
            state: state.clone(),
        },
    ));
    server.add_service(background_service(
        "reloader",
        Reloader {
            state: state.clone(),
        },
    ));
    server.add_service(background_service(
        "acme",
        crate::tls::acme::AcmeManager {
            state: state.clone(),
        },
    ));
    server.add_service(background_service(
        "deface prober",
        crate::protect::prober::Prober {
            state: state.clone(),
        },
    ));
    server.add_service(background_service(
        "limiter sweep",
        LimiterSweep {
            state: state.clone(),
        },
    ));

    state.ready.store(true, Ordering::Relaxed);
    log::info!(
        "egret {} serving {} sites on http {:?}, https {:?}, admin on {:?}",
        env!("CARGO_PKG_VERSION"),
        state.snapshot.load().sites.len(),
        http_listen,
        https_listen,
        admin_listen
    );
    server.run_forever();
}

fn init_logging(level: log::LevelFilter) {
    let mut b = env_logger::Builder::new();
    b.filter_level(level);
    // pingora logs every idle client and TLS scan at ERROR; keep its noise at warn.
    b.filter_module("pingora_core::protocols", log::LevelFilter::Warn);
    if let Ok(spec) = std::env::var("RUST_LOG") {
        b.parse_filters(&spec);
    }
    let _ = b.try_init();
}

/// Drops idle rate-limit keys and expired bans every few seconds, so memory follows live clients.
struct LimiterSweep {
    state: Arc<AppState>,
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for LimiterSweep {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {
                    let n = self.state.limiter.sweep(std::time::Instant::now());
                    if n > 0 {
                        log::debug!("limiter sweep dropped {n} idle keys");
                    }
                }
            }
        }
    }
}
