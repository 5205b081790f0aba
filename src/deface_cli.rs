//! `egret deface ...`: baselines, approvals, status and offline verdicts for security staff.

use crate::deface::{compare, extract, BaselineStore};
use crate::protect::{approve, exact_paths, fetch_from_origin, PageGuard};
use crate::snapshot::Snapshot;
use anyhow::Context;
use std::path::Path;
use std::process::ExitCode;

fn load(config: &Path) -> anyhow::Result<Snapshot> {
    crate::config::load(config, &crate::upstream::HealthRegistry::default(), 1)
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")
}

/// Records baselines of every exact protected page of `site` from the origin.
pub fn baseline(config: &Path, site: &str) -> anyhow::Result<ExitCode> {
    let snap = load(config)?;
    let paths = exact_paths(&snap, site);
    if paths.is_empty() {
        anyhow::bail!("site {site:?} protects no exact path (globs are approved page by page with `egret deface approve`)");
    }
    let guard = PageGuard::new(1);
    let rt = runtime()?;
    let mut failed = 0;
    for p in &paths {
        match rt.block_on(approve(
            &guard.fetcher,
            &crate::ratelimit::shared::RedisLimiter::default(),
            &snap,
            site,
            p,
        )) {
            Ok(rec) => println!(
                "{site}{p}: baseline recorded ({} bytes, sha256 {})",
                rec.content_length, rec.content_sha256
            ),
            Err(e) => {
                failed += 1;
                eprintln!("{site}{p}: {e}");
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Accepts the origin's current version of one page.
pub fn approve_one(config: &Path, site: &str, path: &str) -> anyhow::Result<ExitCode> {
    let snap = load(config)?;
    let guard = PageGuard::new(1);
    let rec = runtime()?
        .block_on(approve(
            &guard.fetcher,
            &crate::ratelimit::shared::RedisLimiter::default(),
            &snap,
            site,
            path,
        ))
        .map_err(|e| anyhow::anyhow!(e))?;
    println!(
        "{site}{path}: approved ({} bytes, sha256 {})",
        rec.content_length, rec.content_sha256
    );
    Ok(ExitCode::SUCCESS)
}

/// Lists protected pages with their baseline and a verdict of the origin's current version.
pub fn status(config: &Path) -> anyhow::Result<ExitCode> {
    let snap = load(config)?;
    let store = snap
        .deface_settings
        .state_dir
        .as_ref()
        .map(BaselineStore::open)
        .transpose()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let guard = PageGuard::new(16);
    let rt = runtime()?;
    let metrics = crate::metrics::Metrics::new()?;
    println!(
        "{:<10} {:<24} {:<8} {:<12} {:<6} indicators",
        "site", "path", "mode", "state", "score"
    );
    let mut tampered = 0;
    for site in &snap.sites {
        let Some(policy) = snap.deface.site(&site.name) else {
            continue;
        };
        for rule in policy.pages() {
            let path = &rule.pattern;
            let mode = format!("{:?}", rule.mode).to_lowercase();
            if path.contains(['*', '?', '[', '{']) {
                let n = store
                    .as_ref()
                    .and_then(|s| s.list(Some(&site.name)).ok())
                    .map(|(r, _)| r.len())
                    .unwrap_or(0);
                println!("{:<10} {:<24} {:<8} {:<12} {:<6} ({n} baselines for the site; globs are checked inline)", site.name, path, mode, "glob", "");
                continue;
            }
            let host = site.primary_host();
            match rt.block_on(fetch_from_origin(
                &guard.fetcher,
                site,
                path,
                &host,
                rule.check.max_body_bytes(),
            )) {
                Ok(f) => {
                    let _ = guard.judge(&snap, &metrics, site, path, rule, f, "cli");
                }
                Err(e) => println!(
                    "{:<10} {:<24} {:<8} {:<12} {:<6} {e}",
                    site.name, path, mode, "error", ""
                ),
            }
        }
    }
    for s in guard.statuses() {
        if s.state == "tampered" {
            tampered += 1;
        }
        println!(
            "{:<10} {:<24} {:<8} {:<12} {:<6} {}",
            s.site,
            s.path,
            s.mode,
            s.state,
            s.score,
            s.indicators.join("; ")
        );
    }
    Ok(if tampered == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Compares two saved pages with a site's policy (or the default one); prints the verdict JSON.
/// Exit status 0 when clean, 1 when tampered.
pub fn verdict(
    config: Option<&Path>,
    site: Option<&str>,
    baseline: &Path,
    current: &Path,
) -> anyhow::Result<ExitCode> {
    let a =
        std::fs::read(baseline).with_context(|| format!("cannot read {}", baseline.display()))?;
    let b = std::fs::read(current).with_context(|| format!("cannot read {}", current.display()))?;
    let policy = match (config, site) {
        (Some(c), Some(s)) => {
            let snap = load(c)?;
            let sp = snap
                .deface
                .site(s)
                .ok_or_else(|| anyhow::anyhow!("site {s:?} has no [deface] pages"))?;
            let rule = sp
                .pages()
                .first()
                .ok_or_else(|| anyhow::anyhow!("site {s:?} has no protected page"))?;
            rule.check.clone()
        }
        (Some(c), None) => load(c)?.deface.default_check().clone(),
        (None, _) => {
            let kw = std::sync::Arc::new(crate::deface::Keywords::builtin()?);
            std::sync::Arc::new(crate::deface::CheckPolicy::default_with(kw))
        }
    };
    let fa = extract(&a, None, &policy).with_context(|| format!("{}", baseline.display()))?;
    let fb = extract(&b, None, &policy).with_context(|| format!("{}", current.display()))?;
    let v = compare(&fa, &fb, &policy);
    println!("{}", v.to_json());
    Ok(if v.tampered {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
