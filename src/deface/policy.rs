//! Compiled defacement policy: which pages are protected, how, and what to ignore.
//!
//! Owns [`DefacePolicy::compile`], the only way from raw config to runtime types: CSS selectors
//! are parsed by lol_html, regexes built with size limits, globs compiled, domains normalized,
//! thresholds range-checked, each error naming its field. [`DefacePolicy::page`] finds the
//! protected-page rule for a request path (first match wins).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use regex::Regex;
use sha2::{Digest, Sha256};

use super::config::{DefaceConfig, ModeConfig, PageConfig, SiteDefaceConfig, ThresholdsConfig};
use super::error::ConfigError;
use super::keywords::Keywords;
use crate::request_path::normalize_path;

/// Largest compiled dynamic-text regex.
const REGEX_SIZE_LIMIT: usize = 1024 * 1024;

/// What the proxy does with a tampered page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Alert only.
    Monitor,
    /// Serve the last approved copy (marked with a response header).
    Protect,
    /// Serve a maintenance page with 503.
    Block,
}

/// Verdict thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Text similarity below which content counts as changed.
    pub content_similarity: f64,
    /// Text similarity below which the page counts as replaced.
    pub replaced_similarity: f64,
    /// Score at which a page is tampered.
    pub score: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            content_similarity: 0.6,
            replaced_similarity: 0.2,
            score: 50,
        }
    }
}

/// External domains allowed to appear: exact names and `*.suffix` wildcards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainList {
    exact: HashSet<String>,
    suffixes: Vec<String>,
}

impl DomainList {
    fn add(&mut self, field: &str, entry: &str) -> Result<(), ConfigError> {
        let e = entry.trim().trim_end_matches('.').to_ascii_lowercase();
        let name = e.strip_prefix("*.").unwrap_or(&e);
        let ip_literal = name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .ok();
        if let Some(ip) = ip_literal {
            // Same spelling as `url_host`: IPv6 in brackets.
            self.exact.insert(match ip {
                std::net::IpAddr::V4(v4) => v4.to_string(),
                std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            });
            return Ok(());
        }
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(ConfigError::new(
                field,
                format!("`{entry}` is not a domain (write `example.com` or `*.example.com`)"),
            ));
        }
        if e.starts_with("*.") {
            self.suffixes.push(format!(".{name}"));
        } else {
            self.exact.insert(e);
        }
        Ok(())
    }

    /// Whether `host` (lower-case, as [`url_host`](super::html::url_host) returns it) is allowed.
    pub fn allows(&self, host: &str) -> bool {
        self.exact.contains(host) || self.suffixes.iter().any(|s| host.ends_with(s.as_str()))
    }
}

/// Everything needed to extract and judge one page, shared by the pages it applies to. Built
/// only by [`DefacePolicy::compile`] (or [`CheckPolicy::default_with`]).
#[derive(Debug, Clone)]
pub struct CheckPolicy {
    /// CSS selectors of dynamic regions (validated by lol_html).
    pub(crate) dynamic_selectors: Vec<String>,
    /// Text patterns removed before comparing text.
    pub(crate) dynamic_text: Vec<Regex>,
    /// Allowed external domains (the site's own hosts included).
    pub(crate) allowed_domains: DomainList,
    /// Thresholds.
    pub(crate) thresholds: Thresholds,
    /// Keyword matcher.
    pub(crate) keywords: Arc<Keywords>,
    /// Largest HTML inspected.
    pub(crate) max_body_bytes: usize,
    /// SHA-256 (hex) of everything that changes extraction or verdicts.
    pub(crate) digest: String,
}

impl CheckPolicy {
    /// CSS selectors of dynamic regions.
    pub fn dynamic_selectors(&self) -> &[String] {
        &self.dynamic_selectors
    }

    /// Allowed external domains.
    pub fn allowed_domains(&self) -> &DomainList {
        &self.allowed_domains
    }

    /// Thresholds.
    pub fn thresholds(&self) -> Thresholds {
        self.thresholds
    }

    /// Largest HTML inspected, in bytes.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// SHA-256 (hex) of everything that changes extraction or verdicts: part of cache keys and
    /// recorded with baselines, so features extracted under another policy are re-extracted.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The policy used when nothing is configured (the `verdict` command without `--site`).
    pub fn default_with(keywords: Arc<Keywords>) -> Self {
        let mut p = Self {
            dynamic_selectors: Vec::new(),
            dynamic_text: Vec::new(),
            allowed_domains: DomainList::default(),
            thresholds: Thresholds::default(),
            keywords,
            max_body_bytes: DefaceConfig::default().max_body_bytes,
            digest: String::new(),
        };
        p.digest = p.compute_digest(&[]);
        p
    }

    fn compute_digest(&self, extra: &[&str]) -> String {
        let mut h = Sha256::new();
        h.update(b"egret-deface-policy-v1\0");
        for s in &self.dynamic_selectors {
            h.update(s.as_bytes());
            h.update(b"\0");
        }
        h.update(b"\x01");
        for r in &self.dynamic_text {
            h.update(r.as_str().as_bytes());
            h.update(b"\0");
        }
        h.update(b"\x01");
        let mut exact: Vec<&String> = self.allowed_domains.exact.iter().collect();
        exact.sort();
        for d in exact
            .iter()
            .map(|s| s.as_str())
            .chain(self.allowed_domains.suffixes.iter().map(String::as_str))
        {
            h.update(d.as_bytes());
            h.update(b"\0");
        }
        h.update(format!("{:?}", self.thresholds).as_bytes());
        h.update(self.keywords.digest().as_bytes());
        for e in extra {
            h.update(e.as_bytes());
        }
        hex(&h.finalize())
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A protected-page rule.
#[derive(Debug, Clone)]
pub struct PageRule {
    /// The path or glob as configured.
    pub pattern: String,
    /// The mode.
    pub mode: Mode,
    /// Extraction and verdict policy.
    pub check: Arc<CheckPolicy>,
}

/// One site's protected pages.
#[derive(Debug, Clone)]
pub struct SitePolicy {
    pages: Vec<PageRule>,
    globs: GlobSet,
}

impl SitePolicy {
    /// The rule for `path` (normalized, query string ignored), if the page is protected.
    pub fn page(&self, path: &str) -> Option<&PageRule> {
        let path = normalize_path(path);
        self.globs
            .matches(path.as_ref())
            .into_iter()
            .min()
            .and_then(|i| self.pages.get(i))
    }

    /// All rules in order.
    pub fn pages(&self) -> &[PageRule] {
        &self.pages
    }
}

/// Compiled defacement policy of every site.
#[derive(Debug, Clone)]
pub struct DefacePolicy {
    sites: HashMap<String, SitePolicy>,
    default_check: Arc<CheckPolicy>,
    cache_entries: usize,
    max_body_bytes: usize,
}

fn merge_thresholds(
    field: &str,
    base: Thresholds,
    raw: Option<&ThresholdsConfig>,
) -> Result<Thresholds, ConfigError> {
    let Some(raw) = raw else {
        return Ok(base);
    };
    let mut t = base;
    if let Some(v) = raw.content_similarity {
        t.content_similarity = v;
    }
    if let Some(v) = raw.replaced_similarity {
        t.replaced_similarity = v;
    }
    if let Some(v) = raw.score {
        t.score = v;
    }
    for (name, v) in [
        ("content_similarity", t.content_similarity),
        ("replaced_similarity", t.replaced_similarity),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return Err(ConfigError::new(
                format!("{field}.{name}"),
                format!("{v} is not in 0..=1"),
            ));
        }
    }
    if t.replaced_similarity > t.content_similarity {
        return Err(ConfigError::new(
            format!("{field}.replaced_similarity"),
            "must not be above content_similarity",
        ));
    }
    if t.score == 0 || t.score > 100 {
        return Err(ConfigError::new(
            format!("{field}.score"),
            format!("{} is not in 1..=100", t.score),
        ));
    }
    Ok(t)
}

fn check_selectors(field: &str, list: &[String], out: &mut Vec<String>) -> Result<(), ConfigError> {
    for (i, s) in list.iter().enumerate() {
        s.parse::<lol_html::Selector>()
            .map_err(|e| ConfigError::new(format!("{field}[{i}]"), format!("`{s}`: {e}")))?;
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    Ok(())
}

fn check_regexes(field: &str, list: &[String], out: &mut Vec<Regex>) -> Result<(), ConfigError> {
    for (i, s) in list.iter().enumerate() {
        let re = regex::RegexBuilder::new(s)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| ConfigError::new(format!("{field}[{i}]"), e))?;
        if !out.iter().any(|r| r.as_str() == re.as_str()) {
            out.push(re);
        }
    }
    Ok(())
}

fn check_domains(field: &str, list: &[String], out: &mut DomainList) -> Result<(), ConfigError> {
    for (i, d) in list.iter().enumerate() {
        out.add(&format!("{field}[{i}]"), d)?;
    }
    Ok(())
}

/// Site-level part of the policy: site selectors, patterns, domains (own hosts included) and
/// thresholds on top of the global base. Field names are relative to the site file.
fn compile_site_check(
    hosts: &[String],
    raw: &SiteDefaceConfig,
    base: &CheckPolicy,
) -> Result<CheckPolicy, ConfigError> {
    let mut check = base.clone();
    check_selectors(
        "deface.dynamic_selectors",
        &raw.dynamic_selectors,
        &mut check.dynamic_selectors,
    )?;
    check_regexes(
        "deface.dynamic_text",
        &raw.dynamic_text,
        &mut check.dynamic_text,
    )?;
    check_domains(
        "deface.allowed_domains",
        &raw.allowed_domains,
        &mut check.allowed_domains,
    )?;
    // The site's own hosts are never external.
    for (i, host) in hosts.iter().enumerate() {
        let host = host.rsplit_once(':').map_or(host.as_str(), |(h, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                host.as_str()
            }
        });
        check.allowed_domains.add(&format!("hosts[{i}]"), host)?;
    }
    check.thresholds = merge_thresholds(
        "deface.thresholds",
        check.thresholds,
        raw.thresholds.as_ref(),
    )?;
    Ok(check)
}

fn compile_page(
    at: &str,
    site: &str,
    page: &PageConfig,
    site_check: &CheckPolicy,
) -> Result<PageRule, ConfigError> {
    let mut check = site_check.clone();
    check_selectors(
        &format!("{at}.dynamic_selectors"),
        &page.dynamic_selectors,
        &mut check.dynamic_selectors,
    )?;
    check_regexes(
        &format!("{at}.dynamic_text"),
        &page.dynamic_text,
        &mut check.dynamic_text,
    )?;
    check_domains(
        &format!("{at}.allowed_domains"),
        &page.allowed_domains,
        &mut check.allowed_domains,
    )?;
    check.thresholds = merge_thresholds(
        &format!("{at}.thresholds"),
        check.thresholds,
        page.thresholds.as_ref(),
    )?;
    check.digest = check.compute_digest(&[site]);
    Ok(PageRule {
        pattern: page.path.clone(),
        mode: match page.mode {
            ModeConfig::Monitor => Mode::Monitor,
            ModeConfig::Protect => Mode::Protect,
            ModeConfig::Block => Mode::Block,
        },
        check: Arc::new(check),
    })
}

fn compile_site(
    hosts: &[String],
    raw: &SiteDefaceConfig,
    base: &CheckPolicy,
    site: &str,
) -> Result<SitePolicy, ConfigError> {
    let site_check = compile_site_check(hosts, raw, base)?;
    let mut pages = Vec::with_capacity(raw.pages.len());
    let mut globs = GlobSetBuilder::new();
    for (i, page) in raw.pages.iter().enumerate() {
        let at = format!("deface.pages[{i}]");
        if !page.path.starts_with('/') {
            return Err(ConfigError::new(
                format!("{at}.path"),
                format!("`{}` must start with `/`", page.path),
            ));
        }
        let glob = GlobBuilder::new(&page.path)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| ConfigError::new(format!("{at}.path"), e))?;
        globs.add(glob);
        pages.push(compile_page(&at, site, page, &site_check)?);
    }
    let globs = globs
        .build()
        .map_err(|e| ConfigError::new("deface.pages", e))?;
    Ok(SitePolicy { pages, globs })
}

impl DefacePolicy {
    /// Validates the global section and every site's section; each site comes as (name, hosts,
    /// its `[deface]` table), and the hosts count as the site's own (never external) domains.
    /// `keywords` is loaded by the caller (see [`Keywords::builtin_and_file`]) so that this stays
    /// free of I/O.
    pub fn compile<'a>(
        global: &DefaceConfig,
        keywords: Arc<Keywords>,
        sites: impl IntoIterator<Item = (&'a str, &'a [String], &'a SiteDefaceConfig)>,
    ) -> Result<Self, ConfigError> {
        if global.max_body_bytes < 1024 {
            return Err(ConfigError::new(
                "deface.max_body_bytes",
                format!("{} is below 1024", global.max_body_bytes),
            ));
        }
        if global.cache_entries == 0 {
            return Err(ConfigError::new(
                "deface.cache_entries",
                "must be at least 1",
            ));
        }
        let mut base = CheckPolicy::default_with(keywords);
        base.max_body_bytes = global.max_body_bytes;
        check_domains(
            "deface.allowed_domains",
            &global.allowed_domains,
            &mut base.allowed_domains,
        )?;
        base.thresholds = merge_thresholds(
            "deface.thresholds",
            Thresholds::default(),
            Some(&global.thresholds),
        )?;
        base.digest = base.compute_digest(&[]);
        let mut out = HashMap::new();
        for (site, hosts, raw) in sites {
            let policy = compile_site(hosts, raw, &base, site).map_err(|e| e.in_site(site))?;
            if out.insert(site.to_owned(), policy).is_some() {
                return Err(ConfigError::new("name", "site listed twice").in_site(site));
            }
        }
        Ok(Self {
            sites: out,
            default_check: Arc::new(base),
            cache_entries: global.cache_entries,
            max_body_bytes: global.max_body_bytes,
        })
    }

    /// The site's policy, if it protects any page.
    pub fn site(&self, site: &str) -> Option<&SitePolicy> {
        self.sites.get(site)
    }

    /// The protected-page rule for (`site`, `path`), if any.
    pub fn page(&self, site: &str, path: &str) -> Option<&PageRule> {
        self.sites.get(site)?.page(path)
    }

    /// The policy used for files compared without a site (global allow list and thresholds).
    pub fn default_check(&self) -> &Arc<CheckPolicy> {
        &self.default_check
    }

    /// Verdict cache size.
    pub fn cache_entries(&self) -> usize {
        self.cache_entries
    }

    /// Largest decoded body inspected.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_lists() {
        let mut d = DomainList::default();
        for e in [
            "Example.com.",
            "*.gov.cn",
            "192.0.2.1",
            "::1",
            "[2001:db8::2]",
        ] {
            d.add("f", e).unwrap();
        }
        for ok in [
            "example.com",
            "www.zj.gov.cn",
            "192.0.2.1",
            "[::1]",
            "[2001:db8::2]",
        ] {
            assert!(d.allows(ok), "{ok}");
        }
        for no in ["www.example.com", "gov.cn", "evilgov.cn", "192.0.2.2"] {
            assert!(!d.allows(no), "{no}");
        }
        assert!(d.add("f", "bad domain").is_err());
        assert!(d.add("f", "*.").is_err());
    }
}
