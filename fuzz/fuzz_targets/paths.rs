//! The normalised request view (paths and hosts) that routing and policies decide on: never
//! panics, normalising is idempotent, and the result is an absolute path without dot segments.
#![no_main]
use egret::request_path::{has_prefix, normalize_path};
use egret::routing::normalize_host;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let once = normalize_path(text);
    let twice = normalize_path(&once);
    // Idempotence holds unless the one decoding step made a new escape (`%252e` -> `%2e`
    // stays; `%%32e` -> `%2e` is decoded on a second pass: a one-pass view by design).
    if !once.contains('%') {
        assert_eq!(once, twice, "not idempotent for {text:?}");
    }
    // Request paths start with '/' (origin-form; pingora takes the path of absolute-form); a
    // relative path part is returned as it is when there is nothing to normalise.
    let path_part = text.split(['?', '#']).next().unwrap_or(text);
    if path_part.starts_with('/') || once.as_ref() != path_part {
        assert!(once.starts_with('/'), "{text:?} -> {once:?}");
        assert!(
            !once.split('/').any(|s| s == ".." || s == "."),
            "{text:?} -> {once:?}"
        );
    }
    let _ = has_prefix(&once, "/api/");
    if let Some(h) = normalize_host(text) {
        assert_eq!(
            normalize_host(&h).as_deref(),
            Some(h.as_str()),
            "host {text:?}"
        );
        assert!(
            !h.contains(['@', ':']) || h.starts_with('['),
            "host {text:?} -> {h:?}"
        );
    }
});
