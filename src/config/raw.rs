//! Raw configuration as written by ops staff: serde types that mirror the TOML files one to one.
//!
//! Every struct denies unknown fields so that a typo is an error, and keeps the spans of the
//! values that validation may reject, so that [`super::compile`] can point at file:line:col.
//! Nothing here is used at run time: [`super::compile`] turns these into the runtime types of
//! [`crate::snapshot`].

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// A duration written as a human string: `"150ms"`, `"5s"`, `"2m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub std::time::Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim()).map(Dur).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {s:?}: {e} (expected e.g. \"500ms\", \"5s\", \"2m\")"
            ))
        })
    }
}

/// A byte size written as an integer or a string with a unit: `16384`, `"16KiB"`, `"10MiB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            N(u64),
            S(String),
        }
        match Either::deserialize(d)? {
            Either::N(n) => Ok(ByteSize(n)),
            Either::S(s) => parse_byte_size(&s).map(ByteSize).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "invalid size {s:?} (expected bytes as an integer or e.g. \"16KiB\", \"10MiB\")"
                ))
            }),
        }
    }
}

/// Parses `"10MiB"`, `"16KiB"`, `"1GiB"`, `"512"`, `"10MB"`, `"16k"`.
pub fn parse_byte_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// The global file, `config/egret.toml`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawGlobal {
    /// Directory of per-site files, relative to the global file. Default `sites`.
    pub sites_dir: Option<Spanned<String>>,
    #[serde(default)]
    pub listen: RawListen,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub upstream: RawUpstreamDefaults,
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<String>>,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub unknown_host: RawUnknownHost,
    #[serde(default)]
    pub error_pages: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub reload: RawReload,
    /// Directory that site `[tls]` certificate paths are relative to. Default `../certs`.
    pub certs_dir: Option<Spanned<String>>,
    #[serde(default)]
    pub tls: RawGlobalTls,
    /// Rate limiting defaults, allow/deny lists and the flood challenge (see docs/ratelimit.md).
    #[serde(default)]
    pub ratelimit: crate::ratelimit::RateLimitConfig,
    /// Directory of the WAF rulesets (`*.toml`), relative to this file. Default `../rulesets`.
    pub rulesets_dir: Option<Spanned<String>>,
    /// Per-client-IP connection limits, checked before any request is read.
    #[serde(default)]
    pub connections: RawConnections,
    /// Automatic certificates (ACME, HTTP-01) for sites with `[tls] acme = true`.
    pub acme: Option<RawAcme>,
    /// Defacement detection: state directory, keywords, thresholds (see docs/defacement.md).
    #[serde(default)]
    pub deface: crate::deface::DefaceConfig,
}

/// TLS policy of the HTTPS listeners.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawGlobalTls {
    /// `"1.2"` (default: TLS 1.2 and 1.3) or `"1.3"` (TLS 1.3 only). Needs a restart.
    pub min_version: Option<Spanned<String>>,
    /// `"default"` (serve the default certificate) or `"refuse"` (abort the handshake).
    pub unknown_sni: Option<Spanned<String>>,
    /// Certificate for unknown SNI; default: the first site's certificate.
    pub default_cert: Option<Spanned<String>>,
    pub default_key: Option<Spanned<String>>,
}

/// A site's certificate and HTTPS policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSiteTls {
    /// PEM chain, leaf first; relative to the global `certs_dir`.
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    /// Obtain and renew the certificate automatically with ACME (HTTP-01), instead of cert/key.
    pub acme: Option<Spanned<bool>>,
    /// A DER OCSP response to staple.
    pub ocsp: Option<Spanned<String>>,
    /// Answer plain HTTP with a 308 to HTTPS. Default true.
    pub redirect_http: Option<bool>,
    /// Path prefixes still served over plain HTTP. Default `["/.well-known/acme-challenge/"]`.
    pub redirect_exempt: Option<Vec<String>>,
    /// Strict-Transport-Security max-age; no header when absent.
    pub hsts_max_age: Option<Dur>,
    #[serde(default)]
    pub hsts_include_subdomains: bool,
    #[serde(default)]
    pub hsts_preload: bool,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawListen {
    #[serde(default)]
    pub http: Vec<Spanned<String>>,
    #[serde(default)]
    pub https: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<Spanned<String>>,
    /// File holding the bearer token for the admin API (mode 0600 or stricter).
    pub token_file: Option<Spanned<String>>,
    /// Serve /metrics without a token. Default true.
    pub metrics_public: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `"stdout"`, `"off"` or a file path (relative to the global file).
    pub access_log: Option<String>,
    /// WAF audit log: `"stdout"`, `"off"` (default) or a file path.
    pub audit_log: Option<String>,
    /// Application log level: error, warn, info, debug, trace.
    pub level: Option<Spanned<String>>,
}

/// Request limits; the global table sets defaults, a site's `[limits]` overrides them.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_header_bytes: Option<ByteSize>,
    pub max_headers: Option<usize>,
    pub max_body_bytes: Option<ByteSize>,
    pub client_body_timeout: Option<Dur>,
    /// Slowest average request-body rate accepted (bytes per second) once `body_rate_grace` has
    /// passed; a slower client gets 408. 0 turns it off. Default 256.
    pub min_body_rate: Option<u64>,
    /// Time a body may take before `min_body_rate` applies. Default 10s.
    pub body_rate_grace: Option<Dur>,
    pub max_uri_bytes: Option<ByteSize>,
    /// Longest a single write of the response to the client may wait (a client that stops
    /// reading is cut off). Default 60s.
    pub client_send_timeout: Option<Dur>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamDefaults {
    pub connect_timeout: Option<Dur>,
    pub read_timeout: Option<Dur>,
    pub write_timeout: Option<Dur>,
    pub total_timeout: Option<Dur>,
    pub retries: Option<u32>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub threads: Option<usize>,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub grace_period: Option<Dur>,
    pub shutdown_timeout: Option<Dur>,
    pub work_stealing: Option<bool>,
    /// Longest wait for each read of a request header (also the first request). Default 10s.
    pub client_header_timeout: Option<Dur>,
    /// Longest time a client may take to send a whole request header, however it trickles it
    /// (slowloris), counted from when Egret starts waiting for it. Default 30s.
    pub client_header_deadline: Option<Dur>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawUnknownHost {
    pub status: Option<Spanned<u16>>,
    pub page: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcme {
    /// The ACME directory URL (e.g. Let's Encrypt's).
    pub directory: Spanned<String>,
    /// Contact URLs for the account, e.g. `["mailto:ops@example.gov.cn"]`.
    #[serde(default)]
    pub contact: Vec<String>,
    /// Account and certificates are kept here (relative to this file).
    pub state_dir: Spanned<String>,
    /// PEM root that signs the ACME server's own HTTPS certificate (test CAs such as pebble's).
    pub ca_file: Option<Spanned<String>>,
    /// Renew this long before expiry. Default 30 days.
    pub renew_before: Option<Dur>,
    /// How often certificates are checked. Default 1 hour.
    pub check_interval: Option<Dur>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConnections {
    /// Open connections allowed per client IP (0 = no limit). Default 256.
    pub max_per_ip: Option<u32>,
    /// New connections per second allowed per client IP (0 = no limit). Default 0.
    pub new_per_second_per_ip: Option<u32>,
    /// Client CIDRs exempt from these limits (e.g. a load balancer in front).
    #[serde(default)]
    pub exempt: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawReload {
    /// Watch the config directory and reload on change. Default true.
    pub watch: Option<bool>,
    pub debounce: Option<Dur>,
}

/// One site file, `config/sites/NAME.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSite {
    pub name: Spanned<String>,
    pub hosts: Spanned<Vec<Spanned<String>>>,
    pub pools: BTreeMap<String, RawPool>,
    /// Pool used when no route matches; optional when the site has one pool.
    pub default_pool: Option<Spanned<String>>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub timeouts: RawUpstreamDefaults,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub error_pages: BTreeMap<String, Spanned<String>>,
    pub tls: Option<RawSiteTls>,
    pub ratelimit: Option<crate::ratelimit::SiteRateLimitConfig>,
    pub deface: Option<crate::deface::SiteDefaceConfig>,
    /// Add X-Content-Type-Options, X-Frame-Options and Referrer-Policy when the origin did not,
    /// and drop the origin's Server and X-Powered-By banners. Default true.
    pub security_headers: Option<bool>,
    /// WAF policy: mode, paranoia, thresholds, exclusions (default: block at paranoia 1).
    pub waf: Option<crate::waf::SitePolicyConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub prefix: Spanned<String>,
    pub pool: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    pub backends: Spanned<Vec<Spanned<BackendSpec>>>,
    /// `round_robin` (weighted, default) or `consistent_hash` (by client IP).
    pub lb: Option<Spanned<String>>,
    #[serde(default)]
    pub tls: Option<RawUpstreamTls>,
    pub health_check: Option<RawHealthCheck>,
    #[serde(default)]
    pub passive: RawPassive,
}

/// A backend: `"10.1.2.3:8080"` or `{ addr = "10.1.2.3:8080", weight = 3 }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub addr: String,
    pub weight: Option<u32>,
}

/// Accepts the string form as well as the table form of [`RawBackend`].
#[derive(Debug)]
pub struct BackendSpec(pub RawBackend);

impl<'de> Deserialize<'de> for BackendSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = BackendSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a backend as \"host:port\" or { addr = \"host:port\", weight = N }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<BackendSpec, E> {
                Ok(BackendSpec(RawBackend {
                    addr: v.to_string(),
                    weight: None,
                }))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<BackendSpec, A::Error> {
                RawBackend::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(BackendSpec)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTls {
    /// Server name sent in SNI and verified; defaults to the backend's host.
    pub sni: Option<String>,
    /// PEM file of CA certificates that sign the origin's certificate.
    pub ca_file: Option<Spanned<String>>,
    /// Turns certificate verification off. Named to be noticed in review.
    #[serde(default)]
    pub danger_skip_verify: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    pub path: Option<Spanned<String>>,
    pub interval: Option<Dur>,
    pub timeout: Option<Dur>,
    pub expect_status: Option<Vec<u16>>,
    pub healthy_threshold: Option<u32>,
    pub unhealthy_threshold: Option<u32>,
    pub host: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPassive {
    /// Consecutive connection failures that eject a backend. Default 3; 0 turns it off.
    pub max_failures: Option<u32>,
    pub eject_for: Option<Dur>,
}
