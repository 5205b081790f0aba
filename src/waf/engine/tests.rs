//! Engine tests: shipped rulesets load and pass their inline tests, the corpora meet the
//! detection / false-positive targets, and policy features (modes, thresholds, paranoia,
//! exclusions, trusted paths, body limits, chains) behave as documented.

use std::path::{Path, PathBuf};

use crate::waf::policy::{ExclusionConfig, Mode, OverLimit, SitePolicyConfig};
use crate::waf::testing::{evaluate_corpus, run_rule_tests, OwnedRequest};
use crate::waf::{Action, Engine, SitePolicy};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shipped() -> Engine {
    match Engine::load_dir(&root().join("rulesets")) {
        Ok(e) => e,
        Err(errs) => {
            let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
            panic!("shipped rulesets fail to load:\n{}", msgs.join("\n"));
        }
    }
}

fn write_ruleset(name: &str, text: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("egret-waf-test-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir is writable");
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, text).expect("temp file is writable");
    p
}

const MINI: &str = r#"
name = "mini"
[[rule]]
id = 10
msg = "evil word"
tags = ["attack-test", "attack-xss"]
severity = "critical"
targets = ["ARGS"]
transformations = ["lowercase"]
operator = "contains"
argument = "evil"

[[rule]]
id = 11
msg = "warning word"
tags = ["attack-test"]
severity = "warning"
targets = ["ARGS"]
operator = "contains"
argument = "warn"

[[rule]]
id = 12
msg = "paranoid word"
tags = ["attack-test"]
paranoia = 2
targets = ["ARGS"]
operator = "contains"
argument = "para"

[[rule]]
id = 13
msg = "deny header"
phase = "request_headers"
action = "deny"
severity = "notice"
targets = ["REQUEST_HEADERS:X-Deny"]
operator = "unconditionalMatch"

[[rule]]
id = 14
msg = "allow probe"
phase = "request_headers"
action = "allow"
targets = ["REQUEST_FILENAME"]
operator = "streq"
argument = "/healthz"

[[rule]]
id = 16
msg = "admin area: no evil-word rule"
phase = "request_headers"
action = "pass"
targets = ["REQUEST_FILENAME"]
operator = "beginsWith"
argument = "/internal/"
ctl = ["ruleRemoveById=10", "ruleRemoveTargetById=11;ARGS:note"]

[[rule]]
id = 15
msg = "captured id then chained check"
targets = ["ARGS:id"]
operator = "rx"
argument = '^(\d+)x$'
capture = true
[rule.chain]
targets = ["TX:1"]
operator = "gt"
argument = "100"
"#;

fn mini() -> Engine {
    Engine::from_files(&[write_ruleset("mini", MINI)]).expect("mini ruleset loads")
}

fn get(uri: &str) -> OwnedRequest {
    OwnedRequest::parse_raw(&format!("GET {uri} HTTP/1.1\nHost: a")).expect("valid request")
}

fn policy(engine: &Engine, f: impl FnOnce(&mut SitePolicyConfig)) -> SitePolicy {
    let mut cfg = SitePolicyConfig::default();
    f(&mut cfg);
    cfg.compile(engine).expect("policy compiles")
}

#[test]
fn engine_is_send_sync_and_owned_transactions_are_send() {
    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send_static<T: Send + 'static>() {}
    assert_send_sync::<Engine>();
    assert_send_sync::<SitePolicy>();
    assert_send_static::<crate::waf::Transaction>();
}

#[test]
fn owned_transaction_spans_phases() {
    use std::sync::Arc;
    let e = Arc::new(mini());
    let p = Arc::new(policy(&e, |_| {}));
    let raw = "POST /f?x=warn HTTP/1.1\nHost: a\nContent-Type: application/x-www-form-urlencoded\n\nmsg=evil";
    let r = OwnedRequest::parse_raw(raw).expect("valid request");
    let mut tx =
        r.with_request(|req| crate::waf::Transaction::new(Arc::clone(&e), Arc::clone(&p), req));
    let v1 = tx.eval_headers();
    assert_eq!((v1.action, v1.score), (Action::Allow, 0));
    let v2 = tx.eval_body(b"msg=evil");
    assert_eq!(
        (v2.action, v2.score, v2.rule_ids().as_str()),
        (Action::Block, 8, "10,11")
    );
}

#[test]
fn shipped_rulesets_pass_inline_tests() {
    let e = shipped();
    let report = run_rule_tests(&e);
    println!("{report}");
    assert!(report.ok(), "rule tests failed:\n{report}");
}

#[test]
fn shipped_corpora_meet_targets() {
    let e = shipped();
    let p = SitePolicy::default_for(&e);
    let dir = root().join("tests/fixtures/waf");
    let benign =
        evaluate_corpus(&e, &p, &dir.join("benign.jsonl")).expect("benign corpus readable");
    let attacks =
        evaluate_corpus(&e, &p, &dir.join("attacks.jsonl")).expect("attack corpus readable");
    for (line, note, desc) in &benign.blocked_lines {
        println!("FALSE POSITIVE line {line} ({note}): {desc}");
    }
    for (line, note, desc) in &attacks.not_blocked {
        println!("MISSED line {line} ({note}): {desc}");
    }
    println!(
        "benign: {}/{} blocked ({:.2}%); attacks: {}/{} blocked ({:.2}%)",
        benign.blocked,
        benign.total,
        benign.block_rate() * 100.0,
        attacks.blocked,
        attacks.total,
        attacks.block_rate() * 100.0
    );
    assert!(
        benign.total >= 300 && attacks.total >= 300,
        "corpora too small"
    );
    assert!(benign.block_rate() <= 0.001, "false positives over 0.1%");
    assert!(attacks.block_rate() >= 0.95, "detection under 95%");
}

#[test]
fn load_errors_name_file_line_and_rule() {
    let bad = MINI.replace(r#"argument = '^(\d+)x$'"#, r#"argument = '^(\d+x$'"#);
    let errs =
        Engine::from_files(&[write_ruleset("bad", &bad)]).expect_err("invalid regex rejected");
    let msg = errs[0].to_string();
    assert!(
        msg.contains("bad.toml:") && msg.contains("rule 15") && msg.contains("invalid regex"),
        "{msg}"
    );

    let a = write_ruleset("dup_a", MINI);
    let b = write_ruleset("dup_b", MINI);
    let errs = Engine::from_files(&[a, b]).expect_err("duplicate ids rejected");
    assert!(
        errs.iter()
            .any(|e| e.to_string().contains("duplicate rule id")),
        "{errs:?}"
    );

    let missing = MINI.replace(
        r#"operator = "contains"
argument = "evil""#,
        r#"operator = "pmFromFile"
argument = "nope.data""#,
    );
    let errs =
        Engine::from_files(&[write_ruleset("missing", &missing)]).expect_err("missing data file");
    assert!(errs[0].to_string().contains("nope.data"), "{errs:?}");
}

#[test]
fn block_detect_and_off_modes() {
    let e = mini();
    let r = get("/?q=EVIL");
    let v = r.evaluate(&e, &policy(&e, |_| {}));
    assert_eq!(v.action, Action::Block);
    assert_eq!(v.score, 5);
    assert_eq!(v.rule_ids(), "10");
    assert_eq!(v.matches[0].target, "ARGS:q");
    assert_eq!(v.matches[0].value, "evil");
    assert_eq!(v.matches[0].transformations, vec!["lowercase"]);
    let v = r.evaluate(&e, &policy(&e, |c| c.mode = Mode::Detect));
    assert_eq!(v.action, Action::Log);
    let v = r.evaluate(&e, &policy(&e, |c| c.mode = Mode::Off));
    assert_eq!(v.action, Action::Allow);
    assert!(v.matches.is_empty());
}

#[test]
fn thresholds_accumulate_scores() {
    let e = mini();
    let v = get("/?q=warn").evaluate(&e, &policy(&e, |_| {}));
    assert_eq!((v.action, v.score), (Action::Log, 3));
    let v = get("/?q=warn&r=warn").evaluate(&e, &policy(&e, |c| c.inbound_threshold = 3));
    assert_eq!(v.action, Action::Block);
    let v = get("/?q=evil").evaluate(&e, &policy(&e, |c| c.inbound_threshold = 10));
    assert_eq!(v.action, Action::Log);
}

#[test]
fn paranoia_filters_rules() {
    let e = mini();
    let v = get("/?q=para").evaluate(&e, &policy(&e, |_| {}));
    assert!(v.matches.is_empty());
    let v = get("/?q=para").evaluate(&e, &policy(&e, |c| c.paranoia = 2));
    assert_eq!(v.rule_ids(), "12");
}

#[test]
fn deny_and_allow_actions() {
    let e = mini();
    let mut r = get("/");
    r.headers.push(("X-Deny".into(), b"1".to_vec()));
    assert_eq!(r.evaluate(&e, &policy(&e, |_| {})).action, Action::Block);
    let v = get("/healthz?q=evil").evaluate(&e, &policy(&e, |_| {}));
    assert_eq!(v.action, Action::Allow);
}

#[test]
fn ctl_actions_change_only_this_request() {
    let e = mini();
    let p = policy(&e, |_| {});
    assert!(get("/internal/x?q=evil&note=warn")
        .evaluate(&e, &p)
        .matches
        .is_empty());
    assert_eq!(
        get("/internal/x?other=warn").evaluate(&e, &p).rule_ids(),
        "11"
    );
    assert_eq!(get("/public/x?q=evil").evaluate(&e, &p).rule_ids(), "10");
}

#[test]
fn secrets_are_redacted() {
    let e = mini();
    let p = policy(&e, |_| {});
    let mut v = get("/?password=evil&q=evil").evaluate(&e, &p);
    v.redact_secrets();
    assert_eq!(v.matches[0].target, "ARGS:password");
    assert_eq!(v.matches[0].value, "[redacted]");
}

#[test]
fn chain_sees_captures() {
    let e = mini();
    assert_eq!(
        get("/?id=500x")
            .evaluate(&e, &policy(&e, |_| {}))
            .rule_ids(),
        "15"
    );
    assert!(get("/?id=50x")
        .evaluate(&e, &policy(&e, |_| {}))
        .matches
        .is_empty());
}

#[test]
fn exclusions_by_id_tag_path_and_target() {
    let e = mini();
    let r = get("/admin/article/save?content=evil");
    let off = |ex: ExclusionConfig| policy(&e, |c| c.exclusions = vec![ex]);
    let by_id = off(ExclusionConfig {
        rule_ids: vec![10],
        ..Default::default()
    });
    assert!(r.evaluate(&e, &by_id).matches.is_empty());
    let by_tag = off(ExclusionConfig {
        tags: vec!["attack-test".into()],
        ..Default::default()
    });
    assert!(r.evaluate(&e, &by_tag).matches.is_empty());
    let scoped = off(ExclusionConfig {
        rule_ids: vec![10],
        path: Some("/admin/article/".into()),
        target: Some("ARGS:content".into()),
        ..Default::default()
    });
    assert!(r.evaluate(&e, &scoped).matches.is_empty());
    assert_eq!(
        get("/admin/article/save?other=evil")
            .evaluate(&e, &scoped)
            .rule_ids(),
        "10"
    );
    assert_eq!(
        get("/news?content=evil").evaluate(&e, &scoped).rule_ids(),
        "10"
    );
    // Traversal out of the excluded prefix does not keep the exclusion.
    assert_eq!(
        get("/admin/article/../../news?content=evil")
            .evaluate(&e, &scoped)
            .rule_ids(),
        "10"
    );
    let errs = SitePolicyConfig {
        exclusions: vec![ExclusionConfig {
            rule_ids: vec![999],
            ..Default::default()
        }],
        ..Default::default()
    }
    .compile(&e)
    .expect_err("unknown id rejected");
    assert!(errs[0].contains("unknown rule id 999"));
}

#[test]
fn trusted_paths_skip_xss_on_args() {
    let e = mini();
    let p = policy(&e, |c| c.trusted_paths = vec!["/editor/".into()]);
    assert!(get("/editor/save?content=evil")
        .evaluate(&e, &p)
        .matches
        .is_empty());
    assert_eq!(get("/news?content=evil").evaluate(&e, &p).rule_ids(), "10");
}

#[test]
fn two_phase_api_and_body_limit() {
    let e = mini();
    let raw =
        "POST /f HTTP/1.1\nHost: a\nContent-Type: application/x-www-form-urlencoded\n\nmsg=evil";
    let r = OwnedRequest::parse_raw(raw).expect("valid request");
    let p = policy(&e, |_| {});
    r.with_request(|req| {
        let mut tx = e.transaction(&p, req);
        assert_eq!(tx.eval_headers().action, Action::Allow);
        assert_eq!(tx.eval_body(b"msg=evil").action, Action::Block);
    });
    let small = policy(&e, |c| c.inspect_body_limit = 4);
    let v = r.evaluate(&e, &small);
    assert!(v.body_over_limit && v.is_block());
    let prefix = policy(&e, |c| {
        c.inspect_body_limit = 4;
        c.over_limit = OverLimit::InspectPrefix;
    });
    let v = r.evaluate(&e, &prefix);
    assert!(v.body_over_limit && v.action == Action::Log, "{v}");
}

#[test]
fn body_parsers_feed_args() {
    let e = mini();
    let p = policy(&e, |_| {});
    let cases = [
        "POST /a HTTP/1.1\nContent-Type: application/json\n\n{\"x\":{\"y\":[\"EVIL\"]}}",
        "POST /a HTTP/1.1\nContent-Type: text/xml\n\n<a><b k=\"evil\"/></a>",
        "POST /a HTTP/1.1\nContent-Type: multipart/form-data; boundary=zz\n\n--zz\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\nevil\r\n--zz--\r\n",
    ];
    for raw in cases {
        let v = OwnedRequest::parse_raw(raw)
            .expect("valid")
            .evaluate(&e, &p);
        assert_eq!(v.rule_ids(), "10", "{raw}");
    }
}

#[test]
fn malformed_multipart_is_flagged_by_shipped_rules() {
    let e = shipped();
    let p = SitePolicy::default_for(&e);
    let raw = "POST /up HTTP/1.1\nHost: a\nContent-Type: multipart/form-data; boundary=B\n\n--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nunterminated";
    let v = OwnedRequest::parse_raw(raw)
        .expect("valid")
        .evaluate(&e, &p);
    assert!(v.rule_ids().contains("100105"), "{v}");
    let raw = "POST /up HTTP/1.1\nHost: a\nContent-Type: multipart/form-data\n\nx";
    let v = OwnedRequest::parse_raw(raw)
        .expect("valid")
        .evaluate(&e, &p);
    assert!(v.rule_ids().contains("100105"), "{v}");
}

#[test]
fn explain_renders_matches() {
    let e = mini();
    let p = policy(&e, |_| {});
    let out = crate::waf::explain(&e, &p, "GET /?q=Evil HTTP/1.1\nHost: a")
        .expect("explains")
        .to_string();
    assert!(
        out.contains("rule 10")
            && out.contains("ARGS:q")
            && out.contains("lowercase")
            && out.contains("block"),
        "{out}"
    );
}

#[test]
fn load_dir_reads_sorted_toml_files() {
    let e = Engine::load_dir(Path::new(&root().join("rulesets"))).expect("loads");
    assert!(e.files().windows(2).all(|w| w[0] <= w[1]));
    assert!(e.rule(100400).is_some() && e.rule(200450).is_some());
}

/// Ad-hoc corpus run: `WAF_CORPUS=path [WAF_PARANOIA=2] cargo test --lib adhoc_corpus -- --nocapture`.
#[test]
fn adhoc_corpus() {
    let Ok(path) = std::env::var("WAF_CORPUS") else {
        return;
    };
    let e = shipped();
    let pl = std::env::var("WAF_PARANOIA")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let p = policy(&e, |c| c.paranoia = pl);
    let rep = evaluate_corpus(&e, &p, Path::new(&path)).expect("corpus readable");
    for (line, note, desc) in &rep.not_blocked {
        println!("NOT BLOCKED line {line} ({note}): {desc}");
    }
    for (line, note, desc) in &rep.blocked_lines {
        println!("BLOCKED line {line} ({note}): {desc}");
    }
    println!("{}/{} blocked", rep.blocked, rep.total);
}

/// Rough timing (run in release): `cargo test --release --lib perf_per_request -- --ignored --nocapture`.
#[test]
#[ignore]
fn perf_per_request() {
    let e = shipped();
    let cases = [
        ("clean GET, 4 args", "GET /search?q=%E6%94%BF%E5%8A%A1%E5%85%AC%E5%BC%80&page=2&sort=time&channel=12 HTTP/1.1\nHost: www.example.gov.cn\nUser-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/124.0\nAccept: text/html\nCookie: JSESSIONID=8A3F0C2E; Hm_lvt_1=1714012345\nReferer: https://www.baidu.com/link?url=abc"),
        ("2 KB Chinese form POST", ""),
        ("SQLi GET", "GET /news?id=1%27%20union%20select%201,2,database()-- HTTP/1.1\nHost: a\nUser-Agent: Mozilla/5.0"),
    ];
    let letter = "尊敬的市长：您好！我是某某小区的居民，想反映一个问题。我们小区门口的道路（长约300米）自去年以来一直在施工，导致出行非常不便；另外，夜间施工噪音严重影响休息。".repeat(6);
    let form = format!(
        "POST /mailbox/write HTTP/1.1\nHost: a\nUser-Agent: Mozilla/5.0\nContent-Type: application/x-www-form-urlencoded\n\ntitle=%E5%92%A8%E8%AF%A2&name=%E5%BC%A0%E4%B8%89&phone=13800000000&content={}",
        crate::waf::request::percent_decode(letter.as_bytes(), false).0.iter().map(|b| format!("%{b:02X}")).collect::<String>()
    );
    for pl in [1u8, 2] {
        let p = policy(&e, |c| c.paranoia = pl);
        for (name, raw) in &cases {
            let raw = if raw.is_empty() { form.as_str() } else { raw };
            let r = OwnedRequest::parse_raw(raw).expect("valid");
            let n = 2000u32;
            let start = std::time::Instant::now();
            for _ in 0..n {
                let _ = std::hint::black_box(r.evaluate(&e, &p));
            }
            println!(
                "PL{pl} {name}: {} ns/request",
                start.elapsed().as_nanos() / u128::from(n)
            );
        }
    }
}

/// Variables of many members are split by plainness: rules that no plain member can match
/// visit only the others, in order, and plain members still match the rules they can.
#[test]
fn many_plain_members_are_skipped_without_changing_matches() {
    let e = Engine::from_files(&[write_ruleset(
        "split",
        r#"
name = "split"
[[rule]]
id = 20
msg = "quote"
severity = "critical"
targets = ["ARGS"]
operator = "rx"
argument = "\u0027\\s*or\\s*\u0027"
[[rule]]
id = 21
msg = "plain word with a literal prefilter"
severity = "critical"
targets = ["ARGS"]
transformations = ["lowercase"]
operator = "rx"
argument = "sleepy(?:head|time)"
"#,
    )])
    .expect("loads");
    assert!(e.rule(20).expect("rule 20").operator.plain_impossible);
    assert!(!e.rule(21).expect("rule 21").operator.plain_impossible);
    let p = policy(&e, |_| {});
    let plain = "a=%E6%94%BF%E5%8A%A1&b=abc&c=%E5%85%AC%E5%BC%80&d=x1&e=y_2";
    // Clean: nothing matches.
    let v = get(&format!("/s?{plain}")).evaluate(&e, &p);
    assert!(v.matches.is_empty(), "{:?}", v.matches);
    // A non-plain member among plain ones (the split path): the quote rule reports it.
    let v = get(&format!("/s?{plain}&q=x%27%20or%20%271&z=zz")).evaluate(&e, &p);
    let ids: Vec<u32> = v.matches.iter().map(|m| m.id).collect();
    assert_eq!(ids, vec![20]);
    assert_eq!(v.matches[0].target, "ARGS:q");
    // A plain member that a filtered rule can match: still found, in member order.
    let v = get(&format!("/s?{plain}&w=SleepyTime&w2=sleepyhead")).evaluate(&e, &p);
    let hits: Vec<(u32, &str)> = v
        .matches
        .iter()
        .map(|m| (m.id, m.target.as_str()))
        .collect();
    assert_eq!(hits, vec![(21, "ARGS:w")]);
}

/// Stable values (paths, host names) are judged by the prefilter on the raw value: a rule
/// whose literal is there, in any ASCII case, still runs and matches; one whose literal is
/// not there does not.
#[test]
fn stable_values_still_match_through_the_raw_prefilter() {
    let e = Engine::from_files(&[write_ruleset(
        "stable",
        r#"
name = "stable"
[[rule]]
id = 30
msg = "console path"
severity = "critical"
phase = "request_headers"
targets = ["REQUEST_FILENAME"]
transformations = ["urlDecodeUni", "normalizePath", "lowercase"]
operator = "rx"
argument = '/admin-console/[a-z]+\.jsp$'
[[rule]]
id = 31
msg = "host"
severity = "critical"
phase = "request_headers"
targets = ["REQUEST_HEADERS:Host"]
transformations = ["lowercase", "removeComments"]
operator = "contains"
argument = "internal.example"
"#,
    )])
    .expect("loads");
    let p = policy(&e, |_| {});
    let ids = |uri: &str, host: &str| -> Vec<u32> {
        let raw = format!("GET {uri} HTTP/1.1\nHost: {host}");
        let req = OwnedRequest::parse_raw(&raw).expect("parses");
        req.evaluate(&e, &p).matches.iter().map(|m| m.id).collect()
    };
    assert_eq!(
        ids("/Admin-Console/Login.JSP", "www.example.gov.cn"),
        vec![30]
    );
    assert_eq!(
        ids("/admin-console/x.jsp", "Internal.Example:8080"),
        vec![30, 31]
    );
    assert!(ids("/admin/console.jsp", "www.example.gov.cn").is_empty());
    // Not stable (an escape left after REQUEST_FILENAME's own decoding, a `.` segment): the
    // transformations run before the prefilter.
    assert_eq!(ids("/admin%252Dconsole/x.jsp", "a"), vec![30]);
    assert_eq!(ids("/admin-console/./x.jsp", "a"), vec![30]);
    assert_eq!(
        ids("/news/2024/list-1.html", "internal.example.org"),
        vec![31]
    );
}

/// The evaluation shortcuts (literal prefilter, skipping plain and stable values, ruling out
/// rules by whole variables, untransformed stable values) change nothing: every request of
/// the benign and attack corpora gets the same matches, scores and action with them and
/// without them, under the shipped rules and (when ../shared/crs is present) the CRS at
/// paranoia 4.
#[test]
fn shortcuts_change_no_verdict() {
    let mut engines = vec![("shipped", shipped())];
    let crs = root().join("../shared/crs");
    let _heavy = crate::memory_heavy_test();
    if crs.join("rules").is_dir() {
        let settings = crate::waf::seclang::crs::CrsSettings::new(4, None, None, None);
        let e = crate::waf::seclang::crs::engine(Vec::new(), Vec::new(), &crs, &settings, &[])
            .expect("CRS loads");
        engines.push(("CRS", e));
    } else {
        println!("../shared/crs is absent: checking the shipped rules only");
    }
    let mut requests = Vec::new();
    for corpus in ["benign.jsonl", "attacks.jsonl"] {
        let path = root().join("tests/fixtures/waf").join(corpus);
        let text = std::fs::read_to_string(&path).expect("corpus is readable");
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            requests.push(
                OwnedRequest::from_json_line(line)
                    .expect("corpus line parses")
                    .0,
            );
        }
    }
    assert!(requests.len() > 1500, "{} requests", requests.len());
    let summary = |v: &crate::waf::Verdict| {
        let ms: Vec<(u32, String, String)> = v
            .matches
            .iter()
            .map(|m| (m.id, m.target.clone(), m.value.clone()))
            .collect();
        (v.action, v.score, ms)
    };
    for (name, e) in &engines {
        let p = policy(e, |c| c.mode = Mode::Detect);
        let mut matched = 0;
        for req in &requests {
            let fast = summary(&req.evaluate(e, &p));
            let reference = crate::waf::engine::without_shortcuts(|| summary(&req.evaluate(e, &p)));
            assert_eq!(fast, reference, "{name}: {} {}", req.method, req.uri);
            matched += usize::from(!fast.2.is_empty());
        }
        println!(
            "{name}: {} requests, {matched} with matches",
            requests.len()
        );
        assert!(matched > 500, "{name}: only {matched} requests matched");
    }
}

/// Phases out of order (the proxy runs phase 3 while a request body is still held back):
/// the request side's candidates are computed afresh after the response side's, so a
/// phase 2 rule still sees its literal.
#[test]
fn prefilter_candidates_survive_a_response_phase_before_the_body() {
    let e = Engine::from_files(&[write_ruleset(
        "sides",
        r#"
name = "sides"
[[rule]]
id = 40
msg = "foo in the path"
severity = "critical"
phase = "request_headers"
targets = ["REQUEST_FILENAME"]
operator = "rx"
argument = "foo"
[[rule]]
id = 41
msg = "bar in the path"
severity = "critical"
phase = "request_body"
targets = ["REQUEST_FILENAME"]
operator = "rx"
argument = "bar"
"#,
    )])
    .expect("loads");
    let p = policy(&e, |c| c.mode = Mode::Detect);
    let r = OwnedRequest::parse_raw("POST /bar HTTP/1.1\nHost: a\n\nx=1").expect("parses");
    r.with_request(|req| {
        let mut tx = e.transaction(&p, req);
        assert!(tx.eval_headers().matches.is_empty());
        assert!(tx.eval_response_headers(200, &[]).matches.is_empty());
        let v = tx.eval_body(b"x=1");
        let ids: Vec<u32> = v.matches.iter().map(|m| m.id).collect();
        assert_eq!(ids, vec![41]);
    });
}

/// The engine skips plain values for operators marked `plain_impossible`: no shipped rule
/// (nor CRS rule, when ../shared/crs is present) so marked matches a plain value.
#[test]
fn plain_impossible_operators_never_match_plain_values() {
    let samples = crate::waf::operator::plain_samples(
        &[
            "",
            "政务公开abc",
            "UNION_select_1",
            "or1",
            "script",
            "etc_passwd",
            "phpinfo",
            "eval",
            "base64_decode",
            "SELECT",
        ],
        0x2545_f491_4f6c_dd1d,
        300,
    );
    let mut engines = vec![shipped()];
    let crs = root().join("../shared/crs");
    let _heavy = crate::memory_heavy_test();
    if crs.join("rules").is_dir() {
        let settings = crate::waf::seclang::crs::CrsSettings::new(4, None, None, None);
        let e = crate::waf::seclang::crs::engine(Vec::new(), Vec::new(), &crs, &settings, &[])
            .expect("CRS loads");
        engines.push(e);
    } else {
        println!("../shared/crs is absent: checking the shipped rules only");
    }
    let mut checked = 0;
    for e in &engines {
        for r in e.rules() {
            let mut link = Some(r);
            while let Some(l) = link {
                if l.operator.plain_impossible {
                    checked += 1;
                    for v in &samples {
                        assert!(
                            crate::waf::engine::is_plain_for_tests(v),
                            "sample {v:?} is not plain"
                        );
                        assert!(
                            !l.operator.eval(v, None, &mut Vec::new(), false),
                            "rule {} matched the plain value {:?}",
                            r.id,
                            String::from_utf8_lossy(v)
                        );
                    }
                }
                link = l.chain.as_deref();
            }
        }
    }
    println!("{checked} plain_impossible operators checked");
    assert!(
        checked > 20,
        "only {checked} operators marked plain_impossible"
    );
}

/// Lists rules without a literal prefilter: `cargo test --lib list_unfiltered -- --ignored --nocapture`.
#[test]
#[ignore]
fn list_unfiltered() {
    let e = shipped();
    for r in e.rules() {
        if r.operator.required_literals.is_none() {
            println!(
                "no prefilter: {} {:?} {}{} {} {:?}",
                r.id,
                r.phase,
                r.operator.name(),
                if r.operator.plain_impossible {
                    " (skips plain values)"
                } else {
                    ""
                },
                r.msg,
                r.transforms.iter().map(|t| t.name()).collect::<Vec<_>>()
            );
        }
    }
}

/// Benign requests that matched any rule (under the threshold): `cargo test --lib benign_noise -- --ignored --nocapture`.
#[test]
#[ignore]
fn benign_noise() {
    let e = shipped();
    let p = SitePolicy::default_for(&e);
    let text =
        std::fs::read_to_string(root().join("tests/fixtures/waf/benign.jsonl")).expect("corpus");
    for (i, line) in text.lines().enumerate() {
        let (r, note) = OwnedRequest::from_json_line(line).expect("valid line");
        let v = r.evaluate(&e, &p);
        if !v.matches.is_empty() {
            let ms: Vec<String> = v
                .matches
                .iter()
                .map(|m| format!("{}@{}={:?}", m.id, m.target, m.value))
                .collect();
            println!("line {} ({note}): {}", i + 1, ms.join(" "));
        }
    }
}

#[test]
fn random_inputs_never_panic() {
    let e = shipped();
    let p = SitePolicy::default_for(&e);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet: &[u8] = b"%u0aZ<>'\"\\/.;&=?#{}[]$()-+ \r\n\t\x00\xff\xe6\x94\xbf";
    let cts = [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=B",
        "application/json",
        "text/xml",
        "text/plain",
    ];
    for i in 0..300 {
        let len = (next() % 200) as usize;
        let junk: Vec<u8> = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        let text = String::from_utf8_lossy(&junk).into_owned();
        let uri = format!(
            "/p{}?a={}",
            text.replace([' ', '\r', '\n'], ""),
            text.replace([' ', '\r', '\n', '&'], "")
        );
        let headers: Vec<(&str, &[u8])> = vec![
            ("Host", b"a"),
            ("Cookie", &junk),
            ("Content-Type", cts[i % cts.len()].as_bytes()),
        ];
        let mut body = b"--B\r\nContent-Disposition: form-data; name=\"".to_vec();
        body.extend_from_slice(&junk);
        let req = crate::waf::Request {
            method: "POST",
            uri: &uri,
            version: "HTTP/1.1",
            headers: &headers,
            client_ip: "198.51.100.7".parse().expect("ip literal"),
            body: Some(if i % 2 == 0 { &junk } else { &body }),
            content_type: None,
        };
        let _ = e.evaluate(&p, &req);
    }
}

/// The packed (SIMD) prefilter scan reports exactly the patterns a plain case-insensitive
/// search finds: overlapping patterns, patterns sharing a start, mixed case, values with more
/// occurrences than `PACKED_MAX_HITS`, values shorter than the SIMD minimum.
#[test]
fn packed_prefilter_finds_every_pattern_present() {
    use super::{Prefilter, PACKED_MAX_HITS};
    let pats: Vec<Vec<u8>> = [
        "<title>",
        "title",
        "<?php",
        "<?=",
        "at java.",
        "java.lang.",
        "index o",
        "->|",
        "ab",
        "abc",
        "bcd",
        "SQLSTATE[",
        "filena",
        // Starts inside a shorter match and ends past that match's window.
        "|<title>index o",
    ]
    .iter()
    .map(|p| p.as_bytes().to_vec())
    .collect();
    let n = pats.len();
    let pf = Prefilter::new(pats.clone(), vec![Vec::new(); n], Vec::new()).expect("builds");
    assert!(pf.packed.is_some(), "few patterns get the packed searcher");
    let naive = |v: &[u8]| -> Vec<usize> {
        let lv = v.to_ascii_lowercase();
        (0..n)
            .filter(|&i| {
                let p = pats[i].to_ascii_lowercase();
                lv.windows(p.len()).any(|w| w == &p[..])
            })
            .collect()
    };
    let alphabet: &[&[u8]] = &[
        b"<TiTle>",
        b"title",
        b"<?PHP",
        b"<?",
        b"=",
        b"At Java.",
        b"java.LANG.",
        b"INDEX O",
        b"->|",
        b"ab",
        b"c",
        b"d",
        b"sqlstate[",
        b" ",
        b"x",
        "政务".as_bytes(),
        b"FILENA",
        b"\n",
    ];
    let mut rng = fastrand::Rng::with_seed(7);
    let mut lower = Vec::new();
    let mut max_found = 0;
    for round in 0..3000 {
        let parts = if round % 10 == 0 {
            200
        } else {
            rng.usize(0..12)
        };
        let mut v = Vec::new();
        for _ in 0..parts {
            v.extend_from_slice(alphabet[rng.usize(0..alphabet.len())]);
        }
        let mut got = vec![false; n];
        pf.scan(&v, &mut lower, |p| got[p] = true);
        let got: Vec<usize> = (0..n).filter(|&i| got[i]).collect();
        let expected = naive(&v);
        assert_eq!(got, expected, "value {:?}", String::from_utf8_lossy(&v));
        let lv = v.to_ascii_lowercase();
        let occurrences: usize = expected
            .iter()
            .map(|&i| {
                let p = pats[i].to_ascii_lowercase();
                lv.windows(p.len()).filter(|w| *w == &p[..]).count()
            })
            .sum();
        max_found = max_found.max(occurrences);
    }
    assert!(
        max_found > PACKED_MAX_HITS,
        "the many-hits fallback was exercised"
    );
}

#[test]
fn unique_id_is_sixteen_hex_digits() {
    let mut rng = fastrand::Rng::with_seed(5);
    for n in [0u64, 1, 0xdead_beef, u64::MAX]
        .into_iter()
        .chain((0..100).map(|_| rng.u64(..)))
    {
        assert_eq!(super::unique_id(n), format!("{n:016x}").into_bytes());
    }
}

/// CRS's initialisation rules and paranoia fences are settled once per policy: the
/// request-independent rules of phase 1 are applied at compile time (also past the Chinese
/// profile's request-dependent editor exclusions) and the fences' outcomes are fixed.
#[test]
fn crs_request_independent_rules_are_folded() {
    use super::fold::Fixed;
    let crs = root().join("../shared/crs");
    if !crs.join("rules").is_dir() {
        println!("../shared/crs is absent: nothing to fold");
        return;
    }
    let _heavy = crate::memory_heavy_test();
    let settings = crate::waf::seclang::crs::CrsSettings::new(1, None, None, None);
    let profile: Vec<PathBuf> = ["cn-exclusions.conf", "cn-editor-exclusions.conf"]
        .iter()
        .map(|f| root().join("rulesets/crs").join(f))
        .collect();
    let e = crate::waf::seclang::crs::engine(Vec::new(), Vec::new(), &crs, &settings, &profile)
        .expect("CRS loads");
    let started = std::time::Instant::now();
    let p = policy(&e, |_| {});
    println!("policy compiled and folded in {:?}", started.elapsed());
    let f = p.folded.as_deref().expect("CRS policy folds");
    let applied = f.count(Fixed::Applied) + f.count(Fixed::AppliedSkips);
    println!(
        "applied {applied} rules, tx {} vars, fixed: {} match, {} never",
        f.tx.len(),
        f.count(Fixed::Matches),
        f.count(Fixed::NeverMatches)
    );
    assert!(applied >= 25, "{applied} rules applied");
    let tx = |k: &str| f.tx.get(k).map(|v| String::from_utf8_lossy(v).into_owned());
    assert_eq!(tx("detection_paranoia_level").as_deref(), Some("1"));
    // The profile's settings, and CRS's defaults for what it leaves unset.
    assert!(tx("allowed_methods").is_some_and(|m| m.contains("PATCH")));
    assert_eq!(tx("inbound_anomaly_score_threshold").as_deref(), Some("5"));
    assert!(f.count(Fixed::Matches) >= 20);
    assert!(f.count(Fixed::NeverMatches) >= 20);
    // The editor exclusion (request-dependent) and the anomaly scores still run per request.
    let id = |ri: usize| e.rules()[ri].id;
    for (ri, fx) in f.fixed.iter().enumerate() {
        if [949110, 949111, 959100, 920170].contains(&id(ri)) {
            assert_eq!(*fx, Fixed::Evaluate, "rule {}", id(ri));
        }
    }
}

/// Request-independent rules are applied at compile time only when the request-dependent
/// rules before them cannot affect them: not when one writes what they read, or a `ctl`
/// removes them. Verdicts are the same with and without the fold.
#[test]
fn folding_steps_over_only_rules_that_cannot_interfere() {
    use super::fold::Fixed;
    let dir = std::env::temp_dir().join(format!("egret-fold-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir is writable");
    let file = dir.join("fold.conf");
    std::fs::write(
        &file,
        r#"
SecAction "id:1,phase:1,pass,nolog,setvar:tx.level=1"
SecRule REQUEST_HEADERS:X-Level "@rx ^(\d)$" "id:2,phase:1,pass,nolog,capture,setvar:tx.level=%{tx.1}"
SecRule TX:level "@eq 1" "id:3,phase:1,pass,nolog,setvar:tx.one=yes"
SecRule ARGS:off "@streq 1" "id:4,phase:1,pass,nolog,ctl:ruleRemoveById=5"
SecAction "id:5,phase:1,pass,nolog,setvar:tx.five=1"
SecAction "id:6,phase:1,pass,nolog,setvar:tx.six=1"
SecRule TX:six "@eq 0" "id:7,phase:1,pass,nolog,skipAfter:END"
SecRule TX:one "@streq yes" "id:10,phase:2,deny,msg:'one'"
SecRule TX:five "@eq 1" "id:11,phase:2,deny,msg:'five'"
SecRule TX:six "!@eq 1" "id:12,phase:2,deny,msg:'six missing'"
SecMarker END
"#,
    )
    .expect("temp file is writable");
    let compiled = crate::waf::seclang::load_files(std::slice::from_ref(&file)).expect("loads");
    let e = crate::waf::seclang::build_engine(Vec::new(), compiled, vec![file]).expect("builds");
    let p = policy(&e, |c| c.mode = Mode::Detect);
    let f = p.folded.as_deref().expect("folds");
    let fixed_of = |id: u32| {
        let ri = e.rule_index(id).expect("rule exists");
        f.fixed[ri]
    };
    assert_eq!(fixed_of(1), Fixed::Applied);
    assert_eq!(fixed_of(2), Fixed::Evaluate, "reads the request");
    assert_eq!(
        fixed_of(3),
        Fixed::Evaluate,
        "reads tx.level, which rule 2 writes"
    );
    assert_eq!(fixed_of(5), Fixed::Evaluate, "rule 4's ctl removes it");
    assert_eq!(fixed_of(6), Fixed::Applied);
    assert_eq!(fixed_of(7), Fixed::Applied, "never matches");
    assert_eq!(
        fixed_of(12),
        Fixed::NeverMatches,
        "tx.six is 1 for every request"
    );
    let ids = |raw: &str| {
        let req = OwnedRequest::parse_raw(raw).expect("request parses");
        let fast: Vec<u32> = req.evaluate(&e, &p).matches.iter().map(|m| m.id).collect();
        let reference: Vec<u32> = crate::waf::engine::without_shortcuts(|| req.evaluate(&e, &p))
            .matches
            .iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(fast, reference, "{raw}");
        fast
    };
    assert_eq!(ids("GET / HTTP/1.1\nHost: a"), vec![10, 11]);
    assert_eq!(ids("GET / HTTP/1.1\nHost: a\nX-Level: 2"), vec![11]);
    assert_eq!(ids("GET /?off=1 HTTP/1.1\nHost: a"), vec![10]);
}

/// `multiMatch` tests the raw value and every transformation step that changed it: a match
/// only before (or between) the transformations is found, and only with `multi_match`.
#[test]
fn multi_match_sees_every_changed_step() {
    let rules = |multi: bool| {
        format!(
            r#"
name = "multi"
[[rule]]
id = 20
msg = "encoded A"
targets = ["ARGS"]
transformations = ["urlDecode", "lowercase", "removeNulls"]
operator = "rx"
argument = '^A$'
capture = true
multi_match = {multi}

[[rule]]
id = 21
msg = "decoded but not lowercased"
targets = ["ARGS"]
transformations = ["urlDecode", "removeNulls", "lowercase"]
operator = "streq"
argument = "B"
multi_match = {multi}
"#
        )
    };
    for multi in [false, true] {
        let e = Engine::from_files(&[write_ruleset("multi", &rules(multi))]).expect("loads");
        let p = policy(&e, |_| {});
        // The query parser decodes once: the raw ARGS value is `%41`, then `A` (the only
        // step that matches), then `a`.
        let ids = get("/?x=%2541").evaluate(&e, &p).rule_ids();
        assert_eq!(ids, if multi { "20" } else { "" }, "multi={multi}");
        // `B` after urlDecode; removeNulls leaves it unchanged; lowercase makes it `b`.
        let ids = get("/?x=%42").evaluate(&e, &p).rule_ids();
        assert_eq!(ids, if multi { "21" } else { "" }, "multi={multi}");
    }
}
