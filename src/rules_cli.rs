//! `egret rules ...`: ruleset tools for security staff (inline tests, explain a request).

use crate::waf::{explain, run_rule_tests, Engine, SitePolicy};
use anyhow::Context;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn engine_for(files: &[PathBuf], config: &Path) -> anyhow::Result<std::sync::Arc<Engine>> {
    if files.is_empty() {
        let snap = crate::config::load(config, &crate::upstream::HealthRegistry::default(), 0)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        return Ok(snap.waf.clone());
    }
    Engine::from_files(files)
        .map(std::sync::Arc::new)
        .map_err(|errs| {
            anyhow::anyhow!(
                "{}",
                errs.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })
}

/// A site's engine and policy (the site's CRS engine when it runs CRS), or the native engine
/// with the default policy.
fn site_policy(
    snap: &crate::snapshot::Snapshot,
    site: Option<&str>,
) -> anyhow::Result<(std::sync::Arc<Engine>, SitePolicy)> {
    Ok(match site {
        Some(s) => {
            let site = snap
                .sites
                .iter()
                .find(|x| x.name == s)
                .ok_or_else(|| anyhow::anyhow!("no site named {s:?}"))?;
            (snap.waf_engine(site).clone(), SitePolicy::clone(&site.waf))
        }
        None => (snap.waf.clone(), SitePolicy::default_for(&snap.waf)),
    })
}

/// Runs every rule's inline tests; exit 1 when one fails.
pub fn test(files: &[PathBuf], config: &Path) -> anyhow::Result<ExitCode> {
    let engine = engine_for(files, config)?;
    let report = run_rule_tests(&engine);
    print!("{report}");
    let failed = report.failed();
    let passed = report.results.len() - failed;
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Evaluates one request (raw HTTP text or a JSON line, from a file or `-` for stdin) with a
/// site's policy (or the default one) and prints which rules matched and why.
pub fn explain_request(
    input: &Path,
    site: Option<&str>,
    config: &Path,
) -> anyhow::Result<ExitCode> {
    let mut text = String::new();
    if input == Path::new("-") {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text = std::fs::read_to_string(input)
            .with_context(|| format!("cannot read {}", input.display()))?;
    }
    let snap = crate::config::load(config, &crate::upstream::HealthRegistry::default(), 0)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (engine, policy) = site_policy(&snap, site)?;
    let e = explain(&engine, &policy, &text).map_err(|e| anyhow::anyhow!(e))?;
    print!("{e}");
    Ok(ExitCode::SUCCESS)
}

/// Evaluates JSONL corpora (one request per line) with a site's policy (or the default one)
/// and prints the block rate of each; `--verbose` lists the blocked / missed lines.
pub fn eval(
    corpora: &[PathBuf],
    site: Option<&str>,
    config: &Path,
    verbose: bool,
) -> anyhow::Result<ExitCode> {
    let snap = crate::config::load(config, &crate::upstream::HealthRegistry::default(), 0)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (engine, policy) = site_policy(&snap, site)?;
    for c in corpora {
        let r = crate::waf::evaluate_corpus(&engine, &policy, c).map_err(|e| anyhow::anyhow!(e))?;
        println!(
            "{}: {} of {} blocked ({:.2}%)",
            c.display(),
            r.blocked,
            r.total,
            r.block_rate() * 100.0
        );
        if verbose {
            for (line, note, verdict) in &r.blocked_lines {
                println!("  blocked line {line}: {note}: {verdict}");
            }
            for (line, note, verdict) in &r.not_blocked {
                println!("  passed  line {line}: {note}: {verdict}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
