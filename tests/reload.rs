//! Hot reload and process lifecycle through the real binary: file watch, SIGHUP, admin API,
//! broken reloads, reloads under load, SIGUSR1 log reopen, SIGTERM graceful shutdown.

mod common;
use common::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_site_file_goes_live_without_restart() {
    let a = origin("a").await;
    let b = origin("b").await;
    let g = Gateway::start(&[("a", simple_site("a", "a.test", &[a.addr], ""))], "", "");
    let gen = g.generation();
    assert_eq!(get(&g, "b.test", "/x").await.0, 404);
    g.write_site("b", &simple_site("b", "b.test", &[b.addr], ""));
    g.wait_generation(gen);
    let (s, body) = get(&g, "b.test", "/x").await;
    assert_eq!(s, 200);
    assert_eq!(echo(&body)["origin"], "b");
    assert_eq!(g.child.id(), g.child.id(), "same process");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_when_watching_is_off() {
    let a = origin("a").await;
    let b = origin("b").await;
    let g = Gateway::start(
        &[("a", simple_site("a", "a.test", &[a.addr], ""))],
        "",
        "[reload]\nwatch = false\n",
    );
    let gen = g.generation();
    g.write_site("a", &simple_site("a", "a.test", &[b.addr], ""));
    // Not watching: the change is not picked up until SIGHUP.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(g.generation(), gen);
    assert_eq!(echo(&get(&g, "a.test", "/x").await.1)["origin"], "a");
    g.signal("HUP");
    g.wait_generation(gen);
    let (_, body) = get(&g, "a.test", "/x").await;
    assert_eq!(echo(&body)["origin"], "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_reload_keeps_serving_and_reports_file_and_line() {
    let a = origin("a").await;
    let g = Gateway::start(&[("a", simple_site("a", "a.test", &[a.addr], ""))], "", "");
    let gen = g.generation();
    std::fs::write(
        g.site_path("a"),
        "name = \"a\"\nhosts = [\"a.test\"]\n[pools.main]\nbackends = [\"127.0.0.1\"]\n",
    )
    .unwrap();
    // The watcher tries and fails; the admin API shows the error with file:line.
    let deadline = Instant::now() + Duration::from_secs(10);
    let errors = loop {
        let st: serde_json::Value = client()
            .get(g.admin_url("/api/v1/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let errs = st["recent_reload_errors"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !errs.is_empty() {
            break serde_json::Value::Array(errs).to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no reload error reported:\n{}",
            g.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        errors.contains("sites/a.toml:4:13: invalid backend"),
        "{errors}"
    );
    assert_eq!(g.generation(), gen, "a broken config was swapped in");
    assert_eq!(
        get(&g, "a.test", "/x").await.0,
        200,
        "old config stopped serving"
    );
    // The explicit reload API answers 422 with the same errors; metrics count failures.
    let r = client()
        .post(g.admin_url("/api/v1/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("invalid backend"));
    let m = metrics(&g).await;
    assert!(
        m.contains("egret_config_reloads_total{result=\"failure\"}"),
        "{m}"
    );
    assert!(
        g.stderr().contains("a.toml:4:13"),
        "error log lacks file:line"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_requests_during_twenty_reloads_all_succeed() {
    let a = origin("a").await;
    let b = origin("b").await;
    let g = Gateway::start(
        &[("s", simple_site("s", "s.test", &[a.addr, b.addr], ""))],
        "",
        "",
    );
    let url = g.url("/x");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let url = url.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let c = client();
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match c.get(&url).header("host", "s.test").send().await {
                    Ok(r) if r.status() == 200 => ok += 1,
                    Ok(r) => failed.push(format!("status {}", r.status())),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        }));
    }
    let c = client();
    let gen0 = g.generation();
    for i in 0..20 {
        // Alternate real changes (weights) with plain reloads.
        let site = if i % 2 == 0 {
            format!("name = \"s\"\nhosts = [\"s.test\"]\n[pools.main]\nbackends = [{{ addr = \"{}\", weight = {} }}, \"{}\"]\n", a.addr, i + 1, b.addr)
        } else {
            simple_site("s", "s.test", &[a.addr, b.addr], "")
        };
        g.write_site("s", &site);
        let r = c.post(g.admin_url("/api/v1/reload")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    for t in tasks {
        let (o, f) = t.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    assert!(g.generation() >= gen0 + 20);
    assert!(ok >= 200, "only {ok} requests completed");
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during reloads: {:?}",
        failed.len(),
        ok as usize + failed.len(),
        &failed[..failed.len().min(5)]
    );
    println!(
        "{ok} requests, 0 failures, {} reloads",
        g.generation() - gen0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_reopens_the_access_log() {
    let a = origin("a").await;
    let g = Gateway::start(&[("s", simple_site("s", "s.test", &[a.addr], ""))], "", "");
    assert_eq!(get(&g, "s.test", "/before").await.0, 200);
    let wait_for = |needle: &'static str, path: std::path::PathBuf| async move {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if std::fs::read_to_string(&path)
                .unwrap_or_default()
                .contains(needle)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{needle} not in {}",
                path.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    wait_for("/before", g.access_log.clone()).await;
    let rotated = g.access_log.with_extension("log.1");
    std::fs::rename(&g.access_log, &rotated).unwrap();
    g.signal("USR1");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(get(&g, "s.test", "/after").await.0, 200);
    wait_for("/after", g.access_log.clone()).await;
    assert!(!std::fs::read_to_string(&rotated)
        .unwrap()
        .contains("/after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish() {
    let a = origin("a").await;
    let mut g = Gateway::start(&[("s", simple_site("s", "s.test", &[a.addr], ""))], "", "");
    let url = g.url("/slow/1200");
    let inflight = tokio::spawn(async move {
        client()
            .get(url)
            .header("host", "s.test")
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    g.signal("TERM");
    let status = inflight.await.unwrap().expect("in-flight request was cut");
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(st) = g.child.try_wait().unwrap() {
            assert!(st.success() || st.code().is_some(), "{st}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "egret did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_passes_through() {
    use std::io::{Read, Write};
    let a = origin("a").await;
    let g = Gateway::start(&[("s", simple_site("s", "s.test", &[a.addr], ""))], "", "");
    let http = g.http;
    let out = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /ws HTTP/1.1\r\nHost: s.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap();
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed before the 101");
            got.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&got).to_string();
        s.write_all(b"ping-through-egret").unwrap();
        let mut echoed = Vec::new();
        while echoed.len() < 18 {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0);
            echoed.extend_from_slice(&buf[..n]);
        }
        (head, String::from_utf8_lossy(&echoed).to_string())
    })
    .await
    .unwrap();
    assert!(out.0.starts_with("HTTP/1.1 101"), "{}", out.0);
    assert_eq!(out.1, "ping-through-egret");
}
