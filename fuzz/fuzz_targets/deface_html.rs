//! Defacement feature extraction (HTML parsing, entity decoding, CSS hiding tricks, URL hosts)
//! on arbitrary bytes: never panics.
#![no_main]
use egret::deface::extract::extract;
use egret::deface::html;
use egret::deface::keywords::Keywords;
use egret::deface::policy::CheckPolicy;
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};

fn policy() -> &'static CheckPolicy {
    static P: OnceLock<CheckPolicy> = OnceLock::new();
    P.get_or_init(|| CheckPolicy::default_with(Arc::new(Keywords::builtin().unwrap())))
}

fuzz_target!(|data: &[u8]| {
    let charset = match data.first().map(|b| b % 4) {
        Some(0) => Some("gbk"),
        Some(1) => Some("utf-8"),
        Some(2) => Some("gb2312"),
        _ => None,
    };
    let _ = extract(data, charset, policy());
    let text = String::from_utf8_lossy(data);
    let _ = html::decode_entities(&text);
    let _ = html::url_host(&text);
    let _ = html::strip_cache_busting(&text);
    let _ = html::hidden_by_style(&text);
    let mut hidden = std::collections::HashSet::new();
    html::scan_style_block(&text, &mut hidden);
});
