//! Rate limiting and flood protection through the real proxy: bursts and Retry-After, bans,
//! allow and deny lists, per-path and per-header policies, the JavaScript challenge flow.

mod common;
use common::*;
use std::time::{Duration, Instant};

fn limited_site(backend: std::net::SocketAddr, policies: &str) -> String {
    format!(
        "{}\n[ratelimit]\n{policies}\n",
        simple_site("s", "s.test", &[backend], "")
    )
}

async fn status(g: &Gateway, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut r = client().get(g.url(path)).header("host", "s.test");
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_then_429_with_retry_after() {
    let a = origin("a").await;
    let site = limited_site(
        a.addr,
        "[[ratelimit.policies]]\nname = \"per-ip\"\nkey = \"ip\"\nrate = \"1/m\"\nburst = 5\n",
    );
    let g = Gateway::start(&[("s", site)], "", "");
    for i in 0..5 {
        assert_eq!(
            status(&g, "/x", &[]).await.status(),
            200,
            "request {i} of the burst"
        );
    }
    let r = status(&g, "/x", &[]).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert!(r.text().await.unwrap().contains("Too Many Requests"));
    assert_eq!(a.hits(), 5);
    // Visible in metrics and the access log.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = metrics(&g).await;
        let log = std::fs::read_to_string(&g.access_log).unwrap_or_default();
        if m.contains("egret_ratelimit_decisions_total{action=\"limited\",policy=\"per-ip\",site=\"s\"} 1")
            && m.contains("action=\"limited\",method=\"GET\",site=\"s\",status_class=\"4xx\"")
            && log.contains("\"ratelimit_policy\":\"per-ip\",\"ratelimit_key\":\"ip\",\"ratelimit_action\":\"limited\"")
        {
            break;
        }
        assert!(Instant::now() < deadline, "{m}\n{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_violations_ban_then_the_ban_expires() {
    let a = origin("a").await;
    let site = limited_site(
        a.addr,
        "[[ratelimit.policies]]\nname = \"login\"\npath_prefix = \"/login\"\nkey = \"ip_path\"\nrate = \"2/s\"\nburst = 2\n\
         action = \"ban\"\nban_after = 2\nban_window = \"10s\"\nban_for = \"2s\"\nban_status = 403\n",
    );
    let g = Gateway::start(&[("s", site)], "", "");
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(status(&g, "/login", &[]).await.status().as_u16());
    }
    assert_eq!(&statuses[..2], &[200, 200], "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(
        *statuses.last().unwrap(),
        403,
        "banned after repeated violations: {statuses:?}"
    );
    // Other paths are not under this policy.
    assert_eq!(status(&g, "/news", &[]).await.status(), 200);
    // The ban lifts after ban_for.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert_eq!(status(&g, "/login", &[]).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_list_is_never_limited_and_deny_list_always_refused() {
    let a = origin("a").await;
    let policy =
        "[[ratelimit.policies]]\nname = \"per-ip\"\nkey = \"ip\"\nrate = \"1/m\"\nburst = 1\n";
    let allowed = Gateway::start(
        &[(
            "s",
            limited_site(a.addr, &format!("allow = [\"127.0.0.0/8\"]\n{policy}")),
        )],
        "",
        "",
    );
    for _ in 0..10 {
        assert_eq!(status(&allowed, "/x", &[]).await.status(), 200);
    }
    let denied = Gateway::start(
        &[("s", limited_site(a.addr, policy))],
        "",
        "[ratelimit]\ndeny = [\"127.0.0.1/32\"]\n",
    );
    let r = status(&denied, "/x", &[]).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("Forbidden"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_keyed_policy_limits_each_api_key_apart() {
    let a = origin("a").await;
    let site = limited_site(
        a.addr,
        "[[ratelimit.policies]]\nname = \"api\"\npath_prefix = \"/api/\"\nkey = { header = \"X-Api-Key\" }\nrate = \"1/m\"\nburst = 2\n",
    );
    let g = Gateway::start(&[("s", site)], "", "");
    for _ in 0..2 {
        assert_eq!(
            status(&g, "/api/a", &[("x-api-key", "k1")]).await.status(),
            200
        );
    }
    assert_eq!(
        status(&g, "/api/a", &[("x-api-key", "k1")]).await.status(),
        429
    );
    assert_eq!(
        status(&g, "/api/a", &[("x-api-key", "k2")]).await.status(),
        200,
        "another key has its own budget"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_survive_a_reload() {
    let a = origin("a").await;
    let site = limited_site(
        a.addr,
        "[[ratelimit.policies]]\nname = \"per-ip\"\nkey = \"ip\"\nrate = \"1/m\"\nburst = 2\n",
    );
    let g = Gateway::start(&[("s", site)], "", "");
    for _ in 0..2 {
        assert_eq!(status(&g, "/x", &[]).await.status(), 200);
    }
    assert_eq!(
        client()
            .post(g.admin_url("/api/v1/reload"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        status(&g, "/x", &[]).await.status(),
        429,
        "a reload reset the counters"
    );
}

const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";

fn challenge_global() -> String {
    format!("[ratelimit.challenge]\nsecret = \"{SECRET}\"\ndifficulty = 8\n")
}

/// Solves the challenge page like its script does: finds the token and a counter whose
/// SHA-256 of `token:counter` has `difficulty` leading zero bits.
fn solve(page: &str) -> String {
    let token = page
        .split("var T=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("token in page");
    let difficulty: u32 = page
        .split("D=")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .and_then(|s| s.parse().ok())
        .expect("difficulty");
    let n = (0u64..)
        .find(|&n| egret::ratelimit::challenge::work_bits(token, n) >= difficulty)
        .unwrap();
    format!("t={token}&n={n}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_mode_challenge_cookie_and_pass() {
    let a = origin("a").await;
    let site = format!(
        "{}\n[ratelimit.flood]\nmode = \"on\"\nexempt_paths = [\"/api/\"]\n",
        simple_site("s", "s.test", &[a.addr], "")
    );
    let g = Gateway::start(&[("s", site)], "", &challenge_global());
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    // No cookie: the challenge page, not the origin.
    let r = c
        .get(g.url("/news"))
        .header("host", "s.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let page = r.text().await.unwrap();
    assert!(page.contains("var T=\""), "{page}");
    assert_eq!(a.hits(), 0);
    // API paths are exempt.
    assert_eq!(
        c.get(g.url("/api/x"))
            .header("host", "s.test")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // A forged cookie is refused.
    let r = c
        .get(g.url("/news"))
        .header("host", "s.test")
        .header("cookie", "egret_clearance=1.AAAA.9999999999.forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    // A wrong answer is refused.
    let r = c
        .post(g.url("/__egret/challenge"))
        .header("host", "s.test")
        .body("t=x&n=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Solve and post the answer; the cookie then lets requests through.
    let answer = solve(&page);
    let r = c
        .post(g.url("/__egret/challenge"))
        .header("host", "s.test")
        .body(answer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    assert!(cookie.starts_with("egret_clearance="), "{set_cookie}");
    assert!(
        set_cookie.to_ascii_lowercase().contains("httponly"),
        "{set_cookie}"
    );
    let r = c
        .get(g.url("/news"))
        .header("host", "s.test")
        .header("cookie", cookie.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(echo(&r.text().await.unwrap())["origin"], "a");
    // Bound to the client IP: the same cookie from another client address (via a trusted proxy
    // header is not possible here), so check expiry instead by tampering the expiry field.
    let parts: Vec<&str> = cookie
        .trim_start_matches("egret_clearance=")
        .split('.')
        .collect();
    let tampered = format!(
        "egret_clearance={}.{}.{}.{}",
        parts[0], parts[1], "1", parts[3]
    );
    let r = c
        .get(g.url("/news"))
        .header("host", "s.test")
        .header("cookie", tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundled_demo_config_limits_a_fast_client() {
    // The bundled www site: 500 requests as fast as possible from one client get 429s.
    let a = origin("a").await;
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/sites/www.toml"
    ))
    .unwrap();
    let policy = text
        .split("[ratelimit]")
        .nth(1)
        .expect("www.toml has a [ratelimit] table");
    let policy = policy.split("[deface]").next().unwrap_or(policy);
    let site = format!(
        "{}\n[ratelimit]{policy}",
        simple_site("www", "s.test", &[a.addr], "")
    );
    let g = Gateway::start(&[("s", site)], "", "");
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let url = g.url("/");
        tasks.push(tokio::spawn(async move {
            let c = client();
            let mut codes = Vec::new();
            for _ in 0..50 {
                codes.push(
                    c.get(&url)
                        .header("host", "s.test")
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16(),
                );
            }
            codes
        }));
    }
    let mut limited = 0;
    let mut ok = 0;
    for t in tasks {
        for code in t.await.unwrap() {
            match code {
                200 => ok += 1,
                429 => limited += 1,
                other => panic!("unexpected {other}"),
            }
        }
    }
    assert!(
        limited > 0,
        "500 fast requests were never limited ({ok} ok)"
    );
    assert!(ok >= 100, "the burst should pass: {ok} ok");
    println!("500 requests: {ok} ok, {limited} limited");
}
