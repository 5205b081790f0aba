//! Policy-level tests: config as TOML in, decisions out, with a hand-driven clock.

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::*;

/// The global file (`egret.toml`) holds `[ratelimit]`; each site file holds its own
/// `[ratelimit]` table. Here the sites are inline for brevity.
#[derive(Deserialize)]
struct TestConfig {
    #[serde(default)]
    ratelimit: RateLimitConfig,
    #[serde(default)]
    sites: Vec<Site>,
}

#[derive(Deserialize)]
struct Site {
    name: String,
    #[serde(default)]
    ratelimit: SiteRateLimitConfig,
}

fn compile(toml_text: &str) -> Result<Policies, ConfigError> {
    let cfg: TestConfig = toml::from_str(toml_text).expect("test TOML parses");
    Policies::compile(
        &cfg.ratelimit,
        cfg.sites.iter().map(|s| (s.name.as_str(), &s.ratelimit)),
    )
}

const CONFIG: &str = r#"
[ratelimit]
allow = ["10.20.0.0/16"]
deny = ["198.51.100.0/24"]

[ratelimit.challenge]
secret = "0123456789abcdef0123456789abcdef"
difficulty = 4

[[ratelimit.policies]]
name = "per-ip"
rate = "10/s"
burst = 20

# Site files, inline here: one `[[sites]]` entry per file.
[[sites]]
name = "www"

[sites.ratelimit]
allow = ["203.0.113.0/24"]

[[sites.ratelimit.policies]]
name = "login"
path_prefix = "/login"
key = "ip_path"
rate = "6/m"
burst = 2
action = "ban"
ban_after = 3
ban_window = "1m"
ban_for = "10m"
ban_status = 403

[[sites.ratelimit.policies]]
name = "api"
path_prefix = "/api/"
key = { header = "X-Api-Key" }
rate = "1/s"
burst = 1

[sites.ratelimit.flood]
mode = "auto"
threshold = "100/s"
window = "1s"
hold = "5s"
exempt_paths = ["/api/"]

[[sites]]
name = "own"

[sites.ratelimit]
inherit = false

[[sites.ratelimit.policies]]
name = "whole-site"
key = "site"
rate = "2/s"
burst = 2

[[sites]]
name = "always"

[sites.ratelimit.flood]
mode = "on"
"#;

fn no_header<'v>(_: &str) -> Option<&'v str> {
    None
}

fn req<'a>(site: &'a str, path: &'a str, ip: &str) -> RequestInfo<'a> {
    RequestInfo {
        site,
        path,
        client_ip: ip.parse().unwrap(),
        header: &no_header,
        cookie: &no_header,
    }
}

#[test]
fn bundled_demo_limit_is_hit_by_a_fast_client() {
    let p = compile(CONFIG).unwrap();
    let state = LimiterState::new(p.state_limits());
    let now = Instant::now();
    let r = req("www", "/index.htm", "192.0.2.1");
    let decisions: Vec<Decision> = (0..500).map(|_| p.decide(&state, &r, now)).collect();
    let allowed = decisions.iter().filter(|d| **d == Decision::Allow).count();
    assert_eq!(allowed, 20, "burst of 20 then 429s");
    let last = decisions.last().unwrap();
    assert_eq!(last.status(), Some(429));
    assert_eq!(last.policy(), Some("per-ip"));
    assert_eq!(last.key(), Some(KeyLabel::Ip));
    assert_eq!(last.action(), "limited");
    assert_eq!(last.retry_after(now), Some(Duration::from_millis(100)));
    // Another client is unaffected; the first recovers with time.
    assert_eq!(
        p.decide(&state, &req("www", "/", "192.0.2.2"), now),
        Decision::Allow
    );
    assert_eq!(
        p.decide(&state, &r, now + Duration::from_millis(100)),
        Decision::Allow
    );
}

#[test]
fn allow_and_deny_lists() {
    let p = compile(CONFIG).unwrap();
    let state = LimiterState::new(p.state_limits());
    let now = Instant::now();
    for _ in 0..100 {
        assert_eq!(
            p.decide(&state, &req("www", "/", "10.20.3.4"), now),
            Decision::Allowlisted
        );
        assert_eq!(
            p.decide(&state, &req("www", "/", "203.0.113.9"), now),
            Decision::Allowlisted
        );
    }
    // The site's own allow list does not apply to other sites.
    assert_ne!(
        p.decide(&state, &req("other.gov.cn", "/", "203.0.113.9"), now),
        Decision::Allowlisted
    );
    let denied = p.decide(&state, &req("www", "/", "198.51.100.77"), now);
    assert_eq!(denied, Decision::Denied);
    assert_eq!(denied.status(), Some(403));
    // IPv4-mapped IPv6 addresses are matched as IPv4.
    assert_eq!(
        p.decide(&state, &req("x", "/", "::ffff:198.51.100.1"), now),
        Decision::Denied
    );
}

#[test]
fn per_path_policy_bans_then_unbans() {
    let p = compile(CONFIG).unwrap();
    let state = LimiterState::new(p.state_limits());
    let t0 = Instant::now();
    let login = req("www", "/login?next=/", "192.0.2.50");
    assert_eq!(p.decide(&state, &login, t0), Decision::Allow);
    assert_eq!(p.decide(&state, &login, t0), Decision::Allow);
    // Violations 1 and 2 are 429s, the 3rd within a minute bans for 10 minutes with 403.
    for _ in 0..2 {
        let d = p.decide(&state, &login, t0);
        assert_eq!(d.status(), Some(429), "{d:?}");
        assert_eq!(d.policy(), Some("login"));
        assert_eq!(d.key(), Some(KeyLabel::IpPath));
    }
    let banned = p.decide(&state, &login, t0);
    assert!(
        matches!(banned, Decision::Banned { status: 403, .. }),
        "{banned:?}"
    );
    assert_eq!(banned.retry_after(t0), Some(Duration::from_secs(600)));
    // Still banned later, even though the rate would allow it again.
    let t1 = t0 + Duration::from_secs(300);
    assert!(matches!(
        p.decide(&state, &login, t1),
        Decision::Banned { .. }
    ));
    // Other paths of the site are not affected by the login policy.
    assert_eq!(
        p.decide(&state, &req("www", "/news", "192.0.2.50"), t1),
        Decision::Allow
    );
    // `/loginx` is not below `/login`.
    assert_eq!(
        p.decide(&state, &req("www", "/loginx", "192.0.2.50"), t1),
        Decision::Allow
    );
    // Ops can lift an IP ban early (here on a fresh IP-keyed policy).
    assert!(!p.unban_ip(&state, "login", "192.0.2.51".parse().unwrap()));
    // After the ban: allowed again.
    let t2 = t0 + Duration::from_secs(601);
    assert_eq!(p.decide(&state, &login, t2), Decision::Allow);
}

#[test]
fn header_key_and_missing_header_fallback() {
    let p = compile(CONFIG).unwrap();
    let state = LimiterState::new(p.state_limits());
    let now = Instant::now();
    let key_a = |name: &str| (name == "x-api-key").then_some("key-a");
    let key_b = |name: &str| (name == "x-api-key").then_some("key-b");
    let mut r = req("www", "/api/items", "192.0.2.60");
    r.header = &key_a;
    assert_eq!(p.decide(&state, &r, now), Decision::Allow);
    let limited = p.decide(&state, &r, now);
    assert_eq!(limited.policy(), Some("api"));
    assert_eq!(limited.key(), Some(KeyLabel::Header));
    // Same IP, another key: its own budget.
    r.header = &key_b;
    assert_eq!(p.decide(&state, &r, now), Decision::Allow);
    // No header: counted by IP, so a client cannot escape by dropping it.
    let bare = req("www", "/api/items", "192.0.2.61");
    assert_eq!(p.decide(&state, &bare, now), Decision::Allow);
    assert_eq!(p.decide(&state, &bare, now).policy(), Some("api"));
}

#[test]
fn site_key_without_inheritance() {
    let p = compile(CONFIG).unwrap();
    let names: Vec<&str> = p.policies_for("own").map(|p| p.name()).collect();
    assert_eq!(names, ["whole-site"]);
    let names: Vec<&str> = p.policies_for("www").map(|p| p.name()).collect();
    assert_eq!(names, ["per-ip", "login", "api"]);
    let state = LimiterState::new(p.state_limits());
    let now = Instant::now();
    assert_eq!(
        p.decide(&state, &req("own", "/", "192.0.2.1"), now),
        Decision::Allow
    );
    assert_eq!(
        p.decide(&state, &req("own", "/", "192.0.2.2"), now),
        Decision::Allow
    );
    let d = p.decide(&state, &req("own", "/", "192.0.2.3"), now);
    assert_eq!(d.key(), Some(KeyLabel::Site));
}

#[test]
fn reload_keeps_counters() {
    let p1 = compile(CONFIG).unwrap();
    let state = LimiterState::new(p1.state_limits());
    let now = Instant::now();
    let r = req("www", "/", "192.0.2.70");
    for _ in 0..20 {
        assert_eq!(p1.decide(&state, &r, now), Decision::Allow);
    }
    // A new snapshot (same policy names) sees the same state.
    let p2 = compile(CONFIG).unwrap();
    assert_eq!(p2.decide(&state, &r, now).status(), Some(429));
}

#[test]
fn config_errors_name_the_field() {
    let cases: [(&str, Option<&str>, &str); 12] = [
        ("[[ratelimit.policies]]\nname = \"a\"\nrate = \"ten/s\"\n", None, "ratelimit.policies[a].rate"),
        ("[[ratelimit.policies]]\nname = \"a\"\nrate = \"1/s\"\nburst = 0\n", None, "ratelimit.policies[a].burst"),
        ("[[ratelimit.policies]]\nname = \"a\"\nrate = \"1/s\"\naction = \"ban\"\n", None, "ratelimit.policies[a].ban_after"),
        ("[[ratelimit.policies]]\nname = \"a\"\nrate = \"1/s\"\nban_after = 2\n", None, "ratelimit.policies[a].action"),
        (
            "[[ratelimit.policies]]\nname = \"a\"\nrate = \"1/s\"\naction = \"ban\"\nban_after = 2\nban_for = \"forever\"\n",
            None,
            "ratelimit.policies[a].ban_for",
        ),
        ("[ratelimit]\nallow = [\"10.0.0.0/33\"]\n", None, "ratelimit.allow[0]"),
        ("[[sites]]\nname = \"s\"\n[sites.ratelimit]\ndeny = [\"1.2.3.4\", \"nope\"]\n", Some("s"), "ratelimit.deny[1]"),
        ("[[sites]]\nname = \"s\"\n[sites.ratelimit.flood]\nmode = \"auto\"\n", Some("s"), "ratelimit.flood.threshold"),
        ("[[sites]]\nname = \"s\"\n[sites.ratelimit.flood]\nmode = \"on\"\n", None, "ratelimit.challenge.secret"),
        ("[ratelimit.challenge]\nsecret = \"short\"\n", None, "ratelimit.challenge.secret"),
        (
            "[[ratelimit.policies]]\nname = \"a\"\nrate = \"1/s\"\n[[ratelimit.policies]]\nname = \"a\"\nrate = \"2/s\"\n",
            None,
            "ratelimit.policies[a].name",
        ),
        ("[[sites]]\nname = \"s\"\n[[sites]]\nname = \"s\"\n", Some("s"), "name"),
    ];
    for (text, site, field) in cases {
        let err = compile(text).unwrap_err();
        assert_eq!(
            (err.site.as_deref(), err.field.as_str()),
            (site, field),
            "{text}: {err}"
        );
    }
    let err = compile(cases[6].0).unwrap_err().to_string();
    assert_eq!(
        err,
        "rate limit config of site `s`: `ratelimit.deny[1]`: `nope`: invalid IP address syntax"
    );
    // Unknown fields are refused by serde.
    assert!(toml::from_str::<TestConfig>("[ratelimit]\nmax_kyes = 1\n").is_err());
    // The default config compiles to no policies.
    let p = compile("").unwrap();
    assert_eq!(p.policies_for("any").count(), 0);
}

#[test]
fn flood_mode_auto_challenge_and_clearance() {
    let p = compile(CONFIG).unwrap();
    let state = LimiterState::new(p.state_limits());
    let t0 = Instant::now();
    let wall = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let r = req("www", "/index.htm", "192.0.2.80");
    // Quiet: inactive.
    assert_eq!(
        p.flood_check(&state, &r, t0, wall),
        FloodDecision::Inactive { transition: None }
    );
    // 200 requests in one second switch it on, reported once.
    let mut started = 0;
    let mut last = None;
    for i in 0..200u64 {
        let d = p.flood_check(&state, &r, t0 + Duration::from_millis(i * 5), wall);
        if let FloodDecision::Challenge {
            transition: Some(FloodTransition::Started { .. }),
            ..
        } = d
        {
            started += 1;
        }
        last = Some(d);
    }
    assert_eq!(started, 1);
    assert_eq!(
        last,
        Some(FloodDecision::Challenge {
            reason: None,
            transition: None
        })
    );
    let t1 = t0 + Duration::from_secs(1);
    // Exempt API path.
    assert_eq!(
        p.flood_check(&state, &req("www", "/api/x", "192.0.2.80"), t1, wall),
        FloodDecision::Exempt
    );
    // Solve the challenge, get a cookie, pass.
    let c = p.challenge().unwrap();
    let ip: IpAddr = "192.0.2.80".parse().unwrap();
    let token = c.token(ip, wall);
    let n = (0u64..)
        .find(|n| challenge::work_bits(&token, *n) >= 4)
        .unwrap();
    let cookie = c
        .verify_answer(format!("t={token}&n={n}").as_bytes(), ip, wall)
        .unwrap();
    let jar = |name: &str| (name == "egret_clearance").then_some(cookie.as_str());
    let mut with_cookie = req("www", "/index.htm", "192.0.2.80");
    with_cookie.cookie = &jar;
    assert_eq!(
        p.flood_check(&state, &with_cookie, t1, wall),
        FloodDecision::Cleared
    );
    // Same cookie from another IP: challenged with the reason.
    with_cookie.client_ip = "192.0.2.81".parse().unwrap();
    assert_eq!(
        p.flood_check(&state, &with_cookie, t1, wall),
        FloodDecision::Challenge {
            reason: Some(ChallengeError::WrongIp),
            transition: None
        }
    );
    // Expired cookie.
    with_cookie.client_ip = ip;
    let later = wall + Duration::from_secs(3600);
    assert!(matches!(
        p.flood_check(&state, &with_cookie, t1, later),
        FloodDecision::Challenge {
            reason: Some(ChallengeError::Expired),
            ..
        }
    ));
    // Manual mode "on" challenges from the first request; sites without flood config never.
    assert!(matches!(
        p.flood_check(&state, &req("always", "/", "192.0.2.1"), t0, wall),
        FloodDecision::Challenge { .. }
    ));
    assert_eq!(
        p.flood_check(&state, &req("own", "/", "192.0.2.1"), t0, wall),
        FloodDecision::Inactive { transition: None }
    );
    let _ = SystemTime::now();
}

#[test]
fn ipv6_clients_are_counted_per_64() {
    let p = compile(CONFIG).unwrap();
    let state = LimiterState::new(p.state_limits());
    let now = Instant::now();
    // 20 requests spread over 20 addresses of one /64 exhaust one burst.
    for i in 0..20 {
        let ip = format!("2001:db8:1:2::{i:x}");
        assert_eq!(
            p.decide(&state, &req("www", "/", &ip), now),
            Decision::Allow
        );
    }
    assert_eq!(
        p.decide(&state, &req("www", "/", "2001:db8:1:2::ffff"), now)
            .status(),
        Some(429)
    );
    // The neighbouring /64 is another client.
    assert_eq!(
        p.decide(&state, &req("www", "/", "2001:db8:1:3::1"), now),
        Decision::Allow
    );
}

#[test]
fn allowlisted_clients_are_never_challenged() {
    let p = compile(CONFIG).unwrap();
    let state = LimiterState::new(p.state_limits());
    let wall = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let now = Instant::now();
    assert_eq!(
        p.flood_check(&state, &req("always", "/", "10.20.1.1"), now, wall),
        FloodDecision::Exempt
    );
    assert!(matches!(
        p.flood_check(&state, &req("always", "/", "192.0.2.1"), now, wall),
        FloodDecision::Challenge { reason: None, .. }
    ));
}

#[test]
fn path_tricks_do_not_escape_a_path_policy() {
    let p = compile(CONFIG).unwrap();
    let state = LimiterState::new(p.state_limits());
    let t0 = Instant::now();
    // Spread over spellings of /login, the same ip_path key fills up: 2 allowed, then limited.
    let spellings = ["/login", "//login", "/x/../login", "/%6Cogin", "/LOGIN"];
    let decisions: Vec<Decision> = spellings
        .iter()
        .map(|path| p.decide(&state, &req("www", path, "192.0.2.90"), t0))
        .collect();
    assert_eq!(decisions[0], Decision::Allow);
    assert_eq!(decisions[1], Decision::Allow);
    for d in &decisions[2..] {
        assert_eq!(d.policy(), Some("login"), "{d:?}");
    }
}

#[test]
fn ops_unban_by_ip() {
    let text = CONFIG.replace(
        "name = \"per-ip\"\nrate = \"10/s\"\nburst = 20",
        "name = \"per-ip\"\nrate = \"10/s\"\nburst = 20\naction = \"ban\"\nban_after = 1\nban_for = \"1h\"",
    );
    let p = compile(&text).unwrap();
    let state = LimiterState::new(p.state_limits());
    let now = Instant::now();
    let r = req("own-less", "/", "198.18.0.1");
    for _ in 0..20 {
        assert_eq!(p.decide(&state, &r, now), Decision::Allow);
    }
    assert!(matches!(p.decide(&state, &r, now), Decision::Banned { .. }));
    assert!(p.unban_ip(&state, "per-ip", "198.18.0.1".parse().unwrap()));
    // Unbanned: once the rate allows again, requests pass (an over-rate request right after an
    // unban would count as a new violation and, with ban_after = 1, ban again).
    assert_eq!(
        p.decide(&state, &r, now + Duration::from_secs(2)),
        Decision::Allow
    );
}
