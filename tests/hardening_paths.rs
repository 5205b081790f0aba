//! Path and host tricks aimed at routing and rules, through the real gateway. Routing, rate-limit
//! policies and protected pages all decide on one normalised view of the path
//! (`egret::request_path::normalize_path`, see docs/security.md); the WAF sees the raw target and
//! decodes it with its own transformations.
//! (Host/SNI mismatch -> 421 is tested in tests/tls.rs, duplicate Host -> 400 in tests/proxy.rs.)

mod common;
mod hardening_support;
use common::*;
use hardening_support::*;
use std::time::Duration;

async fn send(g: &Gateway, raw: String) -> RawReply {
    let addr = g.http;
    tokio::task::spawn_blocking(move || send_raw(addr, raw.as_bytes(), Duration::from_millis(1500)))
        .await
        .unwrap()
}

async fn get_raw(g: &Gateway, host: &str, target: &str) -> RawReply {
    send(
        g,
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
    .await
}

async fn two_pools() -> (Gateway, Origin, Origin) {
    let web = origin("web").await;
    let api = origin("api").await;
    let site = format!(
        "name = \"s\"\nhosts = [\"s.test\"]\ndefault_pool = \"web\"\n[pools.web]\nbackends = [\"{}\"]\n\
         [pools.api]\nbackends = [\"{}\"]\n[[routes]]\nprefix = \"/api/\"\npool = \"api\"\n\
         [[ratelimit.policies]]\nname = \"login\"\npath_prefix = \"/login\"\nkey = \"ip\"\nrate = \"1/m\"\nburst = 1\n",
        web.addr, api.addr
    );
    let g = Gateway::start(&[("s", site)], "", "");
    (g, web, api)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_decides_on_the_normalised_path() {
    let (g, _web, _api) = two_pools().await;
    // Spellings an origin resolves to /api/...: all go to the api pool.
    for target in [
        "/api/v",
        "/API/v",
        "/%61pi/v",
        "//api/v",
        "/api;p=1/v",
        "/x/../api/v",
        "/x/%2e%2e/api/v",
        "/x/./../api/v",
        "/x/..\\api/v",
    ] {
        let r = get_raw(&g, "s.test", target).await;
        assert_eq!(r.status(), Some(200), "{target}: {}", r.text);
        assert!(
            r.text.contains("\"origin\":\"api\""),
            "{target} was not routed to api: {}",
            r.text
        );
    }
    // Spellings no origin resolves to /api/ by default: one decode only, an encoded slash is not
    // a separator, overlong UTF-8 is not decoded.
    for target in ["/api%2fv", "/%2561pi/v", "/%c1%a1pi/v", "/apix"] {
        let r = get_raw(&g, "s.test", target).await;
        assert_eq!(r.status(), Some(200), "{target}: {}", r.text);
        assert!(
            r.text.contains("\"origin\":\"web\""),
            "{target}: {}",
            r.text
        );
    }
    // A target that is not origin-form is refused before routing.
    assert_eq!(get_raw(&g, "s.test", "\\api\\v").await.status(), Some(400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_policy_cannot_be_sidestepped_by_spelling() {
    let (g, web, _api) = two_pools().await;
    assert_eq!(get_raw(&g, "s.test", "/login").await.status(), Some(200));
    let before = web.hits();
    for target in [
        "/login",
        "/LOGIN",
        "/Login/",
        "/login;jsessionid=0A1B",
        "/x/../login",
        "/x/..;/login",
        "//login",
        "/%6cogin",
        "/./login",
        "/login?x=1",
        "/login/../login",
    ] {
        let r = get_raw(&g, "s.test", target).await;
        assert_eq!(
            r.status(),
            Some(429),
            "{target} escaped the login policy: {}",
            r.text
        );
    }
    assert_eq!(web.hits(), before, "a limited request reached the origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_spellings_are_blocked_by_the_waf() {
    let (g, web, _api) = two_pools().await;
    for target in [
        "/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/..%c0%af..%c0%afetc/passwd",
        "/%252e%252e%252fetc%252fpasswd",
        "/a/../../../etc/passwd",
        "/static/..%5c..%5cwindows%5cwin.ini",
        "/x?file=%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/index.php%00.jpg",
    ] {
        let r = get_raw(&g, "s.test", target).await;
        assert_eq!(r.status(), Some(403), "{target}: {}", r.text);
    }
    assert_eq!(web.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_spellings_route_to_one_site_or_are_refused() {
    let (g, web, _api) = two_pools().await;
    for host in [
        "S.TEST",
        "s.test.",
        "s.test:8080",
        "s.test.:80",
        "s.test:",
        " s.test",
    ] {
        let r = get_raw(&g, host, "/x").await;
        assert_eq!(r.status(), Some(200), "Host {host:?}: {}", r.text);
    }
    assert_eq!(web.hits(), 6);
    for host in [
        "u@s.test",
        "u:p@s.test",
        "s.test:abc",
        "s.test:99999",
        "s.test:+80",
        "s.test%00",
        "s.test\tx",
        "s.test/x",
        "s.test..",
        ".s.test",
        "",
    ] {
        let r = get_raw(&g, host, "/x").await;
        assert_eq!(r.status(), Some(400), "Host {host:?}: {}", r.text);
        assert!(r.closed, "Host {host:?}");
    }
    // Names that are not the site's: the unknown-host page, never the site.
    for host in ["xs.test", "s.test.evil", "[s.test]"] {
        let r = get_raw(&g, host, "/x").await;
        assert_eq!(r.status(), Some(404), "Host {host:?}: {}", r.text);
    }
    // Absolute-form: its authority must be the Host's; the origin gets origin-form.
    let r = get_raw(&g, "s.test", "http://s.test/abs").await;
    assert_eq!(r.status(), Some(200), "{}", r.text);
    assert!(r.text.contains("\"path\":\"/abs\""), "{}", r.text);
    // pingora compares the two byte for byte: a case difference is refused too.
    for (host, target) in [
        ("other.test", "http://s.test/abs"),
        ("s.test", "http://S.TEST/abs"),
    ] {
        let r = get_raw(&g, host, target).await;
        assert_eq!(r.status(), Some(400), "{}", r.text);
    }
    assert_eq!(web.hits(), 7);
}
