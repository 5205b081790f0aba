//! Prometheus metric families for every feature, in one registry served by the admin listener.
//!
//! Labels are bounded: site names and backend addresses come from config, statuses are classes,
//! methods are a closed set, rule ids come from rulesets. No raw paths, IPs or user agents.

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// One site's series of the families labelled by site alone, looked up once per site (a
/// label lookup hashes the values and takes a read lock; every request records four).
#[derive(Debug, Clone)]
pub struct SiteSeries {
    pub request_duration: Histogram,
    pub upstream_duration: Histogram,
    pub request_bytes: IntCounter,
    pub response_bytes: IntCounter,
}

/// All metric families.
pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_duration: HistogramVec,
    pub request_bytes: IntCounterVec,
    pub response_bytes: IntCounterVec,
    pub in_flight: IntGauge,
    pub backend_up: IntGaugeVec,
    pub upstream_errors: IntCounterVec,
    pub waf_matches: IntCounterVec,
    pub ratelimit_decisions: IntCounterVec,
    pub deface_checks: IntCounterVec,
    pub deface_tampered: IntGaugeVec,
    pub cert_expiry: GaugeVec,
    pub reloads: IntCounterVec,
    pub last_reload_success: Gauge,
    pub config_generation: IntGauge,
    pub access_log_dropped: IntCounter,
    pub admin_auth_failures: IntCounter,
    pub connections_active: IntGauge,
    pub ratelimit_redis_errors: IntCounter,
    pub connections_refused: IntCounterVec,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Metrics {
    /// Creates and registers every family. Registration of fixed, distinct names cannot fail;
    /// should it, the error is returned rather than panicking.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let m = Metrics {
            requests: IntCounterVec::new(
                Opts::new(
                    "egret_requests_total",
                    "Requests handled, by site, method, status class and action.",
                ),
                &["site", "method", "status_class", "action"],
            )?,
            request_duration: HistogramVec::new(
                HistogramOpts::new(
                    "egret_request_duration_seconds",
                    "Time from request start to the end of the response.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["site"],
            )?,
            upstream_duration: HistogramVec::new(
                HistogramOpts::new(
                    "egret_upstream_duration_seconds",
                    "Time from sending to the origin to its response header.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["site"],
            )?,
            request_bytes: IntCounterVec::new(
                Opts::new(
                    "egret_request_body_bytes_total",
                    "Request body bytes received from clients.",
                ),
                &["site"],
            )?,
            response_bytes: IntCounterVec::new(
                Opts::new(
                    "egret_response_body_bytes_total",
                    "Response body bytes sent to clients.",
                ),
                &["site"],
            )?,
            in_flight: IntGauge::new("egret_requests_in_flight", "Requests being handled now.")?,
            backend_up: IntGaugeVec::new(
                Opts::new(
                    "egret_upstream_backend_up",
                    "1 when the backend is available (health check passing and not ejected).",
                ),
                &["site", "pool", "backend"],
            )?,
            upstream_errors: IntCounterVec::new(
                Opts::new(
                    "egret_upstream_errors_total",
                    "Failures talking to origins, by kind.",
                ),
                &["site", "pool", "backend", "kind"],
            )?,
            waf_matches: IntCounterVec::new(
                Opts::new(
                    "egret_waf_rule_matches_total",
                    "WAF rule matches by site, rule id and action.",
                ),
                &["site", "rule", "action"],
            )?,
            ratelimit_decisions: IntCounterVec::new(
                Opts::new(
                    "egret_ratelimit_decisions_total",
                    "Rate-limit decisions that limited, banned, denied or challenged a request.",
                ),
                &["site", "policy", "action"],
            )?,
            deface_checks: IntCounterVec::new(
                Opts::new("egret_deface_checks_total", "Defacement checks by result."),
                &["site", "result"],
            )?,
            deface_tampered: IntGaugeVec::new(
                Opts::new(
                    "egret_deface_tampered_pages",
                    "Protected pages currently judged tampered.",
                ),
                &["site"],
            )?,
            cert_expiry: GaugeVec::new(
                Opts::new(
                    "egret_tls_certificate_expiry_timestamp_seconds",
                    "Not-after time of each site's certificate, seconds since the epoch.",
                ),
                &["site"],
            )?,
            reloads: IntCounterVec::new(
                Opts::new(
                    "egret_config_reloads_total",
                    "Configuration reloads by result.",
                ),
                &["result"],
            )?,
            last_reload_success: Gauge::new(
                "egret_config_last_reload_success_timestamp_seconds",
                "Time of the last successful configuration load, seconds since the epoch.",
            )?,
            config_generation: IntGauge::new(
                "egret_config_generation",
                "Generation of the configuration being served.",
            )?,
            access_log_dropped: IntCounter::new(
                "egret_access_log_dropped_total",
                "Access log lines dropped because the writer fell behind.",
            )?,
            admin_auth_failures: IntCounter::new(
                "egret_admin_auth_failures_total",
                "Admin API requests refused for a missing or wrong token.",
            )?,
            ratelimit_redis_errors: IntCounter::new(
                "egret_ratelimit_redis_errors_total",
                "Rate-limit checks that Redis could not answer (failed open or refused).",
            )?,
            connections_active: IntGauge::new(
                "egret_connections_active",
                "Client connections open now.",
            )?,
            connections_refused: IntCounterVec::new(
                Opts::new(
                    "egret_connections_refused_total",
                    "Client connections closed at once by the per-IP connection limits.",
                ),
                &["reason"],
            )?,
            registry,
        };
        let build_info = IntGaugeVec::new(
            Opts::new("egret_build_info", "Build information; the value is 1."),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let r = &m.registry;
        r.register(Box::new(build_info))?;
        r.register(Box::new(m.requests.clone()))?;
        r.register(Box::new(m.request_duration.clone()))?;
        r.register(Box::new(m.upstream_duration.clone()))?;
        r.register(Box::new(m.request_bytes.clone()))?;
        r.register(Box::new(m.response_bytes.clone()))?;
        r.register(Box::new(m.in_flight.clone()))?;
        r.register(Box::new(m.backend_up.clone()))?;
        r.register(Box::new(m.upstream_errors.clone()))?;
        r.register(Box::new(m.waf_matches.clone()))?;
        r.register(Box::new(m.ratelimit_decisions.clone()))?;
        r.register(Box::new(m.deface_checks.clone()))?;
        r.register(Box::new(m.deface_tampered.clone()))?;
        r.register(Box::new(m.cert_expiry.clone()))?;
        r.register(Box::new(m.reloads.clone()))?;
        r.register(Box::new(m.last_reload_success.clone()))?;
        r.register(Box::new(m.config_generation.clone()))?;
        r.register(Box::new(m.access_log_dropped.clone()))?;
        r.register(Box::new(m.admin_auth_failures.clone()))?;
        r.register(Box::new(m.connections_active.clone()))?;
        r.register(Box::new(m.ratelimit_redis_errors.clone()))?;
        r.register(Box::new(m.connections_refused.clone()))?;
        Ok(m)
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }

    /// The series of `site` in the families labelled by site alone.
    pub fn site_series(&self, site: &str) -> SiteSeries {
        SiteSeries {
            request_duration: self.request_duration.with_label_values(&[site]),
            upstream_duration: self.upstream_duration.with_label_values(&[site]),
            request_bytes: self.request_bytes.with_label_values(&[site]),
            response_bytes: self.response_bytes.with_label_values(&[site]),
        }
    }
}

/// `"2xx"` etc. for a status code; `"none"` when nothing was sent.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "none",
    }
}

/// The method as a bounded label.
pub fn method_class(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_families() {
        let m = Metrics::new().unwrap();
        m.requests
            .with_label_values(&["www", "GET", "2xx", "proxied"])
            .inc();
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains("egret_requests_total{action=\"proxied\",method=\"GET\",site=\"www\",status_class=\"2xx\"} 1"), "{text}");
        assert!(text.contains("egret_build_info"));
    }
}
