//! Shared rate limiting: two gateway processes and a real `redis-server` (started here on a
//! free loopback port) enforce one combined limit; Redis killed mid-test fails open and is
//! counted; Redis restarted brings the shared limit back.

mod common;
use common::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Redis {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start(port: u16) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is required: apt-get install redis-server (scripts/test does)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { child, _dir: dir }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn site(backend: std::net::SocketAddr) -> String {
    format!(
        "{}\n[ratelimit]\n[[ratelimit.policies]]\nname = \"per-ip\"\nkey = \"ip\"\nrate = \"1/m\"\nburst = 10\n",
        simple_site("s", "s.test", &[backend], "")
    )
}

async fn status(g: &Gateway) -> u16 {
    client()
        .get(g.url("/x"))
        .header("host", "s.test")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_limit_and_fail_open_when_redis_is_gone() {
    let port = free_port();
    let redis = Redis::start(port);
    let o = origin("o").await;
    let extra =
        format!("[ratelimit.redis]\nurl = \"redis://127.0.0.1:{port}/\"\ntimeout = \"200ms\"\n");
    let a = Gateway::start(&[("s", site(o.addr))], "", &extra);
    let b = Gateway::start(&[("s", site(o.addr))], "", &extra);
    let mut ok = 0;
    for i in 0..16 {
        let g = if i % 2 == 0 { &a } else { &b };
        match status(g).await {
            200 => ok += 1,
            429 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        ok, 10,
        "two nodes together must allow exactly the burst of 10"
    );
    // Redis dies: requests are allowed (fail open) and the errors are counted.
    drop(redis);
    for _ in 0..3 {
        assert_eq!(status(&a).await, 200);
    }
    let m = client()
        .get(a.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let errors: f64 = m
        .lines()
        .find(|l| l.starts_with("egret_ratelimit_redis_errors_total "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(errors >= 3.0, "redis errors not counted:\n{m}");
    // Redis comes back (empty): the shared limit applies again after reconnecting.
    let _redis = Redis::start(port);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut limited = false;
    while Instant::now() < deadline {
        if status(&a).await == 429 || status(&b).await == 429 {
            limited = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(limited, "limits did not come back after Redis restarted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_answers_503_without_redis() {
    let port = free_port();
    let o = origin("o").await;
    let extra = format!("[ratelimit.redis]\nurl = \"redis://127.0.0.1:{port}/\"\ntimeout = \"100ms\"\nfail_open = false\n");
    let g = Gateway::start(&[("s", site(o.addr))], "", &extra);
    assert_eq!(status(&g).await, 503);
    assert_eq!(o.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defacement_approvals_are_shared_through_redis() {
    let port = free_port();
    let _redis = Redis::start(port);
    let o = origin("portal").await;
    o.set_page(
        "/",
        b"<html><head><title>Portal</title></head><body><p>News</p></body></html>".to_vec(),
        None,
    );
    let site = format!(
        "{}\n[deface]\n[[deface.pages]]\npath = \"/\"\nmode = \"protect\"\n",
        simple_site("www", "www.test.gov.cn", &[o.addr], "")
    );
    // Two nodes with separate state directories; only Redis is shared.
    let global = format!("[ratelimit.redis]\nurl = \"redis://127.0.0.1:{port}/\"\n[deface]\nstate_dir = \"state\"\nprobe_interval = \"1h\"\n");
    let node1 = Gateway::start(&[("www", site.clone())], "", &global);
    let node2 = Gateway::start(&[("www", site)], "", &global);
    let approve = |g: &Gateway| {
        client()
            .post(g.admin_url("/api/v1/deface/approve?site=www&path=%2F"))
            .send()
    };
    assert_eq!(approve(&node1).await.unwrap().status(), 200);
    let marker = |r: &reqwest::Response| {
        r.headers()
            .get("x-egret-deface")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let r = client()
        .get(node2.url("/"))
        .header("host", "www.test.gov.cn")
        .send()
        .await
        .unwrap();
    assert_eq!(
        marker(&r),
        "checked",
        "node 2 did not get node 1's baseline"
    );
    // A legitimate new title: tampered until approved on node 1, then clean on node 2 too.
    o.set_page(
        "/",
        b"<html><head><title>Portal 2026</title></head><body><p>News</p></body></html>".to_vec(),
        None,
    );
    let r = client()
        .get(node2.url("/"))
        .header("host", "www.test.gov.cn")
        .send()
        .await
        .unwrap();
    assert_eq!(marker(&r), "approved-copy");
    assert_eq!(approve(&node1).await.unwrap().status(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = client()
            .get(node2.url("/"))
            .header("host", "www.test.gov.cn")
            .send()
            .await
            .unwrap();
        if marker(&r) == "checked" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 2 never saw the new approval"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
