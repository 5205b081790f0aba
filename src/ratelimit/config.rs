//! Raw rate-limit configuration as written in TOML, before validation.
//!
//! Owns the serde shapes only: [`RateLimitConfig`] (global section) and [`SiteRateLimitConfig`]
//! (embedded in each site). [`Policies::compile`](super::Policies::compile) turns them into
//! runtime types and is the only place they are checked.
//!
//! ```toml
//! # egret.toml (global)
//! [ratelimit]
//! max_keys = 1000000
//! allow = ["10.20.0.0/16", "192.0.2.10/32"]   # never limited (city network, monitoring)
//! deny = ["198.51.100.0/24"]                   # always 403
//!
//! [ratelimit.challenge]
//! secret = "at least 32 bytes of random text, same on every node"
//! clearance_ttl = "30m"
//! difficulty = 16
//!
//! [[ratelimit.policies]]          # applies to every site that inherits (default)
//! name = "per-ip"
//! key = "ip"
//! rate = "100/s"
//! burst = 200
//! ```
//!
//! ```toml
//! # sites/www.toml (one site)
//! name = "www"
//! hosts = ["www.demo.gov.cn"]
//!
//! [ratelimit]
//! allow = ["203.0.113.0/24"]
//!
//! [[ratelimit.policies]]
//! name = "login"
//! path_prefix = "/login"
//! key = "ip_path"
//! rate = "10/m"
//! burst = 5
//! action = "ban"
//! ban_after = 5
//! ban_window = "10m"
//! ban_for = "1h"
//!
//! [[ratelimit.policies]]
//! name = "api-key"
//! path_prefix = "/api/"
//! key = { header = "X-Api-Key" }
//! rate = "600/m"
//!
//! [ratelimit.flood]
//! mode = "auto"            # off | on | auto
//! threshold = "2000/s"
//! exempt_paths = ["/api/"]
//! ```

use serde::{Deserialize, Serialize};

/// The global `[ratelimit]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Most limiter keys held in memory (read when the state is created).
    pub max_keys: usize,
    /// Most ban records held in memory.
    pub max_ban_keys: usize,
    /// CIDRs never limited, on every site.
    pub allow: Vec<String>,
    /// CIDRs always refused with 403, on every site.
    pub deny: Vec<String>,
    /// Default policies, inherited by every site unless it sets `inherit = false`.
    pub policies: Vec<PolicyConfig>,
    /// Flood-mode challenge settings (needed when any site uses flood mode).
    pub challenge: ChallengeConfig,
    /// Shared limiter state in Redis, so several nodes enforce one limit.
    pub redis: Option<RedisConfig>,
}

/// `[ratelimit.redis]`: shared GCRA state (one atomic Lua script call per policy check).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://host:port/db`.
    pub url: String,
    /// Longest wait for one check (default "50ms").
    pub timeout: String,
    /// When Redis is unreachable or slow: allow the request (true, default) or answer 503.
    pub fail_open: bool,
    /// Prefix of every key (default "egret:rl:").
    pub key_prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            timeout: "50ms".into(),
            fail_open: true,
            key_prefix: "egret:rl:".into(),
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            max_keys: super::store::DEFAULT_MAX_KEYS,
            max_ban_keys: super::store::DEFAULT_MAX_BAN_KEYS,
            allow: Vec::new(),
            deny: Vec::new(),
            policies: Vec::new(),
            challenge: ChallengeConfig::default(),
            redis: None,
        }
    }
}

/// A site's `ratelimit` table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SiteRateLimitConfig {
    /// Whether the global policies apply too (a site policy with the same name replaces one).
    pub inherit: bool,
    /// CIDRs never limited on this site (added to the global list).
    pub allow: Vec<String>,
    /// CIDRs always refused on this site (added to the global list).
    pub deny: Vec<String>,
    /// This site's policies.
    pub policies: Vec<PolicyConfig>,
    /// Flood mode.
    pub flood: Option<FloodConfig>,
}

impl Default for SiteRateLimitConfig {
    fn default() -> Self {
        Self {
            inherit: true,
            allow: Vec::new(),
            deny: Vec::new(),
            policies: Vec::new(),
            flood: None,
        }
    }
}

/// One policy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Stable name: counters are keyed by it, so keep it across reloads.
    pub name: String,
    /// Applies to paths equal to this prefix or below it (segment-wise and ASCII-case-insensitive,
    /// after resolving `..`, `//` and percent-encoded letters: `/api` matches `/api`, `/API/x`
    /// and `/a/../api`, not `/apix`); all paths when absent.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// What identifies a client.
    #[serde(default)]
    pub key: KeyConfig,
    /// `"<count>/<s|m|h|d>"`.
    pub rate: String,
    /// Requests allowed at once; defaults to the rate's count.
    #[serde(default)]
    pub burst: Option<u32>,
    /// What happens when the rate is exceeded.
    #[serde(default)]
    pub action: ActionConfig,
    /// With `action = "ban"`: violations within `ban_window` that trigger a ban.
    #[serde(default)]
    pub ban_after: Option<u32>,
    /// With `action = "ban"`: window for counting violations (humantime, e.g. `"10m"`).
    #[serde(default)]
    pub ban_window: Option<String>,
    /// With `action = "ban"`: ban length (humantime, e.g. `"1h"`).
    #[serde(default)]
    pub ban_for: Option<String>,
    /// With `action = "ban"`: status of banned responses, 403 or 429 (default 429).
    #[serde(default)]
    pub ban_status: Option<u16>,
}

/// What a policy counts by. Written `key = "ip"`, `key = "ip_path"`, `key = "site"`,
/// `key = { header = "X-Api-Key" }` or `key = { cookie = "session" }`. A request lacking the
/// header or cookie is counted by client IP instead, so omitting it does not escape the limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum KeyConfig {
    /// Client IP.
    #[default]
    Ip,
    /// Client IP and request path.
    IpPath,
    /// The whole site.
    Site,
    /// A request header's value.
    Header(String),
    /// A cookie's value.
    Cookie(String),
}

/// Action on exceeding the rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionConfig {
    /// 429 with Retry-After.
    #[default]
    Reject,
    /// 429 with Retry-After, and a ban after `ban_after` violations.
    Ban,
}

/// Flood-mode switch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FloodModeConfig {
    /// Never challenge.
    #[default]
    Off,
    /// Always challenge (ops switch).
    On,
    /// Challenge while the site's request rate is over `threshold`.
    Auto,
}

/// A site's flood-mode table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FloodConfig {
    /// off, on or auto.
    pub mode: FloodModeConfig,
    /// With `auto`: rate that switches flood mode on, e.g. `"2000/s"`.
    pub threshold: Option<String>,
    /// With `auto`: fraction of the threshold below which flood mode ends (default 0.5).
    pub off_ratio: Option<f64>,
    /// Counting window (default `"10s"`).
    pub window: String,
    /// How long the rate must stay low before flood mode ends (default `"60s"`).
    pub hold: String,
    /// Path prefixes never challenged (APIs used by non-browser clients).
    pub exempt_paths: Vec<String>,
}

impl Default for FloodConfig {
    fn default() -> Self {
        Self {
            mode: FloodModeConfig::Off,
            threshold: None,
            off_ratio: None,
            window: "10s".into(),
            hold: "60s".into(),
            exempt_paths: Vec::new(),
        }
    }
}

/// The `[ratelimit.challenge]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChallengeConfig {
    /// HMAC secret, at least 32 bytes; the same on every node behind one balancer.
    pub secret: Option<String>,
    /// Clearance cookie lifetime (default `"30m"`).
    pub clearance_ttl: String,
    /// Time allowed to answer a challenge (default `"2m"`).
    pub token_ttl: String,
    /// Proof-of-work leading zero bits, 0..=24 (default 16: well under a second in a browser).
    pub difficulty: u8,
    /// Clearance cookie name (default `egret_clearance`).
    pub cookie_name: String,
    /// Path the challenge page posts to (default `/__egret/challenge`).
    pub verify_path: String,
}

impl Default for ChallengeConfig {
    fn default() -> Self {
        Self {
            secret: None,
            clearance_ttl: "30m".into(),
            token_ttl: "2m".into(),
            difficulty: 16,
            cookie_name: "egret_clearance".into(),
            verify_path: "/__egret/challenge".into(),
        }
    }
}
