//! Decision cost with shared state in Redis: one GCRA check (EVALSHA of the Lua script, one
//! round trip on loopback) through `RedisLimiter`, against a `redis-server` this bench starts on
//! a free port. `cargo bench --bench ratelimit_redis` (needs the Debian package redis-server).

use criterion::{criterion_group, criterion_main, Criterion};
use egret::ratelimit::policy::{RedisSettings, SharedCheck};
use egret::ratelimit::shared::{RedisLimiter, SharedOutcome};
use egret::ratelimit::KeyLabel;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn bench(c: &mut Criterion) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0);
    let Ok(mut redis) = Command::new("redis-server")
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
        .stdout(Stdio::null())
        .spawn()
    else {
        eprintln!("redis-server not found: apt-get install redis-server; skipping");
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let settings = RedisSettings {
        url: format!("redis://127.0.0.1:{port}/"),
        timeout: Duration::from_millis(200),
        fail_open: true,
        prefix: "bench:".into(),
    };
    let limiter = RedisLimiter::default();
    let check = |key: &str| SharedCheck {
        policy: Arc::from("per-ip"),
        key: KeyLabel::Ip,
        redis_key: key.to_string(),
        interval_us: 1,
        tolerance_us: 1_000_000_000,
    };
    // Warm the connection.
    let warm = rt.block_on(limiter.check(&settings, &[check("bench:warm")]));
    assert!(matches!(warm, SharedOutcome::Allow), "{warm:?}");
    let allowed = [check("bench:allowed")];
    c.bench_function("ratelimit/redis decide (allowed, 1 policy)", |b| {
        b.iter(|| rt.block_on(limiter.check(&settings, &allowed)))
    });
    let mut limited = check("bench:limited");
    limited.interval_us = 60_000_000;
    limited.tolerance_us = 0;
    let limited = [limited];
    c.bench_function("ratelimit/redis decide (limited, 1 policy)", |b| {
        b.iter(|| rt.block_on(limiter.check(&settings, &limited)))
    });
    let _ = redis.kill();
    let _ = redis.wait();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
