//! Defacement detection and protection through the real proxy, with a realistic government
//! portal (tests/fixtures/deface) served by a real origin: legitimate updates, each kind of
//! tampering, protect / monitor / block modes, gzip, the approve flow, the prober, the CLI.

mod common;
use common::*;
use std::io::Write;
use std::time::{Duration, Instant};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/deface/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

const POLICY: &str = r##"
[deface]
allowed_domains = ["hm.baidu.com"]
dynamic_selectors = ["#visit-count", ".news-list", ".today", ".weather", ".notice-list li .date"]
dynamic_text = ['\d{4}-\d{2}-\d{2}']
[[deface.pages]]
path = "/"
mode = "protect"
[[deface.pages]]
path = "/monitored.htm"
mode = "monitor"
[[deface.pages]]
path = "/blocked.htm"
mode = "block"
[[deface.pages]]
path = "/zwgk/**/*.htm"
mode = "protect"
"##;

fn global(extra: &str) -> String {
    format!("[deface]\nstate_dir = \"state\"\nprobe_interval = \"1h\"\n{extra}")
}

async fn setup(extra_global: &str) -> (Gateway, Origin) {
    let o = origin("portal").await;
    for p in ["/", "/monitored.htm", "/blocked.htm"] {
        o.set_page(p, fixture("portal.html"), None);
    }
    o.set_page(
        "/zwgk/2024/policy.htm",
        gzip(&fixture("zwgk-policy.htm")),
        Some("gzip"),
    );
    let site = format!(
        "{}{POLICY}",
        simple_site("www", "www.test.gov.cn", &[o.addr], "")
    );
    let g = Gateway::start(&[("www", site)], "", &global(extra_global));
    for p in [
        "/",
        "/monitored.htm",
        "/blocked.htm",
        "/zwgk/2024/policy.htm",
    ] {
        approve(&g, p).await;
    }
    (g, o)
}

async fn approve(g: &Gateway, path: &str) {
    let r = client()
        .post(g.admin_url(&format!(
            "/api/v1/deface/approve?site=www&path={}",
            path.replace('/', "%2F")
        )))
        .send()
        .await
        .unwrap();
    let status = r.status();
    assert_eq!(status, 200, "approve {path}: {}", r.text().await.unwrap());
}

async fn fetch(g: &Gateway, path: &str, gzip_ok: bool) -> reqwest::Response {
    let mut r = client().get(g.url(path)).header("host", "www.test.gov.cn");
    if gzip_ok {
        r = r.header("accept-encoding", "gzip");
    }
    r.send().await.unwrap()
}

fn marker(r: &reqwest::Response) -> String {
    r.headers()
        .get("x-egret-deface")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legitimate_updates_pass_and_injected_links_get_the_approved_copy() {
    let (g, o) = setup("").await;
    let r = fetch(&g, "/", false).await;
    assert_eq!(marker(&r), "checked");
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        fixture("portal.html").as_slice()
    );
    // A news item, a date and the visit counter change: not an alarm.
    o.set_page("/", fixture("portal-updated.html"), None);
    let r = fetch(&g, "/", false).await;
    assert_eq!(marker(&r), "checked");
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        fixture("portal-updated.html").as_slice()
    );
    // Hidden gambling links: the approved copy is served, byte for byte, with the marker.
    o.set_page("/", fixture("tampered-hidden-links.html"), None);
    let r = fetch(&g, "/", false).await;
    assert_eq!(r.status(), 200);
    assert_eq!(marker(&r), "approved-copy");
    let len: usize = r.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), len);
    assert_eq!(body.as_ref(), fixture("portal.html").as_slice());
    // A gzip-accepting client gets the stored gzip copy with a matching Content-Encoding.
    let r = fetch(&g, "/", true).await;
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let len: usize = r.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), len);
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(body.as_ref()), &mut plain)
        .unwrap();
    assert_eq!(plain, fixture("portal.html"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_tampering_is_caught() {
    let (g, o) = setup("").await;
    for (file, indicator) in [
        ("tampered-hidden-links.html", "HiddenLinks"),
        ("tampered-external-script.html", "NewExternalDomain"),
        ("tampered-meta-refresh.html", "Redirect"),
        ("tampered-script-redirect.html", "Redirect"),
        ("tampered-title.html", "TitleChanged"),
        ("tampered-hacked.html", "Replaced"),
    ] {
        o.set_page("/", fixture(file), None);
        let r = fetch(&g, "/", false).await;
        assert_eq!(marker(&r), "approved-copy", "{file}");
        let st: serde_json::Value = client()
            .get(g.admin_url("/api/v1/deface/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let page = st["pages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["path"] == "/")
            .unwrap()
            .clone();
        assert_eq!(page["state"], "tampered", "{file}: {page}");
        assert!(
            page["indicators"].to_string().contains(indicator),
            "{file}: {indicator} not in {page}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_mode_alerts_and_block_mode_serves_503() {
    let (g, o) = setup("").await;
    o.set_page(
        "/monitored.htm",
        fixture("tampered-external-script.html"),
        None,
    );
    let r = fetch(&g, "/monitored.htm", false).await;
    assert_eq!(r.status(), 200);
    assert_eq!(marker(&r), "tampered-monitored");
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        fixture("tampered-external-script.html").as_slice()
    );
    o.set_page("/blocked.htm", fixture("tampered-hidden-links.html"), None);
    let r = fetch(&g, "/blocked.htm", false).await;
    assert_eq!(r.status(), 503);
    assert_eq!(marker(&r), "maintenance");
    // Events: one JSON line per tampered page, with indicators and hashes; metrics.
    let events = std::fs::read_to_string(g.dir.path().join("state/events.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines.iter().any(|e| e["path"] == "/monitored.htm"),
        "{events}"
    );
    assert!(
        lines.iter().any(|e| e["path"] == "/blocked.htm"),
        "{events}"
    );
    let m = metrics(&g).await;
    assert!(
        m.contains("egret_deface_tampered_pages{site=\"www\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("egret_deface_checks_total{result=\"tampered\",site=\"www\"}"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_pages_under_a_glob_are_checked_and_approve_accepts_an_edit() {
    let (g, o) = setup("").await;
    let r = fetch(&g, "/zwgk/2024/policy.htm", false).await;
    assert_eq!(marker(&r), "checked");
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        fixture("zwgk-policy.htm").as_slice()
    );
    // A legitimate rewrite of the page is judged changed until security staff approve it.
    o.set_page(
        "/zwgk/2024/policy.htm",
        gzip(&fixture("tampered-hacked.html")),
        Some("gzip"),
    );
    assert_eq!(
        marker(&fetch(&g, "/zwgk/2024/policy.htm", false).await),
        "approved-copy"
    );
    approve(&g, "/zwgk/2024/policy.htm").await;
    let r = fetch(&g, "/zwgk/2024/policy.htm", false).await;
    assert_eq!(marker(&r), "checked");
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        fixture("tampered-hacked.html").as_slice()
    );
    // A page without a baseline is served and says so.
    o.set_page("/zwgk/2025/new.htm", fixture("zwgk-policy.htm"), None);
    assert_eq!(
        marker(&fetch(&g, "/zwgk/2025/new.htm", false).await),
        "no-baseline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_pages_stay_within_the_bound() {
    let (g, o) = setup("max_body_bytes = 65536\n").await;
    let mut big = fixture("portal.html");
    big.extend(std::iter::repeat_n(b'x', 200_000));
    o.set_page("/", big, None);
    let r = fetch(&g, "/", false).await;
    assert_eq!(
        r.status(),
        502,
        "a page over the bound is not served unchecked from a protected path"
    );
    o.set_page(
        "/",
        b"<html><div><div><p><<<>>>&&&\xff\xfe<script>".to_vec(),
        None,
    );
    let r = fetch(&g, "/", false).await;
    assert_eq!(r.status(), 200);
    assert_ne!(marker(&r), "", "malformed HTML is still handled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prober_finds_tampering_without_any_client_request() {
    let hook = origin("webhook").await;
    let (g, o) = setup(&format!("webhook_url = \"http://{}/hook\"\n", hook.addr)).await;
    // Re-point the prober to a short interval through a reload.
    let text = std::fs::read_to_string(&g.config)
        .unwrap()
        .replace("probe_interval = \"1h\"", "probe_interval = \"1s\"");
    std::fs::write(&g.config, text).unwrap();
    assert_eq!(
        client()
            .post(g.admin_url("/api/v1/reload"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    o.set_page("/", fixture("tampered-hidden-links.html"), None);
    let before = o.hits();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let st: serde_json::Value = client()
            .get(g.admin_url("/api/v1/deface/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let found = st["pages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["path"] == "/" && p["state"] == "tampered" && p["source"] == "probe");
        if found {
            break;
        }
        assert!(Instant::now() < deadline, "prober did not report: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(o.hits() > before);
    // The webhook received the event.
    let deadline = Instant::now() + Duration::from_secs(10);
    while hook.hits() == 0 {
        assert!(Instant::now() < deadline, "webhook never called");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn verdict_cli_compares_saved_pages() {
    let dir = format!("{}/tests/fixtures/deface", env!("CARGO_MANIFEST_DIR"));
    let run = |current: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_egret"))
            .args([
                "deface",
                "verdict",
                "--baseline",
                &format!("{dir}/portal.html"),
                "--current",
                &format!("{dir}/{current}"),
            ])
            .output()
            .unwrap()
    };
    let out = run("tampered-hidden-links.html");
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tampered"], true);
    assert!(v["indicators"].to_string().contains("HiddenLinks"), "{v}");
    let out = run("portal.html");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_on_one_node_takes_effect_on_another_sharing_the_state_directory() {
    let o = origin("portal").await;
    o.set_page("/", fixture("portal.html"), None);
    let shared = tempfile::tempdir().unwrap();
    let site = format!(
        "{}{POLICY}",
        simple_site("www", "www.test.gov.cn", &[o.addr], "")
    );
    let global = format!(
        "[deface]\nstate_dir = \"{}\"\nprobe_interval = \"1h\"\n",
        shared.path().display()
    );
    let node1 = Gateway::start(&[("www", site.clone())], "", &global);
    let node2 = Gateway::start(&[("www", site)], "", &global);
    approve(&node1, "/").await;
    assert_eq!(marker(&fetch(&node2, "/", false).await), "checked");
    // The origin legitimately changes its title; node 1's staff approve it.
    o.set_page("/", fixture("tampered-title.html"), None);
    assert_eq!(marker(&fetch(&node2, "/", false).await), "approved-copy");
    approve(&node1, "/").await;
    // Node 2 picks up the new baseline from the shared directory within its refresh time.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if marker(&fetch(&node2, "/", false).await) == "checked" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 2 never saw node 1's approval"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
