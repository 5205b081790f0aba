//! The WAF's own cost per request, in instructions, for scripts/bench/waf-instructions.sh:
//! runs the shipped rulesets (default policy: block, paranoia 1, response inspection as
//! configured by default) over the same requests as scripts/bench/cpu-per-request.sh, all
//! four phases, `N` times inside `measure` (callgrind counts only that function).
//! With `--crs DIR`: OWASP CRS alone instead, paranoia 1, block mode, with the Chinese-site
//! exclusion profile (rulesets/crs/*.conf), as e2e.sh's egret-crs-pl1 target.
//!
//!   waf_cost RULESETS_DIR WORKLOAD N [--crs DIR]     (WORKLOAD: small | page | query | form)

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use egret::waf::seclang::crs::CrsSettings;
use egret::waf::{Engine, Mode, OwnedRequest, SitePolicy, Transaction};

/// The same allocator as the `egret` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn request(workload: &str) -> Option<String> {
    let host = "Host: www.bench.gov.cn";
    Some(match workload {
        "small" => format!("GET /small HTTP/1.1\n{host}"),
        "page" => format!("GET /page.html HTTP/1.1\n{host}"),
        "query" => {
            let words = [
                "%E6%94%BF%E5%8A%A1",
                "%E5%85%AC%E5%BC%80",
                "%E6%9C%8D%E5%8A%A1",
                "%E5%8A%9E%E4%BA%8B",
                "%E6%8C%87%E5%8D%97",
                "%E9%80%9A%E7%9F%A5",
                "%E5%85%AC%E5%91%8A",
                "%E6%95%99%E8%82%B2",
                "%E5%8C%BB%E7%96%97",
                "%E4%BA%A4%E9%80%9A",
            ];
            let q: Vec<String> = words
                .iter()
                .enumerate()
                .map(|(i, w)| format!("q{}={w}", i + 1))
                .collect();
            format!("GET /q?{} HTTP/1.1\n{host}", q.join("&"))
        }
        "form" => {
            let mut form: String = (1..=40)
                .map(|i| format!("field{i:02}=%E6%94%BF%E5%8A%A1%E5%85%AC%E5%BC%80abc&"))
                .collect();
            let pad = 2048usize.saturating_sub(form.len() + 4);
            form.push_str("pad=");
            form.push_str(&"a".repeat(pad));
            format!(
                "POST /form HTTP/1.1\n{host}\nContent-Type: application/x-www-form-urlencoded\n\n{form}"
            )
        }
        _ => return None,
    })
}

/// The origin's answer: e2e.sh's 8 KB HTML page for `page`, else 200 bytes of text.
fn response(workload: &str) -> (&'static str, Vec<u8>) {
    if workload != "page" {
        return ("text/plain", vec![b'x'; 200]);
    }
    let mut page = String::from("<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>示范市人民政府</title></head><body>\n");
    for i in 1..=190 {
        page.push_str(&format!("<p class=\"n\">政务公开 item {i:03}</p>\n"));
    }
    let pad = 8192usize.saturating_sub(page.len() + 23);
    page.push_str("<!--");
    page.push_str(&"x".repeat(pad));
    page.push_str("-->\n</body></html>\n");
    ("text/html", page.into_bytes())
}

#[inline(never)]
fn measure(
    engine: &Engine,
    policy: &SitePolicy,
    req: &OwnedRequest,
    (content_type, response_body): (&str, Vec<u8>),
    n: u32,
) -> u32 {
    let len = response_body.len().to_string();
    let response_headers: [(&str, &[u8]); 2] = [
        ("content-type", content_type.as_bytes()),
        ("content-length", len.as_bytes()),
    ];
    req.with_request(|r| {
        let mut blocked = 0;
        for _ in 0..n {
            let mut tx = Transaction::new(engine, policy, r);
            let mut v = tx.eval_headers();
            if !v.is_block() {
                v = tx.eval_body(r.body.unwrap_or(&[]));
            }
            if !v.is_block() {
                v = tx.eval_response_headers(200, &response_headers);
            }
            if !v.is_block() {
                v = tx.eval_response_body(&response_body);
            }
            blocked += u32::from(black_box(v).is_block());
        }
        blocked
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(raw), Some(n)) = (
        args.get(1),
        args.get(2).and_then(|w| request(w)),
        args.get(3).and_then(|n| n.parse::<u32>().ok()),
    ) else {
        eprintln!("usage: waf_cost RULESETS_DIR small|page|query|form N [--crs DIR]");
        return ExitCode::from(2);
    };
    let crs = match args.get(4).map(String::as_str) {
        Some("--crs") => match args.get(5) {
            Some(d) => Some(PathBuf::from(d)),
            None => {
                eprintln!("--crs needs a directory");
                return ExitCode::from(2);
            }
        },
        Some(other) => {
            eprintln!("unknown argument {other:?}");
            return ExitCode::from(2);
        }
        None => None,
    };
    let (engine, policy) = match crs {
        Some(crs) => {
            let profile: Vec<PathBuf> = ["cn-exclusions.conf", "cn-editor-exclusions.conf"]
                .iter()
                .map(|f| Path::new(dir).join("crs").join(f))
                .collect();
            let settings = CrsSettings::new(1, None, None, None);
            match egret::crs_cli::crs_engine_with(&crs, &settings, &profile, Mode::Block, 1) {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("CRS: {e:#}");
                    return ExitCode::FAILURE;
                }
            }
        }
        None => match Engine::load_dir(Path::new(dir)) {
            Ok(e) => {
                let p = SitePolicy::default_for(&e);
                (e, p)
            }
            Err(errs) => {
                for e in errs {
                    eprintln!("{e}");
                }
                return ExitCode::FAILURE;
            }
        },
    };
    let req = match OwnedRequest::parse_raw(&raw) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("request: {e}");
            return ExitCode::FAILURE;
        }
    };
    let blocked = measure(&engine, &policy, &req, response(&args[2]), n);
    println!("{n} requests, {blocked} blocked");
    ExitCode::SUCCESS
}
