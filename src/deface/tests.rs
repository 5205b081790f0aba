//! Defacement behaviour on a realistic government portal: one test per indicator, legitimate
//! updates that must not fire, the cache, encodings and hostile input.
//!
//! Fixtures live in `tests/fixtures/deface/`: `portal.html` (approved home page),
//! `portal-updated.html` (news item added, dates, counter, cache-busting, nonce changed) and
//! `tampered-*.html` (one attack each).

use std::io::Write;
use std::sync::Arc;
use std::time::SystemTime;

use serde::Deserialize;

use super::*;

const PORTAL: &str = include_str!("../../tests/fixtures/deface/portal.html");
const UPDATED: &str = include_str!("../../tests/fixtures/deface/portal-updated.html");
const HIDDEN_LINKS: &str = include_str!("../../tests/fixtures/deface/tampered-hidden-links.html");
const EXTERNAL_SCRIPT: &str =
    include_str!("../../tests/fixtures/deface/tampered-external-script.html");
const META_REFRESH: &str = include_str!("../../tests/fixtures/deface/tampered-meta-refresh.html");
const SCRIPT_REDIRECT: &str =
    include_str!("../../tests/fixtures/deface/tampered-script-redirect.html");
const TITLE: &str = include_str!("../../tests/fixtures/deface/tampered-title.html");
const HACKED: &str = include_str!("../../tests/fixtures/deface/tampered-hacked.html");

const SITE: &str = "www";

/// `[deface]` of `egret.toml` and the site file `sites/www.toml`, inline for brevity.
const CONFIG: &str = r##"
[deface]
allowed_domains = ["*.gov.cn"]

[[sites]]
name = "www"
hosts = ["www.demo.gov.cn", "demo.gov.cn"]

[sites.deface]
allowed_domains = ["hm.baidu.com"]
dynamic_selectors = ["#visit-count", ".news-list", ".today", ".weather", ".notice-list li .date"]
dynamic_text = ['\d{4}-\d{2}-\d{2}']

[[sites.deface.pages]]
path = "/"
mode = "protect"

[[sites.deface.pages]]
path = "/index.htm"
mode = "block"

[[sites.deface.pages]]
path = "/zwgk/**/*.htm"
mode = "monitor"
thresholds = { content_similarity = 0.5 }
"##;

#[derive(Deserialize)]
struct TestConfig {
    #[serde(default)]
    deface: DefaceConfig,
    #[serde(default)]
    sites: Vec<Site>,
}

#[derive(Deserialize)]
struct Site {
    name: String,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    deface: SiteDefaceConfig,
}

fn compile(text: &str) -> Result<DefacePolicy, ConfigError> {
    let cfg: TestConfig = toml::from_str(text).expect("test TOML parses");
    let keywords = Arc::new(Keywords::builtin().expect("built-in keywords parse"));
    DefacePolicy::compile(
        &cfg.deface,
        keywords,
        cfg.sites
            .iter()
            .map(|s| (s.name.as_str(), s.hosts.as_slice(), &s.deface)),
    )
}

fn home_policy() -> Arc<CheckPolicy> {
    let p = compile(CONFIG).unwrap();
    Arc::clone(&p.page(SITE, "/").unwrap().check)
}

fn verdict(current: &str) -> Verdict {
    let policy = home_policy();
    let base = extract(PORTAL.as_bytes(), None, &policy).unwrap();
    let cur = extract(current.as_bytes(), None, &policy).unwrap();
    compare(&base, &cur, &policy)
}

fn kinds(v: &Verdict) -> Vec<IndicatorKind> {
    let mut k: Vec<IndicatorKind> = v.indicators.iter().map(|i| i.kind).collect();
    k.dedup();
    k
}

#[test]
fn unchanged_page_is_clean() {
    let v = verdict(PORTAL);
    assert!(!v.tampered);
    assert!(v.indicators.is_empty(), "{}", v.to_json());
    assert_eq!(v.similarity, 1.0);
}

#[test]
fn legitimate_update_does_not_fire() {
    let v = verdict(UPDATED);
    assert!(v.indicators.is_empty(), "{}", v.to_json());
    assert!(!v.tampered);
    // Dates, counter, news list, cache-busting, nonce and attribute order are all ignored.
    let policy = home_policy();
    let a = extract(PORTAL.as_bytes(), None, &policy).unwrap();
    let b = extract(UPDATED.as_bytes(), None, &policy).unwrap();
    assert_eq!(a.fingerprint, b.fingerprint);
}

#[test]
fn legitimate_edit_outside_dynamic_regions_is_below_threshold() {
    // An editor fixes a sentence in the introduction: content differs, but no alarm.
    let edited = PORTAL.replace(
        "努力建设人民满意的服务型政府",
        "加快建设人民满意的服务型政府",
    );
    let v = verdict(&edited);
    assert!(!v.tampered, "{}", v.to_json());
    assert!(v.indicators.is_empty(), "{}", v.to_json());
    assert!(v.similarity < 1.0 && v.similarity > 0.6, "{}", v.similarity);
}

#[test]
fn hidden_gambling_link_block() {
    let v = verdict(HIDDEN_LINKS);
    assert!(v.tampered);
    assert_eq!(
        kinds(&v),
        [IndicatorKind::HiddenLinks, IndicatorKind::Keywords]
    );
    let hidden = &v.indicators[0].evidence;
    assert!(
        hidden.contains("https://www.amjs-casino.example/"),
        "{hidden}"
    );
    assert!(hidden.contains("off-screen position"), "{hidden}");
    assert!(v.indicators[1].evidence.contains("澳门赌场"));
}

#[test]
fn hidden_links_inside_a_dynamic_region_still_fire() {
    // Dynamic regions are ignored for text changes, never for spam.
    let injected = PORTAL.replace(
        "<ul class=\"news-list\">",
        "<ul class=\"news-list\"><li style=\"display:none\"><a href=\"http://bet.example/\">百家乐</a></li>",
    );
    let v = verdict(&injected);
    assert!(v.tampered);
    assert!(v.has(IndicatorKind::HiddenLinks));
    assert!(v.has(IndicatorKind::Keywords));
}

#[test]
fn injected_external_script() {
    let v = verdict(EXTERNAL_SCRIPT);
    assert!(v.tampered);
    assert_eq!(kinds(&v), [IndicatorKind::NewExternalDomain]);
    assert!(v.indicators[0].evidence.contains("js.cdn-jquery.example"));
    // The same script from an allowed domain is fine.
    let allowed = PORTAL.replace(
        "</head>",
        "<script src=\"https://static.zj.gov.cn/x.js\"></script></head>",
    );
    assert!(verdict(&allowed).indicators.is_empty());
    // Iframes and form actions count as well.
    let iframe = PORTAL.replace(
        "</body>",
        "<iframe src=\"//ads.example.net/\" width=0 height=0></iframe></body>",
    );
    assert_eq!(kinds(&verdict(&iframe)), [IndicatorKind::NewExternalDomain]);
    let form = PORTAL.replace(
        "action=\"/search/index.htm\"",
        "action=\"https://phish.example/collect\"",
    );
    assert_eq!(kinds(&verdict(&form)), [IndicatorKind::NewExternalDomain]);
}

#[test]
fn meta_refresh_redirect() {
    let v = verdict(META_REFRESH);
    assert!(v.tampered);
    assert_eq!(kinds(&v), [IndicatorKind::Redirect]);
    assert!(v.indicators[0]
        .evidence
        .contains("https://www.xpj-yule.example/"));
    // A refresh to the site itself is not a cross-domain redirect.
    let same = PORTAL.replace(
        "<meta name=\"SiteName\"",
        "<meta http-equiv=\"refresh\" content=\"300;url=/index.htm\"><meta name=\"SiteName\"",
    );
    assert!(!verdict(&same).has(IndicatorKind::Redirect));
}

#[test]
fn script_location_change() {
    let v = verdict(SCRIPT_REDIRECT);
    assert!(v.tampered);
    assert_eq!(kinds(&v), [IndicatorKind::Redirect]);
    assert!(v.indicators[0]
        .evidence
        .contains("script location change to https://m.amb-bet.example/"));
}

#[test]
fn title_changed() {
    let v = verdict(TITLE);
    assert!(v.tampered);
    assert_eq!(kinds(&v), [IndicatorKind::TitleChanged]);
    assert!(v.indicators[0].evidence.contains("首页官方"));
}

#[test]
fn meta_changed_alone_is_reported_but_below_threshold() {
    let changed = PORTAL.replace(
        "content=\"示范市,人民政府,政务公开,政务服务,互动交流\"",
        "content=\"示范市,人民政府\"",
    );
    let v = verdict(&changed);
    assert_eq!(kinds(&v), [IndicatorKind::MetaChanged]);
    assert_eq!(v.score, 30);
    assert!(!v.tampered);
    // SEO hijacking rewrites title, keywords and description together: tampered.
    let seo = PORTAL
        .replace(
            "<title>示范市人民政府门户网站</title>",
            "<title>澳门威尼斯人官方网站</title>",
        )
        .replace(
            "content=\"示范市,人民政府,政务公开,政务服务,互动交流\"",
            "content=\"澳门威尼斯人,百家乐\"",
        );
    let v = verdict(&seo);
    assert!(v.tampered);
    assert!(
        v.has(IndicatorKind::TitleChanged)
            && v.has(IndicatorKind::MetaChanged)
            && v.has(IndicatorKind::Keywords)
    );
}

#[test]
fn visible_spam_keywords() {
    let spam = PORTAL.replace(
        "努力建设人民满意的服务型政府。",
        "努力建设人民满意的服务型政府。真人娱乐 时时彩 开户送彩金 Online Casino",
    );
    let v = verdict(&spam);
    assert!(v.tampered);
    assert_eq!(kinds(&v), [IndicatorKind::Keywords]);
    let e = &v.indicators[0].evidence;
    assert!(
        e.contains("真人娱乐 ×1 (gambling)") && e.contains("online casino"),
        "{e}"
    );
    // Entity-encoded keywords are decoded first.
    let encoded = PORTAL.replace(
        "服务型政府。",
        "服务型政府。&#30495;&#20154;&#23089;&#20048;",
    );
    assert!(verdict(&encoded).has(IndicatorKind::Keywords));
}

#[test]
fn hacked_by_page_replaced_wholesale() {
    let v = verdict(HACKED);
    assert!(v.tampered);
    assert_eq!(v.score, 100);
    assert_eq!(v.indicators[0].kind, IndicatorKind::Replaced);
    assert!(v.has(IndicatorKind::TitleChanged));
    let replaced: Vec<&str> = v
        .indicators
        .iter()
        .filter(|i| i.kind == IndicatorKind::Replaced)
        .map(|i| i.evidence.as_str())
        .collect();
    assert!(
        replaced.iter().any(|e| e.contains("hacked by")),
        "{replaced:?}"
    );
    assert!(
        replaced.iter().any(|e| e.contains("text similarity")),
        "{replaced:?}"
    );
}

#[test]
fn content_changed_outside_dynamic_regions() {
    // Three columns of the page rewritten: a real change, not a wholesale replacement.
    let start = PORTAL.find("<div class=\"column zwgk\">").unwrap();
    let end = PORTAL.find("<div class=\"links wrap\">").unwrap();
    let replacement: String = (1..=12)
        .map(|i| format!("<p>第{i}项 本栏目正在升级维护中，给您带来不便敬请谅解，如有疑问请联系网站管理员处理。</p>\n"))
        .collect();
    let changed = format!(
        "{}{}</div>\n{}",
        &PORTAL[..start],
        replacement,
        &PORTAL[end..]
    );
    let v = verdict(&changed);
    assert!(v.has(IndicatorKind::ContentChanged), "{}", v.to_json());
    assert!(!v.has(IndicatorKind::Replaced), "{}", v.to_json());
    assert!(
        v.similarity >= 0.2 && v.similarity < 0.6,
        "{}",
        v.similarity
    );
}

#[test]
fn verdict_serializes_to_json() {
    let v = verdict(EXTERNAL_SCRIPT);
    let json: serde_json::Value = serde_json::from_str(&v.to_json()).unwrap();
    assert_eq!(json["tampered"], true);
    assert_eq!(json["indicators"][0]["kind"], "NewExternalDomain");
    assert!(json["indicators"][0]["evidence"]
        .as_str()
        .unwrap()
        .contains("script https://js.cdn-jquery.example/jquery.min.js"));
    let back: Verdict = serde_json::from_value(json).unwrap();
    assert_eq!(back, v);
}

#[test]
fn pages_match_paths_and_globs() {
    let p = compile(CONFIG).unwrap();
    let mode = |path: &str| p.page(SITE, path).map(|r| r.mode);
    assert_eq!(mode("/"), Some(Mode::Protect));
    assert_eq!(mode("/?from=baidu"), Some(Mode::Protect));
    assert_eq!(mode("/index.htm"), Some(Mode::Block));
    assert_eq!(
        mode("/zwgk/zcwj/202401/t20240105_1.htm"),
        Some(Mode::Monitor)
    );
    assert_eq!(mode("/zwgk/index.htm"), Some(Mode::Monitor));
    assert_eq!(mode("/zwgk/index.html"), None);
    assert_eq!(mode("/about.htm"), None);
    // Other spellings of a protected page are the page.
    assert_eq!(mode("//index.htm"), Some(Mode::Block));
    assert_eq!(mode("/zwgk/../index.htm"), Some(Mode::Block));
    assert_eq!(mode("/%69ndex.htm"), Some(Mode::Block));
    assert!(p.page("other", "/").is_none());
    let zwgk = &p.page(SITE, "/zwgk/a.htm").unwrap().check;
    assert_eq!(zwgk.thresholds().content_similarity, 0.5);
    assert_ne!(zwgk.digest(), home_policy().digest());
}

#[test]
fn config_errors_name_the_field() {
    let site = "[[sites]]\nname = \"s\"\n";
    let cases: Vec<(String, Option<&str>, &str)> = vec![
        (
            format!("{site}[sites.deface]\ndynamic_selectors = [\"#ok\", \"div[\"]\n[[sites.deface.pages]]\npath = \"/\"\n"),
            Some("s"),
            "deface.dynamic_selectors[1]",
        ),
        (
            format!("{site}[[sites.deface.pages]]\npath = \"/\"\ndynamic_text = [\"(unclosed\"]\n"),
            Some("s"),
            "deface.pages[0].dynamic_text[0]",
        ),
        (format!("{site}[[sites.deface.pages]]\npath = \"/a/[\"\n"), Some("s"), "deface.pages[0].path"),
        (format!("{site}[[sites.deface.pages]]\npath = \"index.htm\"\n"), Some("s"), "deface.pages[0].path"),
        (format!("{site}hosts = [\"ok.gov.cn\", \"bad host\"]\n"), Some("s"), "hosts[1]"),
        ("[deface]\nallowed_domains = [\"bad domain\"]\n".into(), None, "deface.allowed_domains[0]"),
        ("[deface.thresholds]\ncontent_similarity = 1.5\n".into(), None, "deface.thresholds.content_similarity"),
        (
            format!("{site}[[sites.deface.pages]]\npath = \"/\"\nthresholds = {{ replaced_similarity = 0.9 }}\n"),
            Some("s"),
            "deface.pages[0].thresholds.replaced_similarity",
        ),
        ("[deface]\nmax_body_bytes = 10\n".into(), None, "deface.max_body_bytes"),
        (format!("{site}{site}"), Some("s"), "name"),
    ];
    for (text, site, field) in &cases {
        let err = compile(text).unwrap_err();
        assert_eq!(
            (err.site.as_deref(), err.field.as_str()),
            (*site, *field),
            "{text}: {err}"
        );
    }
    assert_eq!(
        compile(&cases[3].0).unwrap_err().to_string(),
        "deface config of site `s`: `deface.pages[0].path`: `index.htm` must start with `/`"
    );
    assert!(toml::from_str::<TestConfig>(
        "[[sites]]\nname = \"s\"\n[sites.deface]\ndynamic_selector = []\n"
    )
    .is_err());
    assert!(toml::from_str::<TestConfig>(
        "[[sites]]\nname = \"s\"\n[[sites.deface.pages]]\npath = \"/\"\nmode = \"panic\"\n"
    )
    .is_err());
}

#[test]
fn cache_makes_an_unchanged_page_cost_one_hash() {
    let policy = home_policy();
    let base = extract(PORTAL.as_bytes(), None, &policy).unwrap();
    let cache = VerdictCache::new(64);
    let v1 = cache
        .check(HIDDEN_LINKS.as_bytes(), None, "approval-1", &base, &policy)
        .unwrap();
    let v2 = cache
        .check(HIDDEN_LINKS.as_bytes(), None, "approval-1", &base, &policy)
        .unwrap();
    assert!(Arc::ptr_eq(&v1, &v2));
    assert!(v1.tampered);
    let s = cache.stats();
    assert_eq!((s.hits, s.misses), (1, 1));
    // A new approval is a new key.
    let v3 = cache
        .check(HIDDEN_LINKS.as_bytes(), None, "approval-2", &base, &policy)
        .unwrap();
    assert!(!Arc::ptr_eq(&v1, &v3));
    assert_eq!(cache.stats().misses, 2);
}

#[test]
fn gzip_response_is_decoded_then_checked() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(HIDDEN_LINKS.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let policy = home_policy();
    let body = decode_body(Some("gzip"), &gz, policy.max_body_bytes()).unwrap();
    let base = extract(PORTAL.as_bytes(), None, &policy).unwrap();
    let cur = extract(&body, Some("utf-8"), &policy).unwrap();
    assert!(compare(&base, &cur, &policy).has(IndicatorKind::HiddenLinks));
}

#[test]
fn malformed_and_huge_html_within_the_bound() {
    let policy = home_policy();
    let base = extract(PORTAL.as_bytes(), None, &policy).unwrap();
    // Garbage bytes, truncated markup, unclosed hidden block, stray end tags.
    let mut garbage: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    garbage.extend_from_slice(b"<div style='display:none'><a href='http://x.example/'>");
    for input in [
        garbage.clone(),
        b"<html><head><title>t</ti".to_vec(),
        b"</div></div></p><p><<<>>>&&&#xffffffff;&#0;<a href=\"".to_vec(),
        PORTAL.as_bytes()[..PORTAL.len() / 2].to_vec(),
    ] {
        let cur = extract(&input, None, &policy);
        if let Ok(cur) = cur {
            let _ = compare(&base, &cur, &policy);
        }
    }
    // Deep nesting stays within lol_html's memory limit or fails cleanly.
    let deep = "<div>".repeat(200_000);
    let _ = extract(deep.as_bytes(), None, &policy);
    // A large but legal page (about 1.5 MiB) is analysed; one over the bound is refused.
    let item = "<li><a href=\"/zwgk/x.htm\">关于进一步加强城市管理工作的通知</a><span class=\"date\">2024-01-01</span></li>\n";
    let big = PORTAL.replace(
        "<ul class=\"notice-list\">",
        &format!("<ul class=\"notice-list\">{}", item.repeat(12_000)),
    );
    assert!(big.len() > 1_000_000 && big.len() < policy.max_body_bytes());
    let f = extract(big.as_bytes(), None, &policy).unwrap();
    assert!(!f.title.is_empty());
    let over = "x".repeat(policy.max_body_bytes() + 1);
    assert!(matches!(
        extract(over.as_bytes(), None, &policy),
        Err(ExtractError::TooLarge { .. })
    ));
}

#[test]
fn baseline_store_round_trip_then_verdict() {
    let tmp = tempfile::tempdir().unwrap();
    let store = BaselineStore::open(tmp.path()).unwrap();
    let policy = home_policy();
    let page = Approval {
        site: SITE,
        path: "/",
        html: PORTAL.as_bytes(),
        charset: Some("utf-8"),
    };
    let record = store.approve(&page, &policy, SystemTime::now()).unwrap();
    let loaded = store
        .load(SITE, "/", policy.max_body_bytes())
        .unwrap()
        .unwrap();
    assert_eq!(loaded.html, PORTAL.as_bytes());
    assert_eq!(loaded.record.policy_digest, policy.digest());
    assert_eq!(loaded.record.charset.as_deref(), Some("utf-8"));
    let base = loaded.features_for(&policy).unwrap();
    assert!(matches!(base, std::borrow::Cow::Borrowed(_)));
    let cache = VerdictCache::new(16);
    let v = cache
        .check(
            TITLE.as_bytes(),
            None,
            &record.content_sha256,
            &base,
            &policy,
        )
        .unwrap();
    assert!(v.has(IndicatorKind::TitleChanged));
    let v = cache
        .check(
            UPDATED.as_bytes(),
            None,
            &record.content_sha256,
            &base,
            &policy,
        )
        .unwrap();
    assert!(!v.tampered);
}

#[test]
fn policy_change_re_extracts_baseline_features() {
    // Approved while the policy declared no dynamic regions; the site then declares them.
    let tmp = tempfile::tempdir().unwrap();
    let store = BaselineStore::open(tmp.path()).unwrap();
    let bare =
        compile("[[sites]]\nname = \"www\"\n[[sites.deface.pages]]\npath = \"/\"\n").unwrap();
    let bare = &bare.page(SITE, "/").unwrap().check;
    let page = Approval {
        site: SITE,
        path: "/",
        html: PORTAL.as_bytes(),
        charset: None,
    };
    store.approve(&page, bare, SystemTime::now()).unwrap();
    let loaded = store.load(SITE, "/", 1 << 20).unwrap().unwrap();
    let policy = home_policy();
    let base = loaded.features_for(&policy).unwrap();
    assert!(matches!(base, std::borrow::Cow::Owned(_)));
    let cur = extract(UPDATED.as_bytes(), None, &policy).unwrap();
    assert!(compare(&base, &cur, &policy).indicators.is_empty());
}

#[test]
fn every_hiding_trick_is_seen() {
    let cases = [
        ("<div style=\"display:none\">{}</div>", "display:none"),
        (
            "<div style=\"visibility: hidden\">{}</div>",
            "visibility:hidden",
        ),
        ("<p style=\"font-size:0px\">{}</p>", "font-size:0"),
        (
            "<div style=\"height:1px;overflow:hidden\">{}</div>",
            "zero size",
        ),
        (
            "<div style=\"position:absolute;top:-3000px\">{}</div>",
            "off-screen position",
        ),
        (
            "<span style=\"color:#ffffff;background-color:#ffffff\">{}</span>",
            "same-colour text",
        ),
        ("<marquee height=\"1\" width=\"1\">{}</marquee>", "marquee"),
        ("<marquee scrollamount=\"10000\">{}</marquee>", "marquee"),
        ("<div hidden>{}</div>", "hidden attribute"),
        (
            "<style>.f1{display:none}</style><div class=\"f1\">{}</div>",
            "hidden by stylesheet",
        ),
        (
            "<style>#f2 { position:absolute; left:-9999px }</style><div id=\"f2\">{}</div>",
            "hidden by stylesheet",
        ),
        (
            "<div style=\"display:none\"><ul><li>{}</li></ul></div>",
            "display:none",
        ),
    ];
    for (block, reason) in cases {
        let link = "<a href=\"https://spam.example/p\">link</a>";
        let page = PORTAL.replace(
            "<div class=\"footer\">",
            &format!("{}<div class=\"footer\">", block.replace("{}", link)),
        );
        let v = verdict(&page);
        assert!(v.tampered, "{block}: {}", v.to_json());
        let ev = &v
            .indicators
            .iter()
            .find(|i| i.kind == IndicatorKind::HiddenLinks)
            .unwrap()
            .evidence;
        assert!(ev.contains(reason), "{block}: {ev}");
    }
    // Visible links and blocks closed before the link are not hidden.
    let visible = PORTAL.replace(
        "<div class=\"footer\">",
        "<div style=\"display:none\"></div><marquee>滚动通知</marquee><a href=\"/new\">新栏目</a><div class=\"footer\">",
    );
    assert!(!verdict(&visible).has(IndicatorKind::HiddenLinks));
}

const ZWGK: &str = include_str!("../../tests/fixtures/deface/zwgk-policy.htm");

/// Policy document pages under the `/zwgk/**/*.htm` glob, with their own dynamic regions.
fn zwgk_policy() -> Arc<CheckPolicy> {
    let cfg = CONFIG.replace(
        "thresholds = { content_similarity = 0.5 }",
        "thresholds = { content_similarity = 0.5 }\ndynamic_selectors = [\".views\"]",
    );
    let p = compile(&cfg).unwrap();
    Arc::clone(
        &p.page(SITE, "/zwgk/zcwj/202402/t20240227_1.htm")
            .unwrap()
            .check,
    )
}

#[test]
fn policy_document_page() {
    let policy = zwgk_policy();
    let base = extract(ZWGK.as_bytes(), None, &policy).unwrap();
    // View counter and a corrected publication date: clean.
    let updated = ZWGK.replace("3521", "3790").replace(
        "<td class=\"pub-date\">2024-02-27</td>",
        "<td class=\"pub-date\">2024-02-28</td>",
    );
    let v = compare(
        &base,
        &extract(updated.as_bytes(), None, &policy).unwrap(),
        &policy,
    );
    assert!(v.indicators.is_empty(), "{}", v.to_json());
    // A rewritten task list is a content change on this page.
    let rewritten = ZWGK.replace(
        "全面推行“一网通办”，实现企业开办全程网上办理，办理时间压缩至1个工作日以内。",
        "本条内容已删除。",
    );
    let v = compare(
        &base,
        &extract(rewritten.as_bytes(), None, &policy).unwrap(),
        &policy,
    );
    assert!(v.similarity < 1.0);
    // A gambling link appended to the article is caught.
    let spam = ZWGK.replace(
        "</div>\n<div class=\"footer\">",
        "<p style=\"font-size:0\"><a href=\"https://xpj.example/\">新葡京</a></p></div>\n<div class=\"footer\">",
    );
    let v = compare(
        &base,
        &extract(spam.as_bytes(), None, &policy).unwrap(),
        &policy,
    );
    assert!(v.tampered);
    assert_eq!(
        kinds(&v),
        [IndicatorKind::HiddenLinks, IndicatorKind::Keywords]
    );
}
