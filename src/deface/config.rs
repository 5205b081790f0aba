//! Raw defacement configuration as written in TOML, before validation.
//!
//! Owns the serde shapes only: [`DefaceConfig`] (global `[deface]` section) and
//! [`SiteDefaceConfig`] (embedded in each site). [`DefacePolicy::compile`](super::DefacePolicy::compile)
//! is the only place they are checked.
//!
//! ```toml
//! # egret.toml (global)
//! [deface]
//! state_dir = "/var/lib/egret/deface"
//! keywords_file = "/etc/egret/deface-keywords.txt"   # extends the built-in list
//! max_body_bytes = 2097152
//! allowed_domains = ["*.gov.cn"]
//! ```
//!
//! ```toml
//! # sites/www.toml (one site; its `hosts` are never external)
//! name = "www"
//! hosts = ["www.demo.gov.cn"]
//!
//! [deface]
//! allowed_domains = ["hm.baidu.com"]
//! dynamic_selectors = ["#visit-count", ".news-list", ".today"]
//! dynamic_text = ['\d{4}-\d{2}-\d{2}', '访问量[:：]\s*\d+']
//!
//! [[deface.pages]]
//! path = "/"
//! mode = "protect"
//!
//! [[deface.pages]]
//! path = "/zwgk/**/*.htm"
//! mode = "monitor"
//! dynamic_selectors = [".pub-date"]
//! thresholds = { content_similarity = 0.5 }
//! ```

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The global `[deface]` section.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DefaceConfig {
    /// Where baselines are stored.
    pub state_dir: Option<PathBuf>,
    /// Extra keyword file (same format as the built-in list), added to it.
    pub keywords_file: Option<PathBuf>,
    /// Largest decoded body inspected; bigger responses are not checked (default 2 MiB).
    pub max_body_bytes: usize,
    /// Entries in the verdict cache (default 4096).
    pub cache_entries: usize,
    /// External domains allowed on every site (`example.com` exactly, `*.example.com` for
    /// subdomains).
    pub allowed_domains: Vec<String>,
    /// Thresholds for every site unless overridden.
    pub thresholds: ThresholdsConfig,
    /// File that tampering events are appended to (JSON lines); default `<state_dir>/events.jsonl`.
    pub event_log: Option<PathBuf>,
    /// URL that tampering events are POSTed to (bounded timeout, retried with backoff).
    pub webhook_url: Option<String>,
    /// How often the background prober fetches every exact protected path (default "60s").
    pub probe_interval: Option<String>,
    /// Pages probed at once (default 4).
    pub probe_concurrency: usize,
}

impl Default for DefaceConfig {
    fn default() -> Self {
        Self {
            state_dir: None,
            keywords_file: None,
            max_body_bytes: 2 * 1024 * 1024,
            cache_entries: 4096,
            allowed_domains: Vec::new(),
            thresholds: ThresholdsConfig::default(),
            event_log: None,
            webhook_url: None,
            probe_interval: None,
            probe_concurrency: 4,
        }
    }
}

/// A site's `deface` table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SiteDefaceConfig {
    /// Protected pages, first match wins.
    pub pages: Vec<PageConfig>,
    /// Dynamic regions (CSS selectors) ignored on every page of the site.
    pub dynamic_selectors: Vec<String>,
    /// Text patterns (regexes) ignored on every page of the site.
    pub dynamic_text: Vec<String>,
    /// External domains allowed on the site (added to the global list).
    pub allowed_domains: Vec<String>,
    /// Overrides of the global thresholds.
    pub thresholds: Option<ThresholdsConfig>,
}

/// One protected page or glob of pages.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PageConfig {
    /// Exact path (`/`, `/index.htm`) or glob (`/zwgk/**/*.htm`; `*` stays within a segment).
    pub path: String,
    /// What to do with a tampered response.
    #[serde(default)]
    pub mode: ModeConfig,
    /// More dynamic regions for these pages.
    #[serde(default)]
    pub dynamic_selectors: Vec<String>,
    /// More dynamic text patterns for these pages.
    #[serde(default)]
    pub dynamic_text: Vec<String>,
    /// More allowed external domains for these pages.
    #[serde(default)]
    pub allowed_domains: Vec<String>,
    /// Threshold overrides for these pages.
    #[serde(default)]
    pub thresholds: Option<ThresholdsConfig>,
}

/// Response to a tampered page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModeConfig {
    /// Alert only.
    #[default]
    Monitor,
    /// Serve the last approved copy.
    Protect,
    /// Serve a maintenance page with 503.
    Block,
}

/// Verdict thresholds; unset fields keep the value from the level above.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThresholdsConfig {
    /// Text similarity (0..1) below which content counts as changed (default 0.6).
    pub content_similarity: Option<f64>,
    /// Text similarity below which the page counts as replaced (default 0.2).
    pub replaced_similarity: Option<f64>,
    /// Score (0..100) at which a page is tampered (default 50).
    pub score: Option<u32>,
}
