//! Rate-limit decision in process: `Policies::decide` for an allowed and a limited client, and
//! the limiter's memory per client key (docs/performance.md).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use egret::ratelimit::{
    Decision, LimiterState, Policies, RateLimitConfig, RequestInfo, SiteRateLimitConfig,
};
use std::net::IpAddr;
use std::time::{Duration, Instant};

fn policies() -> Policies {
    // The demo portal's policy (config/sites/www.toml): 50/s per IP, burst 100.
    let global: RateLimitConfig = toml::from_str(
        r#"
        [[policies]]
        name = "per-ip"
        key = "ip"
        rate = "50/s"
        burst = 100
    "#,
    )
    .unwrap();
    let www = SiteRateLimitConfig::default();
    Policies::compile(&global, [("www", &www)]).unwrap()
}

fn bench(c: &mut Criterion) {
    let policies = policies();
    let state = LimiterState::new(policies.state_limits());
    let no_header = |_: &str| None;
    let allowed = IpAddr::from([192, 0, 2, 1]);
    let limited = IpAddr::from([192, 0, 2, 2]);
    let req = |ip: IpAddr| RequestInfo {
        site: "www",
        path: "/zwgk/index.htm",
        client_ip: ip,
        header: &no_header,
        cookie: &no_header,
    };
    let start = Instant::now();

    let mut g = c.benchmark_group("ratelimit_decide");
    // Allowed: the clock advances by 25 ms per call (40 req/s, under 50/s), so every call passes.
    let mut tick = 0u64;
    let r = req(allowed);
    g.bench_function("allowed", |b| {
        b.iter(|| {
            tick += 1;
            let now = start + Duration::from_millis(25 * tick);
            let d = policies.decide(&state, black_box(&r), now);
            debug_assert_eq!(d, Decision::Allow);
            d
        })
    });
    // Limited: the burst is used up at a fixed instant, then every call is refused with 429.
    let r = req(limited);
    let now = start;
    while policies.decide(&state, &r, now) == Decision::Allow {}
    assert_eq!(policies.decide(&state, &r, now).status(), Some(429));
    g.bench_function("limited", |b| {
        b.iter(|| policies.decide(&state, black_box(&r), now))
    });
    g.finish();

    // Memory per key: the limiter's own accounting after 100,000 distinct client IPs.
    let fresh = LimiterState::new(policies.state_limits());
    let before = fresh.memory_bytes();
    let keys: u32 = 100_000;
    for i in 0..keys {
        let ip = IpAddr::from((0x0a00_0000u32 + i).to_be_bytes());
        let _ = policies.decide(&fresh, &req(ip), start);
    }
    let after = fresh.memory_bytes();
    println!(
        "ratelimit memory: {} keys -> {} bytes ({:.1} bytes/key; empty state {} bytes; key capacity {}, ceiling {} bytes)",
        fresh.stats().keys,
        after,
        (after - before) as f64 / keys as f64,
        before,
        fresh.key_capacity(),
        fresh.ceiling_bytes()
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
