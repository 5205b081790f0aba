//! The deployment files under deploy/: the Prometheus scrape config, alert rules and their unit
//! tests (checked with promtool), the Grafana dashboard (valid JSON, a site selector, PromQL that
//! parses and only uses Egret's documented metric families), the systemd unit and logrotate file.
//!
//! promtool comes from the Debian package `prometheus` (`./scripts/test` installs it); set
//! `PROMTOOL` to use another binary.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deploy(rel: &str) -> PathBuf {
    root().join("deploy").join(rel)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Runs promtool with `args`; panics with its whole output unless it succeeds. Returns the output.
fn promtool(args: &[&str]) -> String {
    let bin = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".to_string());
    let out = match Command::new(&bin).args(args).current_dir(root()).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{bin}` not found: install the Debian package `prometheus` \
             (`sudo apt-get install prometheus`; ./scripts/test installs it when missing), \
             or set PROMTOOL to a promtool binary"
        ),
        Err(e) => panic!("cannot run `{bin}`: {e}"),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "`promtool {}` failed ({}):\n{text}",
        args.join(" "),
        out.status
    );
    println!("promtool {}:\n{text}", args.join(" "));
    text
}

fn path_arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

// ------------------------------------------------------------------------------------ Prometheus

#[test]
fn prometheus_config_passes_promtool_check_config() {
    let out = promtool(&[
        "check",
        "config",
        &path_arg(&deploy("prometheus/prometheus.yml")),
    ]);
    assert!(
        out.contains("1 rule files found"),
        "rule file not picked up:\n{out}"
    );
    let text = read(&deploy("prometheus/prometheus.yml"));
    assert!(
        text.contains("job_name: egret"),
        "scrape job must be called egret"
    );
    assert!(text.contains("static_configs:"));
    assert!(text.contains("scrape_interval: 15s"));
}

const ALERTS: &[&str] = &[
    "EgretSiteDown",
    "EgretHigh5xxRatio",
    "EgretWafBlockSurge",
    "EgretRateLimitSurge",
    "EgretPageTampered",
    "EgretCertificateExpiringSoon",
    "EgretCertificateExpired",
    "EgretConfigReloadFailed",
    "EgretDown",
];

#[test]
fn alert_rules_pass_promtool_check_rules() {
    let out = promtool(&[
        "check",
        "rules",
        &path_arg(&deploy("prometheus/egret-alerts.yml")),
    ]);
    assert!(out.contains("SUCCESS"), "{out}");
    let rules = read(&deploy("prometheus/egret-alerts.yml"));
    let defined: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(str::trim)
        .collect();
    for want in ALERTS {
        assert!(
            defined.contains(want),
            "alert {want} missing; have {defined:?}"
        );
    }
    // Every alert has a severity and bilingual summary/description naming the site or instance.
    for block in rules.split("- alert:").skip(1) {
        let name = block.split_whitespace().next().unwrap_or("?");
        assert!(
            block.contains("severity: critical") || block.contains("severity: warning"),
            "{name}: no severity label"
        );
        for key in ["summary:", "description:"] {
            let line = block
                .lines()
                .find(|l| l.trim_start().starts_with(key))
                .unwrap_or_else(|| panic!("{name}: no {key} annotation"));
            assert!(
                line.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
                "{name}: {key} has no Chinese text"
            );
            assert!(
                line.contains(" / "),
                "{name}: {key} should be `中文 / English`"
            );
            assert!(
                line.contains("$labels.site") || line.contains("$labels.instance"),
                "{name}: {key} names neither the site nor the instance"
            );
        }
    }
}

#[test]
fn alert_rules_pass_promtool_unit_tests() {
    let test_file = deploy("prometheus/egret-alerts.test.yml");
    let out = promtool(&["test", "rules", &path_arg(&test_file)]);
    assert!(out.contains("SUCCESS"), "{out}");
    // Each alert is tested, with at least one case where it fires and one where it must not.
    let tests = read(&test_file);
    for want in ALERTS {
        let cases: Vec<&str> = tests
            .split("- eval_time:")
            .skip(1)
            .filter(|c| c.contains(&format!("alertname: {want}\n")))
            .collect();
        assert!(!cases.is_empty(), "{want} has no unit test");
        assert!(
            cases.iter().any(|c| c.contains("exp_labels:")
                && c.contains("exp_annotations:")
                && c.contains("severity:")),
            "{want}: no case where it fires with labels and annotations"
        );
        // promtool matches exp_alerts exactly, so series of other sites in a firing case must
        // not fire either; an explicit quiet evaluation is required on top of that.
        assert!(
            cases.iter().any(|c| c.contains("exp_alerts: []")),
            "{want}: no case where it must not fire (exp_alerts: [])"
        );
    }
}

// ------------------------------------------------------------------------------------ Grafana

/// Metric families with a `site` label: dashboard selectors on them must filter by `$site`.
const SITE_FAMILIES: &[&str] = &[
    "egret_requests_total",
    "egret_request_duration_seconds",
    "egret_upstream_duration_seconds",
    "egret_request_body_bytes_total",
    "egret_response_body_bytes_total",
    "egret_upstream_backend_up",
    "egret_upstream_errors_total",
    "egret_waf_rule_matches_total",
    "egret_ratelimit_decisions_total",
    "egret_deface_checks_total",
    "egret_deface_tampered_pages",
    "egret_tls_certificate_expiry_timestamp_seconds",
];

/// Families the dashboard must show (one per section).
const SHOWN: &[&str] = &[
    "egret_requests_total",
    "egret_request_duration_seconds",
    "egret_upstream_duration_seconds",
    "egret_upstream_backend_up",
    "egret_upstream_errors_total",
    "egret_waf_rule_matches_total",
    "egret_ratelimit_decisions_total",
    "egret_deface_checks_total",
    "egret_deface_tampered_pages",
    "egret_tls_certificate_expiry_timestamp_seconds",
    "egret_config_reloads_total",
];

const PROMQL_WORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "inf",
    "nan",
    "start",
    "end",
];

/// A metric selector in an expression: the name and its `{...}` matchers (empty when none).
#[derive(Debug)]
struct Selector {
    name: String,
    matchers: String,
}

/// The metric selectors of a PromQL expression: identifiers that are not functions, keywords,
/// label lists (`by (...)`, `on (...)`), durations, numbers, strings or `$variables`.
fn selectors(expr: &str) -> Vec<Selector> {
    let c: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let skip_ws = |mut j: usize| {
        while j < c.len() && c[j].is_whitespace() {
            j += 1;
        }
        j
    };
    let skip_group = |j: usize, open: char, close: char| {
        // c[j] == open; returns the index after the matching close, skipping strings.
        let mut depth = 0;
        let mut k = j;
        while k < c.len() {
            match c[k] {
                '"' | '\'' | '`' => {
                    k = string_end(&c, k);
                    continue;
                }
                x if x == open => depth += 1,
                x if x == close => {
                    depth -= 1;
                    if depth == 0 {
                        return k + 1;
                    }
                }
                _ => {}
            }
            k += 1;
        }
        k
    };
    while i < c.len() {
        let ch = c[i];
        if ch == '"' || ch == '\'' || ch == '`' {
            i = string_end(&c, i);
            continue;
        }
        if ch == '{' {
            // A selector with no name, e.g. {__name__=~"..."}: not allowed in the dashboard.
            let end = skip_group(i, '{', '}');
            out.push(Selector {
                name: String::new(),
                matchers: c[i + 1..end.saturating_sub(1)].iter().collect(),
            });
            i = end;
            continue;
        }
        if ch == '[' {
            i = skip_group(i, '[', ']');
            continue;
        }
        if ch == '$' {
            i += 1;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            continue;
        }
        if ch.is_ascii_digit() || (ch == '.' && i + 1 < c.len() && c[i + 1].is_ascii_digit()) {
            // Numbers, durations (5m, 1h30m), exponents.
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.') {
                i += 1;
            }
            continue;
        }
        if ch.is_ascii_alphabetic() || ch == '_' || ch == ':' {
            let start = i;
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '_' || c[i] == ':') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let next = skip_ws(i);
            let lower = word.to_ascii_lowercase();
            if [
                "by",
                "without",
                "on",
                "ignoring",
                "group_left",
                "group_right",
            ]
            .contains(&lower.as_str())
            {
                if next < c.len() && c[next] == '(' {
                    i = skip_group(next, '(', ')');
                }
                continue;
            }
            if next < c.len() && c[next] == '(' {
                continue; // a function or an aggregation: its arguments are scanned next
            }
            if PROMQL_WORDS.contains(&lower.as_str()) {
                continue;
            }
            let mut matchers = String::new();
            if next < c.len() && c[next] == '{' {
                let end = skip_group(next, '{', '}');
                matchers = c[next + 1..end.saturating_sub(1)].iter().collect();
                i = end;
            }
            out.push(Selector {
                name: word,
                matchers,
            });
            continue;
        }
        i += 1;
    }
    out
}

/// Index just after the string literal whose opening quote is at `start`.
fn string_end(c: &[char], start: usize) -> usize {
    let q = c[start];
    let mut k = start + 1;
    while k < c.len() && c[k] != q {
        if c[k] == '\\' && q != '`' {
            k += 1;
        }
        k += 1;
    }
    (k + 1).min(c.len())
}

/// Every panel, including those nested in collapsed rows.
fn all_panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels array") {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner.iter());
        }
    }
    out
}

fn base_family(name: &str) -> &str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if base.ends_with("_seconds") || base.ends_with("_bytes") {
                return base;
            }
        }
    }
    name
}

fn dashboard() -> Value {
    let path = deploy("grafana/egret-dashboard.json");
    serde_json::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()))
}

#[test]
fn promql_selector_scanner_finds_metric_names() {
    let names = |e: &str| -> Vec<String> { selectors(e).into_iter().map(|s| s.name).collect() };
    assert_eq!(
        names(
            r#"histogram_quantile(0.95, sum by (site, le) (rate(egret_request_duration_seconds_bucket{site=~"$site"}[$__rate_interval])))"#
        ),
        ["egret_request_duration_seconds_bucket"]
    );
    assert_eq!(
        names(
            r#"sum(up{job="egret", instance=~"a|b"}) or vector(0) > bool 1 and on (instance) other_metric offset 5m"#
        ),
        ["up", "other_metric"]
    );
    assert_eq!(
        names(r#"(egret_tls_certificate_expiry_timestamp_seconds{site="x{y}"} - time()) / 86400"#),
        ["egret_tls_certificate_expiry_timestamp_seconds"]
    );
    let s = selectors(
        r#"topk(15, sum without (instance) (increase(foo{a="1", b=~"$site"}[$__range])))"#,
    );
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].name, "foo");
    assert!(s[0].matchers.contains(r#"b=~"$site""#));
    assert_eq!(names(r#"{__name__=~"egret_.*"}"#), [""]);
}

#[test]
fn grafana_dashboard_is_valid_and_uses_only_egret_metrics() {
    let dash = dashboard();
    let n = dash["schemaVersion"].as_i64().expect("schemaVersion");
    assert!((36..=41).contains(&n), "schemaVersion {n}: want about 38");
    assert!(dash["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(dash["uid"].as_str().is_some_and(|t| !t.is_empty()));

    // Template variables: the data source and a multi-select site selector with All.
    let vars = dash["templating"]["list"]
        .as_array()
        .expect("templating.list");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no template variable {name}"))
    };
    let ds = var("DS_PROMETHEUS");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    let site = var("site");
    assert_eq!(site["type"], "query");
    assert_eq!(site["multi"], true, "site selector must be multi-select");
    assert_eq!(site["includeAll"], true, "site selector must offer All");
    let query = site["query"]["query"]
        .as_str()
        .or_else(|| site["query"].as_str())
        .expect("site variable query");
    assert_eq!(
        query.replace(' ', ""),
        "label_values(egret_requests_total,site)"
    );

    let doc = read(&root().join("docs/admin-api.md"));
    let mut ids = BTreeSet::new();
    let mut used = BTreeSet::new();
    let mut exprs = Vec::new();
    let mut problems = Vec::new();
    for p in all_panels(&dash) {
        let title = p["title"].as_str().unwrap_or("?").to_string();
        let id = p["id"].as_i64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} used twice ({title})");
        assert!(p["gridPos"]["w"].as_i64().is_some(), "{title}: no gridPos");
        if p["type"] == "row" {
            continue;
        }
        if p["datasource"]["uid"] != "${DS_PROMETHEUS}" {
            problems.push(format!("{title}: datasource is not ${{DS_PROMETHEUS}}"));
        }
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            problems.push(format!("{title}: no queries"));
        }
        for t in &targets {
            if t["datasource"]["uid"] != "${DS_PROMETHEUS}" {
                problems.push(format!(
                    "{title}: a query's datasource is not ${{DS_PROMETHEUS}}"
                ));
            }
            let expr = t["expr"].as_str().unwrap_or("").to_string();
            if expr.trim().is_empty() {
                problems.push(format!("{title}: empty expression"));
            }
            exprs.push((title.clone(), expr));
        }
    }
    for a in dash["annotations"]["list"].as_array().into_iter().flatten() {
        if let Some(expr) = a["expr"].as_str() {
            exprs.push((format!("annotation {}", a["name"]), expr.to_string()));
        }
    }
    for (title, expr) in &exprs {
        let sels = selectors(expr);
        if sels.is_empty() {
            problems.push(format!("{title}: no metric in {expr}"));
        }
        for s in sels {
            let name = s.name.as_str();
            if name == "up" {
                if !s.matchers.contains(r#"job="egret""#) {
                    problems.push(format!("{title}: `up` without job=\"egret\" in {expr}"));
                }
                continue;
            }
            if !name.starts_with("egret_") {
                problems.push(format!(
                    "{title}: metric {name:?} is neither egret_* nor up in {expr}"
                ));
                continue;
            }
            let base = base_family(name);
            used.insert(base.to_string());
            if !doc.contains(&format!("`{base}`")) {
                problems.push(format!(
                    "{title}: {base} is not a family documented in docs/admin-api.md"
                ));
            }
            if SITE_FAMILIES.contains(&base) && !s.matchers.contains(r#"site=~"$site""#) {
                problems.push(format!(
                    "{title}: {name} not filtered by site=~\"$site\" in {expr}"
                ));
            }
            if !s.matchers.contains(r#"instance=~"$instance""#) {
                problems.push(format!(
                    "{title}: {name} not filtered by instance=~\"$instance\" in {expr}"
                ));
            }
        }
    }
    for want in SHOWN {
        if !used.contains(*want) {
            problems.push(format!("no panel shows {want}"));
        }
    }
    assert!(
        problems.is_empty(),
        "dashboard problems:\n{}",
        problems.join("\n")
    );

    // Every expression must parse: promtool checks them as recording rules, with Grafana's
    // variables replaced by what Grafana would put there.
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, (_, e))| {
            let e = e
                .replace("$__rate_interval", "1m")
                .replace("$__interval", "1m")
                .replace("$__range", "1h")
                .replace("$site", ".*")
                .replace("$instance", ".*");
            serde_json::json!({"record": format!("dashboard:expr_{i}"), "expr": e})
        })
        .collect();
    let file =
        std::env::temp_dir().join(format!("egret-dashboard-rules-{}.yml", std::process::id()));
    // JSON is YAML.
    std::fs::write(
        &file,
        serde_json::to_string_pretty(
            &serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]}),
        )
        .unwrap(),
    )
    .unwrap();
    let result = std::panic::catch_unwind(|| promtool(&["check", "rules", &path_arg(&file)]));
    let _ = std::fs::remove_file(&file);
    if let Err(e) = result {
        let expressions: Vec<String> = exprs
            .iter()
            .enumerate()
            .map(|(i, (t, e))| format!("expr_{i} ({t}): {e}"))
            .collect();
        panic!(
            "dashboard PromQL does not parse: {}\n{}",
            e.downcast_ref::<String>().cloned().unwrap_or_default(),
            expressions.join("\n")
        );
    }
}

// ------------------------------------------------------------------------------------ systemd, logrotate

#[test]
fn systemd_unit_is_hardened_and_matches_the_cli() {
    let unit = read(&deploy("systemd/egret.service"));
    for want in [
        "User=egret",
        "ExecStartPre=/usr/local/bin/egret check -c /etc/egret/egret.toml",
        "ExecStart=/usr/local/bin/egret run -c /etc/egret/egret.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=",
        "Restart=on-failure",
        "LimitNOFILE=",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/egret /var/log/egret",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "PrivateTmp=yes",
        "ProtectHome=yes",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(want)),
            "egret.service lacks {want}"
        );
    }
    // The subcommands and flag the unit uses exist.
    for sub in ["run", "check"] {
        let out = Command::new(env!("CARGO_BIN_EXE_egret"))
            .args([sub, "--help"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("--config"),
            "egret {sub} --help:\n{text}"
        );
    }
    // systemd's own parser, when present, with the binary path replaced by one that exists.
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok()
    {
        let dir = std::env::temp_dir().join(format!("egret-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("egret.service");
        std::fs::write(&file, unit.replace("/usr/local/bin/egret", "/bin/true")).unwrap();
        let out = Command::new("systemd-analyze")
            .args(["verify", &path_arg(&file)])
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success()
                && !text.contains("Unknown key")
                && !text.contains("Failed to parse"),
            "systemd-analyze verify egret.service:\n{text}"
        );
    }
}

#[test]
fn logrotate_reopens_the_access_log_with_usr1() {
    let conf = read(&deploy("logrotate/egret"));
    assert!(conf.contains("/var/log/egret/"), "{conf}");
    assert!(
        conf.contains("postrotate") && conf.contains("endscript"),
        "{conf}"
    );
    assert!(
        conf.contains("kill -USR1"),
        "postrotate must send SIGUSR1:\n{conf}"
    );
    assert!(
        !conf.lines().any(|l| l.trim() == "copytruncate"),
        "Egret reopens on SIGUSR1; copytruncate can lose lines"
    );
}
