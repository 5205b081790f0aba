//! Broken origins behind the real gateway: refused connections, resets, hangs before and in the
//! body, garbage and invalid status lines, bodies longer or shorter than declared, CL plus
//! chunked, a 100-continue storm, keep-alive connections closed under the proxy. Each gives the
//! client a clean 502/504 (or, once headers went out, a truncated body on a closed connection),
//! is counted per site and backend, leaks no descriptor, and leaves another site unaffected.

mod common;
mod hardening_support;
use common::*;
use hardening_support::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An origin that misbehaves according to the request path. `open` counts its live connections.
struct BadOrigin {
    addr: SocketAddr,
    open: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BadOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn bad_origin() -> BadOrigin {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let open = Arc::new(AtomicUsize::new(0));
    let o2 = open.clone();
    let task = tokio::spawn(async move {
        while let Ok((sock, _)) = l.accept().await {
            let open = o2.clone();
            open.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                serve_bad(sock).await;
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    BadOrigin { addr, open, task }
}

async fn w(s: &mut tokio::net::TcpStream, b: String) -> std::io::Result<()> {
    s.write_all(b.as_bytes()).await
}

async fn serve_bad(mut s: tokio::net::TcpStream) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    loop {
        let end = loop {
            if let Some(p) = find(&buf, b"\r\n\r\n") {
                break p + 4;
            }
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let path = head.split(' ').nth(1).unwrap_or("").to_string();
        let bin = "Content-Type: application/octet-stream\r\n";
        let r = match path.as_str() {
            "/reset" => {
                let _ = w(&mut s, format!("HTTP/1.1 200 OK\r\n{bin}Content-Length: 100000\r\n\r\n{}", "r".repeat(1000))).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                // Abortive close: SO_LINGER 0 makes the close send a reset (and a zero linger
                // never blocks, which is what the deprecation warns about).
                #[allow(deprecated)]
                let _ = s.set_linger(Some(Duration::ZERO));
                return;
            }
            "/hang-head" => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                return;
            }
            "/hang-body" => {
                let _ = w(&mut s, format!("HTTP/1.1 200 OK\r\n{bin}Content-Length: 100000\r\n\r\n{}", "h".repeat(1000))).await;
                tokio::time::sleep(Duration::from_secs(30)).await;
                return;
            }
            "/garbage" => {
                let _ = w(&mut s, "\x00\x01garbage, not HTTP at all\r\n\r\n".into()).await;
                return;
            }
            "/bad-status" => {
                let _ = w(&mut s, "HTTP/1.1 2000 Very OK\r\nContent-Length: 2\r\n\r\nok".into()).await;
                return;
            }
            "/bad-status-text" => {
                let _ = w(&mut s, "HTTP/9.9 abc\r\nContent-Length: 2\r\n\r\nok".into()).await;
                return;
            }
            // Five bytes declared, a whole second response behind them: a poisoned keep-alive
            // connection if the proxy reused it.
            "/longer" => w(&mut s, format!("HTTP/1.1 200 OK\r\n{bin}Content-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\n{bin}Content-Length: 8\r\n\r\npoisoned")).await,
            "/shorter" => {
                let _ = w(&mut s, format!("HTTP/1.1 200 OK\r\n{bin}Content-Length: 5000\r\n\r\nonly-this")).await;
                return;
            }
            "/cl-and-chunked" => w(&mut s, format!("HTTP/1.1 200 OK\r\n{bin}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n{bin}Content-Length: 8\r\n\r\npoisoned")).await,
            "/continue-storm" => {
                let storm = "HTTP/1.1 100 Continue\r\n\r\n".repeat(2000);
                w(&mut s, format!("{storm}HTTP/1.1 200 OK\r\n{bin}Content-Length: 5\r\n\r\nfinal")).await
            }
            "/close-after" => {
                let _ = w(&mut s, format!("HTTP/1.1 200 OK\r\n{bin}Content-Length: 2\r\n\r\nok")).await;
                // Keep-alive was promised; the connection is closed under the proxy.
                tokio::time::sleep(Duration::from_millis(20)).await;
                return;
            }
            _ => w(&mut s, format!("HTTP/1.1 200 OK\r\n{bin}Content-Length: 2\r\n\r\nok")).await,
        };
        if r.is_err() {
            return;
        }
    }
}

/// A raw GET with a deadline: status (0 when none), body bytes after the header, and whether
/// the connection was closed by the gateway.
fn raw_get_timed(addr: SocketAddr, host: &str, path: &str) -> (u16, Vec<u8>, bool, Duration) {
    use std::io::{Read, Write};
    let t = Instant::now();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                // A complete keep-alive response: stop reading.
                if let Some(h) = find(&out, b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&out[..h]).to_ascii_lowercase();
                    if let Some(cl) = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                    {
                        if out.len() >= h + 4 + cl {
                            break false;
                        }
                    }
                    if head.contains("transfer-encoding: chunked")
                        && out.ends_with(b"\r\n0\r\n\r\n")
                    {
                        break false;
                    }
                }
            }
            Err(_) => break false,
        }
    };
    let status = String::from_utf8_lossy(&out)
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3)?.parse().ok())
        .unwrap_or(0);
    let body = find(&out, b"\r\n\r\n")
        .map(|h| out[h + 4..].to_vec())
        .unwrap_or_default();
    (status, body, closed, t.elapsed())
}

async fn get_timed(addr: SocketAddr, host: &str, path: &str) -> (u16, Vec<u8>, bool, Duration) {
    let (host, path) = (host.to_string(), path.to_string());
    tokio::task::spawn_blocking(move || raw_get_timed(addr, &host, &path))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_origins_get_clean_errors_counted_without_leaks() {
    let bad = bad_origin().await;
    let good = origin("good").await;
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let t = "[timeouts]\nconnect_timeout = \"1s\"\nread_timeout = \"1s\"\nretries = 0\n";
    let g = Gateway::start(
        &[
            ("bad", simple_site("bad", "bad.test", &[bad.addr], t)),
            ("dead", simple_site("dead", "dead.test", &[dead], t)),
            ("good", simple_site("good", "good.test", &[good.addr], "")),
        ],
        "",
        "",
    );
    let pid = g.child.id();
    // Warm up (lazy state, pools), then count descriptors.
    for _ in 0..3 {
        assert_eq!(get(&g, "good.test", "/x").await.0, 200);
        assert_eq!(get_timed(g.http, "bad.test", "/ok").await.0, 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fds_before = open_fds(pid);

    // Another site is served all along: a client loops on it while the broken cases run.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let side = {
        let (stop, url) = (stop.clone(), g.url("/side"));
        tokio::spawn(async move {
            let (mut ok, mut bad, mut worst) = (0, 0, Duration::ZERO);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = client().get(&url).header("host", "good.test").send().await;
                worst = worst.max(t.elapsed());
                match r {
                    Ok(r) if r.status() == 200 => ok += 1,
                    _ => bad += 1,
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (ok, bad, worst)
        })
    };

    let mut report = Vec::new();
    // (host, path, acceptable statuses, body must be shorter than declared when status is 200)
    let cases: &[(&str, &str, &[u16])] = &[
        ("dead.test", "/refused", &[502]),
        ("bad.test", "/hang-head", &[504]),
        ("bad.test", "/garbage", &[502]),
        ("bad.test", "/bad-status", &[502]),
        ("bad.test", "/bad-status-text", &[502]),
        ("bad.test", "/reset", &[200, 502]),
        ("bad.test", "/hang-body", &[200, 504]),
        ("bad.test", "/shorter", &[200, 502]),
    ];
    for (host, path, want) in cases {
        let (status, body, closed, took) = get_timed(g.http, host, path).await;
        report.push(format!(
            "{host}{path}: {status}, {} body bytes, closed {closed}, {took:?}",
            body.len()
        ));
        assert!(
            want.contains(&status),
            "{host}{path}: got {status}\n{report:#?}"
        );
        assert!(took < Duration::from_secs(6), "{host}{path} took {took:?}");
        if status == 200 {
            // Headers were already sent: the body is cut short and the connection closed, so the
            // client cannot mistake the truncated body for a whole one.
            assert!(body.len() < 5000, "{path}: {} bytes", body.len());
            assert!(
                closed,
                "{path}: truncated response on a connection left open"
            );
        } else {
            let text = String::from_utf8_lossy(&body);
            assert!(
                text.contains(&status.to_string()),
                "{path}: not Egret's error page: {text}"
            );
        }
    }

    // Longer than declared, and CL with chunked: the client gets one well-framed response and a
    // following request on another connection never receives the smuggled second response.
    for path in ["/longer", "/cl-and-chunked"] {
        let (status, body, _, _) = get_timed(g.http, "bad.test", path).await;
        report.push(format!(
            "bad.test{path}: {status} {:?}",
            String::from_utf8_lossy(&body)
        ));
        assert!(matches!(status, 200 | 502), "{path}: {status}");
        if status == 200 {
            assert!(
                body == b"hello" || body == b"5\r\nhello\r\n0\r\n\r\n",
                "{path}: {:?}",
                String::from_utf8_lossy(&body)
            );
        }
        for _ in 0..5 {
            let (s, b, _, _) = get_timed(g.http, "bad.test", "/ok").await;
            assert_eq!(
                (s, b.as_slice()),
                (200, &b"ok"[..]),
                "{path} poisoned the pool"
            );
        }
    }
    // A storm of interim responses is not relayed: after a few the origin counts as broken and
    // the client connection ends (with a 502 when nothing final was sent yet).
    let storm = tokio::task::spawn_blocking({
        let addr = g.http;
        move || {
            send_raw(
                addr,
                b"GET /continue-storm HTTP/1.1\r\nHost: bad.test\r\n\r\n",
                Duration::from_secs(3),
            )
        }
    })
    .await
    .unwrap();
    let interim = storm.text.matches("HTTP/1.1 100").count();
    report.push(format!(
        "continue storm: {interim} interim relayed, statuses {:?}, closed {}",
        storm
            .statuses()
            .iter()
            .filter(|s| **s != 100)
            .collect::<Vec<_>>(),
        storm.closed
    ));
    assert!(interim <= 4, "{interim} interim responses relayed");
    assert!(storm.closed, "{report:#?}");
    assert!(!storm.text.contains("final"), "{report:#?}");
    // Keep-alive connections closed under the proxy: every request still succeeds.
    for i in 0..20 {
        let r = client()
            .get(g.url("/close-after"))
            .header("host", "bad.test")
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "request {i} after the origin closed keep-alive"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }

    stop.store(true, Ordering::Relaxed);
    let (ok, failed, worst) = side.await.unwrap();
    report.push(format!(
        "other site meanwhile: {ok} ok, {failed} failed, slowest {worst:?}"
    ));
    assert_eq!(failed, 0, "{report:#?}");
    assert!(ok > 20, "{report:#?}");

    // Counted per site and backend.
    let m = metrics(&g).await;
    let series = |site: &str, backend: SocketAddr, kind: &str| {
        format!("egret_upstream_errors_total{{backend=\"{backend}\",kind=\"{kind}\",pool=\"main\",site=\"{site}\"}}")
    };
    assert!(
        metric(&m, &series("dead", dead, "connect")).unwrap_or(0.0) >= 1.0,
        "{m}"
    );
    assert!(
        metric(&m, &series("bad", bad.addr, "timeout")).unwrap_or(0.0) >= 1.0,
        "{m}"
    );
    assert!(
        metric(&m, &series("bad", bad.addr, "proxy")).unwrap_or(0.0) >= 3.0,
        "{m}"
    );
    assert!(
        m.lines()
            .all(|l| !l.starts_with("egret_upstream_errors_total") || !l.contains("site=\"good\"")),
        "the good site has upstream errors: {m}"
    );
    assert!(m.contains("egret_requests_total{action=\"upstream_error\",method=\"GET\",site=\"bad\",status_class=\"5xx\"}"), "{m}");

    // Logged: one access-log line per failed request, with the site, the action and the backend.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = std::fs::read_to_string(&g.access_log).unwrap_or_default();
        let failed: Vec<&str> = log
            .lines()
            .filter(|l| {
                l.contains("\"site\":\"bad\"") && l.contains("\"action\":\"upstream_error\"")
            })
            .collect();
        if failed.len() >= 5 {
            assert!(
                failed.iter().any(|l| l.contains(&bad.addr.to_string())),
                "no backend address in {failed:#?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "upstream errors not logged:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // No leak: descriptors come back, the gateway holds no connection to the hanging origin.
    let deadline = Instant::now() + Duration::from_secs(10);
    let fds_after = loop {
        let n = open_fds(pid);
        if n <= fds_before + 4 || Instant::now() > deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    report.push(format!(
        "fds before {fds_before}, after {fds_after}; origin connections open {}",
        bad.open.load(Ordering::SeqCst)
    ));
    println!("{}", report.join("\n"));
    assert!(fds_after <= fds_before + 4, "{report:#?}");
    assert!(
        metric(&m, "egret_requests_in_flight").unwrap_or(1.0) <= 1.0,
        "{m}"
    );
    assert!(
        g.stderr().lines().all(|l| !l.contains("panicked")),
        "{}",
        g.stderr()
    );
}
