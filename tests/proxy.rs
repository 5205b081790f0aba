//! Proxying through the real gateway: routing, load balancing, health, timeouts, limits,
//! smuggling, forwarding headers, error pages. Start origins → start Egret → request → assert.

mod common;
use common::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_and_path_prefix() {
    let www = origin("www").await;
    let web = origin("jyj-web").await;
    let api = origin("jyj-api").await;
    let jyj = format!(
        "name = \"jyj\"\nhosts = [\"jyj.test.gov.cn\", \"*.jyj.test.gov.cn\"]\ndefault_pool = \"web\"\n\
         [pools.web]\nbackends = [\"{}\"]\n[pools.api]\nbackends = [\"{}\"]\n[[routes]]\nprefix = \"/api/\"\npool = \"api\"\n",
        web.addr, api.addr
    );
    let g = Gateway::start(
        &[
            (
                "www",
                simple_site("www", "www.test.gov.cn", &[www.addr], ""),
            ),
            ("jyj", jyj),
        ],
        "",
        "",
    );

    let (s, b) = get(&g, "www.test.gov.cn", "/news/1").await;
    assert_eq!(s, 200);
    assert_eq!(echo(&b)["origin"], "www");
    let (_, b) = get(&g, "JYJ.test.gov.cn:8080", "/about").await;
    assert_eq!(echo(&b)["origin"], "jyj-web");
    let (_, b) = get(&g, "jyj.test.gov.cn", "/api/schools?x=1").await;
    let v = echo(&b);
    assert_eq!(v["origin"], "jyj-api");
    assert_eq!(v["path"], "/api/schools");
    assert_eq!(v["query"], "x=1");
    // Wildcard host, and a prefix that only looks like the route.
    let (_, b) = get(&g, "m.jyj.test.gov.cn", "/api/x").await;
    assert_eq!(echo(&b)["origin"], "jyj-api");
    let (_, b) = get(&g, "jyj.test.gov.cn", "/apix").await;
    assert_eq!(echo(&b)["origin"], "jyj-web");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_gets_404_page_never_another_site() {
    let www = origin("www").await;
    let g = Gateway::start(
        &[(
            "www",
            simple_site("www", "www.test.gov.cn", &[www.addr], ""),
        )],
        "",
        "",
    );
    let r = client()
        .get(g.url("/"))
        .header("host", "evil.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let body = r.text().await.unwrap();
    assert!(body.contains(&rid), "page shows the request id");
    assert!(body.contains("页面不存在") && body.contains("Not Found"));
    assert_eq!(www.hits(), 0);
    // A bare domain is not matched by a wildcard of its subdomains.
    let (s, _) = get(&g, "test.gov.cn", "/").await;
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spreads_load_by_weight() {
    let a = origin("a").await;
    let b = origin("b").await;
    let site = format!(
        "name = \"s\"\nhosts = [\"s.test\"]\n[pools.main]\nbackends = [{{ addr = \"{}\", weight = 3 }}, \"{}\"]\n",
        a.addr, b.addr
    );
    let g = Gateway::start(&[("s", site)], "", "");
    for _ in 0..200 {
        let (s, _) = get(&g, "s.test", "/x").await;
        assert_eq!(s, 200);
    }
    let (ha, hb) = (a.hits() as f64, b.hits() as f64);
    assert_eq!(ha + hb, 200.0);
    let ratio = ha / hb;
    assert!((2.0..=4.0).contains(&ratio), "weights 3:1 gave {ha}:{hb}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backend_is_ejected_and_requests_keep_succeeding() {
    let a = origin("a").await;
    let b = origin("b").await;
    let site = simple_site(
        "s",
        "s.test",
        &[a.addr, b.addr],
        "[timeouts]\nretries = 1\n",
    );
    let g = Gateway::start(&[("s", site)], "", "");
    for _ in 0..20 {
        assert_eq!(get(&g, "s.test", "/x").await.0, 200);
    }
    assert!(a.hits() > 0 && b.hits() > 0);
    b.stop();
    let before_a = a.hits();
    for i in 0..100 {
        let (s, body) = get(&g, "s.test", "/x").await;
        assert_eq!(s, 200, "request {i} failed after a backend died: {body}");
    }
    assert_eq!(a.hits() - before_a, 100);
    // The dead backend was ejected passively: the admin status says so.
    let status: serde_json::Value = client()
        .get(g.admin_url("/api/v1/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let backends = &status["sites"][0]["pools"][0]["backends"];
    let dead = backends
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["addr"] == b.addr.to_string())
        .unwrap();
    assert_eq!(dead["ejected"], true, "{status}");
    let m = metrics(&g).await;
    assert!(m.contains("egret_upstream_errors_total{backend=\""), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_health_check_takes_backend_out_and_back() {
    let a = origin("a").await;
    let b = origin("b").await;
    let extra = "[pools.main.health_check]\npath = \"/healthz\"\ninterval = \"100ms\"\ntimeout = \"500ms\"\nunhealthy_threshold = 1\nhealthy_threshold = 1\n";
    let g = Gateway::start(
        &[("s", simple_site("s", "s.test", &[a.addr, b.addr], extra))],
        "",
        "",
    );
    b.set_healthy(false);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = b.hits();
    for _ in 0..30 {
        assert_eq!(get(&g, "s.test", "/x").await.0, 200);
    }
    assert_eq!(b.hits(), before, "unhealthy backend got traffic");
    b.set_healthy(true);
    tokio::time::sleep(Duration::from_millis(600)).await;
    for _ in 0..30 {
        assert_eq!(get(&g, "s.test", "/x").await.0, 200);
    }
    assert!(b.hits() > before, "recovered backend got no traffic");
    let m = metrics(&g).await;
    assert!(m.contains("egret_upstream_backend_up{"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_without_healthy_backend_answers_503_at_once() {
    let a = origin("a").await;
    let extra = "[pools.main.health_check]\npath = \"/healthz\"\ninterval = \"100ms\"\nunhealthy_threshold = 1\n";
    let g = Gateway::start(
        &[("s", simple_site("s", "s.test", &[a.addr], extra))],
        "",
        "",
    );
    a.set_healthy(false);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    let r = client()
        .get(g.url("/x"))
        .header("host", "s.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(r.text().await.unwrap().contains("Service Unavailable"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_gives_504_within_the_read_timeout() {
    let a = origin("a").await;
    let extra = "[timeouts]\nread_timeout = \"500ms\"\nretries = 0\n";
    let g = Gateway::start(
        &[("s", simple_site("s", "s.test", &[a.addr], extra))],
        "",
        "",
    );
    let t = Instant::now();
    let (s, body) = get(&g, "s.test", "/slow/5000").await;
    let took = t.elapsed();
    assert_eq!(s, 504, "{body}");
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "took {took:?}"
    );
    assert!(body.contains("Gateway Timeout"));
    // A fast request on the same site still works.
    assert_eq!(get(&g, "s.test", "/slow/10").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_timeout_bounds_the_wait_for_the_response_header() {
    let a = origin("a").await;
    let extra = "[timeouts]\nread_timeout = \"10s\"\ntotal_timeout = \"700ms\"\nretries = 0\n";
    let g = Gateway::start(
        &[("s", simple_site("s", "s.test", &[a.addr], extra))],
        "",
        "",
    );
    let t = Instant::now();
    let (s, _) = get(&g, "s.test", "/slow/5000").await;
    assert_eq!(s, 504);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_and_bodies_are_refused() {
    let a = origin("a").await;
    let extra = "[limits]\nmax_header_bytes = \"4KiB\"\nmax_headers = 20\nmax_body_bytes = 1000\nmax_uri_bytes = 512\n";
    let g = Gateway::start(
        &[("s", simple_site("s", "s.test", &[a.addr], extra))],
        "",
        "",
    );
    let c = client();
    let r = c
        .get(g.url("/x"))
        .header("host", "s.test")
        .header("x-big", "a".repeat(5000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    let mut req = c.get(g.url("/x")).header("host", "s.test");
    for i in 0..25 {
        req = req.header(format!("x-h{i}"), "v");
    }
    assert_eq!(req.send().await.unwrap().status(), 431);
    let r = c
        .get(g.url(&format!("/{}", "a".repeat(600))))
        .header("host", "s.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 414);
    let r = c
        .post(g.url("/x"))
        .header("host", "s.test")
        .body(vec![b'a'; 2000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let ok = c
        .post(g.url("/x"))
        .header("host", "s.test")
        .body(vec![b'a'; 900])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(echo(&ok.text().await.unwrap())["body_len"], 900);
    // Chunked body over the limit: no Content-Length to check up front.
    let chunk = format!("{:x}\r\n{}\r\n", 1500, "b".repeat(1500));
    let raw = format!(
        "POST /x HTTP/1.1\r\nHost: s.test\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}0\r\n\r\n"
    );
    let resp = raw_request(g.http, raw.as_bytes()).unwrap();
    assert_eq!(parse_status(&resp), Some(413), "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_attempts_are_rejected_and_never_reach_the_origin() {
    let a = origin("a").await;
    let g = Gateway::start(&[("s", simple_site("s", "s.test", &[a.addr], ""))], "", "");
    let cases: &[(&str, &[u8])] = &[
        ("CL+TE", b"POST /x HTTP/1.1\r\nHost: s.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: s.test\r\n\r\n"),
        ("TE+CL", b"POST /x HTTP/1.1\r\nHost: s.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: s.test\r\n\r\n"),
        ("duplicate CL", b"POST /x HTTP/1.1\r\nHost: s.test\r\nContent-Length: 4\r\nContent-Length: 30\r\n\r\nabcdGET /smuggled HTTP/1.1\r\n\r\n"),
        ("obs-fold", b"GET /x HTTP/1.1\r\nHost: s.test\r\nX-A: a\r\n b\r\n\r\n"),
        ("TE identity", b"POST /x HTTP/1.1\r\nHost: s.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
        ("xchunked", b"POST /x HTTP/1.1\r\nHost: s.test\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
        ("space before colon", b"POST /x HTTP/1.1\r\nHost: s.test\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
        ("duplicate Host", b"GET /x HTTP/1.1\r\nHost: s.test\r\nHost: other.test\r\n\r\n"),
        ("no Host", b"GET /x HTTP/1.1\r\n\r\n"),
    ];
    for (name, raw) in cases {
        let resp = raw_request(g.http, raw).unwrap();
        let status = parse_status(&resp);
        assert!(
            matches!(status, Some(400) | Some(501)),
            "{name}: expected 400/501, got {status:?}: {resp}"
        );
        assert!(
            !resp.contains("\"origin\""),
            "{name}: origin answered: {resp}"
        );
    }
    assert_eq!(a.hits(), 0, "the origin saw a request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_trust_only_trusted_proxies() {
    let a = origin("a").await;
    // 127.0.0.1 (the test client) is trusted in one gateway, not in the other.
    let site = simple_site("s", "s.test", &[a.addr], "");
    let untrusted = Gateway::start(
        &[("s", site.clone())],
        "trusted_proxies = [\"10.0.0.0/8\"]",
        "",
    );
    let r = client()
        .get(untrusted.url("/x"))
        .header("host", "s.test")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-request-id", "client-chosen")
        .send()
        .await
        .unwrap();
    let v = echo(&r.text().await.unwrap());
    assert_eq!(v["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(v["headers"]["x-real-ip"], "127.0.0.1");
    assert_eq!(v["headers"]["x-forwarded-proto"], "http");
    assert_ne!(v["headers"]["x-request-id"], "client-chosen");
    assert_eq!(v["headers"]["x-request-id"].as_str().unwrap().len(), 32);

    let trusted = Gateway::start(&[("s", site)], "trusted_proxies = [\"127.0.0.1\"]", "");
    let r = client()
        .get(trusted.url("/x"))
        .header("host", "s.test")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-request-id", "lb-1234")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "lb-1234");
    let v = echo(&r.text().await.unwrap());
    assert_eq!(v["headers"]["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(v["headers"]["x-real-ip"], "203.0.113.9");
    assert_eq!(v["headers"]["x-request-id"], "lb-1234");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_error_page_override_and_access_log() {
    let dir_page = tempfile::tempdir().unwrap();
    let page = dir_page.path().join("503.html");
    std::fs::write(&page, "<h1>维护中 {{status}}</h1><p>{{request_id}}</p>").unwrap();
    let extra = format!(
        "[error_pages]\n503 = \"{}\"\n[pools.main.health_check]\npath = \"/healthz\"\ninterval = \"100ms\"\nunhealthy_threshold = 1\n",
        page.display()
    );
    let a = origin("a").await;
    let g = Gateway::start(
        &[("s", simple_site("s", "s.test", &[a.addr], &extra))],
        "",
        "",
    );
    assert_eq!(get(&g, "s.test", "/ok").await.0, 200);
    a.set_healthy(false);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = client()
        .get(g.url("/x?q=1"))
        .header("host", "s.test")
        .header("user-agent", "test-agent")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(
        r.text().await.unwrap(),
        format!("<h1>维护中 503</h1><p>{rid}</p>")
    );

    // The access log has one JSON line per request with the documented fields.
    let deadline = Instant::now() + Duration::from_secs(5);
    let line = loop {
        let log = std::fs::read_to_string(&g.access_log).unwrap_or_default();
        if let Some(l) = log.lines().find(|l| l.contains(&rid)) {
            break l.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no access log line for {rid}: {log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["status"], 503);
    assert_eq!(v["site"], "s");
    assert_eq!(v["path"], "/x");
    assert_eq!(v["query"], "q=1");
    assert_eq!(v["user_agent"], "test-agent");
    assert_eq!(v["action"], "no_backend");
    for field in [
        "time",
        "client_ip",
        "method",
        "host",
        "bytes_sent",
        "bytes_received",
        "upstream_addr",
        "duration_ms",
        "referer",
        "waf_action",
        "ratelimit_action",
        "deface_action",
    ] {
        assert!(v.get(field).is_some(), "missing {field} in {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_request_body_gets_408() {
    let a = origin("a").await;
    let extra = "[limits]\nclient_body_timeout = \"500ms\"\n";
    let g = Gateway::start(
        &[("s", simple_site("s", "s.test", &[a.addr], extra))],
        "",
        "",
    );
    let t = Instant::now();
    let resp = tokio::task::spawn_blocking({
        let http = g.http;
        move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(http).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(
                b"POST /x HTTP/1.1\r\nHost: s.test\r\nContent-Length: 100\r\n\r\nonly-ten-b",
            )
            .unwrap();
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            String::from_utf8_lossy(&out).to_string()
        }
    })
    .await
    .unwrap();
    assert_eq!(parse_status(&resp), Some(408), "{resp}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_scrape_passes_promtool() {
    let a = origin("a").await;
    let g = Gateway::start(&[("s", simple_site("s", "s.test", &[a.addr], ""))], "", "");
    get(&g, "s.test", "/x").await;
    get(&g, "nobody.test", "/x").await;
    client()
        .post(g.url("/x"))
        .header("host", "s.test")
        .body("abc")
        .send()
        .await
        .unwrap();
    let wanted = [
        "egret_requests_total{action=\"proxied\",method=\"GET\",site=\"s\",status_class=\"2xx\"} 1",
        "egret_requests_total{action=\"unknown_host\",method=\"GET\",site=\"_unknown\",status_class=\"4xx\"} 1",
        "egret_request_duration_seconds_bucket",
        "egret_upstream_duration_seconds_bucket",
        "egret_request_body_bytes_total{site=\"s\"} 3",
        "egret_config_generation 1",
        "egret_build_info{version=",
    ];
    // Requests are recorded just after their response is sent: poll briefly.
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = metrics(&g).await;
        match wanted.iter().find(|f| !text.contains(*f)) {
            None => break text,
            Some(f) => assert!(Instant::now() < deadline, "missing {f}:\n{text}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let promtool = which("promtool")
        .expect("promtool is required: apt-get install prometheus (scripts/test does)");
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{report}"
    );
}

fn which(cmd: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(cmd))
        .find(|p| p.is_file())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_request_header_is_cut_off() {
    let a = origin("a").await;
    let g = Gateway::start(&[("s", simple_site("s", "s.test", &[a.addr], ""))], "", "");
    g.set_server_keys("client_header_timeout = \"500ms\"").await;
    let http = g.http;
    let (closed_after, got) = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let t = Instant::now();
        s.write_all(b"GET /x HTTP/1.1\r\nHost: s.te").unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        (t.elapsed(), String::from_utf8_lossy(&buf).to_string())
    })
    .await
    .unwrap();
    assert!(
        closed_after < Duration::from_secs(3),
        "slow header held the connection for {closed_after:?}"
    );
    assert!(!got.contains("200 OK"), "{got}");
    assert_eq!(a.hits(), 0);
    // Normal clients are still served.
    assert_eq!(get(&g, "s.test", "/x").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_connection_limit_closes_extra_connections() {
    use std::io::{Read, Write};
    let a = origin("a").await;
    let g = Gateway::start(
        &[("s", simple_site("s", "s.test", &[a.addr], ""))],
        "",
        "[connections]\nmax_per_ip = 3\n",
    );
    let http = g.http;
    // The harness's readiness probe connected too: wait until it is no longer counted.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !metrics(&g).await.contains("egret_connections_active 0") {
        assert!(Instant::now() < deadline, "readiness probe still counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let held: Vec<std::net::TcpStream> = (0..3)
        .map(|_| std::net::TcpStream::connect(http).unwrap())
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let extra = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(b"GET /x HTTP/1.1\r\nHost: s.test\r\n\r\n");
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).to_string()
    })
    .await
    .unwrap();
    assert!(
        extra.is_empty(),
        "the fourth connection was served: {extra}"
    );
    let m = metrics(&g).await;
    assert!(
        m.contains("egret_connections_refused_total{reason=\"too_many_open\"} 1"),
        "{m}"
    );
    assert!(m.contains("egret_connections_active 3"), "{m}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        get(&g, "s.test", "/x").await.0,
        200,
        "connections are admitted again once others close"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers_are_added_and_banners_hidden() {
    let a = origin("a").await;
    let g = Gateway::start(
        &[
            ("s", simple_site("s", "s.test", &[a.addr], "")),
            (
                "raw",
                simple_site("raw", "raw.test", &[a.addr], "security_headers = false"),
            ),
        ],
        "",
        "",
    );
    let r = client()
        .get(g.url("/x"))
        .header("host", "s.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.headers()["x-frame-options"], "SAMEORIGIN");
    assert_eq!(
        r.headers()["referrer-policy"],
        "strict-origin-when-cross-origin"
    );
    let r = client()
        .get(g.url("/x"))
        .header("host", "raw.test")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("x-frame-options").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_header_is_cut_off_at_the_header_deadline() {
    let a = origin("a").await;
    let g = Gateway::start(&[("s", simple_site("s", "s.test", &[a.addr], ""))], "", "");
    g.set_server_keys("client_header_timeout = \"2s\"\nclient_header_deadline = \"1500ms\"")
        .await;
    let http = g.http;
    let (cut_after, sent) = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(http).unwrap();
        let t = Instant::now();
        let header = b"GET /x HTTP/1.1\r\nHost: s.test\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        let mut sent = 0;
        // One byte every 200 ms: always within the per-read timeout, never a whole header in time.
        for b in header.iter() {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            sent += 1;
            std::thread::sleep(Duration::from_millis(200));
            if t.elapsed() > Duration::from_secs(8) {
                break;
            }
        }
        (t.elapsed(), sent)
    })
    .await
    .unwrap();
    assert!(
        cut_after < Duration::from_secs(5),
        "trickling client held on for {cut_after:?} ({sent} bytes)"
    );
    assert_eq!(a.hits(), 0);
    let m = metrics(&g).await;
    assert!(
        m.contains("egret_connections_refused_total{reason=\"header_deadline\"} 1"),
        "{m}"
    );
    assert_eq!(
        get(&g, "s.test", "/x").await.0,
        200,
        "normal clients are still served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_below_the_minimum_rate_gets_408() {
    let a = origin("a").await;
    let extra = "[limits]\nmin_body_rate = 100\nbody_rate_grace = \"1s\"\n";
    let g = Gateway::start(
        &[("s", simple_site("s", "s.test", &[a.addr], extra))],
        "",
        "",
    );
    let http = g.http;
    let (took, resp) = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(http).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let t = Instant::now();
        s.write_all(b"POST /x HTTP/1.1\r\nHost: s.test\r\nContent-Length: 1000\r\n\r\n")
            .unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while t.elapsed() < Duration::from_secs(8) {
            if s.write_all(b"a").is_err() {
                break;
            }
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    break;
                }
                Err(_) => {}
            }
            std::thread::sleep(Duration::from_millis(150));
        }
        (t.elapsed(), String::from_utf8_lossy(&out).to_string())
    })
    .await
    .unwrap();
    assert_eq!(parse_status(&resp), Some(408), "{resp}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // A normal body at full speed is unaffected.
    let ok = client()
        .post(g.url("/x"))
        .header("host", "s.test")
        .body(vec![b'b'; 5000])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}
