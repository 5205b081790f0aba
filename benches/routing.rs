//! Site lookup among 500 sites: `normalize_host` + `HostIndex::lookup` (docs/performance.md).
//!
//! Each site has an exact name, its bare domain and a wildcard (`*.deptN.city.gov.cn`), as a
//! city with 500 departmental sites would configure. Hits on an exact name, a wildcard two
//! labels deep, and a miss (the unknown-host path, which walks every suffix).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use egret::routing::{normalize_host, HostIndex};
use std::time::Duration;

const SITES: usize = 500;

fn index() -> HostIndex {
    let mut idx = HostIndex::default();
    for i in 0..SITES {
        assert!(idx.insert(&format!("www.dept{i}.city.gov.cn"), i).is_none());
        assert!(idx.insert(&format!("dept{i}.city.gov.cn"), i).is_none());
        assert!(idx.insert(&format!("*.dept{i}.city.gov.cn"), i).is_none());
    }
    idx
}

fn bench(c: &mut Criterion) {
    let idx = index();
    let mut g = c.benchmark_group("routing_500_sites");
    // Raw Host header values as clients send them (mixed case, port).
    let cases = [
        ("exact", "WWW.Dept250.city.gov.cn:443", Some(250)),
        ("wildcard", "a.b.dept250.city.gov.cn", Some(250)),
        ("miss", "www.unknown.example.org", None),
    ];
    for (name, raw, want) in cases {
        let host = normalize_host(raw).expect("plausible host");
        assert_eq!(idx.lookup(&host), want, "{name}");
        g.bench_function(format!("lookup_{name}"), |b| {
            b.iter(|| idx.lookup(black_box(&host)))
        });
        g.bench_function(format!("normalize_and_lookup_{name}"), |b| {
            b.iter(|| normalize_host(black_box(raw)).and_then(|h| idx.lookup(&h)))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
