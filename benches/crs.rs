//! CRS v4 per request at paranoia 1 and 2 (criterion): a clean GET with four arguments, a
//! 2 KB Chinese form POST, an attack. Reads `../shared/crs`; does nothing when it is absent.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use egret::crs_cli::crs_engine;
use egret::waf::seclang::crs::CrsSettings;
use egret::waf::seclang::regress::{parse_raw, request_verdict};
use egret::waf::Mode;

fn bench(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/crs");
    if !dir.join("rules").is_dir() {
        println!("skipped: no CRS at {}", dir.display());
        return;
    }
    let get = b"GET /search?q=%E6%94%BF%E5%8A%A1&page=2&sort=time&type=all HTTP/1.1\r\nHost: a.gov.cn\r\nUser-Agent: Mozilla/5.0\r\nAccept: text/html\r\nAccept-Language: zh-CN,zh;q=0.9\r\n\r\n".to_vec();
    let text =
        "市民来信：关于本区政务服务中心办事指南更新的建议，希望尽快公开最新材料清单。".repeat(8);
    let body = format!(
        "title=%E5%BB%BA%E8%AE%AE&name=%E5%BC%A0%E4%B8%89&content={}",
        text
    );
    let mut post = format!("POST /hdjl/letter/save HTTP/1.1\r\nHost: a.gov.cn\r\nUser-Agent: Mozilla/5.0\r\nContent-Type: application/x-www-form-urlencoded; charset=utf-8\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    post.extend_from_slice(body.as_bytes());
    let attack = b"GET /?id=1%27%20union%20select%20password%20from%20users-- HTTP/1.1\r\nHost: a.gov.cn\r\nUser-Agent: Mozilla/5.0\r\nAccept: text/html\r\n\r\n".to_vec();
    for pl in [1u8, 2] {
        let Ok((engine, policy)) = crs_engine(
            &dir,
            &CrsSettings::new(pl, None, None, None),
            Mode::Block,
            pl,
        ) else {
            println!("skipped: CRS did not load");
            return;
        };
        for (name, raw) in [("get4", &get), ("post_cn_2k", &post), ("attack", &attack)] {
            let Ok(req) = parse_raw(raw) else { continue };
            c.bench_function(&format!("crs_pl{pl}_{name}"), |b| {
                b.iter(|| request_verdict(&engine, &policy, &req))
            });
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
