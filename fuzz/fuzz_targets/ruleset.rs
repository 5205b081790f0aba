//! The native (TOML) ruleset loader on arbitrary text: errors, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = egret::waf::load::parse_ruleset(std::path::Path::new("fuzz.toml"), text);
    // The small parsers a ruleset uses, one line each.
    for line in text.lines().take(8) {
        let _ = egret::waf::load::parse_target(line);
        let _ = egret::waf::load::parse_ctl(line);
    }
});
