//! Defacement verdict on the portal fixture (tests/fixtures/deface): the inline check of a
//! protected page with the `VerdictCache` hit (one SHA-256 + map lookup) against a miss
//! (SHA-256, extract the features with lol_html, compare with the baseline, insert), for a
//! legitimate update (`portal-updated.html`) and a tampered page (`tampered-hidden-links.html`).
//! See docs/performance.md.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use egret::deface::{
    charset_of, compare, extract, DefaceConfig, DefacePolicy, Keywords, SiteDefaceConfig,
    VerdictCache,
};
use std::sync::Arc;
use std::time::Duration;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/deface/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The policy the deface tests use for the portal (src/deface/tests.rs, tests/deface.rs).
fn policy() -> DefacePolicy {
    let global: DefaceConfig = toml::from_str(r#"allowed_domains = ["*.gov.cn"]"#).unwrap();
    let site: SiteDefaceConfig = toml::from_str(
        r##"
        allowed_domains = ["hm.baidu.com"]
        dynamic_selectors = ["#visit-count", ".news-list", ".today", ".weather", ".notice-list li .date"]
        dynamic_text = ['\d{4}-\d{2}-\d{2}']
        [[pages]]
        path = "/"
        mode = "protect"
    "##,
    )
    .unwrap();
    let hosts = vec!["www.demo.gov.cn".to_string()];
    let keywords = Arc::new(Keywords::builtin().unwrap());
    DefacePolicy::compile(&global, keywords, [("www", hosts.as_slice(), &site)]).unwrap()
}

fn bench(c: &mut Criterion) {
    let policy = policy();
    let page = policy.page("www", "/").expect("protected page");
    let check = &page.check;
    let charset = charset_of("text/html; charset=utf-8");
    let approved = fixture("portal.html");
    let baseline = extract(&approved, charset, check).unwrap();
    let baseline_id = "bench-approval";

    let mut g = c.benchmark_group("deface_verdict");
    g.bench_function("extract_portal", |b| {
        b.iter(|| extract(black_box(&approved), charset, check).unwrap())
    });
    for (name, file, tampered) in [
        ("updated", "portal-updated.html", false),
        ("hidden_links", "tampered-hidden-links.html", true),
    ] {
        let body = fixture(file);
        let v = compare(&baseline, &extract(&body, charset, check).unwrap(), check);
        assert_eq!(v.tampered, tampered, "{file}: {}", v.to_json());

        // Miss: a fresh cache each time (built outside the measurement).
        g.bench_function(format!("{name}_cache_miss"), |b| {
            b.iter_batched(
                || VerdictCache::new(policy.cache_entries()),
                |cache| {
                    cache
                        .check(black_box(&body), charset, baseline_id, &baseline, check)
                        .unwrap()
                },
                BatchSize::SmallInput,
            )
        });
        // Hit: the same body judged before.
        let cache = VerdictCache::new(policy.cache_entries());
        cache
            .check(&body, charset, baseline_id, &baseline, check)
            .unwrap();
        g.bench_function(format!("{name}_cache_hit"), |b| {
            b.iter(|| {
                cache
                    .check(black_box(&body), charset, baseline_id, &baseline, check)
                    .unwrap()
            })
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
