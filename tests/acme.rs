//! ACME against a real ACME server on loopback: Debian's `pebble` with `pebble-challtestsrv` as
//! its DNS (every name resolves to 127.0.0.1), validating HTTP-01 on Egret's plain listener;
//! issuance, service by SNI after the automatic reload, and renewal.

mod common;
use common::*;
use egret::demo::certs::TestCa;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_is_issued_by_acme_and_served_by_sni() {
    if Command::new("pebble").arg("-h").output().is_err() {
        panic!("pebble is required: apt-get install pebble (scripts/test does)");
    }
    let work = tempfile::tempdir().unwrap();
    // Pebble's own HTTPS certificate, from a CA the gateway is told to trust.
    let ca = TestCa::new("Pebble listener CA").unwrap();
    let (chain, key) = ca.issue(&["127.0.0.1", "localhost"], 30).unwrap();
    std::fs::write(work.path().join("pebble.crt"), &chain).unwrap();
    std::fs::write(work.path().join("pebble.key"), &key).unwrap();
    std::fs::write(work.path().join("root.pem"), ca.cert_pem()).unwrap();
    let (dns, mgmt, acme_port, pebble_mgmt) = (free_port(), free_port(), free_port(), free_port());
    let _dns = Proc(
        Command::new("pebble-challtestsrv")
            .args([
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
                "-dns01",
                &format!("127.0.0.1:{dns}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                &format!("127.0.0.1:{mgmt}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(mgmt, "pebble-challtestsrv");

    // The gateway: one ACME site. Its plain HTTP port is where pebble validates.
    let o = origin("o").await;
    let site = format!(
        "{}\n[tls]\nacme = true\n",
        simple_site("a", "a.test", &[o.addr], "")
    );
    let acme = format!(
        "[acme]\ndirectory = \"https://127.0.0.1:{acme_port}/dir\"\nstate_dir = \"acme\"\nca_file = \"{}\"\ncheck_interval = \"1s\"\nrenew_before = \"36500d\"\n",
        work.path().join("root.pem").display()
    );
    let g = Gateway::start_with_files(&[("a", site)], &[], "", &acme, true);
    let http_port = g.http.port();
    let config = format!(
        r#"{{"pebble": {{"listenAddress": "127.0.0.1:{acme_port}", "managementListenAddress": "127.0.0.1:{pebble_mgmt}",
            "certificate": "{}", "privateKey": "{}", "httpPort": {http_port}, "tlsPort": 1, "ocspResponderURL": "",
            "externalAccountBindingRequired": false}}}}"#,
        work.path().join("pebble.crt").display(),
        work.path().join("pebble.key").display()
    );
    std::fs::write(work.path().join("pebble.json"), config).unwrap();
    let _pebble = Proc(
        Command::new("pebble")
            .args([
                "-config",
                work.path().join("pebble.json").to_str().unwrap(),
                "-dnsserver",
                &format!("127.0.0.1:{dns}"),
            ])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .current_dir(work.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(acme_port, "pebble");

    // The manager orders, answers the HTTP-01 challenge, stores the certificate, reloads.
    let cert = g.dir.path().join("acme/certs/a.crt");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &g.https.unwrap().to_string(),
                "-servername",
                "a.test",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if cert.exists() && text.contains("Pebble") {
            assert!(
                text.contains("CN = a.test") || text.contains("subject="),
                "{text}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no ACME certificate served within 60 s:\n{text}\n{}",
            g.stderr()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Renewal: with renew_before longer than the certificate's life, the next check renews it.
    let first = std::fs::read(&cert).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read(&cert).unwrap_or_default() == first {
        assert!(
            Instant::now() < deadline,
            "the certificate was not renewed:\n{}",
            g.stderr()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The account and the key are stored privately.
    use std::os::unix::fs::PermissionsExt;
    for f in ["acme/account.json", "acme/certs/a.key"] {
        let mode = std::fs::metadata(g.dir.path().join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{f} is readable by others");
    }
    let m = metrics(&g).await;
    assert!(
        m.contains("egret_tls_certificate_expiry_timestamp_seconds{site=\"a\"}"),
        "{m}"
    );
}
