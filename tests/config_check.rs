//! `egret check` on broken configurations: each fixture in tests/fixtures/broken/ names the
//! file:line:col and message fragments its errors must show (`expect`, one per line).

use std::path::Path;
use std::process::Command;

fn check(config: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_egret"))
        .args(["check", "-c"])
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn broken_configs_report_file_line_and_reason() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/broken");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "want at least 10 kinds of broken config");
    for case in cases {
        let (ok, out) = check(&case.join("egret.toml"));
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        assert!(!ok, "{name}: check accepted a broken config:\n{out}");
        let expect = std::fs::read_to_string(case.join("expect")).unwrap();
        for want in expect.lines().filter(|l| !l.trim().is_empty()) {
            // Messages carry the path as given; compare from the fixture directory on.
            let want = format!("{}/{}", name, want);
            let normalized = out.replace("//", "/");
            assert!(
                normalized.contains(&want),
                "{name}: expected `{want}` in:\n{out}"
            );
        }
        assert!(
            out.contains("configuration has"),
            "{name}: no summary line:\n{out}"
        );
    }
}

#[test]
fn bundled_example_config_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The bundled config names the demo certificates, which `egret demo` generates.
    egret::demo::certs::ensure_demo_certs(&root.join("certs/demo")).unwrap();
    let config = root.join("config/egret.toml");
    let (ok, out) = check(&config);
    assert!(ok, "{out}");
    assert!(out.contains("configuration OK: 2 sites"), "{out}");
}

#[test]
fn check_of_a_missing_file_fails_clearly() {
    let (ok, out) = check(Path::new("/nonexistent/egret.toml"));
    assert!(!ok);
    assert!(
        out.contains("/nonexistent/egret.toml") && out.contains("cannot read file"),
        "{out}"
    );
}
