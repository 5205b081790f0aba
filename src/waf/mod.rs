//! Egret's WAF: a pure, synchronous rule engine (ModSecurity-style rule model with anomaly
//! scoring), the native TOML ruleset loader, per-site policies, and the tools behind
//! `egret rules test` and `egret rules explain`.
//!
//! Flow: [`Engine::load_dir`] compiles rulesets once (immutable, `Send + Sync`, share it in
//! an `Arc`); [`SitePolicyConfig::compile`] binds a site's `[waf]` table to the engine; per
//! request, [`Transaction::new`] (owned `Arc`s, storable in the proxy's per-request context)
//! or [`Engine::transaction`] (borrowed) decodes the request once,
//! [`Transaction::eval_headers`] runs phase 1 before the body is read and
//! [`Transaction::eval_body`] phase 2; each returns a [`Verdict`]. [`Engine::evaluate`] does
//! both at once.

pub mod engine;
pub mod explain;
pub mod load;
pub mod model;
pub mod multipart;
pub mod operator;
pub mod policy;
pub mod request;
pub mod seclang;
pub mod sqli;
pub mod testing;
pub mod transform;
pub mod verdict;

pub use engine::{Engine, Transaction};
pub use explain::{explain, Explanation};
pub use load::LoadError;
pub use policy::{CrsBinding, ExclusionConfig, Mode, OverLimit, SitePolicy, SitePolicyConfig};
pub use request::Request;
pub use testing::{
    evaluate_corpus, evaluate_exchange, run_rule_tests, CorpusReport, OwnedRequest, OwnedResponse,
    TestReport,
};
pub use verdict::{Action, RuleMatch, Verdict};
