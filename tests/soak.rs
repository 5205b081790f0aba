//! Soak: mixed traffic (clean, attack, rate-limited, protected page, TLS, a site whose origin is
//! killed and restarted) through the real gateway while the config and the rulesets reload every
//! few seconds. Reports requests, failures, RSS, open descriptors and threads at start and end.
//!
//! CI runs it for 60 s; `scripts/soak SECONDS` runs it longer (EGRET_SOAK_SECS).
//! A failure is any answer the policy does not explain: clean requests must get 200, attacks 403,
//! rate-limited requests 200 or 429; every request to the site with the killed origin must still
//! succeed (its pool has a second backend and one retry).

mod common;
mod hardening_support;
use common::*;
use egret::demo::certs::TestCa;
use hardening_support::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Clean,
    Post,
    Attack,
    Limited,
    Protected,
    Tls,
    Flaky,
}

const KINDS: [Kind; 7] = [
    Kind::Clean,
    Kind::Post,
    Kind::Attack,
    Kind::Limited,
    Kind::Protected,
    Kind::Tls,
    Kind::Flaky,
];

#[derive(Default)]
struct Tally {
    by_kind: BTreeMap<String, (u64, u64)>,
    statuses: BTreeMap<String, u64>,
    failures: Vec<String>,
}

fn sample(pid: u32) -> (u64, usize, usize) {
    (rss_kib(pid), open_fds(pid), threads(pid))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_mixed_traffic_with_reloads_and_a_dying_origin() {
    let secs: u64 = std::env::var("EGRET_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let page =
        "<html><head><title>Portal</title></head><body><h1>政务公开</h1><p>news</p></body></html>";
    let main = origin("main").await;
    main.set_page("/index.html", page.as_bytes().to_vec(), None);
    let steady = origin("steady").await;
    let flaky_addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let flaky = Arc::new(Mutex::new(Some(
        Origin::start("flaky", flaky_addr).await.unwrap(),
    )));

    let ca = TestCa::new("Soak CA").unwrap();
    let (crt, key) = ca.issue(&["s.test"], 30).unwrap();
    let rules_dir = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/rulesets")).unwrap() {
        let f = f.unwrap();
        if f.file_type().unwrap().is_file() {
            std::fs::copy(f.path(), rules_dir.path().join(f.file_name())).unwrap();
        }
    }
    let data = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/rulesets/data"));
    if data.is_dir() {
        std::fs::create_dir_all(rules_dir.path().join("data")).unwrap();
        for f in std::fs::read_dir(data).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), rules_dir.path().join("data").join(f.file_name())).unwrap();
        }
    }
    let main_addr = main.addr;
    let s_site = move |gen: u64| {
        format!(
            "# generation {gen}\nname = \"s\"\nhosts = [\"s.test\"]\n[pools.main]\nbackends = [\"{}\"]\n\
             [tls]\ncert = \"s.crt\"\nkey = \"s.key\"\nredirect_http = false\n\
             [[ratelimit.policies]]\nname = \"login\"\npath_prefix = \"/login\"\nkey = \"ip\"\nrate = \"20/s\"\nburst = 20\n\
             [[deface.pages]]\npath = \"/index.html\"\nmode = \"protect\"\n",
            main_addr
        )
    };
    let k_site = format!(
        "name = \"k\"\nhosts = [\"k.test\"]\n[timeouts]\nretries = 1\nconnect_timeout = \"500ms\"\n[pools.main]\nbackends = [\"{}\", \"{}\"]\n",
        steady.addr, flaky_addr
    );
    let g = Gateway::start_with_files(
        &[("s", s_site(0)), ("k", k_site)],
        &[("certs/s.crt", crt), ("certs/s.key", key)],
        &format!("rulesets_dir = \"{}\"", rules_dir.path().display()),
        "[deface]\nstate_dir = \"state\"\nprobe_interval = \"1h\"\n",
        true,
    );
    let approve = client()
        .post(g.admin_url("/api/v1/deface/approve?site=s&path=%2Findex.html"))
        .send()
        .await
        .unwrap();
    assert_eq!(approve.status(), 200, "{}", approve.text().await.unwrap());

    let pid = g.child.id();
    let http = g.http;
    let https = g.https.unwrap();
    let plain = client();
    let tls = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .add_root_certificate(reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap())
        .resolve("s.test", https)
        .build()
        .unwrap();
    // Warm up every path once, then take the starting sample.
    for _ in 0..20 {
        let _ = plain.get(g.url("/x")).header("host", "s.test").send().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = sample(pid);
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(secs);
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let reloads = Arc::new(AtomicU64::new(0));
    let restarts = Arc::new(AtomicU64::new(0));

    // Reloader: the site file and a ruleset file change every 3 s (the watcher picks them up),
    // and an explicit reload through the admin API in between.
    let reloader = {
        let stop = stop.clone();
        let reloads = reloads.clone();
        let site_path = g.site_path("s");
        let rules = rules_dir.path().join("core.toml");
        let admin = g.admin_url("/api/v1/reload");
        tokio::spawn(async move {
            let mut gen = 1;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                std::fs::write(&site_path, s_site(gen)).unwrap();
                let mut text = std::fs::read_to_string(&rules).unwrap();
                text.push_str(&format!("\n# soak touch {gen}\n"));
                std::fs::write(&rules, text).unwrap();
                tokio::time::sleep(Duration::from_millis(1500)).await;
                let r = client().post(&admin).send().await;
                assert!(r.is_ok_and(|r| r.status() == 200), "admin reload failed");
                reloads.fetch_add(2, Ordering::Relaxed);
                gen += 1;
            }
        })
    };
    // Killer: the flaky origin is stopped and restarted every 5 s.
    let killer = {
        let stop = stop.clone();
        let flaky = flaky.clone();
        let restarts = restarts.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let old = flaky.lock().unwrap().take();
                drop(old);
                tokio::time::sleep(Duration::from_secs(2)).await;
                let mut tries = 0;
                let o = loop {
                    match Origin::start("flaky", flaky_addr).await {
                        Ok(o) => break o,
                        Err(e) => {
                            tries += 1;
                            assert!(tries < 50, "cannot rebind the flaky origin: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                };
                *flaky.lock().unwrap() = Some(o);
                restarts.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let mut workers = Vec::new();
    for w in 0..6u64 {
        let (plain, tls, tally) = (plain.clone(), tls.clone(), tally.clone());
        workers.push(tokio::spawn(async move {
            let mut i = w;
            while Instant::now() < deadline {
                let kind = KINDS[(i % KINDS.len() as u64) as usize];
                i += 1;
                let base = format!("http://{http}");
                let req = match kind {
                    Kind::Clean => plain
                        .get(format!("{base}/news/{i}?page=2"))
                        .header("host", "s.test"),
                    Kind::Post => plain
                        .post(format!("{base}/form"))
                        .header("host", "s.test")
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(format!("name=zhang&id={i}&text=hello+world")),
                    Kind::Attack => plain
                        .get(format!(
                            "{base}/search?q=1%27%20UNION%20SELECT%20password%20FROM%20users--"
                        ))
                        .header("host", "s.test"),
                    Kind::Limited => plain.get(format!("{base}/login")).header("host", "s.test"),
                    Kind::Protected => plain
                        .get(format!("{base}/index.html"))
                        .header("host", "s.test"),
                    Kind::Tls => tls.get(format!("https://s.test:{}/tls/{i}", https.port())),
                    Kind::Flaky => plain.get(format!("{base}/k/{i}")).header("host", "k.test"),
                };
                let res = req.send().await;
                let mut status = 0;
                let (ok, what) = match res {
                    Err(e) => (false, format!("error {e:?}")),
                    Ok(r) => {
                        let s = r.status().as_u16();
                        status = s;
                        let body = r.text().await.unwrap_or_default();
                        let ok = match kind {
                            Kind::Attack => s == 403,
                            Kind::Limited => s == 200 || s == 429,
                            Kind::Protected => s == 200 && body.contains("政务公开"),
                            _ => s == 200,
                        };
                        (
                            ok,
                            format!("{s} {}", body.chars().take(120).collect::<String>()),
                        )
                    }
                };
                let mut t = tally.lock().unwrap();
                *t.statuses.entry(format!("{kind:?} {status}")).or_default() += 1;
                let e = t.by_kind.entry(format!("{kind:?}")).or_default();
                e.0 += 1;
                if !ok {
                    e.1 += 1;
                    if t.failures.len() < 20 {
                        t.failures.push(format!("{kind:?}: {what}"));
                    }
                }
            }
        }));
    }
    // The starting sample is taken once traffic is at its steady state (connections pooled on
    // both sides), so that the end sample, taken with the same clients still connected, compares
    // like with like.
    tokio::time::sleep(Duration::from_secs((secs / 6).clamp(3, 30))).await;
    let start = sample(pid);
    let mut mid = Vec::new();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(10).min(deadline - Instant::now())).await;
        mid.push(sample(pid));
    }
    for w in workers {
        w.await.unwrap();
    }
    let end = sample(pid);
    stop.store(true, Ordering::Relaxed);
    reloader.await.unwrap();
    killer.await.unwrap();
    drop((plain, tls));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = sample(pid);
    let m = metrics(&g).await;
    let in_flight = metric(&m, "egret_requests_in_flight").unwrap_or(-1.0);
    let conns = metric(&m, "egret_connections_active").unwrap_or(-1.0);
    let t = tally.lock().unwrap();
    let total: u64 = t.by_kind.values().map(|v| v.0).sum();
    let failed: u64 = t.by_kind.values().map(|v| v.1).sum();
    let report = format!(
        "soak: {:.0} s, {total} requests, {failed} failed, {} reloads, {} origin restarts\n\
         by kind (requests, failures): {:?}\n\
         answers: {:?}\n\
         RSS KiB start {} end {}; open fds start {} end {}; threads start {} end {}\n\
         idle before traffic {:?}; clients gone after the run {:?}\n\
         samples every 10 s (rss KiB, fds, threads): {:?}\n\
         after the run: requests in flight {in_flight}, client connections open {conns}\n\
         first failures: {:#?}",
        t0.elapsed().as_secs_f64(),
        reloads.load(Ordering::Relaxed),
        restarts.load(Ordering::Relaxed),
        t.by_kind,
        t.statuses,
        start.0,
        end.0,
        start.1,
        end.1,
        start.2,
        end.2,
        idle,
        after,
        mid,
        t.failures
    );
    println!("{report}");
    if let Ok(path) = std::env::var("EGRET_SOAK_REPORT") {
        std::fs::write(path, &report).unwrap();
    }
    assert_eq!(failed, 0, "{report}");
    assert!(total > secs * 20, "too little traffic: {report}");
    assert_eq!(in_flight, 0.0, "{report}");
    // Descriptors and threads return to where they started (slack for the listener's timing).
    assert!(end.1 <= start.1 + 16, "descriptors grew: {report}");
    assert!(end.2 <= start.2 + 4, "threads grew: {report}");
    assert!(
        g.stderr().lines().all(|l| !l.contains("panicked")),
        "{}",
        g.stderr()
    );
}
