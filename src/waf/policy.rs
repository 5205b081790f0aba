//! Per-site WAF policy: the raw `[waf]` table of the site config ([`SitePolicyConfig`]) and
//! its validated, compiled form ([`SitePolicy`]) with mode, paranoia, thresholds, body limit
//! and exclusions resolved against one [`Engine`].

use serde::Deserialize;

use super::engine::Engine;
use super::load::parse_target;
use super::model::{Exclusion, Phase, Selector, Variable};

/// Per-site mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The WAF does not run.
    Off,
    /// Evaluate and log, never block.
    Detect,
    /// Evaluate and block at the threshold.
    #[default]
    Block,
}

/// What to do with a body larger than the inspection limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OverLimit {
    /// Block the request (413-style; the verdict is `Block` with `body_over_limit`).
    #[default]
    Reject,
    /// Inspect only the first `inspect_body_limit` bytes.
    InspectPrefix,
}

/// One exclusion as written in the site config.
#[derive(Debug, Clone, Deserialize, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExclusionConfig {
    /// Rule ids the exclusion applies to.
    #[serde(default)]
    pub rule_ids: Vec<u32>,
    /// Rule tags the exclusion applies to (e.g. `attack-xss`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Only for request paths starting with this prefix.
    #[serde(default)]
    pub path: Option<String>,
    /// Remove only this target (e.g. `ARGS:content`) instead of the whole rule.
    #[serde(default)]
    pub target: Option<String>,
}

/// The site's raw `[waf]` table.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SitePolicyConfig {
    pub mode: Mode,
    pub paranoia: u8,
    pub inbound_threshold: u32,
    pub outbound_threshold: u32,
    pub inspect_body_limit: usize,
    pub over_limit: OverLimit,
    pub exclusions: Vec<ExclusionConfig>,
    /// Path prefixes where rich text is expected: XSS-tagged rules ignore arguments there.
    pub trusted_paths: Vec<String>,
    /// Run the response-body rules (phase 4) on text responses (HTML, JSON, XML, JS, plain).
    pub inspect_response_body: bool,
    /// Bytes of a response body held back and inspected; the rest streams through unseen.
    pub response_body_limit: usize,
    /// The OWASP CRS next to the native rules (`[waf.crs]`, see docs/crs.md).
    pub crs: Option<crate::waf::seclang::CrsConfig>,
}

impl Default for SitePolicyConfig {
    fn default() -> Self {
        SitePolicyConfig {
            mode: Mode::Block,
            paranoia: 1,
            inbound_threshold: 5,
            outbound_threshold: 4,
            inspect_body_limit: 1024 * 1024,
            over_limit: OverLimit::Reject,
            exclusions: Vec::new(),
            trusted_paths: Vec::new(),
            inspect_response_body: true,
            response_body_limit: DEFAULT_RESPONSE_BODY_LIMIT,
            crs: None,
        }
    }
}

/// Where CRS sits in a site's engine and the site's CRS settings: rules from `first_rule` on
/// are CRS (filtered by the CRS detection paranoia instead of `waf.paranoia`), and the
/// settings are seeded into TX when each transaction starts (as `crs-setup.conf` would).
#[derive(Debug, Clone, Copy)]
pub struct CrsBinding<'a> {
    pub first_rule: usize,
    pub settings: &'a crate::waf::seclang::CrsSettings,
}

/// A compiled exclusion: which rules (indexes into the engine), where, and what.
#[derive(Debug, Clone)]
pub(crate) struct CompiledExclusion {
    pub path: Option<String>,
    pub rules: Vec<usize>,
    /// `None`: the rules are off. `Some`: the target is removed from them.
    pub target: Option<Exclusion>,
}

/// Default bytes of a response body inspected by phase 4.
pub const DEFAULT_RESPONSE_BODY_LIMIT: usize = 512 * 1024;

/// Tag whose rules ignore arguments on trusted (rich-text) paths.
pub const TRUSTED_PATH_TAG: &str = "attack-xss";

/// A validated per-site policy, bound to the engine it was compiled against.
#[derive(Debug, Clone)]
pub struct SitePolicy {
    pub mode: Mode,
    pub paranoia: u8,
    pub inbound_threshold: u32,
    pub outbound_threshold: u32,
    pub inspect_body_limit: usize,
    pub over_limit: OverLimit,
    /// Some enabled rule runs in phase 3 (response headers).
    pub inspect_response_headers: bool,
    /// Some enabled rule runs in phase 4 and the site inspects response bodies.
    pub inspect_response_body: bool,
    pub response_body_limit: usize,
    pub(crate) exclusions: Vec<CompiledExclusion>,
    /// Rules disabled everywhere (paranoia filter and unscoped rule exclusions).
    pub(crate) disabled: Vec<bool>,
    /// TX variables every transaction starts with (the site's CRS settings).
    pub(crate) tx_seed: Vec<(String, Vec<u8>)>,
    /// What the policy settles before any request (see `engine::fold`).
    pub(crate) folded: Option<std::sync::Arc<crate::waf::engine::fold::Folded>>,
}

impl SitePolicy {
    /// A policy that never runs the WAF (a placeholder before the engine is known).
    pub fn off() -> SitePolicy {
        SitePolicy {
            mode: Mode::Off,
            paranoia: 1,
            inbound_threshold: 5,
            outbound_threshold: 4,
            inspect_body_limit: 1024 * 1024,
            over_limit: OverLimit::Reject,
            inspect_response_headers: false,
            inspect_response_body: false,
            response_body_limit: DEFAULT_RESPONSE_BODY_LIMIT,
            exclusions: Vec::new(),
            disabled: Vec::new(),
            tx_seed: Vec::new(),
            folded: None,
        }
    }

    /// The default policy (block, PL1, threshold 5) for `engine`.
    pub fn default_for(engine: &Engine) -> SitePolicy {
        match SitePolicyConfig::default().compile(engine) {
            Ok(p) => p,
            // The default config has no exclusions, so compiling it cannot fail.
            Err(_) => SitePolicy {
                mode: Mode::Block,
                paranoia: 1,
                inbound_threshold: 5,
                outbound_threshold: 4,
                inspect_body_limit: 1024 * 1024,
                over_limit: OverLimit::Reject,
                inspect_response_headers: false,
                inspect_response_body: false,
                response_body_limit: DEFAULT_RESPONSE_BODY_LIMIT,
                exclusions: Vec::new(),
                disabled: vec![false; engine.rules().len()],
                tx_seed: Vec::new(),
                folded: None,
            },
        }
    }
}

impl SitePolicyConfig {
    /// Validates the table against the engine's rules: paranoia 1-4, thresholds > 0, every
    /// exclusion names known rule ids or tags and a valid target.
    pub fn compile(&self, engine: &Engine) -> Result<SitePolicy, Vec<String>> {
        if self.crs.is_some() {
            return Err(vec![
                "waf.crs: this policy needs its CRS engine (compile_with_crs)".to_owned(),
            ]);
        }
        self.compile_with_crs(engine, None)
    }

    /// [`compile`](Self::compile) for an engine that holds CRS after the native rules.
    /// Exclusions (`rule_ids`, `tags`) apply to CRS rules like to native ones.
    pub fn compile_with_crs(
        &self,
        engine: &Engine,
        crs: Option<CrsBinding<'_>>,
    ) -> Result<SitePolicy, Vec<String>> {
        let mut errors = Vec::new();
        if !(1..=4).contains(&self.paranoia) {
            errors.push(format!("waf.paranoia must be 1-4, got {}", self.paranoia));
        }
        if self.inbound_threshold == 0 || self.outbound_threshold == 0 {
            errors.push("waf thresholds must be at least 1".to_owned());
        }
        if self.inspect_body_limit == 0 {
            errors.push("waf.inspect_body_limit must be positive".to_owned());
        }
        if self.response_body_limit == 0 {
            errors.push("waf.response_body_limit must be positive".to_owned());
        }
        let rules = engine.rules();
        let mut disabled: Vec<bool> = rules
            .iter()
            .enumerate()
            .map(|(i, r)| match crs {
                Some(c) if i >= c.first_rule => r.paranoia > c.settings.detection_paranoia(),
                _ => r.paranoia > self.paranoia,
            })
            .collect();
        let mut exclusions = Vec::new();
        for (n, ex) in self.exclusions.iter().enumerate() {
            let at = format!("waf.exclusions[{n}]");
            if ex.rule_ids.is_empty() && ex.tags.is_empty() {
                errors.push(format!("{at}: needs rule_ids or tags"));
                continue;
            }
            let mut idx = Vec::new();
            for id in &ex.rule_ids {
                match engine.rule_index(*id) {
                    Some(i) => idx.push(i),
                    None => errors.push(format!("{at}: unknown rule id {id}")),
                }
            }
            for tag in &ex.tags {
                let before = idx.len();
                idx.extend(
                    rules
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.has_tag(tag))
                        .map(|(i, _)| i),
                );
                if idx.len() == before {
                    errors.push(format!("{at}: no rule has tag {tag:?}"));
                }
            }
            if let Some(p) = &ex.path {
                if !p.starts_with('/') {
                    errors.push(format!("{at}: path must start with '/', got {p:?}"));
                }
            }
            let target = match &ex.target {
                None => None,
                Some(t) => match parse_target(t) {
                    Ok((target, false)) if !target.count => Some(Exclusion {
                        variable: target.variable,
                        selector: target.selector,
                    }),
                    Ok(_) => {
                        errors.push(format!(
                            "{at}: target {t:?} must be a plain variable or VAR:key"
                        ));
                        None
                    }
                    Err(e) => {
                        errors.push(format!("{at}: {e}"));
                        None
                    }
                },
            };
            if ex.path.is_none() && target.is_none() {
                for &i in &idx {
                    disabled[i] = true;
                }
            } else {
                exclusions.push(CompiledExclusion {
                    path: ex.path.clone(),
                    rules: idx,
                    target,
                });
            }
        }
        let xss: Vec<usize> = rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.has_tag(TRUSTED_PATH_TAG))
            .map(|(i, _)| i)
            .collect();
        for p in &self.trusted_paths {
            if !p.starts_with('/') {
                errors.push(format!("waf.trusted_paths: {p:?} must start with '/'"));
                continue;
            }
            for var in [Variable::Args, Variable::RequestBody] {
                exclusions.push(CompiledExclusion {
                    path: Some(p.clone()),
                    rules: xss.clone(),
                    target: Some(Exclusion {
                        variable: var,
                        selector: Selector::All,
                    }),
                });
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let enabled_in = |phase: Phase| {
            rules
                .iter()
                .zip(&disabled)
                .any(|(r, off)| !off && r.phase == phase)
        };
        let mut policy = SitePolicy {
            inspect_response_headers: enabled_in(Phase::ResponseHeaders),
            inspect_response_body: self.inspect_response_body && enabled_in(Phase::ResponseBody),
            response_body_limit: self.response_body_limit,
            mode: self.mode,
            paranoia: self.paranoia,
            inbound_threshold: self.inbound_threshold,
            outbound_threshold: self.outbound_threshold,
            inspect_body_limit: self.inspect_body_limit,
            over_limit: self.over_limit,
            exclusions,
            disabled,
            tx_seed: crs.map(|c| c.settings.tx_seed()).unwrap_or_default(),
            folded: None,
        };
        policy.folded = crate::waf::engine::fold::fold(engine, &policy).map(std::sync::Arc::new);
        Ok(policy)
    }
}
