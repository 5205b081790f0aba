//! Memory ceilings through the real gateway: far more distinct clients than the limiter keeps,
//! a thousand sites, and request bodies at the WAF inspection limit. Each run prints its figures
//! (docs/security.md lists them); the bounds asserted are generous ceilings, not timings.
//! (The limiter store's own accounting under one million keys is a unit test:
//! `ratelimit::store::tests::million_keys_stay_under_ceiling`.)

mod common;
mod hardening_support;
use common::*;
use hardening_support::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_clients_beyond_max_keys_stay_bounded() {
    let o = origin("o").await;
    let site = simple_site(
        "s",
        "s.test",
        &[o.addr],
        "[[ratelimit.policies]]\nname = \"per-ip\"\nkey = \"ip\"\nrate = \"100/s\"\nburst = 100\n",
    );
    let g = Gateway::start(
        &[("s", site)],
        "trusted_proxies = [\"127.0.0.1\"]",
        "[ratelimit]\nmax_keys = 4096\n",
    );
    let pid = g.child.id();
    for _ in 0..50 {
        get(&g, "s.test", "/warm").await;
    }
    let rss0 = rss_kib(pid);
    // 16,000 distinct client addresses, four times the key limit, over 16 keep-alive clients.
    let total = 16_000u32;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..16u32 {
        let url = g.url("/x");
        tasks.push(tokio::spawn(async move {
            let c = client();
            let mut ok = 0u32;
            let mut i = w;
            while i < total {
                let ip = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
                let r = c
                    .get(&url)
                    .header("host", "s.test")
                    .header("x-forwarded-for", ip)
                    .send()
                    .await
                    .unwrap();
                if r.status() == 200 {
                    ok += 1;
                }
                i += 16;
            }
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap();
    }
    let rss1 = rss_kib(pid);
    println!(
        "ratelimit: {total} distinct clients in {:?} ({ok} answered 200), max_keys 4096: RSS {rss0} -> {rss1} KiB",
        t.elapsed()
    );
    assert_eq!(
        ok, total,
        "every first request of a client is within its burst"
    );
    assert!(rss1 < rss0 + 40 * 1024, "RSS {rss0} -> {rss1} KiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sites_load_serve_and_reload() {
    let o = origin("o").await;
    let sites: Vec<(String, String)> = (0..1000)
        .map(|i| {
            let name = format!("site{i:04}");
            let extra = format!(
                "[[routes]]\nprefix = \"/api/\"\npool = \"main\"\n[[ratelimit.policies]]\nname = \"p\"\nkey = \"ip\"\nrate = \"50/s\"\nburst = 50\n[waf]\nexclusions = [{{ rule_ids = [100106], path = \"/x{i}/\" }}]\n"
            );
            let body = simple_site(&name, &format!("{name}.gov.test"), &[o.addr], "")
                .replace("\n[pools.main]", &format!("\n{extra}[pools.main]"));
            (name, body)
        })
        .collect();
    let refs: Vec<(&str, String)> = sites.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    let t = Instant::now();
    let g = Gateway::start(&refs, "", "");
    let started = t.elapsed();
    let pid = g.child.id();
    for i in (0..1000).step_by(37) {
        let (s, _) = get(&g, &format!("site{i:04}.gov.test"), "/api/x").await;
        assert_eq!(s, 200, "site {i}");
    }
    let rss_loaded = rss_kib(pid);
    let gen = g.generation();
    let t = Instant::now();
    g.write_site(
        "site0500",
        &sites[500].1.replace("burst = 50", "burst = 60"),
    );
    let gen2 = g.wait_generation(gen);
    let reload = t.elapsed();
    for i in (0..1000).step_by(53) {
        let (s, _) = get(&g, &format!("site{i:04}.gov.test"), "/x").await;
        assert_eq!(s, 200, "site {i} after reload");
    }
    // More reloads: old snapshots are freed, not kept. The allocator keeps some freed memory
    // around, so RSS rises over the first reloads and then levels off; a leak would keep growing.
    let mut series = vec![rss_kib(pid)];
    for _ in 0..8 {
        let gen = g.generation();
        let r = client()
            .post(g.admin_url("/api/v1/reload"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        g.wait_generation(gen);
        tokio::time::sleep(Duration::from_millis(200)).await;
        series.push(rss_kib(pid));
    }
    let rss_reloaded = *series.last().unwrap();
    println!("1000 sites: RSS after each reload (KiB): {series:?}");
    println!(
        "1000 sites: ready in {started:?}, RSS {rss_loaded} KiB, reload (generation {gen} -> {gen2}) in {reload:?}, RSS after 9 reloads {rss_reloaded} KiB"
    );
    assert!(
        rss_loaded < 400 * 1024,
        "RSS {rss_loaded} KiB with 1000 sites"
    );
    assert!(
        rss_reloaded < series[4] + 40 * 1024,
        "RSS keeps growing with reloads: {series:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_at_the_inspection_limit_stay_bounded() {
    let o = origin("o").await;
    let limit = 1024 * 1024;
    let site = format!(
        "{}\n[waf]\ninspect_body_limit = {limit}\nover_limit = \"reject\"\n",
        simple_site(
            "s",
            "s.test",
            &[o.addr],
            "[limits]\nmax_body_bytes = \"8MiB\"\n"
        )
    );
    let g = Gateway::start(&[("s", site)], "", "");
    let pid = g.child.id();
    let body = format!("a={}", "b".repeat(limit - 2));
    assert_eq!(body.len(), limit);
    let post = |b: String| {
        let url = g.url("/form");
        async move {
            client()
                .post(url)
                .header("host", "s.test")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(b)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(post(body.clone()).await, 200);
    let rss0 = rss_kib(pid);
    // 16 bodies at the limit in flight at once, four rounds.
    let mut peak = rss0;
    for _ in 0..4 {
        let round: Vec<_> = (0..16).map(|_| tokio::spawn(post(body.clone()))).collect();
        for r in round {
            assert_eq!(r.await.unwrap(), 200);
        }
        peak = peak.max(rss_kib(pid));
    }
    // One byte over the limit is refused, not buffered further.
    assert_eq!(post(format!("{body}c")).await, 413);
    let rss1 = rss_kib(pid);
    println!("bodies: 64 x 1 MiB (16 at once): RSS {rss0} -> peak {peak} -> {rss1} KiB");
    // Each held body costs its size a few times over (buffer, decoded arguments); 16 at once
    // stay well under 16 x 1 MiB x 8.
    assert!(peak < rss0 + 128 * 1024, "peak {peak} KiB from {rss0}");
    assert_eq!(o.bodies(), 65);
}
