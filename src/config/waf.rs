//! The WAF engines of one load: the native rulesets' engine, shared by every site without
//! CRS, and one engine per distinct CRS setup (CRS directory and exclusion files, native rules
//! first), shared by every site that uses that setup. Per-site CRS settings (paranoia,
//! thresholds, `tx`) are not part of the engine: the site's policy seeds them into TX.

use super::compile::{resolve_in, table_error};
use super::error::{ConfigError, ConfigErrors, SourceFile};
use crate::waf::seclang::crs;
use crate::waf::seclang::CrsSettings;
use crate::waf::{CrsBinding, Engine, LoadError, SitePolicy, SitePolicyConfig};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What an engine is cached by: the CRS installation and the exclusion files, in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CrsKey {
    dir: PathBuf,
    exclusions: Vec<PathBuf>,
}

/// A site's compiled `[waf]` table.
pub struct SiteWaf {
    pub policy: SitePolicy,
    /// The CRS engine the policy was compiled against; `None`: the native engine.
    pub engine: Option<Arc<Engine>>,
}

/// The engines built so far in this load.
pub struct WafEngines {
    native: Arc<Engine>,
    /// `None`: that setup failed to load (its errors were reported once).
    crs: HashMap<CrsKey, Option<Arc<Engine>>>,
}

impl WafEngines {
    pub fn new(native: Arc<Engine>) -> WafEngines {
        WafEngines {
            native,
            crs: HashMap::new(),
        }
    }

    /// Directories whose files the CRS engines were read from (CRS `rules/` directories and
    /// the exclusion files' directories), for the reload watcher.
    pub fn watched_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for key in self.crs.keys() {
            let rules = key.dir.join("rules");
            let parents = key.exclusions.iter().filter_map(|p| p.parent());
            for d in std::iter::once(rules.as_path()).chain(parents) {
                if !dirs.iter().any(|x| x == d) {
                    dirs.push(d.to_path_buf());
                }
            }
        }
        dirs.sort();
        dirs
    }

    /// Compiles a site's `[waf]` table (and its `[waf.crs]` block); errors point at the site
    /// file's table, or at `file:line` of a CRS or exclusion file that does not load.
    pub fn site(
        &mut self,
        sf: &SourceFile,
        cfg: &SitePolicyConfig,
        errors: &mut ConfigErrors,
    ) -> Option<SiteWaf> {
        let Some(crs_cfg) = &cfg.crs else {
            return match cfg.compile(&self.native) {
                Ok(policy) => Some(SiteWaf {
                    policy,
                    engine: None,
                }),
                Err(msgs) => {
                    for m in msgs {
                        errors.push(table_error(sf, "waf", format!("waf: {m}")));
                    }
                    None
                }
            };
        };
        let crs_table = if sf.text.contains("[waf.crs") {
            "waf.crs"
        } else {
            "waf"
        };
        let settings: Option<CrsSettings> = match crs_cfg.settings(cfg.paranoia) {
            Ok(s) => Some(s),
            Err(msgs) => {
                for m in msgs {
                    errors.push(table_error(sf, crs_table, m));
                }
                None
            }
        };
        let base = sf.path.parent().unwrap_or(Path::new("."));
        let key = CrsKey {
            dir: resolve_in(base, &crs_cfg.dir.to_string_lossy()),
            exclusions: crs_cfg
                .exclusions
                .iter()
                .map(|p| resolve_in(base, &p.to_string_lossy()))
                .collect(),
        };
        if !key.dir.join("rules").is_dir() {
            errors.push(table_error(
                sf,
                crs_table,
                format!(
                    "waf.crs.dir: {} is not a CRS installation (no rules/ directory)",
                    key.dir.display()
                ),
            ));
            return None;
        }
        let engine = self.engine_for(&key, errors)?;
        let settings = settings?;
        let binding = CrsBinding {
            first_rule: self.native.rules().len(),
            settings: &settings,
        };
        match cfg.compile_with_crs(&engine, Some(binding)) {
            Ok(policy) => Some(SiteWaf {
                policy,
                engine: Some(engine),
            }),
            Err(msgs) => {
                for m in msgs {
                    errors.push(table_error(sf, "waf", format!("waf: {m}")));
                }
                None
            }
        }
    }

    /// The engine of one CRS setup, built on first use.
    fn engine_for(&mut self, key: &CrsKey, errors: &mut ConfigErrors) -> Option<Arc<Engine>> {
        if let Some(e) = self.crs.get(key) {
            return e.clone();
        }
        let built = build(&self.native, key);
        let engine = match built {
            Ok(e) => Some(Arc::new(e)),
            Err(errs) => {
                for e in errs {
                    errors.push(config_error(e, &key.dir));
                }
                None
            }
        };
        self.crs.insert(key.clone(), engine.clone());
        engine
    }
}

/// Native rules (loaded again from the native engine's files) followed by CRS.
fn build(native: &Engine, key: &CrsKey) -> Result<Engine, Vec<LoadError>> {
    let native_files = native.files().to_vec();
    let rules = crate::waf::load::load_files(&native_files)?;
    crs::engine(
        rules,
        native_files,
        &key.dir,
        &CrsSettings::default(),
        &key.exclusions,
    )
}

fn config_error(e: LoadError, default_file: &Path) -> ConfigError {
    ConfigError {
        file: e.file.clone().unwrap_or_else(|| default_file.to_path_buf()),
        line: e.line,
        col: e.col,
        message: match e.rule_id {
            Some(id) => format!("rule {id}: {}", e.message),
            None => e.message,
        },
    }
}
