//! The runtime configuration: one immutable [`Snapshot`] of everything a request needs.
//!
//! A snapshot is built by [`crate::config::load`] and swapped in whole by the reloader. A request
//! loads it once (`ArcSwap::load_full`) at its start and uses only that one, so a reload never
//! changes the rules under a request in flight. State that must outlive reloads (backend health,
//! later rate-limit counters and defacement baselines) lives outside, keyed by stable names.

use crate::error_pages::ErrorPages;
use crate::routing::{HostIndex, Route};
use crate::upstream::Pool;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Everything loaded from the config files, validated and compiled.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases by one on every successful load in this process.
    pub generation: u64,
    pub loaded_at: SystemTime,
    pub config_path: PathBuf,
    pub global: Global,
    pub sites: Vec<Arc<Site>>,
    pub hosts: HostIndex,
    /// Certificates by SNI, handed to the listener's resolver on every swap.
    pub certs: Arc<crate::tls::CertStore>,
    pub cert_infos: Vec<crate::tls::CertInfo>,
    /// Problems that do not stop a load (certificates expiring soon).
    pub warnings: Vec<String>,
    /// Rate-limit, allow/deny and flood policies of every site.
    pub ratelimit: Arc<crate::ratelimit::Policies>,
    pub acme: Option<AcmeSettings>,
    /// The compiled WAF rulesets.
    pub waf: Arc<crate::waf::Engine>,
    pub rulesets_dir: PathBuf,
    /// Directories of the CRS rule and exclusion files sites use (watched for reloads).
    pub crs_dirs: Vec<PathBuf>,
    /// Protected pages of every site.
    pub deface: Arc<crate::deface::DefacePolicy>,
    pub deface_settings: DefaceSettings,
}

/// ACME settings (automatic certificates).
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    pub directory: String,
    pub contact: Vec<String>,
    pub state_dir: PathBuf,
    pub ca_file: Option<PathBuf>,
    pub renew_before: Duration,
    pub check_interval: Duration,
    /// Sites that use ACME, with the exact host names to put in their certificate.
    pub sites: Vec<(String, Vec<String>)>,
}

impl AcmeSettings {
    pub fn cert_path(&self, site: &str) -> PathBuf {
        self.state_dir.join("certs").join(format!("{site}.crt"))
    }
    pub fn key_path(&self, site: &str) -> PathBuf {
        self.state_dir.join("certs").join(format!("{site}.key"))
    }
}

/// Where defacement state and events go.
#[derive(Debug, Clone)]
pub struct DefaceSettings {
    /// Baseline store; `None` when no site protects a page and no state_dir is set.
    pub state_dir: Option<PathBuf>,
    pub event_log: Option<PathBuf>,
    pub webhook_url: Option<String>,
    pub probe_interval: Duration,
    pub probe_concurrency: usize,
}

impl Snapshot {
    /// The site serving a normalised host name.
    pub fn site_for_host(&self, host: &str) -> Option<&Arc<Site>> {
        self.hosts.lookup(host).and_then(|i| self.sites.get(i))
    }

    /// The engine a site's WAF policy runs on.
    pub fn waf_engine<'a>(&'a self, site: &'a Site) -> &'a Arc<crate::waf::Engine> {
        site.waf_engine.as_ref().unwrap_or(&self.waf)
    }

    /// Whether a peer address is a trusted proxy (may set X-Forwarded-For and X-Request-Id).
    pub fn is_trusted_proxy(&self, ip: &IpAddr) -> bool {
        self.global.trusted_proxies.iter().any(|n| n.contains(ip))
    }
}

/// Settings from the global file.
#[derive(Debug)]
pub struct Global {
    pub http_listen: Vec<SocketAddr>,
    pub https_listen: Vec<SocketAddr>,
    pub tls: GlobalTls,
    pub admin_listen: Option<SocketAddr>,
    pub admin: AdminSettings,
    pub access_log: AccessLogTarget,
    pub audit_log: AccessLogTarget,
    pub log_level: log::LevelFilter,
    pub trusted_proxies: Vec<IpNet>,
    pub server: ServerSettings,
    pub unknown_host: UnknownHost,
    pub error_pages: ErrorPages,
    pub reload: ReloadSettings,
    pub sites_dir: PathBuf,
    pub certs_dir: PathBuf,
    pub client_header_timeout: Duration,
    pub client_header_deadline: Duration,
    pub connections: ConnectionLimits,
}

/// Per-client-IP connection limits (0 = no limit).
#[derive(Debug, Clone, Default)]
pub struct ConnectionLimits {
    pub max_per_ip: u32,
    pub new_per_second_per_ip: u32,
    pub exempt: Vec<IpNet>,
}

/// TLS policy; needs a restart to change (process-wide rustls provider, listener settings).
#[derive(Debug, Clone, Default)]
pub struct GlobalTls {
    pub tls13_only: bool,
    pub refuse_unknown_sni: bool,
}

/// A site's HTTPS policy.
#[derive(Debug, Clone)]
pub struct SiteTls {
    pub redirect_http: bool,
    pub redirect_exempt: Vec<String>,
    /// The Strict-Transport-Security value, when HSTS is on.
    pub hsts: Option<String>,
}

/// Admin API access.
#[derive(Clone, Default)]
pub struct AdminSettings {
    /// The bearer token; `None` leaves the API open (allowed only on loopback).
    pub token: Option<Arc<str>>,
    pub metrics_public: bool,
}

impl std::fmt::Debug for AdminSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSettings")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("metrics_public", &self.metrics_public)
            .finish()
    }
}

/// Where access log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Off,
    Stdout,
    File(PathBuf),
}

/// Process settings; changing them needs a restart (pingora cannot rebind listeners live).
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub threads: usize,
    pub grace_period: Duration,
    pub shutdown_timeout: Duration,
    pub work_stealing: bool,
}

/// The answer for a Host that no site claims.
#[derive(Debug, Clone)]
pub struct UnknownHost {
    pub status: u16,
    /// A custom body; the built-in error page for `status` otherwise.
    pub page: Option<Arc<str>>,
}

#[derive(Debug, Clone)]
pub struct ReloadSettings {
    pub watch: bool,
    pub debounce: Duration,
}

/// Request limits after layering a site's overrides on the global defaults.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_uri_bytes: usize,
    pub max_body_bytes: u64,
    pub client_body_timeout: Duration,
    pub min_body_rate: u64,
    pub body_rate_grace: Duration,
    /// Longest one write to the client may wait.
    pub client_send_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            max_body_bytes: 10 * 1024 * 1024,
            client_body_timeout: Duration::from_secs(30),
            min_body_rate: 256,
            body_rate_grace: Duration::from_secs(10),
            client_send_timeout: Duration::from_secs(60),
        }
    }
}

/// Timeouts and retries towards a site's origins.
#[derive(Debug, Clone)]
pub struct UpstreamTimeouts {
    pub connect: Duration,
    pub read: Duration,
    pub write: Duration,
    /// Upper bound from the start of the request to the origin's response header.
    pub total: Duration,
    /// Further attempts on another backend after a connection failure.
    pub retries: u32,
}

impl Default for UpstreamTimeouts {
    fn default() -> Self {
        UpstreamTimeouts {
            connect: Duration::from_secs(3),
            read: Duration::from_secs(30),
            write: Duration::from_secs(30),
            total: Duration::from_secs(60),
            retries: 1,
        }
    }
}

/// One departmental website.
#[derive(Debug)]
pub struct Site {
    pub name: String,
    pub file: PathBuf,
    pub hosts: Vec<String>,
    pub pools: Vec<Arc<Pool>>,
    /// Sorted longest prefix first.
    pub routes: Vec<Route>,
    pub default_pool: usize,
    pub timeouts: UpstreamTimeouts,
    pub limits: Limits,
    pub error_pages: ErrorPages,
    pub tls: Option<SiteTls>,
    pub security_headers: bool,
    /// The site's WAF policy, compiled against [`Snapshot::waf_engine`].
    pub waf: Arc<crate::waf::SitePolicy>,
    /// The site's engine when it runs CRS (native rules plus CRS, shared by every site with
    /// the same CRS directory and exclusion files); `None`: the snapshot's native engine.
    pub waf_engine: Option<Arc<crate::waf::Engine>>,
    /// This site's metric series, looked up on its first request.
    pub series: std::sync::OnceLock<crate::metrics::SiteSeries>,
}

impl Site {
    /// The first exact (non-wildcard) host name, for requests Egret makes itself.
    pub fn primary_host(&self) -> String {
        self.hosts
            .iter()
            .find(|h| !h.starts_with("*."))
            .cloned()
            .unwrap_or_else(|| self.name.clone())
    }

    /// The pool serving `path`.
    pub fn pool_for_path(&self, path: &str) -> usize {
        crate::routing::route_pool(&self.routes, self.default_pool, path)
    }
}
