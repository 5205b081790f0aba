//! `egret crs regress`: the OWASP CRS regression suite, evaluated in process, and the
//! blocking-mode check at paranoia 1.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use crate::waf::seclang::crs::{self, CrsSettings};
use crate::waf::seclang::regress;
use crate::waf::{Engine, Mode, OwnedRequest, SitePolicy, SitePolicyConfig};

/// Default known-failures file, relative to the working directory.
pub const KNOWN_FAILURES: &str = "rulesets/crs/known-failures.toml";

fn errors(errs: Vec<crate::waf::LoadError>) -> anyhow::Error {
    anyhow::anyhow!(
        "{}",
        errs.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// The exclusion profile for Chinese-language sites, used by the blocking check.
pub const CN_PROFILE: &str = "rulesets/crs/cn-exclusions.conf";

/// The example rich-text editor exclusions (paths and fields of the benign corpus), loaded by
/// the blocking check after [`CN_PROFILE`].
pub const CN_EDITOR_PROFILE: &str = "rulesets/crs/cn-editor-exclusions.conf";

/// The exclusion files of the blocking check, in load order (relative to `base`).
pub fn blocking_profile(base: &Path) -> Vec<PathBuf> {
    [CN_PROFILE, CN_EDITOR_PROFILE]
        .iter()
        .map(|p| base.join(p))
        .collect()
}

/// A CRS-only engine with `settings`, and a policy in `mode` at `paranoia`.
pub fn crs_engine(
    dir: &Path,
    settings: &CrsSettings,
    mode: Mode,
    paranoia: u8,
) -> anyhow::Result<(Engine, SitePolicy)> {
    crs_engine_with(dir, settings, &[], mode, paranoia)
}

/// [`crs_engine`] with SecLang exclusion files.
pub fn crs_engine_with(
    dir: &Path,
    settings: &CrsSettings,
    exclusions: &[PathBuf],
    mode: Mode,
    paranoia: u8,
) -> anyhow::Result<(Engine, SitePolicy)> {
    let engine = crs::engine(Vec::new(), Vec::new(), dir, settings, exclusions).map_err(errors)?;
    let cfg = SitePolicyConfig {
        mode,
        paranoia,
        ..SitePolicyConfig::default()
    };
    let policy = cfg
        .compile(&engine)
        .map_err(|e| anyhow::anyhow!("{}", e.join("\n")))?;
    Ok((engine, policy))
}

/// Reads a JSONL corpus of requests, each with its note.
pub fn read_corpus(path: &Path) -> anyhow::Result<Vec<(OwnedRequest, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (mut r, note) = OwnedRequest::from_json_line(line)
            .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))?;
        // Corpus lines carry no framing headers; a real client sends a length with a body.
        let framed = r.headers.iter().any(|(k, _)| {
            k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
        });
        if !framed && (!r.body.is_empty() || matches!(r.method.as_str(), "POST" | "PUT" | "PATCH"))
        {
            r.headers.push((
                "Content-Length".into(),
                r.body.len().to_string().into_bytes(),
            ));
        }
        out.push((r, note));
    }
    Ok(out)
}

/// Runs the suite; exit 1 when a test not listed as known fails (or the blocking check fails).
pub fn regress(
    dir: &Path,
    tests: &Path,
    known: Option<&Path>,
    blocking: Option<&Path>,
    verbose: bool,
) -> anyhow::Result<ExitCode> {
    let known_path: Option<PathBuf> = match known {
        Some(p) => Some(p.to_owned()),
        None => Some(PathBuf::from(KNOWN_FAILURES)).filter(|p| p.exists()),
    };
    let known = match &known_path {
        Some(p) => regress::read_known(p).map_err(|e| anyhow::anyhow!(e))?,
        None => Default::default(),
    };
    let t0 = Instant::now();
    let (engine, policy) = crs_engine(dir, &CrsSettings::regression(), Mode::Detect, 4)?;
    println!(
        "CRS {}: {} rules loaded in {:.1}s (paranoia 4, detection only)",
        dir.display(),
        engine.rules().len(),
        t0.elapsed().as_secs_f64()
    );
    let t1 = Instant::now();
    let rep = regress::run(&engine, &policy, tests, &known).map_err(|e| anyhow::anyhow!(e))?;
    for e in &rep.errors {
        println!("error: {e}");
    }
    for (g, (p, f)) in &rep.groups {
        let mark = if *f == 0 { "ok  " } else { "FAIL" };
        println!("{mark} {g}: {p} passed, {f} failed");
    }
    if verbose {
        for (name, why) in &rep.failures {
            println!("  failed {name}: {why}");
        }
    } else if !rep.failures.is_empty() {
        let names: Vec<&str> = rep.failures.iter().map(|(n, _)| n.as_str()).collect();
        println!("failed: {}", names.join(" "));
    }
    if !rep.known.is_empty() {
        println!(
            "{} known failures skipped (listed in {})",
            rep.known.len(),
            known_path
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
    }
    let total = rep.passed + rep.failed + rep.known.len();
    println!(
        "pass rate {:.2}% ({} of {} tests, known failures counted as failed), {:.1}s",
        if total == 0 {
            0.0
        } else {
            rep.passed as f64 * 100.0 / total as f64
        },
        rep.passed,
        total,
        t1.elapsed().as_secs_f64()
    );
    let mut ok = rep.failed == 0 && rep.errors.is_empty();
    if let Some(corpus) = blocking {
        let benign = read_corpus(corpus)?;
        let (mut cases, _) = regress::all_cases(tests).map_err(|e| anyhow::anyhow!(e))?;
        cases.retain(|c| !known.contains_key(&c.name));
        let exclusions: Vec<PathBuf> = blocking_profile(Path::new(""))
            .into_iter()
            .filter(|p| p.exists())
            .collect();
        let (engine, policy) = crs_engine_with(
            dir,
            &CrsSettings::new(1, None, None, None),
            &exclusions,
            Mode::Block,
            1,
        )?;
        println!(
            "blocking check with exclusions: [{}]",
            exclusions
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let b = regress::blocking_check(&engine, &policy, &cases, &benign);
        for (d, ids) in &b.benign_blocked {
            println!("  ordinary request blocked: {d} [{ids}]");
        }
        if verbose {
            for (d, ids) in &b.tricky_blocked {
                println!("  tricky prose blocked: {d} [{ids}]");
            }
            for (n, ids) in &b.attacks_passed {
                println!("  attack passed: {n} [{ids}]");
            }
        }
        println!(
            "blocking check (paranoia 1, block mode): ordinary {} of {} passed, attacks {} of {} blocked",
            b.benign_total - b.benign_blocked.len(),
            b.benign_total,
            b.attacks_total - b.attacks_passed.len(),
            b.attacks_total
        );
        let rules: Vec<String> = b
            .tricky_rule_counts()
            .iter()
            .map(|(id, n)| format!("{id}\u{d7}{n}"))
            .collect();
        println!(
            "  not checked: \"{}\" requests {} of {} passed; blocked by [{}] (-v lists them)",
            regress::TRICKY_PROSE,
            b.tricky_total - b.tricky_blocked.len(),
            b.tricky_total,
            rules.join(" ")
        );
        ok &= b.ok();
    }
    println!("{} passed, {} failed", rep.passed, rep.failed);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
