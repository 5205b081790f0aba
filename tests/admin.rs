//! The admin API's access rules: bearer token from a private file, public health and metrics.

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_needs_the_token_health_and_metrics_do_not() {
    let a = origin("a").await;
    let dir = tempfile::tempdir().unwrap();
    let token_path = dir.path().join("admin.token");
    std::fs::write(&token_path, "s3cret-token-0123456789\n").unwrap();
    std::fs::set_permissions(&token_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let g = Gateway::start(&[("s", simple_site("s", "s.test", &[a.addr], ""))], "", "");
    // Re-point the running gateway at a token via reload: write token_file into the global file.
    let text = std::fs::read_to_string(&g.config).unwrap().replace(
        "[admin]\n",
        &format!("[admin]\ntoken_file = \"{}\"\n", token_path.display()),
    );
    std::fs::write(&g.config, text).unwrap();
    let c = client();
    let r = c.post(g.admin_url("/api/v1/reload")).send().await.unwrap();
    assert_eq!(r.status(), 200, "reload before the token applies");

    let r = c.get(g.admin_url("/api/v1/status")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = c
        .get(g.admin_url("/api/v1/status"))
        .bearer_auth("s3cret-token-0123456788")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c.post(g.admin_url("/api/v1/reload")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .get(g.admin_url("/api/v1/status"))
        .bearer_auth("s3cret-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        c.get(g.admin_url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(g.admin_url("/readyz")).send().await.unwrap().status(),
        200
    );
    let m = c
        .get(g.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("egret_admin_auth_failures_total 3"), "{m}");
    assert!(g.stderr().contains("admin API: refused"));
    assert_eq!(
        c.get(g.admin_url("/nope"))
            .bearer_auth("s3cret-token-0123456789")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[test]
fn token_file_readable_by_others_and_open_remote_admin_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sites")).unwrap();
    std::fs::write(
        dir.path().join("sites/a.toml"),
        "name = \"a\"\nhosts = [\"a.test\"]\n[pools.main]\nbackends = [\"127.0.0.1:9\"]\n",
    )
    .unwrap();
    let tok = dir.path().join("admin.token");
    std::fs::write(&tok, "0123456789abcdefghij").unwrap();
    std::fs::set_permissions(&tok, std::fs::Permissions::from_mode(0o644)).unwrap();
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
    let (ok, err) = check("[listen]\nhttp = [\"127.0.0.1:1\"]\n[admin]\nlisten = \"127.0.0.1:2\"\ntoken_file = \"admin.token\"\n");
    assert!(
        !ok && err.contains("egret.toml:5:14") && err.contains("readable by others"),
        "{err}"
    );
    let (ok, err) =
        check("[listen]\nhttp = [\"127.0.0.1:1\"]\n[admin]\nlisten = \"0.0.0.0:9901\"\n");
    assert!(
        !ok && err.contains("egret.toml:4:10") && err.contains("not on loopback"),
        "{err}"
    );
    std::fs::set_permissions(&tok, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (ok, err) = check("[listen]\nhttp = [\"127.0.0.1:1\"]\n[admin]\nlisten = \"0.0.0.0:9901\"\ntoken_file = \"admin.token\"\n");
    assert!(ok, "{err}");
}
