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
    let access_log =
        AccessLog::start(&snap.global.access_log).context("cannot open the access log")?;
    let metrics = Metrics::new().context("cannot create metrics")?;
    let settings = snap.global.server.clone();
    let http_listen = snap.global.http_listen.clone();
    let admin_listen = snap.global.admin_listen;
    if http_listen.is_empty() {
        anyhow::bail!(
            "{}: [listen] http has no address; nothing to serve",
            config_path.display()
        );
    }
    for a in http_listen.iter().chain(admin_listen.iter()) {
        // Fail with a clear message now rather than inside pingora's listener setup.
        std::net::TcpListener::bind(a).with_context(|| format!("cannot listen on {a}"))?;
    }
    let state = Arc::new(AppState::new(
        config_path.to_path_buf(),
        snap,
        health,
        metrics,
        access_log,
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

    let mut proxy = pingora::proxy::http_proxy_service(
        &server.configuration,
        EgretProxy {
            state: state.clone(),
        },
    );
    for a in &http_listen {
        proxy.add_tcp(&a.to_string());
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

    state.ready.store(true, Ordering::Relaxed);
    log::info!(
        "egret {} serving {} sites on {:?}, admin on {:?}",
        env!("CARGO_PKG_VERSION"),
        state.snapshot.load().sites.len(),
        http_listen,
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
