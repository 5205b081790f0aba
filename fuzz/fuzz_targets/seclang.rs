//! The SecLang (CRS) lexer, action splitter and compiler on arbitrary text: errors, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = std::path::Path::new("fuzz.conf");
    if let Ok(directives) = egret::waf::seclang::lex_file(path, text) {
        let mut c = egret::waf::seclang::compile::Compiler::new();
        c.add_file(path, &directives);
        let _ = c.finish();
    }
    for line in text.lines().take(4) {
        let _ = egret::waf::seclang::actions::split_actions(line);
        let _ = egret::waf::seclang::compile::parse_id_range(line);
    }
});
