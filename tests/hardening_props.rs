//! Property tests: configs the loader accepts load the same way again (what a reload does), the
//! normalised path view is stable, and the WAF transformations never panic and keep their length
//! invariants. (The fuzz targets in fuzz/ cover the same code with arbitrary bytes.)

use egret::request_path::{has_prefix, normalize_path};
use egret::routing::{normalize_host, route_pool};
use egret::waf::transform::Transform;
use proptest::prelude::*;

const TRANSFORMS: &[&str] = &[
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

fn path_strategy() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("/".to_string()),
            Just("//".to_string()),
            Just("..".to_string()),
            Just(".".to_string()),
            Just(";".to_string()),
            Just("\\".to_string()),
            Just("%2e".to_string()),
            Just("%2F".to_string()),
            Just("%61".to_string()),
            Just("%25".to_string()),
            Just("?".to_string()),
            "[a-zA-Z0-9_-]{1,6}",
            "[^/]{1,3}",
        ],
        0..12,
    )
    .prop_map(|parts| format!("/{}", parts.concat()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn normalised_paths_are_absolute_stable_and_dot_free(p in path_strategy()) {
        let once = normalize_path(&p);
        prop_assert!(once.starts_with('/'), "{p:?} -> {once:?}");
        prop_assert!(!once.split('/').any(|s| s == "." || s == ".."), "{p:?} -> {once:?}");
        prop_assert!(!once.contains("//"), "{p:?} -> {once:?}");
        if !once.contains('%') {
            prop_assert_eq!(normalize_path(&once), once.clone());
        }
        // Routing and policies agree: a route prefix matches exactly when has_prefix does.
        let routes = [egret::routing::Route { prefix: "/api/".into(), pool: 1 }];
        prop_assert_eq!(route_pool(&routes, 0, &p) == 1, has_prefix(&once, "/api/"));
    }

    #[test]
    fn normalised_hosts_are_fixed_points(h in "[a-zA-Z0-9.:@_\\[\\]-]{0,24}") {
        if let Some(n) = normalize_host(&h) {
            prop_assert_eq!(normalize_host(&n), Some(n.clone()));
            prop_assert!(!n.contains('@'));
            prop_assert_eq!(n.to_ascii_lowercase(), n.clone());
        }
    }

    #[test]
    fn transformations_never_panic_and_keep_their_length_invariants(
        input in proptest::collection::vec(any::<u8>(), 0..256)
    ) {
        for name in TRANSFORMS {
            let t = Transform::parse(name).unwrap();
            let out = t.apply(&input);
            match *name {
                "lowercase" | "uppercase" | "replaceNulls" | "none" => {
                    prop_assert_eq!(out.len(), input.len(), "{}", name)
                }
                "urlDecode" | "urlDecodeUni" | "htmlEntityDecode" | "jsDecode" | "cssDecode"
                | "base64Decode" | "hexDecode" | "compressWhitespace" | "removeWhitespace"
                | "removeNulls" | "trim" | "trimLeft" | "trimRight" | "escapeSeqDecode"
                | "removeCommentsChar" => {
                    prop_assert!(out.len() <= input.len(), "{} grew {:?}", name, input)
                }
                // A trailing `..` segment gains a slash (found by the transforms fuzz target).
                "normalizePath" | "normalizePathWin" => {
                    prop_assert!(out.len() <= input.len() + 1, "{} grew {:?}", name, input)
                }
                "length" => {
                    let n = input.len().to_string();
                    prop_assert_eq!(out.as_ref(), n.as_bytes())
                }
                "hexEncode" => prop_assert_eq!(out.len(), input.len() * 2),
                _ => {}
            }
        }
    }
}

/// Inputs the fuzz targets found (fuzz/artifacts), kept as regression cases.
#[test]
fn fuzz_findings_stay_fixed() {
    // transforms: normalizePath grew a relative `../../..` by one byte.
    for name in ["normalizePath", "normalizePathWin"] {
        let out = Transform::parse(name).unwrap().apply(b"../../..");
        assert!(
            out.len() <= 9,
            "{name}: {:?}",
            String::from_utf8_lossy(&out)
        );
    }
    // paths: a relative path part (not a request path) is returned as it is.
    assert_eq!(normalize_path(".#/aa//.;/b/%1e%=%"), ".");
    assert_eq!(normalize_path("/.#/aa//.;/b/%1e%=%"), "/");
}

/// A generated site: hosts, backends (port, weight), route prefixes, max body bytes.
type GenSite = (Vec<String>, Vec<(u16, u8)>, Vec<String>, u64);

fn site_strategy() -> impl Strategy<Value = GenSite> {
    (
        proptest::collection::btree_set("[a-z]{1,8}(\\.[a-z]{1,5}){1,2}", 1..4)
            .prop_map(|s| s.into_iter().collect::<Vec<_>>()),
        proptest::collection::vec((1024u16..60000, 1u8..10), 1..4),
        proptest::collection::btree_set("/[a-z]{1,6}/", 0..4)
            .prop_map(|s| s.into_iter().collect::<Vec<_>>()),
        1u64..100_000_000,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn a_config_that_loads_loads_the_same_way_again(
        sites in proptest::collection::vec(site_strategy(), 1..4)
    ) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sites")).unwrap();
        std::fs::create_dir_all(dir.path().join("rules")).unwrap();
        std::fs::write(
            dir.path().join("egret.toml"),
            "sites_dir = \"sites\"\nrulesets_dir = \"rules\"\n[listen]\nhttp = [\"127.0.0.1:1\"]\n",
        )
        .unwrap();
        let mut taken = std::collections::HashSet::new();
        for (i, (hosts, backends, routes, body)) in sites.iter().enumerate() {
            let hosts: Vec<&String> = hosts.iter().filter(|h| taken.insert((*h).clone())).collect();
            if hosts.is_empty() {
                continue;
            }
            let mut text = format!(
                "name = \"site{i}\"\nhosts = [{}]\n[limits]\nmax_body_bytes = {body}\n[pools.main]\nbackends = [{}]\n",
                hosts.iter().map(|h| format!("\"{h}\"")).collect::<Vec<_>>().join(", "),
                backends
                    .iter()
                    .map(|(p, w)| format!("{{ addr = \"127.0.0.1:{p}\", weight = {w} }}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            for r in routes {
                text.push_str(&format!("[[routes]]\nprefix = \"{r}\"\npool = \"main\"\n"));
            }
            std::fs::write(dir.path().join(format!("sites/site{i}.toml")), text).unwrap();
        }
        let health = egret::upstream::health::HealthRegistry::default();
        let path = dir.path().join("egret.toml");
        let Ok(first) = egret::config::load(&path, &health, 1) else {
            // Duplicate backend addresses and the like: refused, and then the property is moot.
            return Ok(());
        };
        let again = egret::config::load(&path, &health, 2).expect("loaded once, not again");
        prop_assert_eq!(first.sites.len(), again.sites.len());
        for (a, b) in first.sites.iter().zip(again.sites.iter()) {
            prop_assert_eq!(&a.name, &b.name);
            prop_assert_eq!(&a.hosts, &b.hosts);
            prop_assert_eq!(a.routes.len(), b.routes.len());
            prop_assert_eq!(a.pools.len(), b.pools.len());
            prop_assert_eq!(a.limits.max_body_bytes, b.limits.max_body_bytes);
            for h in &a.hosts {
                prop_assert!(again.site_for_host(h).is_some_and(|s| s.name == a.name));
            }
        }
    }
}
