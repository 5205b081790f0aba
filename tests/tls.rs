//! TLS termination with real handshakes: certificates per SNI (exact, wildcard, default),
//! protocol versions, HTTP/2, SNI/Host mismatch, hot certificate replacement, broken files,
//! redirects and HSTS, and verified TLS towards origins.

mod common;
use common::*;
use egret::demo::certs::TestCa;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type TlsStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// Connects with SNI `sni`, trusting `ca_pem` only.
async fn tls_connect(
    addr: SocketAddr,
    sni: &str,
    ca_pem: &str,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    connector.connect(name, tcp).await
}

/// DNS names of the certificate the server presented.
fn peer_names(s: &TlsStream) -> (Vec<String>, String) {
    let der = s.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (_, c) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    let mut names = Vec::new();
    if let Ok(Some(san)) = c.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_string());
            }
        }
    }
    (names, c.issuer().to_string())
}

/// One HTTP/1.1 request on an open stream; returns the status and the whole response text.
async fn h1_request(s: &mut TlsStream, host: &str, path: &str) -> (u16, String) {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap())
            });
            if len.is_some_and(|l| body.len() >= l) {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    (parse_status(&text).unwrap_or(0), text)
}

struct Pki {
    ca: TestCa,
    files: Vec<(&'static str, String)>,
}

fn pki() -> Pki {
    let ca = TestCa::new("Test CA").unwrap();
    let (a, ak) = ca.issue(&["a.test"], 90).unwrap();
    let (b, bk) = ca.issue(&["b.test"], 90).unwrap();
    let (w, wk) = ca.issue(&["*.w.test"], 90).unwrap();
    let files = vec![
        ("certs/a.crt", a),
        ("certs/a.key", ak),
        ("certs/b.crt", b),
        ("certs/b.key", bk),
        ("certs/w.crt", w),
        ("certs/w.key", wk),
    ];
    Pki { ca, files }
}

fn tls_site(name: &str, host: &str, backend: SocketAddr, cert: &str, extra: &str) -> String {
    format!(
        "name = \"{name}\"\nhosts = [\"{host}\"]\n[pools.main]\nbackends = [\"{backend}\"]\n\
         [tls]\ncert = \"{cert}.crt\"\nkey = \"{cert}.key\"\n{extra}\n"
    )
}

async fn three_sites(top: &str) -> (Gateway, Pki, Origin) {
    let o = origin("o").await;
    let p = pki();
    let sites = [
        ("a", tls_site("a", "a.test", o.addr, "a", "")),
        ("b", tls_site("b", "b.test", o.addr, "b", "")),
        ("w", tls_site("w", "*.w.test", o.addr, "w", "")),
    ];
    let g = Gateway::start_with_files(&sites, &p.files, top, "", true);
    (g, p, o)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sni_gets_its_sites_certificate() {
    let (g, p, _o) = three_sites("").await;
    let https = g.https.unwrap();
    let ca = p.ca.cert_pem();
    for (sni, want) in [
        ("a.test", "a.test"),
        ("b.test", "b.test"),
        ("x.w.test", "*.w.test"),
    ] {
        let s = tls_connect(https, sni, &ca, &[])
            .await
            .unwrap_or_else(|e| panic!("{sni}: {e}"));
        assert_eq!(peer_names(&s).0, vec![want.to_string()], "{sni}");
    }
    // Unknown SNI: the default certificate (the first site's) is served, and the client, which
    // checks names, refuses it.
    let err = tls_connect(https, "unknown.test", &ca, &[])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("NotValidForName") || err.to_string().contains("certificate"),
        "{err}"
    );

    // The same with openssl s_client, as ops staff would check it.
    for (sni, want) in [("b.test", "CN = b.test"), ("y.w.test", "CN = *.w.test")] {
        let out = std::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &https.to_string(),
                "-servername",
                sni,
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(want), "{sni}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_sni_can_be_refused() {
    let (g, p, _o) = three_sites("[tls]\nunknown_sni = \"refuse\"\n").await;
    let https = g.https.unwrap();
    let ca = p.ca.cert_pem();
    assert!(tls_connect(https, "unknown.test", &ca, &[]).await.is_err());
    assert!(tls_connect(https, "a.test", &ca, &[]).await.is_ok());
}

fn s_client(addr: SocketAddr, version_flag: &str) -> (bool, String) {
    let out = std::process::Command::new("openssl")
        .args([
            "s_client",
            version_flag,
            "-connect",
            &addr.to_string(),
            "-servername",
            "a.test",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ok = text.contains("New, TLSv1") && !text.contains("Cipher is (NONE)");
    (ok, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_tls12_and_tls13_are_offered() {
    let (g, _p, _o) = three_sites("").await;
    let https = g.https.unwrap();
    assert!(
        s_client(https, "-tls1_3").0,
        "{}",
        s_client(https, "-tls1_3").1
    );
    assert!(
        s_client(https, "-tls1_2").0,
        "{}",
        s_client(https, "-tls1_2").1
    );
    assert!(!s_client(https, "-tls1_1").0, "TLS 1.1 accepted");
    assert!(!s_client(https, "-tls1").0, "TLS 1.0 accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_only_policy_refuses_tls12() {
    let (g, _p, _o) = three_sites("[tls]\nmin_version = \"1.3\"\n").await;
    let https = g.https.unwrap();
    let (ok, text) = s_client(https, "-tls1_3");
    assert!(ok, "{text}");
    let (ok, text) = s_client(https, "-tls1_2");
    assert!(!ok, "TLS 1.2 accepted in 1.3-only mode: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_is_negotiated_and_serves_requests() {
    let (g, p, o) = three_sites("").await;
    let https = g.https.unwrap();
    let ca = reqwest::Certificate::from_pem(p.ca.cert_pem().as_bytes()).unwrap();
    let c = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(ca)
        .resolve("a.test", https)
        .build()
        .unwrap();
    let r = c
        .get(format!("https://a.test:{}/hello?x=1", https.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let v = echo(&r.text().await.unwrap());
    assert_eq!(v["path"], "/hello");
    assert_eq!(v["query"], "x=1");
    assert_eq!(v["headers"]["x-forwarded-proto"], "https");
    assert!(v["headers"]["host"].as_str().unwrap().starts_with("a.test"));
    assert!(o.hits() >= 1);
    // ALPN http/1.1 still works on the same port.
    let mut s = tls_connect(https, "a.test", &p.ca.cert_pem(), &[b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(h1_request(&mut s, "a.test", "/h1").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_naming_another_site_than_sni_gets_421() {
    let (g, p, o) = three_sites("").await;
    let https = g.https.unwrap();
    let mut s = tls_connect(https, "a.test", &p.ca.cert_pem(), &[])
        .await
        .unwrap();
    let before = o.hits();
    let (status, text) = h1_request(&mut s, "b.test", "/x").await;
    assert_eq!(status, 421, "{text}");
    assert_eq!(o.hits(), before, "a misdirected request reached the origin");
    let mut s = tls_connect(https, "a.test", &p.ca.cert_pem(), &[])
        .await
        .unwrap();
    assert_eq!(h1_request(&mut s, "a.test", "/x").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_certificate_serves_new_connections_old_ones_keep_working() {
    let (g, p, _o) = three_sites("").await;
    let https = g.https.unwrap();
    let ca1 = p.ca.cert_pem();
    let mut old = tls_connect(https, "a.test", &ca1, &[b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(peer_names(&old).1, "CN=Test CA, O=Egret");
    assert_eq!(h1_request(&mut old, "a.test", "/1").await.0, 200);

    // Rotate a.test to a certificate from another CA.
    let ca2 = TestCa::new("Rotated CA").unwrap();
    let (chain, key) = ca2.issue(&["a.test"], 90).unwrap();
    let gen = g.generation();
    g.write_file("certs/a.key", &key);
    g.write_file("certs/a.crt", &chain);
    g.wait_generation(gen);
    let fresh = tls_connect(https, "a.test", &ca2.cert_pem(), &[])
        .await
        .expect("new connection with the new cert");
    assert_eq!(peer_names(&fresh).1, "CN=Rotated CA, O=Egret");
    // The connection opened before the rotation still serves requests.
    assert_eq!(h1_request(&mut old, "a.test", "/2").await.0, 200);
    let m = metrics(&g).await;
    assert!(
        m.contains("egret_tls_certificate_expiry_timestamp_seconds{site=\"a\"}"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_key_or_expired_certificate_keeps_the_old_one() {
    let (g, p, _o) = three_sites("").await;
    let https = g.https.unwrap();
    let ca = p.ca.cert_pem();
    let gen = g.generation();
    // A key that belongs to another certificate.
    let (_, other_key) = p.ca.issue(&["a.test"], 90).unwrap();
    g.write_file("certs/a.key", &other_key);
    wait_reload_error(&g, "a.key").await;
    // An expired certificate (with its own key).
    let (expired, expired_key) = p.ca.issue(&["b.test"], -2).unwrap();
    g.write_file("certs/b.key", &expired_key);
    g.write_file("certs/b.crt", &expired);
    wait_reload_error(&g, "expired").await;
    assert_eq!(g.generation(), gen);
    for sni in ["a.test", "b.test"] {
        let s = tls_connect(https, sni, &ca, &[])
            .await
            .unwrap_or_else(|e| panic!("{sni}: {e}"));
        assert_eq!(peer_names(&s).0, vec![sni.to_string()]);
    }
}

async fn wait_reload_error(g: &Gateway, needle: &str) {
    // Generous: the file watcher's debounce and the reload run late on a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st: serde_json::Value = client()
            .get(g.admin_url("/api/v1/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let errs = st["recent_reload_errors"].to_string();
        if errs.contains(needle) {
            assert!(errs.contains("sites/"), "error names the site file: {errs}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no reload error with {needle}: {errs}\n{}",
            g.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_redirects_to_https_and_hsts_is_sent() {
    let o = origin("o").await;
    let p = pki();
    let sites = [
        (
            "a",
            tls_site(
                "a",
                "a.test",
                o.addr,
                "a",
                "hsts_max_age = \"365d\"\nhsts_include_subdomains = true\n",
            ),
        ),
        (
            "b",
            tls_site("b", "b.test", o.addr, "b", "redirect_http = false\n"),
        ),
    ];
    let g = Gateway::start_with_files(&sites, &p.files, "", "", true);
    let https = g.https.unwrap();
    let c = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = c
        .get(g.url("/news/1?id=7&x=%E6%94%BF"))
        .header("host", "a.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(
        r.headers()["location"],
        format!("https://a.test:{}/news/1?id=7&x=%E6%94%BF", https.port()).as_str()
    );
    // ACME challenges stay on plain HTTP.
    let r = c
        .get(g.url("/.well-known/acme-challenge/tok"))
        .header("host", "a.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(g.url("/x"))
        .header("host", "b.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "redirect_http = false");
    assert!(r.headers().get("strict-transport-security").is_none());

    let tc = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(p.ca.cert_pem().as_bytes()).unwrap())
        .resolve("a.test", https)
        .build()
        .unwrap();
    let r = tc
        .get(format!("https://a.test:{}/", https.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_is_verified_against_the_configured_ca_and_sends_sni() {
    let origin_ca = TestCa::new("Origin CA").unwrap();
    let (chain, key) = origin_ca.issue(&["origin.internal"], 90).unwrap();
    let o = Origin::start_tls("tls-origin", "127.0.0.1:0".parse().unwrap(), &chain, &key)
        .await
        .unwrap();
    let pool = |tls: &str| {
        format!("name = \"s\"\nhosts = [\"s.test\"]\n[pools.main]\nbackends = [\"{}\"]\n[pools.main.tls]\n{tls}\n", o.addr)
    };
    let files = [("certs/origin-ca.pem", origin_ca.cert_pem())];
    // Verified with the private CA: works, and the origin saw the configured SNI.
    let g = Gateway::start_with_files(
        &[(
            "s",
            pool("sni = \"origin.internal\"\nca_file = \"../certs/origin-ca.pem\""),
        )],
        &files,
        "",
        "",
        false,
    );
    let (s, body) = get(&g, "s.test", "/x").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(echo(&body)["sni"], "origin.internal");
    drop(g);
    // Verification is on by default: an origin signed by an unknown CA is refused.
    let g = Gateway::start_with_files(
        &[("s", pool("sni = \"origin.internal\""))],
        &files,
        "",
        "",
        false,
    );
    let (s, _) = get(&g, "s.test", "/x").await;
    assert_eq!(s, 502);
    drop(g);
    // The wrong name is refused even with the right CA.
    let g = Gateway::start_with_files(
        &[(
            "s",
            pool("sni = \"other.internal\"\nca_file = \"../certs/origin-ca.pem\""),
        )],
        &files,
        "",
        "",
        false,
    );
    assert_eq!(get(&g, "s.test", "/x").await.0, 502);
    drop(g);
    // The loudly named escape hatch turns verification off.
    let g = Gateway::start_with_files(
        &[(
            "s",
            pool("sni = \"origin.internal\"\ndanger_skip_verify = true"),
        )],
        &files,
        "",
        "",
        false,
    );
    assert_eq!(get(&g, "s.test", "/x").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egret_certs_lists_and_check_rejects_bad_certificates() {
    let o = origin("o").await;
    let p = pki();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sites")).unwrap();
    std::fs::create_dir_all(dir.path().join("certs")).unwrap();
    for (name, body) in &p.files {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    std::fs::write(
        dir.path().join("egret.toml"),
        "certs_dir = \"certs\"\n[listen]\nhttps = [\"127.0.0.1:1\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("sites/a.toml"),
        tls_site("a", "a.test", o.addr, "a", ""),
    )
    .unwrap();
    let run = |cmd: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_egret"))
            .args([cmd, "-c"])
            .arg(dir.path().join("egret.toml"))
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, out) = run("certs");
    assert!(ok, "{out}");
    assert!(
        out.contains("a.test") && out.contains("ECDSA") && out.contains("CN=Test CA"),
        "{out}"
    );
    // Names that do not cover the site's hosts.
    std::fs::write(
        dir.path().join("sites/a.toml"),
        tls_site("a", "www.a.test", o.addr, "a", ""),
    )
    .unwrap();
    let (ok, out) = run("check");
    assert!(
        !ok && out.contains("sites/a.toml:6:8")
            && out.contains("does not cover host \"www.a.test\""),
        "{out}"
    );
    // Chain out of order: CA first, then the leaf.
    let (chain, key) = p.ca.issue(&["a.test"], 90).unwrap();
    let reversed = format!("{}{}", p.ca.cert_pem(), chain.replace(&p.ca.cert_pem(), ""));
    std::fs::write(dir.path().join("certs/a.crt"), reversed).unwrap();
    std::fs::write(dir.path().join("certs/a.key"), key).unwrap();
    std::fs::write(
        dir.path().join("sites/a.toml"),
        tls_site("a", "a.test", o.addr, "a", ""),
    )
    .unwrap();
    let (ok, out) = run("check");
    assert!(!ok, "{out}");
    // Expiring soon: a warning, not an error.
    let (chain, key) = p.ca.issue(&["a.test"], 10).unwrap();
    std::fs::write(dir.path().join("certs/a.crt"), chain).unwrap();
    std::fs::write(dir.path().join("certs/a.key"), key).unwrap();
    let (ok, out) = run("check");
    assert!(
        ok && out.contains("warning:") && out.contains("expires in"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_resume_and_ocsp_responses_are_stapled() {
    let o = origin("o").await;
    let p = pki();
    let mut files = p.files.clone();
    // Any bytes stand in for a DER OCSP response: Egret staples the file as given.
    files.push(("certs/a.ocsp", "OCSP-RESPONSE-BYTES".to_string()));
    let sites = [(
        "a",
        tls_site("a", "a.test", o.addr, "a", "ocsp = \"a.ocsp\"\n"),
    )];
    let g = Gateway::start_with_files(&sites, &files, "", "", true);
    let https = g.https.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sess = dir.path().join("sess.pem");
    let addr = https.to_string();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "s_client",
            "-connect",
            addr.as_str(),
            "-servername",
            "a.test",
            "-tls1_2",
        ];
        args.extend_from_slice(extra);
        let out = std::process::Command::new("openssl")
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    // With -status the client asks for the staple and prints it; openssl cannot parse the stand-in
    // bytes (and then gives up the handshake), which shows they are the file's bytes, as given.
    let stapled = run(&["-status"]);
    assert!(
        stapled.contains("OCSP response:") && stapled.contains("4f 43 53 50 2d 52 45 53"),
        "no stapled OCSP response:\n{stapled}"
    );
    let first = run(&["-sess_out", sess.to_str().unwrap()]);
    assert!(first.contains("New, TLSv1.2"), "{first}");
    let second = run(&["-sess_in", sess.to_str().unwrap()]);
    assert!(
        second.contains("Reused, TLSv1.2"),
        "session not resumed:\n{second}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_certificates_work_too() {
    // An RSA key and self-signed certificate made by openssl, as many existing sites have.
    let dir = tempfile::tempdir().unwrap();
    let (crt, key) = (dir.path().join("r.crt"), dir.path().join("r.key"));
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=r.test",
            "-addext",
            "subjectAltName=DNS:r.test",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let o = origin("o").await;
    let files = [
        ("certs/r.crt", std::fs::read_to_string(&crt).unwrap()),
        ("certs/r.key", std::fs::read_to_string(&key).unwrap()),
    ];
    let g = Gateway::start_with_files(
        &[("r", tls_site("r", "r.test", o.addr, "r", ""))],
        &files,
        "",
        "",
        true,
    );
    let out = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &g.https.unwrap().to_string(),
            "-servername",
            "r.test",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("CN = r.test") && text.contains("New, TLSv1.3"),
        "{text}"
    );
    assert!(
        text.contains("Peer signature type: RSA"),
        "not an RSA certificate: {text}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_egret"))
        .args(["certs", "-c"])
        .arg(&g.config)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("RSA"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
