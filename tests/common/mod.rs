//! Test harness: real origins on loopback, the real `egret` binary on a temporary config,
//! real HTTP clients. Every port is ephemeral; readiness is polled with a deadline.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use egret::demo::origin::Origin;

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Starts an origin on a free port.
pub async fn origin(name: &str) -> Origin {
    Origin::start(name, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("origin")
}

/// A running gateway process and its temporary config directory.
pub struct Gateway {
    pub child: Child,
    pub http: SocketAddr,
    pub https: Option<SocketAddr>,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub stderr_path: PathBuf,
    pub access_log: PathBuf,
}

impl Gateway {
    /// The WAF audit log file.
    pub fn audit_log(&self) -> PathBuf {
        self.access_log.with_file_name("audit.log")
    }
}

/// The global config used by tests: `top` goes before the tables, `extra` after them.
pub fn global_toml(
    http: SocketAddr,
    https: Option<SocketAddr>,
    admin: SocketAddr,
    access_log: &Path,
    top: &str,
    extra: &str,
) -> String {
    let https = https
        .map(|a| format!("https = [\"{a}\"]"))
        .unwrap_or_default();
    let reload = if extra.contains("[reload]") {
        ""
    } else {
        "[reload]\nwatch = true\ndebounce = \"100ms\""
    };
    // Every gateway runs the shipped rulesets unless a test picks its own.
    let rulesets = if top.contains("rulesets_dir") {
        String::new()
    } else {
        format!("rulesets_dir = \"{}/rulesets\"", env!("CARGO_MANIFEST_DIR"))
    };
    format!(
        r#"sites_dir = "sites"
certs_dir = "certs"
{rulesets}
{top}
[listen]
http = ["{http}"]
{https}
[admin]
listen = "{admin}"
[log]
access_log = "{}"
audit_log = "{}"
level = "info"
[server]
threads = 2
grace_period = "1s"
shutdown_timeout = "2s"
{reload}
{extra}
"#,
        access_log.display(),
        access_log.with_file_name("audit.log").display()
    )
}

impl Gateway {
    /// Writes the config (global file built from `top`/`extra`, plus `sites`) and starts egret.
    pub fn start(sites: &[(&str, String)], top: &str, extra: &str) -> Gateway {
        Self::start_with_files(sites, &[], top, extra, false)
    }

    /// Like [`Gateway::start`], optionally with an HTTPS listener, and with extra files
    /// (e.g. `certs/a.crt`) written under the config directory first.
    pub fn start_with_files(
        sites: &[(&str, String)],
        files: &[(&str, String)],
        top: &str,
        extra: &str,
        https: bool,
    ) -> Gateway {
        let mut dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("sites")).unwrap();
        std::fs::create_dir_all(dir.path().join("certs")).unwrap();
        for (name, body) in files {
            std::fs::write(dir.path().join(name), body).unwrap();
        }
        let stderr_path = dir.path().join("stderr.log");
        let access_log = dir.path().join("access.log");
        let config = dir.path().join("egret.toml");
        for (name, body) in sites {
            std::fs::write(dir.path().join("sites").join(format!("{name}.toml")), body).unwrap();
        }
        // Free ports are picked then released: another test may take one before egret binds
        // it. Such a start is retried with new ports.
        let mut attempt = 0;
        loop {
            attempt += 1;
            // Three distinct ports: the listeners stay open until all are picked (a port
            // released at once can come back from the next pick).
            let held: Vec<TcpListener> = (0..3)
                .map(|_| TcpListener::bind("127.0.0.1:0").expect("free port"))
                .collect();
            let addr = |i: usize| held[i].local_addr().expect("local addr");
            let (http, admin) = (addr(0), addr(2));
            let https: Option<SocketAddr> = https.then(|| addr(1));
            drop(held);
            std::fs::write(
                &config,
                global_toml(http, https, admin, &access_log, top, extra),
            )
            .unwrap();
            let stderr = std::fs::File::create(&stderr_path).unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_egret"))
                .args(["run", "-c"])
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("spawn egret");
            let mut g = Gateway {
                child,
                http,
                https,
                admin,
                dir,
                config: config.clone(),
                stderr_path: stderr_path.clone(),
                access_log: access_log.clone(),
            };
            match g.wait_ready() {
                Ok(()) => return g,
                Err(why) if attempt < 3 && why.contains("in use") => {
                    // Take the directory back for the next attempt (Drop kills the child).
                    dir = std::mem::replace(&mut g.dir, tempfile::tempdir().expect("tempdir"));
                }
                Err(why) => panic!("{why}"),
            }
        }
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("egret exited early ({status}):\n{}", self.stderr()));
            }
            if let Ok((200, _)) = raw_get(self.admin, "/readyz", "admin") {
                if TcpStream::connect(self.http).is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("egret not ready in 30s:\n{}", self.stderr()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Adds `lines` to the global file's `[server]` table and reloads (for settings read at each
    /// new connection, such as the header timeouts).
    pub async fn set_server_keys(&self, lines: &str) {
        let text = std::fs::read_to_string(&self.config)
            .unwrap()
            .replace("[server]\n", &format!("[server]\n{lines}\n"));
        std::fs::write(&self.config, text).unwrap();
        let r = client()
            .post(self.admin_url("/api/v1/reload"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "reload after setting {lines}");
    }

    /// Writes a file relative to the config directory.
    pub fn write_file(&self, rel: &str, body: &str) {
        std::fs::write(self.dir.path().join(rel), body).unwrap();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    pub fn site_path(&self, name: &str) -> PathBuf {
        self.dir.path().join("sites").join(format!("{name}.toml"))
    }

    pub fn write_site(&self, name: &str, body: &str) {
        std::fs::write(self.site_path(name), body).unwrap();
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The config generation the admin API reports.
    pub fn generation(&self) -> u64 {
        let (_, body) = raw_get(self.admin, "/api/v1/status", "admin").expect("status");
        let v: serde_json::Value = serde_json::from_str(&body).expect("status json");
        v["config"]["generation"].as_u64().unwrap()
    }

    /// Waits until the generation passes `after`.
    pub fn wait_generation(&self, after: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let g = self.generation();
            if g > after {
                return g;
            }
            assert!(
                Instant::now() < deadline,
                "no reload after generation {after}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A reqwest client that never uses a proxy from the environment.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// GET with a Host header; returns status and body.
/// The gateway's Prometheus exposition text from the admin listener.
pub async fn metrics(g: &Gateway) -> String {
    client()
        .get(g.admin_url("/metrics"))
        .send()
        .await
        .expect("metrics request")
        .text()
        .await
        .expect("metrics body")
}

pub async fn get(g: &Gateway, host: &str, path: &str) -> (u16, String) {
    let r = client()
        .get(g.url(path))
        .header("host", host)
        .send()
        .await
        .expect("request");
    let s = r.status().as_u16();
    (s, r.text().await.unwrap_or_default())
}

/// A minimal blocking HTTP/1.1 GET over a raw socket: (status, body).
pub fn raw_get(addr: SocketAddr, path: &str, host: &str) -> std::io::Result<(u16, String)> {
    let resp = raw_request(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let status = parse_status(&resp).unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Sends raw bytes and reads until the peer closes or 5 s pass.
pub fn raw_request(addr: SocketAddr, bytes: &[u8]) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(bytes)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

pub fn parse_status(resp: &str) -> Option<u16> {
    resp.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()
}

/// The JSON echo of the demo origin.
pub fn echo(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not an origin echo ({e}): {body}"))
}

/// A site file with one pool.
pub fn simple_site(name: &str, host: &str, backends: &[SocketAddr], extra: &str) -> String {
    let list: Vec<String> = backends.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "name = \"{name}\"\nhosts = [\"{host}\"]\n{extra}\n[pools.main]\nbackends = [{}]\n",
        list.join(", ")
    )
}
