//! Rate limiting and HTTP-flood protection.
//!
//! Owns every rate-limit decision the proxy makes before a request reaches an origin:
//! - [`gcra`]: rate strings and the GCRA core (pure, clock passed in);
//! - [`store`]: [`LimiterState`], the bounded in-process counters and bans, shared across config
//!   reloads;
//! - [`config`]: the raw serde sections embedded in the global and site config;
//! - [`policy`]: [`Policies`], the compiled snapshot, and its [`Policies::decide`] and
//!   [`Policies::flood_check`] verdicts;
//! - [`challenge`]: the flood-mode JavaScript challenge page and HMAC clearance cookie;
//! - [`flood`]: the per-site request-rate meter that switches flood mode automatically;
//! - [`redis_lua`]: the GCRA Lua script kept for a future shared Redis backend.
//!
//! Everything here is synchronous and does no I/O: it is called on the hot request path.
//!
//! ```
//! use std::net::IpAddr;
//! use std::time::Instant;
//! use egret::ratelimit::{Decision, LimiterState, Policies, RateLimitConfig, RequestInfo, SiteRateLimitConfig};
//!
//! let global: RateLimitConfig = toml::from_str(r#"
//!     [[policies]]
//!     name = "per-ip"
//!     rate = "100/s"
//! "#).unwrap();
//! let www = SiteRateLimitConfig::default();
//! let policies = Policies::compile(&global, [("www", &www)])?;
//! // Created once and kept across reloads (it lives outside the snapshot).
//! let state = LimiterState::new(policies.state_limits());
//! let no_header = |_: &str| None;
//! let req = RequestInfo {
//!     site: "www",
//!     path: "/index.htm",
//!     client_ip: IpAddr::from([192, 0, 2, 1]),
//!     header: &no_header,
//!     cookie: &no_header,
//! };
//! let now = Instant::now();
//! match policies.decide(&state, &req, now) {
//!     Decision::Allow | Decision::Allowlisted => { /* proxy */ }
//!     refused => {
//!         // status(), retry_after(now), action(), policy(), key() feed the response, log and metrics.
//!         assert!(refused.status().is_some());
//!     }
//! }
//! # Ok::<(), egret::ratelimit::ConfigError>(())
//! ```

pub mod challenge;
pub mod config;
pub mod error;
pub mod flood;
pub mod gcra;
pub mod policy;
pub mod redis_lua;
pub mod shared;
pub mod store;

#[cfg(test)]
mod tests;

pub use challenge::Challenge;
pub use config::{
    ActionConfig, ChallengeConfig, FloodConfig, FloodModeConfig, KeyConfig, PolicyConfig,
    RateLimitConfig, SiteRateLimitConfig,
};
pub use error::{ChallengeError, ConfigError, RateParseError};
pub use flood::{FloodMeter, FloodTransition};
pub use gcra::{retry_after_secs, Gcra, GcraOutcome, Rate};
pub use policy::{
    Action, Decision, FloodDecision, KeyKind, KeyLabel, Policies, Policy, RequestInfo,
};
pub use store::{LimiterState, StateLimits, StoreStats};
