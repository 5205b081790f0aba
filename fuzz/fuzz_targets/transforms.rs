//! Every WAF transformation on arbitrary bytes: never panics, and the length invariants hold.
#![no_main]
use egret::waf::transform::{apply_chain, Transform};
use libfuzzer_sys::fuzz_target;

const NAMES: &[&str] = &[
    "none",
    "urlDecode",
    "urlDecodeUni",
    "htmlEntityDecode",
    "jsDecode",
    "cssDecode",
    "base64Decode",
    "hexDecode",
    "lowercase",
    "uppercase",
    "compressWhitespace",
    "removeWhitespace",
    "removeNulls",
    "replaceNulls",
    "removeComments",
    "replaceComments",
    "normalizePath",
    "normalizePathWin",
    "cmdLine",
    "utf8toUnicode",
    "length",
    "trim",
    "trimLeft",
    "trimRight",
    "sha1",
    "hexEncode",
    "escapeSeqDecode",
    "removeCommentsChar",
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, input)) = data.split_first() else {
        return;
    };
    for name in NAMES {
        let t = Transform::parse(name).expect("known transformation");
        let out = t.apply(input);
        let n = input.len();
        match *name {
            // Decoders and removers never grow the input.
            "urlDecode" | "urlDecodeUni" | "htmlEntityDecode" | "jsDecode" | "cssDecode"
            | "base64Decode" | "hexDecode" | "compressWhitespace" | "removeWhitespace"
            | "removeNulls" | "trim" | "trimLeft" | "trimRight" | "removeCommentsChar"
            | "escapeSeqDecode" => {
                assert!(out.len() <= n, "{name} grew {n} -> {}", out.len())
            }
            // A trailing `..` segment gains a slash (`../../..` -> `../../../`, found by this
            // target): at most one byte more.
            "normalizePath" | "normalizePathWin" => {
                assert!(out.len() <= n + 1, "{name} grew {n} -> {}", out.len())
            }
            "lowercase" | "uppercase" | "replaceNulls" | "none" => {
                assert_eq!(out.len(), n, "{name}")
            }
            "length" => assert_eq!(out.as_ref(), n.to_string().as_bytes()),
            "hexEncode" => assert_eq!(out.len(), 2 * n),
            "sha1" => assert_eq!(out.len(), 20),
            _ => {}
        }
    }
    // A chain chosen by the first byte.
    let chain: Vec<Transform> = (0..4)
        .map(|i| NAMES[(sel as usize >> i) % NAMES.len()])
        .filter_map(Transform::parse)
        .collect();
    let _ = apply_chain(&chain, input);
});
