//! The per-request context: what each step learns, for later steps and for the log.

use crate::snapshot::{Site, Snapshot};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// What Egret did with a request, for the access log and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Action {
    #[default]
    Proxied,
    UnknownHost,
    Rejected,
    Blocked,
    Limited,
    NoBackend,
    UpstreamError,
    Redirected,
    Challenged,
    Denied,
    Substituted,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Proxied => "proxied",
            Action::UnknownHost => "unknown_host",
            Action::Rejected => "rejected",
            Action::Blocked => "blocked",
            Action::Limited => "limited",
            Action::NoBackend => "no_backend",
            Action::UpstreamError => "upstream_error",
            Action::Redirected => "redirected",
            Action::Challenged => "challenged",
            Action::Denied => "denied",
            Action::Substituted => "substituted",
        }
    }
}

/// Per-request state, created by `new_ctx` and passed to every hook.
pub struct Ctx {
    pub started: Instant,
    /// The snapshot this request uses from start to end.
    pub snapshot: Option<Arc<Snapshot>>,
    pub site: Option<Arc<Site>>,
    pub pool: usize,
    pub host: String,
    pub client_ip: Option<IpAddr>,
    pub peer_trusted: bool,
    pub request_id: String,
    pub https: bool,
    /// Backends already tried (indices into the pool).
    pub tried: Vec<usize>,
    pub backend: Option<usize>,
    pub upstream_sent_at: Option<Instant>,
    pub upstream_header_ms: Option<f64>,
    pub upstream_status: Option<u16>,
    /// Interim (1xx) responses the origin sent for this request.
    pub informational: u8,
    pub body_bytes_in: u64,
    /// When the first body chunk was asked for (for the minimum body rate).
    pub body_started: Option<Instant>,
    pub action: Action,
    /// Status of a response Egret wrote itself (when no upstream response exists).
    pub own_status: Option<u16>,
    pub error: Option<&'static str>,
    pub in_flight: bool,
    /// Rate-limit outcome for the log: policy name, key kind, action.
    pub ratelimit: Option<(Option<Arc<str>>, &'static str, &'static str)>,
    /// Defacement outcome for a protected page (checked, approved-copy, maintenance, ...).
    pub deface_action: &'static str,
    /// WAF transaction between the phases: kept for phase 2 (requests with a body) and, when
    /// the site has response rules, for phases 3 and 4.
    pub waf: Option<Box<super::waf_step::WafState>>,
    /// Response body held back for WAF phase 4.
    pub waf_response: Option<Box<super::waf_step::ResponseBody>>,
    /// The response was blocked after its header: the upstream body is dropped and this page
    /// sent in its place at the end.
    pub response_replacement: Option<bytes::Bytes>,
    pub waf_action: &'static str,
    pub waf_rules: String,
    pub waf_score: Option<u32>,
}

impl Ctx {
    pub fn new() -> Ctx {
        Ctx {
            started: Instant::now(),
            snapshot: None,
            site: None,
            pool: 0,
            host: String::new(),
            client_ip: None,
            peer_trusted: false,
            request_id: String::new(),
            https: false,
            tried: Vec::new(),
            backend: None,
            upstream_sent_at: None,
            upstream_header_ms: None,
            upstream_status: None,
            informational: 0,
            body_bytes_in: 0,
            body_started: None,
            action: Action::Proxied,
            own_status: None,
            error: None,
            in_flight: false,
            ratelimit: None,
            deface_action: "",
            waf: None,
            waf_response: None,
            response_replacement: None,
            waf_action: "",
            waf_rules: String::new(),
            waf_score: None,
        }
    }
}

impl Ctx {
    /// The error pages for this request: its site's, or the global ones before a site is known.
    pub fn error_pages(&self) -> crate::error_pages::ErrorPages {
        match (&self.site, &self.snapshot) {
            (Some(site), _) => site.error_pages.clone(),
            (None, Some(s)) => s.global.error_pages.clone(),
            (None, None) => Default::default(),
        }
    }
}

impl Default for Ctx {
    fn default() -> Self {
        Ctx::new()
    }
}
