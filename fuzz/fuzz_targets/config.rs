//! The config loader on arbitrary global and site files: never panics, and a config it accepts
//! loads the same way a second time (what a reload does).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn dir() -> &'static std::path::Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("egret-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(d.join("sites")).unwrap();
        std::fs::create_dir_all(d.join("rules")).unwrap();
        std::fs::create_dir_all(d.join("certs")).unwrap();
        d
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // "global\n%%\nsite": the part before the first %% line is the global file.
    let (global, site) = text.split_once("\n%%\n").unwrap_or((text, ""));
    let d = dir();
    let global =
        format!("sites_dir = \"sites\"\nrulesets_dir = \"rules\"\ncerts_dir = \"certs\"\n{global}");
    std::fs::write(d.join("egret.toml"), &global).unwrap();
    std::fs::write(d.join("sites/a.toml"), site).unwrap();
    let health = egret::upstream::health::HealthRegistry::default();
    let first = egret::config::load(&d.join("egret.toml"), &health, 1);
    if let Ok(first) = first {
        let again = egret::config::load(&d.join("egret.toml"), &health, 2)
            .expect("a config that loaded once fails to load again");
        assert_eq!(first.sites.len(), again.sites.len());
        for (a, b) in first.sites.iter().zip(again.sites.iter()) {
            assert_eq!(a.name, b.name);
        }
    }
});
