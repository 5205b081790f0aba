//! The admin surface under attack: the token is required on every API path however the path is
//! spelled, compared exactly; oversized requests are refused without harm; no file-serving or
//! state path can be walked out of; the listener is off unless configured and loopback-only
//! without a token. (tests/admin.rs covers the basic token flow and the config errors.)

mod common;
mod hardening_support;
use common::*;
use hardening_support::*;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

const TOKEN: &str = "s3cret-token-0123456789";

async fn with_token(sites: &[(&str, String)], extra: &str) -> Gateway {
    let g = Gateway::start(sites, "", extra);
    let token_path = g.dir.path().join("admin.token");
    std::fs::write(&token_path, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = std::fs::read_to_string(&g.config).unwrap().replace(
        "[admin]\n",
        &format!("[admin]\ntoken_file = \"{}\"\n", token_path.display()),
    );
    std::fs::write(&g.config, text).unwrap();
    let r = client()
        .post(g.admin_url("/api/v1/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    g
}

async fn admin_raw(g: &Gateway, raw: String) -> RawReply {
    let addr = g.admin;
    tokio::task::spawn_blocking(move || send_raw(addr, raw.as_bytes(), Duration::from_millis(1500)))
        .await
        .unwrap()
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spelling_of_an_api_path_needs_the_exact_token() {
    let a = origin("a").await;
    let g = with_token(&[("s", simple_site("s", "s.test", &[a.addr], ""))], "").await;
    let auth_cases: &[(&str, Option<String>)] = &[
        ("none", None),
        ("empty bearer", Some("Bearer ".into())),
        ("lower-case scheme", Some(format!("bearer {TOKEN}"))),
        ("basic", Some(format!("Basic {TOKEN}"))),
        (
            "prefix of the token",
            Some(format!("Bearer {}", &TOKEN[..10])),
        ),
        ("token plus a byte", Some(format!("Bearer {TOKEN}x"))),
        ("token with a space", Some(format!("Bearer  {TOKEN}"))),
        (
            "last byte changed",
            Some(format!("Bearer {}8", &TOKEN[..TOKEN.len() - 1])),
        ),
    ];
    let paths = [
        "/api/v1/status",
        "/api/v1/status/",
        "/API/v1/status",
        "//api/v1/status",
        "/metrics/../api/v1/status",
        "/healthz/../api/v1/status",
        "/api/v1/%73tatus",
        "/api/v1/deface/status",
    ];
    for path in paths {
        for (name, auth) in auth_cases {
            let auth = auth
                .as_ref()
                .map(|a| format!("Authorization: {a}\r\n"))
                .unwrap_or_default();
            let r = admin_raw(
                &g,
                format!("GET {path} HTTP/1.1\r\nHost: admin\r\n{auth}Connection: close\r\n\r\n"),
            )
            .await;
            let s = r.status();
            // 401, or for a spelling that is no endpoint at all, 401/404: never a 200.
            assert!(
                matches!(s, Some(401) | Some(404) | Some(400)) && !r.text.contains("\"sites\""),
                "{path} with {name}: {:?}\n{}",
                s,
                r.text
            );
        }
    }
    let r = admin_raw(
        &g,
        format!("POST /api/v1/reload HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(r.status(), Some(200), "{}", r.text);
    let r = admin_raw(
        &g,
        "GET /readyz?/api/v1/status HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
            .to_string(),
    )
    .await;
    assert_eq!(
        r.status(),
        Some(200),
        "the public path itself still answers"
    );
    assert!(!r.text.contains("\"sites\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_admin_requests_are_refused_and_the_listener_survives() {
    let a = origin("a").await;
    let g = with_token(&[("s", simple_site("s", "s.test", &[a.addr], ""))], "").await;
    let pid = g.child.id();
    let rss_before = rss_kib(pid);
    // A 200 KB header, a 2 MB header, thousands of fields, a 64 KB path.
    let cases = [
        format!(
            "GET /api/v1/status HTTP/1.1\r\nHost: admin\r\nX-Big: {}\r\n\r\n",
            "a".repeat(200_000)
        ),
        format!(
            "GET /api/v1/status HTTP/1.1\r\nHost: admin\r\nX-Big: {}\r\n\r\n",
            "a".repeat(2_000_000)
        ),
        format!(
            "GET /api/v1/status HTTP/1.1\r\nHost: admin\r\n{}\r\n",
            "X-H: v\r\n".repeat(3000)
        ),
        format!(
            "GET /{} HTTP/1.1\r\nHost: admin\r\n\r\n",
            "a".repeat(70_000)
        ),
    ];
    for raw in cases {
        let t = Instant::now();
        let r = admin_raw(&g, raw).await;
        assert!(
            r.closed || matches!(r.status(), Some(400..=499)),
            "oversized admin request got {:?}",
            r.status()
        );
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(!r.text.contains("\"sites\""));
    }
    // A large body without the token is answered 401 without being buffered whole.
    let addr = g.admin;
    let status = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(
            b"POST /api/v1/reload HTTP/1.1\r\nHost: admin\r\nContent-Length: 50000000\r\n\r\n",
        )
        .unwrap();
        let chunk = vec![b'z'; 65536];
        for _ in 0..32 {
            if s.write_all(&chunk).is_err() {
                break;
            }
        }
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).to_string()
    })
    .await
    .unwrap();
    assert!(status.starts_with("HTTP/1.1 401"), "{status}");
    assert!(
        rss_kib(pid) < rss_before + 64 * 1024,
        "RSS grew from {rss_before} to {} KiB",
        rss_kib(pid)
    );
    // Still serving.
    let r = client()
        .get(g.admin_url("/api/v1/status"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deface_approval_cannot_walk_out_of_the_state_directory() {
    let o = origin("o").await;
    o.set_page(
        "/zwgk/a.htm",
        b"<html><body><p>page</p></body></html>".to_vec(),
        None,
    );
    let site = format!(
        "{}\n[[deface.pages]]\npath = \"/zwgk/**/*.htm\"\nmode = \"protect\"\n",
        simple_site("www", "www.test", &[o.addr], "")
    );
    let g = with_token(
        &[("www", site)],
        "[deface]\nstate_dir = \"state\"\nprobe_interval = \"1h\"\n",
    )
    .await;
    let before = files_under(g.dir.path());
    let approve = |site: &str, path: &str| {
        let url = g.admin_url(&format!(
            "/api/v1/deface/approve?site={}&path={}",
            site,
            path.replace('%', "%25")
                .replace('/', "%2F")
                .replace('&', "%26")
        ));
        async move {
            let r = client().post(url).bearer_auth(TOKEN).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    for (site, path) in [
        ("www", "/zwgk/../../../../etc/passwd.htm"),
        ("www", "/zwgk/..;/..;/etc/x.htm"),
        ("..%2F..%2Fetc", "/zwgk/a.htm"),
        ("www", "../../../../tmp/x.htm"),
    ] {
        let (s, body) = approve(site, path).await;
        assert_eq!(s, 422, "{site} {path}: {body}");
    }
    // A protected-page spelling with encoded separators is approved, and stored by hash inside
    // the state directory.
    let (s, body) = approve("www", "/zwgk/a/..%2f..%2f..%2f..%2fetc%2fx.htm").await;
    assert!(matches!(s, 200 | 422), "{body}");
    let (s, body) = approve("www", "/zwgk/a.htm").await;
    assert_eq!(s, 200, "{body}");
    let state = g.dir.path().join("state");
    let after = files_under(g.dir.path());
    let new: Vec<_> = after.iter().filter(|p| !before.contains(p)).collect();
    assert!(!new.is_empty());
    for p in &new {
        assert!(
            p.starts_with(&state)
                || p.file_name()
                    .is_some_and(|n| n.to_string_lossy().ends_with(".log")),
            "approval wrote outside the state directory: {}",
            p.display()
        );
    }
    assert!(!std::path::Path::new("/tmp/x.htm").exists());
}

#[test]
fn the_admin_listener_is_off_by_default_and_loopback_only_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sites")).unwrap();
    std::fs::write(
        dir.path().join("sites/a.toml"),
        "name = \"a\"\nhosts = [\"a.test\"]\n[pools.main]\nbackends = [\"127.0.0.1:9\"]\n",
    )
    .unwrap();
    let check = |global: &str| {
        std::fs::write(dir.path().join("egret.toml"), global).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_egret"))
            .args(["check", "-c"])
            .arg(dir.path().join("egret.toml"))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    for open in ["[::]:9901", "10.1.2.3:9901", "192.168.0.1:9901"] {
        let (ok, err) = check(&format!(
            "[listen]\nhttp = [\"127.0.0.1:1\"]\n[admin]\nlisten = \"{open}\"\n"
        ));
        assert!(!ok && err.contains("not on loopback"), "{open}: {err}");
    }
    for lo in ["127.0.0.1:9901", "[::1]:9901", "127.0.0.2:9901"] {
        let (ok, err) = check(&format!(
            "[listen]\nhttp = [\"127.0.0.1:1\"]\n[admin]\nlisten = \"{lo}\"\n"
        ));
        assert!(ok, "{lo}: {err}");
    }
    // No [admin] listen: no admin listener at all. Start the gateway and look at its sockets.
    let http = format!("127.0.0.1:{}", free_port());
    std::fs::write(
        dir.path().join("egret.toml"),
        format!("[listen]\nhttp = [\"{http}\"]\n[server]\ngrace_period = \"1s\"\n"),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_egret"))
        .args(["run", "-c"])
        .arg(dir.path().join("egret.toml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&http).is_err() {
        assert!(Instant::now() < deadline, "gateway did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let listening = listening_ports(child.id());
    let _ = child.kill();
    let _ = child.wait();
    let port: u16 = http.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(listening, vec![port], "listening sockets besides the proxy");
}

/// TCP ports a process listens on (from /proc/net/tcp{,6} and its socket inodes).
fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().to_string();
            l.strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(str::to_string)
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
        {
            let f: Vec<&str> = line.split_whitespace().collect();
            // state 0A = LISTEN
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                if let Some(p) = f[1]
                    .rsplit(':')
                    .next()
                    .and_then(|h| u16::from_str_radix(h, 16).ok())
                {
                    ports.push(p);
                }
            }
        }
    }
    ports.sort();
    ports.dedup();
    ports
}
