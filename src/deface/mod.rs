//! Defacement detection (网页防篡改).
//!
//! Owns deciding whether a protected page's response is a tampered version of its approved
//! baseline, and keeping those baselines:
//! - [`config`]: raw serde sections (global `[deface]`, per-site `deface`);
//! - [`policy`]: [`DefacePolicy`], the compiled snapshot: protected pages (paths and globs) with
//!   their mode, dynamic regions, allowed domains and thresholds;
//! - [`keywords`]: the keyword data file and matcher;
//! - [`mod@extract`]: HTML -> [`Features`] with lol_html (never regex over markup);
//! - [`verdict`]: baseline features vs current features -> [`Verdict`] with named indicators;
//! - [`cache`]: verdicts cached by content hash, so an unchanged page costs one hash;
//! - [`decode`]: gzip/deflate/br bodies decoded within a size bound;
//! - [`baseline`]: the on-disk baseline store (compressed copy + fingerprint JSON);
//! - [`action`]: mode + verdict -> what the proxy does (pass, alert, approved copy, 503);
//! - [`event`]: the JSON event of a tampering verdict.
//!
//! Everything is synchronous; the inline check runs on buffered response bodies, the prober and
//! event delivery belong to the caller.
//!
//! ```
//! use std::sync::Arc;
//! use egret::deface::{decode_body, extract, compare, is_html, charset_of, DefaceConfig, DefacePolicy,
//!     Keywords, PageAction, SiteDefaceConfig, VerdictCache};
//!
//! let site: SiteDefaceConfig = toml::from_str(r##"
//!     dynamic_selectors = ["#visit-count"]
//!     [[pages]]
//!     path = "/"
//!     mode = "protect"
//! "##).unwrap();
//! let hosts = vec!["www.demo.gov.cn".to_string()];
//! let keywords = Arc::new(Keywords::builtin()?);
//! let policy = DefacePolicy::compile(&DefaceConfig::default(), keywords, [("www", hosts.as_slice(), &site)])?;
//! let cache = VerdictCache::new(policy.cache_entries());
//!
//! let approved = b"<title>Portal</title><p>News</p><span id=visit-count>1</span>";
//! let response = b"<title>Portal</title><p>News</p><span id=visit-count>2</span>";
//! let content_type = "text/html; charset=utf-8";
//! if let Some(page) = policy.page("www", "/") {
//!     assert!(is_html(content_type));
//!     let body = decode_body(None, response, page.check.max_body_bytes())?;
//!     let baseline = extract(approved, None, &page.check)?; // normally loaded from the BaselineStore
//!     let verdict = cache.check(&body, charset_of(content_type), "approval-id", &baseline, &page.check)?;
//!     assert_eq!(PageAction::decide(page.mode, &verdict), PageAction::Pass);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod action;
pub mod baseline;
pub mod cache;
pub mod config;
pub mod decode;
pub mod error;
pub mod event;
pub mod extract;
pub mod features;
pub mod html;
pub mod keywords;
pub mod policy;
pub mod verdict;

#[cfg(test)]
mod tests;

pub use action::{PageAction, APPROVED_COPY_HEADER, APPROVED_COPY_VALUE, MAINTENANCE_PAGE};
pub use baseline::{Approval, Baseline, BaselineRecord, BaselineStore};
pub use cache::{CacheKey, VerdictCache};
pub use config::{DefaceConfig, ModeConfig, PageConfig, SiteDefaceConfig, ThresholdsConfig};
pub use decode::{charset_of, decode_body, is_html};
pub use error::{BaselineError, ConfigError, DecodeError, ExtractError, KeywordsError};
pub use event::TamperEvent;
pub use extract::extract;
pub use features::Features;
pub use keywords::{Category, Keywords};
pub use policy::{CheckPolicy, DefacePolicy, Mode, PageRule, Thresholds};
pub use verdict::{compare, Indicator, IndicatorKind, Verdict};
