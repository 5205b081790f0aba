//! Loading an OWASP CRS v4 installation: the site's exclusion files around
//! `rules/*.conf` (in name order, `*.conf.example` skipped), with Egret's own setup in place of
//! `crs-setup.conf`, and the native rules first, all in one [`Engine`].
//!
//! Exclusion files are split by kind, as CRS documents: their rules (`SecRule`,
//! `SecAction`, `SecMarker`, runtime `ctl:` exclusions) run before CRS, their
//! configuration-time directives (`SecRuleRemoveById`, `SecRuleUpdateTargetById`, ...) apply
//! after CRS is loaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::compile::{Compiled, Compiler};
use super::lexer::Directive;
use crate::waf::engine::Engine;
use crate::waf::load::LoadError;
use crate::waf::model::Rule;

/// A site's `crs` table in `[waf]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CrsConfig {
    /// The CRS installation (the directory holding `rules/`).
    pub dir: PathBuf,
    /// CRS blocking paranoia level (1-4); defaults to the site's `waf.paranoia`.
    #[serde(default)]
    pub paranoia: Option<u8>,
    /// CRS detection paranoia level (>= `paranoia`): higher-level rules log without scoring
    /// toward blocking.
    #[serde(default)]
    pub detection_paranoia: Option<u8>,
    /// `tx.inbound_anomaly_score_threshold` (CRS default 5).
    #[serde(default)]
    pub inbound_threshold: Option<u32>,
    /// `tx.outbound_anomaly_score_threshold` (CRS default 4).
    #[serde(default)]
    pub outbound_threshold: Option<u32>,
    /// SecLang exclusion files (relative to the site file), e.g. a CRS plugin's exclusions or
    /// `rulesets/crs/cn-exclusions.conf`.
    #[serde(default)]
    pub exclusions: Vec<PathBuf>,
    /// Further CRS settings, as `crs-setup.conf` would set them (`allowed_methods`,
    /// `arg_length`, ...): TX variable name to value.
    #[serde(default)]
    pub tx: BTreeMap<String, String>,
}

impl CrsConfig {
    /// Validates the per-site settings (paranoia 1-4, detection paranoia at least the
    /// blocking one, thresholds at least 1, `tx` names of letters, digits and `_`);
    /// `site_paranoia` is the site's `waf.paranoia`, the default blocking level. Messages
    /// name the key (`waf.crs.paranoia ...`).
    pub fn settings(&self, site_paranoia: u8) -> Result<CrsSettings, Vec<String>> {
        let mut errors = Vec::new();
        let paranoia = self.paranoia.unwrap_or(site_paranoia);
        if !(1..=4).contains(&paranoia) {
            errors.push(format!("waf.crs.paranoia must be 1-4, got {paranoia}"));
        }
        if let Some(d) = self.detection_paranoia {
            if !(1..=4).contains(&d) || d < paranoia {
                errors.push(format!(
                    "waf.crs.detection_paranoia must be {paranoia}-4 (at least waf.crs.paranoia), got {d}"
                ));
            }
        }
        for (key, t) in [
            ("inbound_threshold", self.inbound_threshold),
            ("outbound_threshold", self.outbound_threshold),
        ] {
            if t == Some(0) {
                errors.push(format!("waf.crs.{key} must be at least 1"));
            }
        }
        let mut settings = CrsSettings::new(
            paranoia,
            self.detection_paranoia,
            self.inbound_threshold,
            self.outbound_threshold,
        );
        for (k, v) in &self.tx {
            let name = k.to_ascii_lowercase();
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                errors.push(format!(
                    "waf.crs.tx: {k:?} is not a TX variable name (letters, digits, '_')"
                ));
            } else if let std::collections::btree_map::Entry::Vacant(slot) =
                settings.vars.entry(name)
            {
                slot.insert(v.clone());
            } else {
                errors.push(format!(
                    "waf.crs.tx: {k:?} is set by waf.crs.paranoia / thresholds; set it there"
                ));
            }
        }
        if errors.is_empty() {
            Ok(settings)
        } else {
            Err(errors)
        }
    }
}

/// CRS settings seeded into TX before any rule runs, as `crs-setup.conf` would.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrsSettings {
    pub vars: BTreeMap<String, String>,
}

impl CrsSettings {
    /// The highest paranoia level whose rules run (detection level, else blocking level).
    pub fn detection_paranoia(&self) -> u8 {
        let level = |k: &str| self.vars.get(k).and_then(|v| v.trim().parse::<u8>().ok());
        level("detection_paranoia_level")
            .or_else(|| level("blocking_paranoia_level"))
            .unwrap_or(1)
    }

    /// The settings as TX variables (name, value) for a transaction's start; names are
    /// lowercase, as the engine keeps every TX name.
    pub fn tx_seed(&self) -> Vec<(String, Vec<u8>)> {
        self.vars
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone().into_bytes()))
            .collect()
    }

    /// Settings for a blocking paranoia level and thresholds.
    pub fn new(
        paranoia: u8,
        detection_paranoia: Option<u8>,
        inbound: Option<u32>,
        outbound: Option<u32>,
    ) -> CrsSettings {
        let mut vars = BTreeMap::new();
        vars.insert("blocking_paranoia_level".into(), paranoia.to_string());
        if let Some(d) = detection_paranoia {
            vars.insert(
                "detection_paranoia_level".into(),
                d.max(paranoia).to_string(),
            );
        }
        if let Some(t) = inbound {
            vars.insert("inbound_anomaly_score_threshold".into(), t.to_string());
        }
        if let Some(t) = outbound {
            vars.insert("outbound_anomaly_score_threshold".into(), t.to_string());
        }
        CrsSettings { vars }
    }

    /// The settings of the CRS regression suite (`tests/regression/README.md`): paranoia 4,
    /// detection only, and the documented argument and file limits.
    pub fn regression() -> CrsSettings {
        let mut s = CrsSettings::new(4, None, None, None);
        for (k, v) in [
            ("crs_validate_utf8_encoding", "1"),
            ("arg_name_length", "100"),
            ("arg_length", "400"),
            ("total_arg_length", "64000"),
            ("max_num_args", "255"),
            ("max_file_size", "64100"),
            ("combined_file_sizes", "65535"),
        ] {
            s.vars.insert(k.into(), v.into());
        }
        s
    }

    /// Egret's replacement for `crs-setup.conf`: one `SecAction` (id 900000, phase 1) that
    /// sets the variables; `crs_setup_version` comes from the CRS version.
    pub fn setup_text(&self, version: u32) -> String {
        let mut s =
            String::from("SecAction \"id:900000,phase:1,pass,nolog,t:none,tag:'egret-crs-setup'");
        s.push_str(&format!(",setvar:tx.crs_setup_version={version}"));
        for (k, v) in &self.vars {
            s.push_str(&format!(",setvar:'tx.{k}={}'", v.replace('\'', "")));
        }
        s.push_str("\"\n");
        s
    }
}

/// `OWASP_CRS/4.28.0` (or a `VERSION` file's `4.28.0`) as CRS's number, 4280.
pub fn version_number(v: &str) -> Option<u32> {
    let v = v
        .trim()
        .trim_start_matches("OWASP_CRS/")
        .trim_start_matches('v');
    let mut parts = v.split('.').map(|p| p.trim().parse::<u32>().ok());
    let (a, b, c) = (
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    );
    Some(a * 1000 + b * 10 + c)
}

/// The CRS rule files of an installation, in load order.
pub fn rule_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let rules = dir.join("rules");
    let rd = std::fs::read_dir(&rules).map_err(|e| LoadError::io(&rules, &e))?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(LoadError::plain(format!(
            "{}: no *.conf rule files (is this a CRS installation?)",
            rules.display()
        )));
    }
    Ok(files)
}

/// The CRS version of an installation (its `VERSION` file, else 4.0.0).
pub fn version(dir: &Path) -> u32 {
    std::fs::read_to_string(dir.join("VERSION"))
        .ok()
        .and_then(|v| version_number(&v))
        .unwrap_or(4000)
}

/// Whether a directive applies at configuration time (after CRS is loaded).
fn is_config_time(d: &Directive) -> bool {
    d.name.starts_with("SecRuleRemove") || d.name.starts_with("SecRuleUpdate")
}

/// Compiles CRS with `settings` and the exclusion files.
pub fn compile(
    dir: &Path,
    settings: &CrsSettings,
    exclusions: &[PathBuf],
) -> Result<(Compiled, Vec<PathBuf>), Vec<LoadError>> {
    let files = rule_files(dir).map_err(|e| vec![e])?;
    let mut errs = Vec::new();
    let mut c = Compiler::new();
    let setup_path = PathBuf::from("<egret crs setup>");
    match super::lex_file(&setup_path, &settings.setup_text(version(dir))) {
        Ok(d) => c.add_file(&setup_path, &d),
        Err(e) => errs.push(e),
    }
    let mut later: Vec<(PathBuf, Vec<Directive>)> = Vec::new();
    for f in exclusions {
        match super::read_file(f) {
            Ok(ds) => {
                let (cfg, run): (Vec<Directive>, Vec<Directive>) =
                    ds.into_iter().partition(is_config_time);
                c.add_file(f, &run);
                later.push((f.clone(), cfg));
            }
            Err(e) => errs.push(e),
        }
    }
    for f in &files {
        match super::read_file(f) {
            Ok(d) => c.add_file(f, &d),
            Err(e) => errs.push(e),
        }
    }
    for (f, ds) in &later {
        c.add_file(f, ds);
    }
    let mut all = files;
    all.extend(exclusions.iter().cloned());
    match c.finish() {
        Ok(x) if errs.is_empty() => Ok((x, all)),
        Ok(_) => Err(errs),
        Err(mut e) => {
            errs.append(&mut e);
            Err(errs)
        }
    }
}

/// Native rules first, then CRS with the given settings and exclusions, in one engine.
pub fn engine(
    native: Vec<Rule>,
    native_files: Vec<PathBuf>,
    dir: &Path,
    settings: &CrsSettings,
    exclusions: &[PathBuf],
) -> Result<Engine, Vec<LoadError>> {
    let (compiled, files) = compile(dir, settings, exclusions)?;
    let mut all = native_files;
    all.extend(files);
    super::build_engine(native, compiled, all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(version_number("OWASP_CRS/4.28.0"), Some(4280));
        assert_eq!(version_number("4.3.0\n"), Some(4030));
        assert_eq!(version_number("x"), None);
    }

    #[test]
    fn site_settings_are_validated() {
        let cfg = |toml: &str| -> CrsConfig { toml::from_str(toml).expect("parses") };
        let s = cfg("dir = \"/crs\"\ninbound_threshold = 7\n[tx]\nallowed_methods = \"GET POST\"")
            .settings(2)
            .expect("valid");
        assert_eq!(s.vars["blocking_paranoia_level"], "2");
        assert_eq!(s.vars["inbound_anomaly_score_threshold"], "7");
        assert_eq!(s.vars["allowed_methods"], "GET POST");
        assert_eq!(s.detection_paranoia(), 2);
        let e = cfg("dir = \"/crs\"\nparanoia = 3\ndetection_paranoia = 2\noutbound_threshold = 0\n[tx]\n\"a'b\" = \"1\"")
            .settings(1)
            .expect_err("invalid");
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(toml::from_str::<CrsConfig>("dir = \"/crs\"\nparanoya = 1").is_err());
    }

    #[test]
    fn setup_text_is_one_secaction() {
        let t = CrsSettings::new(2, None, Some(7), None).setup_text(4280);
        let d = super::super::lexer::lex(&t).expect("lexes");
        assert_eq!(d.len(), 1);
        assert!(d[0].args[0].contains("setvar:'tx.blocking_paranoia_level=2'"));
        assert!(d[0].args[0].contains("tx.crs_setup_version=4280"));
    }
}
