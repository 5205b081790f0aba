//! Command line: `egret run`, `egret check`, `egret demo`.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "egret",
    version,
    about = "Security gateway for a city's government websites"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve traffic with the given configuration.
    Run {
        /// The global configuration file.
        #[arg(short, long, default_value = "config/egret.toml")]
        config: PathBuf,
    },
    /// Load and validate the configuration without serving (like `nginx -t`).
    Check {
        #[arg(short, long, default_value = "config/egret.toml")]
        config: PathBuf,
    },
    /// List every site's certificate: names, issuer, expiry, key type.
    Certs {
        #[arg(short, long, default_value = "config/egret.toml")]
        config: PathBuf,
    },
    /// WAF ruleset tools: run inline rule tests, explain a request.
    Rules {
        #[command(subcommand)]
        action: RulesCommand,
    },
    /// OWASP CRS tools: run the CRS regression suite in process.
    Crs {
        #[command(subcommand)]
        action: CrsCommand,
    },
    /// Defacement protection: baselines, approvals, status, offline verdicts.
    Deface {
        #[command(subcommand)]
        action: DefaceCommand,
    },
    /// Start the built-in demo origins and serve the bundled example configuration.
    Demo {
        #[arg(short, long, default_value = "config/egret.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum CrsCommand {
    /// Run the CRS YAML regression tests (paranoia 4, detection only, as the CRS suite
    /// documents) and, with `--blocking`, the blocking-mode check at paranoia 1.
    Regress {
        /// The CRS installation (holding `rules/`).
        #[arg(long)]
        crs: PathBuf,
        /// The regression tests (`tests/regression/tests` of the CRS checkout).
        #[arg(long)]
        tests: PathBuf,
        /// Known failures (`"RULE-TEST" = "reason"`); default: rulesets/crs/known-failures.toml
        /// when it exists.
        #[arg(long)]
        known: Option<PathBuf>,
        /// Also run the blocking-mode check with this benign JSONL corpus.
        #[arg(long)]
        blocking: Option<PathBuf>,
        /// Print every failure.
        #[arg(short, long)]
        verbose: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Run every rule's inline tests (all rulesets of the config, or the given files).
    Test {
        /// Ruleset files; default: the config's rulesets directory.
        files: Vec<PathBuf>,
        #[arg(short, long, default_value = "config/egret.toml")]
        config: PathBuf,
    },
    /// Evaluate JSONL corpora (one request per line) and print the share of blocked requests.
    Eval {
        corpora: Vec<PathBuf>,
        #[arg(long)]
        site: Option<String>,
        #[arg(short, long, default_value = "config/egret.toml")]
        config: PathBuf,
        /// List every blocked and every passed request.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Evaluate one request (raw HTTP text or a JSON line; `-` for stdin) and show which rules
    /// matched, on which target, after which transformations, with what score.
    Explain {
        /// The request file, or `-`.
        request: PathBuf,
        /// Use this site's WAF policy (paranoia, exclusions); default: the default policy.
        #[arg(long)]
        site: Option<String>,
        #[arg(short, long, default_value = "config/egret.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum DefaceCommand {
    /// Record baselines of every exact protected page of a site, fetched from its origin.
    Baseline {
        #[arg(long)]
        site: String,
        #[arg(short, long, default_value = "config/egret.toml")]
        config: PathBuf,
    },
    /// Accept the origin's current version of a page after a legitimate edit.
    Approve {
        #[arg(long)]
        site: String,
        #[arg(long)]
        path: String,
        #[arg(short, long, default_value = "config/egret.toml")]
        config: PathBuf,
    },
    /// List protected pages, their state and a verdict of the origin's current version.
    Status {
        #[arg(short, long, default_value = "config/egret.toml")]
        config: PathBuf,
    },
    /// Compare two saved pages; print the verdict as JSON; exit 1 when tampered.
    Verdict {
        #[arg(long)]
        baseline: PathBuf,
        #[arg(long)]
        current: PathBuf,
        /// Use this site's policy (dynamic regions, allow list, thresholds).
        #[arg(long)]
        site: Option<String>,
        /// Configuration for --site (default: config/egret.toml when --site is given).
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
}

/// Runs the command line; the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Certs { config } => certs(&config),
        Command::Rules { action } => {
            let res = match action {
                RulesCommand::Test { files, config } => crate::rules_cli::test(&files, &config),
                RulesCommand::Eval {
                    corpora,
                    site,
                    config,
                    verbose,
                } => crate::rules_cli::eval(&corpora, site.as_deref(), &config, verbose),
                RulesCommand::Explain {
                    request,
                    site,
                    config,
                } => crate::rules_cli::explain_request(&request, site.as_deref(), &config),
            };
            match res {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("egret rules: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Crs { action } => {
            let res = match action {
                CrsCommand::Regress {
                    crs,
                    tests,
                    known,
                    blocking,
                    verbose,
                } => crate::crs_cli::regress(
                    &crs,
                    &tests,
                    known.as_deref(),
                    blocking.as_deref(),
                    verbose,
                ),
            };
            match res {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("egret crs: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Deface { action } => {
            use crate::deface_cli as d;
            let res = match action {
                DefaceCommand::Baseline { site, config } => d::baseline(&config, &site),
                DefaceCommand::Approve { site, path, config } => {
                    d::approve_one(&config, &site, &path)
                }
                DefaceCommand::Status { config } => d::status(&config),
                DefaceCommand::Verdict {
                    baseline,
                    current,
                    site,
                    config,
                } => {
                    let config = config
                        .or_else(|| site.as_ref().map(|_| PathBuf::from("config/egret.toml")));
                    d::verdict(config.as_deref(), site.as_deref(), &baseline, &current)
                }
            };
            match res {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("egret deface: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Run { config } => match crate::server::run(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("egret: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Demo { config } => match crate::demo::run(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("egret demo: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn certs(config: &std::path::Path) -> ExitCode {
    let health = crate::upstream::HealthRegistry::default();
    match crate::config::load(config, &health, 1) {
        Ok(snap) => {
            let now = std::time::SystemTime::now();
            println!(
                "{:<12} {:<40} {:<8} {:>9}  {:<20} issuer",
                "site", "names", "key", "days_left", "not_after"
            );
            for c in &snap.cert_infos {
                println!(
                    "{:<12} {:<40} {:<8} {:>9}  {:<20} {}",
                    c.site,
                    c.names.join(","),
                    c.key_type,
                    c.days_left(now),
                    crate::access_log::rfc3339_from_unix(c.not_after_unix),
                    c.issuer
                );
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}

fn check(config: &std::path::Path) -> ExitCode {
    let health = crate::upstream::HealthRegistry::default();
    match crate::config::load(config, &health, 1) {
        Ok(snap) => {
            for w in &snap.warnings {
                eprintln!("warning: {w}");
            }
            let backends: usize = snap
                .sites
                .iter()
                .flat_map(|s| s.pools.iter())
                .map(|p| p.backends.len())
                .sum();
            println!(
                "{}: configuration OK: {} sites, {} host names, {} backends",
                config.display(),
                snap.sites.len(),
                snap.sites.iter().map(|s| s.hosts.len()).sum::<usize>(),
                backends
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            eprintln!(
                "{}: configuration has {} error(s)",
                config.display(),
                errors.0.len()
            );
            ExitCode::FAILURE
        }
    }
}
