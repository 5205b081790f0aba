//! Compiled rate-limit policies and the per-request decision.
//!
//! Owns [`Policies`], the immutable snapshot built from config by [`Policies::compile`] (the
//! only way in), and [`Policies::decide`], which runs on the request path: deny list, allow
//! list, then every matching policy's ban check and GCRA, in config order. It returns a
//! [`Decision`] carrying the policy name and key kind for logs and metrics. Counters live in the
//! [`LimiterState`] passed in, not here, so reloads keep them. [`Policies::flood_check`] is the
//! separate flood-mode decision (meter, exemptions, clearance cookie).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ipnet::IpNet;

use super::challenge::{Challenge, ChallengeSettings};
use super::config::{
    ActionConfig, FloodConfig, FloodModeConfig, KeyConfig, PolicyConfig, RateLimitConfig,
    SiteRateLimitConfig,
};
use super::error::{ChallengeError, ConfigError};
use super::flood::{FloodThresholds, FloodTransition};
use super::gcra::{Gcra, GcraOutcome, Rate};
use super::store::{BanRule, KeyHash, LimiterState, StateLimits};
use crate::request_path::{has_prefix, normalize_path};

/// Longest ban or violation window accepted in config.
const MAX_BAN: Duration = Duration::from_secs(365 * 86_400);

/// What a policy counts by (runtime form; header names are lower-cased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// Client IP.
    Ip,
    /// Client IP and path.
    IpPath,
    /// The whole site.
    Site,
    /// A header value (name lower-cased).
    Header(String),
    /// A cookie value.
    Cookie(String),
}

/// Key kind without its parameter, for log fields and metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyLabel {
    /// Client IP.
    Ip,
    /// Client IP and path.
    IpPath,
    /// The whole site.
    Site,
    /// A header value.
    Header,
    /// A cookie value.
    Cookie,
}

impl KeyLabel {
    /// Short name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyLabel::Ip => "ip",
            KeyLabel::IpPath => "ip_path",
            KeyLabel::Site => "site",
            KeyLabel::Header => "header",
            KeyLabel::Cookie => "cookie",
        }
    }
}

impl KeyKind {
    /// The label of this kind.
    pub fn label(&self) -> KeyLabel {
        match self {
            KeyKind::Ip => KeyLabel::Ip,
            KeyKind::IpPath => KeyLabel::IpPath,
            KeyKind::Site => KeyLabel::Site,
            KeyKind::Header(_) => KeyLabel::Header,
            KeyKind::Cookie(_) => KeyLabel::Cookie,
        }
    }
}

/// What happens when a policy's rate is exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// 429 with Retry-After.
    Reject,
    /// 429 with Retry-After, and a ban after repeated violations.
    Ban {
        /// Violation counting and ban length.
        rule: BanRule,
        /// Status of banned responses (403 or 429).
        status: u16,
    },
}

/// One compiled policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    name: Arc<str>,
    path_prefix: Option<String>,
    key: KeyKind,
    rate: Rate,
    gcra: Gcra,
    action: Action,
}

impl Policy {
    /// The stable policy name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The key kind.
    pub fn key(&self) -> &KeyKind {
        &self.key
    }
    /// The rate.
    pub fn rate(&self) -> Rate {
        self.rate
    }
    /// The action.
    pub fn action(&self) -> Action {
        self.action
    }

    fn matches_path(&self, path: &str) -> bool {
        self.path_prefix
            .as_deref()
            .is_none_or(|prefix| has_prefix(path, prefix))
    }
}

/// The bytes a client IP is counted by: the IPv4 address, or the IPv6 /64 (an IPv6 client
/// usually holds a whole /64; counting single addresses would let it rotate past every limit).
fn client_key_bytes(ip: IpAddr) -> Vec<u8> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets()[..8].to_vec(),
    }
}

/// Flood mode of a site, compiled.
#[derive(Debug, Clone, PartialEq)]
pub enum FloodMode {
    /// Never challenge.
    Off,
    /// Always challenge.
    On,
    /// Challenge while the meter is over the threshold.
    Auto(FloodThresholds),
}

#[derive(Debug, Clone, PartialEq)]
struct FloodPolicy {
    mode: FloodMode,
    exempt_paths: Vec<String>,
}

/// Allow/deny lists and policies effective on one site.
#[derive(Debug, Clone, Default)]
struct Scope {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
    policies: Vec<Arc<Policy>>,
    flood: Option<FloodPolicy>,
}

/// The request facts a decision needs.
pub struct RequestInfo<'a> {
    /// Site name (as configured, e.g. the host).
    pub site: &'a str,
    /// Request path (with or without query).
    pub path: &'a str,
    /// Client IP (IPv4-mapped IPv6 is treated as IPv4; IPv6 clients are counted per /64).
    pub client_ip: IpAddr,
    /// Header lookup by lower-case name.
    pub header: &'a dyn Fn(&str) -> Option<&'a str>,
    /// Cookie lookup by name.
    pub cookie: &'a dyn Fn(&str) -> Option<&'a str>,
}

/// The rate-limit verdict for one request.
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No policy objected.
    Allow,
    /// The client is on an allow list: no policy was checked.
    Allowlisted,
    /// A policy's rate is exceeded: 429 with Retry-After.
    Limited {
        /// Policy name.
        policy: Arc<str>,
        /// Key kind of the policy.
        key: KeyLabel,
        /// When one more request would be allowed.
        retry_after: Duration,
    },
    /// The key is banned: `status` (403 or 429) with Retry-After until `until`.
    Banned {
        /// Policy name.
        policy: Arc<str>,
        /// Key kind of the policy.
        key: KeyLabel,
        /// When the ban ends.
        until: Instant,
        /// Response status.
        status: u16,
    },
    /// The client is on a deny list: 403.
    Denied,
}

impl Decision {
    /// Response status to send instead of proxying, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            Decision::Allow | Decision::Allowlisted => None,
            Decision::Limited { .. } => Some(429),
            Decision::Banned { status, .. } => Some(*status),
            Decision::Denied => Some(403),
        }
    }

    /// Value for the `Retry-After` header at `now`, if any.
    pub fn retry_after(&self, now: Instant) -> Option<Duration> {
        match self {
            Decision::Limited { retry_after, .. } => Some(*retry_after),
            Decision::Banned { until, .. } => Some(until.saturating_duration_since(now)),
            _ => None,
        }
    }

    /// Action name for the access log and metrics.
    pub fn action(&self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Allowlisted => "allowlisted",
            Decision::Limited { .. } => "limited",
            Decision::Banned { .. } => "banned",
            Decision::Denied => "denied",
        }
    }

    /// Policy that decided, if any.
    pub fn policy(&self) -> Option<&str> {
        match self {
            Decision::Limited { policy, .. } | Decision::Banned { policy, .. } => Some(policy),
            _ => None,
        }
    }

    /// Key kind of the deciding policy, if any.
    pub fn key(&self) -> Option<KeyLabel> {
        match self {
            Decision::Limited { key, .. } | Decision::Banned { key, .. } => Some(*key),
            _ => None,
        }
    }
}

/// The flood-mode verdict for one request.
#[must_use]
#[derive(Debug, Clone, PartialEq)]
pub enum FloodDecision {
    /// Flood mode is off for this site right now: proxy as usual.
    Inactive {
        /// A switch made by this request (log and count it).
        transition: Option<FloodTransition>,
    },
    /// Flood mode is on but the path is exempt or the client allow-listed.
    Exempt,
    /// Flood mode is on and the client has a valid clearance cookie.
    Cleared,
    /// Flood mode is on: serve the challenge page (503). `reason` is why the cookie was refused
    /// (`None` when there was none).
    Challenge {
        /// Why an offered cookie was refused.
        reason: Option<ChallengeError>,
        /// A switch made by this request (log and count it).
        transition: Option<FloodTransition>,
    },
}

/// Validated `[ratelimit.redis]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    pub url: String,
    pub timeout: Duration,
    pub fail_open: bool,
    pub prefix: String,
}

/// What the shared backend must do for one request.
#[derive(Debug)]
pub enum SharedPlan {
    Denied,
    Allowlisted,
    /// GCRA checks, in policy order; the first refusal wins.
    Checks(Vec<SharedCheck>),
}

/// One GCRA check against Redis.
#[derive(Debug)]
pub struct SharedCheck {
    pub policy: Arc<str>,
    pub key: KeyLabel,
    pub redis_key: String,
    pub interval_us: u64,
    pub tolerance_us: u64,
}

/// Compiled rate-limit policies of every site: an immutable snapshot, swapped on reload.
#[derive(Debug, Clone)]
pub struct Policies {
    redis: Option<RedisSettings>,
    default_scope: Scope,
    sites: HashMap<String, Scope>,
    challenge: Option<Challenge>,
    limits: StateLimits,
}

fn parse_duration(field: &str, value: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(value).map_err(|e| ConfigError::new(field, format!("`{value}`: {e}")))
}

fn parse_cidrs(field: &str, list: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            let s = s.trim();
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map(|n| n.trunc())
                .map_err(|e| ConfigError::new(format!("{field}[{i}]"), format!("`{s}`: {e}")))
        })
        .collect()
}

fn compile_policy(at: &str, raw: &PolicyConfig) -> Result<Policy, ConfigError> {
    let at = format!("{at}.policies[{}]", raw.name);
    if raw.name.trim().is_empty() {
        return Err(ConfigError::new(
            format!("{at}.name"),
            "policy name is empty",
        ));
    }
    let rate = Rate::parse(&raw.rate).map_err(|e| ConfigError::new(format!("{at}.rate"), e))?;
    let burst = raw.burst.unwrap_or(rate.count());
    let gcra = Gcra::new(rate, burst).map_err(|e| ConfigError::new(format!("{at}.burst"), e))?;
    let key = match &raw.key {
        KeyConfig::Ip => KeyKind::Ip,
        KeyConfig::IpPath => KeyKind::IpPath,
        KeyConfig::Site => KeyKind::Site,
        KeyConfig::Header(h) | KeyConfig::Cookie(h) if h.trim().is_empty() => {
            return Err(ConfigError::new(
                format!("{at}.key"),
                "header or cookie name is empty",
            ));
        }
        KeyConfig::Header(h) => KeyKind::Header(h.trim().to_ascii_lowercase()),
        KeyConfig::Cookie(c) => KeyKind::Cookie(c.trim().to_owned()),
    };
    if let Some(prefix) = &raw.path_prefix {
        if !prefix.starts_with('/') {
            return Err(ConfigError::new(
                format!("{at}.path_prefix"),
                format!("`{prefix}` must start with `/`"),
            ));
        }
    }
    let ban_fields = raw.ban_after.is_some()
        || raw.ban_window.is_some()
        || raw.ban_for.is_some()
        || raw.ban_status.is_some();
    let action = match raw.action {
        ActionConfig::Reject if ban_fields => {
            return Err(ConfigError::new(
                format!("{at}.action"),
                "ban_after/ban_window/ban_for/ban_status are set but action is not \"ban\"",
            ))
        }
        ActionConfig::Reject => Action::Reject,
        ActionConfig::Ban => {
            let after = raw.ban_after.ok_or_else(|| {
                ConfigError::new(format!("{at}.ban_after"), "required with action = \"ban\"")
            })?;
            if after == 0 {
                return Err(ConfigError::new(
                    format!("{at}.ban_after"),
                    "must be at least 1",
                ));
            }
            let duration = raw
                .ban_for
                .as_deref()
                .ok_or_else(|| {
                    ConfigError::new(format!("{at}.ban_for"), "required with action = \"ban\"")
                })
                .and_then(|v| parse_duration(&format!("{at}.ban_for"), v))?;
            let window = match raw.ban_window.as_deref() {
                Some(v) => parse_duration(&format!("{at}.ban_window"), v)?,
                None => Duration::from_secs(60),
            };
            let status = raw.ban_status.unwrap_or(429);
            if status != 403 && status != 429 {
                return Err(ConfigError::new(
                    format!("{at}.ban_status"),
                    format!("{status} is not 403 or 429"),
                ));
            }
            if duration > MAX_BAN || window > MAX_BAN {
                return Err(ConfigError::new(
                    format!("{at}.ban_for"),
                    "ban_for and ban_window must be at most 365 days",
                ));
            }
            if duration.is_zero() || window.is_zero() {
                return Err(ConfigError::new(
                    format!("{at}.ban_for"),
                    "ban_for and ban_window must be positive",
                ));
            }
            Action::Ban {
                rule: BanRule {
                    after,
                    window,
                    duration,
                },
                status,
            }
        }
    };
    Ok(Policy {
        name: Arc::from(raw.name.trim()),
        path_prefix: raw.path_prefix.clone(),
        key,
        rate,
        gcra,
        action,
    })
}

fn compile_policies(at: &str, raw: &[PolicyConfig]) -> Result<Vec<Arc<Policy>>, ConfigError> {
    let mut out: Vec<Arc<Policy>> = Vec::with_capacity(raw.len());
    for p in raw {
        let policy = compile_policy(at, p)?;
        if out.iter().any(|q| q.name == policy.name) {
            return Err(ConfigError::new(
                format!("{at}.policies[{}].name", policy.name),
                "duplicate policy name",
            ));
        }
        out.push(Arc::new(policy));
    }
    Ok(out)
}

fn compile_flood(at: &str, raw: &FloodConfig) -> Result<FloodPolicy, ConfigError> {
    let mode = match raw.mode {
        FloodModeConfig::Off => FloodMode::Off,
        FloodModeConfig::On => FloodMode::On,
        FloodModeConfig::Auto => {
            let threshold = raw.threshold.as_deref().ok_or_else(|| {
                ConfigError::new(format!("{at}.threshold"), "required with mode = \"auto\"")
            })?;
            let rate = Rate::parse(threshold)
                .map_err(|e| ConfigError::new(format!("{at}.threshold"), e))?;
            let ratio = raw.off_ratio.unwrap_or(0.5);
            if !(ratio > 0.0 && ratio <= 1.0) {
                return Err(ConfigError::new(
                    format!("{at}.off_ratio"),
                    format!("{ratio} is not in (0, 1]"),
                ));
            }
            let window = parse_duration(&format!("{at}.window"), &raw.window)?;
            if window.is_zero() {
                return Err(ConfigError::new(format!("{at}.window"), "must be positive"));
            }
            FloodMode::Auto(FloodThresholds {
                on_rps: rate.per_second(),
                off_rps: rate.per_second() * ratio,
                window,
                hold: parse_duration(&format!("{at}.hold"), &raw.hold)?,
            })
        }
    };
    for (i, p) in raw.exempt_paths.iter().enumerate() {
        if !p.starts_with('/') {
            return Err(ConfigError::new(
                format!("{at}.exempt_paths[{i}]"),
                format!("`{p}` must start with `/`"),
            ));
        }
    }
    Ok(FloodPolicy {
        mode,
        exempt_paths: raw.exempt_paths.clone(),
    })
}

impl Policies {
    /// Validates the global section and every site's section into a snapshot.
    pub fn compile<'a>(
        global: &RateLimitConfig,
        sites: impl IntoIterator<Item = (&'a str, &'a SiteRateLimitConfig)>,
    ) -> Result<Self, ConfigError> {
        let global_allow = parse_cidrs("ratelimit.allow", &global.allow)?;
        let global_deny = parse_cidrs("ratelimit.deny", &global.deny)?;
        let global_policies = compile_policies("ratelimit", &global.policies)?;
        let mut needs_challenge = false;
        let mut out_sites = HashMap::new();
        for (site, raw) in sites {
            let scope = Self::compile_site(&global_allow, &global_deny, &global_policies, raw)
                .map_err(|e| e.in_site(site))?;
            if scope
                .flood
                .as_ref()
                .is_some_and(|f| f.mode != FloodMode::Off)
            {
                needs_challenge = true;
            }
            if out_sites.insert(site.to_owned(), scope).is_some() {
                return Err(ConfigError::new("name", "site listed twice").in_site(site));
            }
        }
        let challenge = match (&global.challenge.secret, needs_challenge) {
            (None, true) => {
                return Err(ConfigError::new(
                    "ratelimit.challenge.secret",
                    "required when a site uses flood mode",
                ))
            }
            (None, false) => None,
            (Some(secret), _) => {
                let c = &global.challenge;
                let settings = ChallengeSettings {
                    clearance_ttl: parse_duration(
                        "ratelimit.challenge.clearance_ttl",
                        &c.clearance_ttl,
                    )?,
                    token_ttl: parse_duration("ratelimit.challenge.token_ttl", &c.token_ttl)?,
                    difficulty: c.difficulty,
                    cookie_name: c.cookie_name.clone(),
                    verify_path: c.verify_path.clone(),
                };
                Some(Challenge::new(secret.as_bytes(), settings)?)
            }
        };
        if global.max_keys == 0 {
            return Err(ConfigError::new("ratelimit.max_keys", "must be at least 1"));
        }
        let redis = match &global.redis {
            None => None,
            Some(r) => {
                redis::Client::open(r.url.as_str()).map_err(|e| {
                    ConfigError::new("ratelimit.redis.url", format!("`{}`: {e}", r.url))
                })?;
                let timeout = humantime::parse_duration(&r.timeout).map_err(|e| {
                    ConfigError::new("ratelimit.redis.timeout", format!("`{}`: {e}", r.timeout))
                })?;
                Some(RedisSettings {
                    url: r.url.clone(),
                    timeout,
                    fail_open: r.fail_open,
                    prefix: r.key_prefix.clone(),
                })
            }
        };
        Ok(Self {
            redis,
            default_scope: Scope {
                allow: global_allow,
                deny: global_deny,
                policies: global_policies,
                flood: None,
            },
            sites: out_sites,
            challenge,
            limits: StateLimits {
                max_keys: global.max_keys,
                max_ban_keys: global.max_ban_keys,
            },
        })
    }

    fn compile_site(
        global_allow: &[IpNet],
        global_deny: &[IpNet],
        global_policies: &[Arc<Policy>],
        raw: &SiteRateLimitConfig,
    ) -> Result<Scope, ConfigError> {
        let at = "ratelimit";
        let mut allow = global_allow.to_vec();
        allow.extend(parse_cidrs(&format!("{at}.allow"), &raw.allow)?);
        let mut deny = global_deny.to_vec();
        deny.extend(parse_cidrs(&format!("{at}.deny"), &raw.deny)?);
        let own = compile_policies(at, &raw.policies)?;
        let mut policies: Vec<Arc<Policy>> = Vec::new();
        if raw.inherit {
            policies.extend(
                global_policies
                    .iter()
                    .filter(|g| !own.iter().any(|p| p.name == g.name))
                    .cloned(),
            );
        }
        policies.extend(own);
        let flood = raw
            .flood
            .as_ref()
            .map(|f| compile_flood(&format!("{at}.flood"), f))
            .transpose()?;
        Ok(Scope {
            allow,
            deny,
            policies,
            flood,
        })
    }

    /// Memory limits for [`LimiterState::new`] (state is created once; a reload does not
    /// resize it).
    pub fn state_limits(&self) -> StateLimits {
        self.limits
    }

    /// The challenge settings, when configured.
    pub fn challenge(&self) -> Option<&Challenge> {
        self.challenge.as_ref()
    }

    fn scope(&self, site: &str) -> &Scope {
        self.sites.get(site).unwrap_or(&self.default_scope)
    }

    /// Policies effective on `site`, in evaluation order.
    pub fn policies_for(&self, site: &str) -> impl Iterator<Item = &Policy> {
        self.scope(site).policies.iter().map(|p| p.as_ref())
    }

    fn key_hash(
        state: &LimiterState,
        policy: &Policy,
        req: &RequestInfo<'_>,
        ip: IpAddr,
        path: &str,
    ) -> KeyHash {
        let ip_bytes: &[u8] = &client_key_bytes(ip);
        let by_ip = |tag: u8| state.key(&policy.name, tag, &[ip_bytes]);
        match &policy.key {
            KeyKind::Ip => by_ip(0),
            KeyKind::IpPath => {
                // Case folded like the prefix match (IIS origins ignore case).
                let path = path.to_ascii_lowercase();
                state.key(&policy.name, 1, &[ip_bytes, path.as_bytes()])
            }
            KeyKind::Site => state.key(&policy.name, 2, &[req.site.as_bytes()]),
            KeyKind::Header(name) => match (req.header)(name) {
                Some(v) => state.key(&policy.name, 3, &[v.as_bytes()]),
                None => by_ip(0),
            },
            KeyKind::Cookie(name) => match (req.cookie)(name) {
                Some(v) => state.key(&policy.name, 4, &[v.as_bytes()]),
                None => by_ip(0),
            },
        }
    }

    /// The shared-state settings, when `[ratelimit.redis]` is configured.
    pub fn redis(&self) -> Option<&RedisSettings> {
        self.redis.as_ref()
    }

    /// For the shared (Redis) backend: the deny/allow outcome, or the GCRA checks to run, each
    /// with a key derived the same way on every node (policy, key kind, SHA-256 of the value).
    pub fn shared_plan(&self, req: &RequestInfo<'_>) -> SharedPlan {
        use sha2::{Digest, Sha256};
        let scope = self.scope(req.site);
        let ip = req.client_ip.to_canonical();
        if scope.deny.iter().any(|n| n.contains(&ip)) {
            return SharedPlan::Denied;
        }
        if scope.allow.iter().any(|n| n.contains(&ip)) {
            return SharedPlan::Allowlisted;
        }
        let prefix = self
            .redis
            .as_ref()
            .map(|r| r.prefix.as_str())
            .unwrap_or("egret:rl:");
        let path = normalize_path(req.path);
        let ip_bytes = client_key_bytes(ip);
        let mut checks = Vec::new();
        for policy in &scope.policies {
            if !policy.matches_path(&path) {
                continue;
            }
            let lower;
            let (tag, parts): (u8, Vec<&[u8]>) = match &policy.key {
                KeyKind::Ip => (0, vec![&ip_bytes]),
                KeyKind::IpPath => {
                    lower = path.to_ascii_lowercase();
                    (1, vec![&ip_bytes, lower.as_bytes()])
                }
                KeyKind::Site => (2, vec![req.site.as_bytes()]),
                KeyKind::Header(name) => match (req.header)(name) {
                    Some(v) => (3, vec![v.as_bytes()]),
                    None => (0, vec![&ip_bytes]),
                },
                KeyKind::Cookie(name) => match (req.cookie)(name) {
                    Some(v) => (4, vec![v.as_bytes()]),
                    None => (0, vec![&ip_bytes]),
                },
            };
            let mut h = Sha256::new();
            for p in &parts {
                h.update((p.len() as u64).to_be_bytes());
                h.update(p);
            }
            let digest = h.finalize();
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            checks.push(SharedCheck {
                policy: policy.name.clone(),
                key: policy.key.label(),
                redis_key: format!("{prefix}{}:{tag}:{hex}", policy.name),
                interval_us: (policy.gcra.interval_ns() / 1000).max(1),
                tolerance_us: policy.gcra.tolerance_ns() / 1000,
            });
        }
        SharedPlan::Checks(checks)
    }

    /// Decides one request: deny list (403), allow list (exempt), then each policy matching the
    /// path in order: a banned key is refused, a key over its rate is limited (and, for ban
    /// policies, may be banned). Every matching policy counts the request until one refuses.
    pub fn decide(&self, state: &LimiterState, req: &RequestInfo<'_>, now: Instant) -> Decision {
        let scope = self.scope(req.site);
        let ip = req.client_ip.to_canonical();
        if scope.deny.iter().any(|n| n.contains(&ip)) {
            return Decision::Denied;
        }
        if scope.allow.iter().any(|n| n.contains(&ip)) {
            return Decision::Allowlisted;
        }
        let path = normalize_path(req.path);
        for policy in &scope.policies {
            if !policy.matches_path(&path) {
                continue;
            }
            let key = Self::key_hash(state, policy, req, ip, &path);
            if let Action::Ban { status, .. } = policy.action {
                if let Some(until) = state.banned_until(key, now) {
                    return Decision::Banned {
                        policy: policy.name.clone(),
                        key: policy.key.label(),
                        until,
                        status,
                    };
                }
            }
            match state.check_rate(key, &policy.gcra, now) {
                GcraOutcome::Allow { .. } => {}
                GcraOutcome::Limit { retry_after } => {
                    if let Action::Ban { rule, status } = policy.action {
                        if let Some(until) = state.record_violation(key, &rule, now) {
                            return Decision::Banned {
                                policy: policy.name.clone(),
                                key: policy.key.label(),
                                until,
                                status,
                            };
                        }
                    }
                    return Decision::Limited {
                        policy: policy.name.clone(),
                        key: policy.key.label(),
                        retry_after,
                    };
                }
            }
        }
        Decision::Allow
    }

    /// Lifts the ban of `ip` under the policy named `policy` (an ops action). Covers policies
    /// keyed by IP and header/cookie policies' IP fallback; returns whether a ban record existed.
    pub fn unban_ip(&self, state: &LimiterState, policy: &str, ip: IpAddr) -> bool {
        state.unban(state.key(policy, 0, &[&client_key_bytes(ip)]))
    }

    /// Flood-mode decision for one request: counts it in the site's meter (auto mode), then,
    /// while flood mode is on and the path is not exempt, checks the clearance cookie. Call it
    /// after [`decide`](Self::decide) allowed the request; requests to the challenge verify path
    /// go to [`Challenge::verify_answer`] instead.
    pub fn flood_check(
        &self,
        state: &LimiterState,
        req: &RequestInfo<'_>,
        now: Instant,
        wall: SystemTime,
    ) -> FloodDecision {
        let scope = self.scope(req.site);
        let Some(flood) = &scope.flood else {
            return FloodDecision::Inactive { transition: None };
        };
        let (active, transition) = match &flood.mode {
            FloodMode::Off => (false, None),
            FloodMode::On => (true, None),
            FloodMode::Auto(thresholds) => {
                let meter = state.flood_meter(req.site);
                let reading = meter.record(state.nanos(now), thresholds);
                (reading.active, reading.transition)
            }
        };
        if !active {
            return FloodDecision::Inactive { transition };
        }
        let ip = req.client_ip.to_canonical();
        let path = normalize_path(req.path);
        if flood.exempt_paths.iter().any(|p| has_prefix(&path, p))
            || scope.allow.iter().any(|n| n.contains(&ip))
        {
            return FloodDecision::Exempt;
        }
        let Some(challenge) = &self.challenge else {
            // compile() refuses flood mode without a secret; stay open if it ever happens.
            return FloodDecision::Exempt;
        };
        let reason = match (req.cookie)(challenge.cookie_name()) {
            None => None,
            Some(cookie) => match challenge.verify(cookie, req.client_ip, wall) {
                Ok(()) => return FloodDecision::Cleared,
                Err(e) => Some(e),
            },
        };
        FloodDecision::Challenge { reason, transition }
    }
}

impl LimiterState {
    /// The flood meter of `site`, created on first use.
    pub(super) fn flood_meter(&self, site: &str) -> Arc<super::flood::FloodMeter> {
        if let Some(m) = self.flood.read().get(site) {
            return m.clone();
        }
        self.flood
            .write()
            .entry(site.to_owned())
            .or_default()
            .clone()
    }
}
