//! What the admin API takes from a request: the query parameters of the approve endpoint and the
//! bearer token comparison. Never panics; the comparison is equality.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for name in ["site", "path", ""] {
        let _ = egret::admin::query_param(&text, name);
    }
    let (a, b) = data.split_at(data.len() / 2);
    assert_eq!(egret::admin::constant_time_eq(a, b), a == b);
    assert!(egret::admin::constant_time_eq(a, a));
});
