//! `egret demo`: built-in origin sites on loopback plus the gateway on the bundled config.

pub mod certs;
pub mod origin;

use anyhow::Context;
use origin::Origin;
use std::net::SocketAddr;
use std::path::Path;

/// The demo origins and the addresses the bundled `config/sites/*.toml` point at.
pub const DEMO_ORIGINS: &[(&str, &str)] = &[
    ("www-1", "127.0.0.1:18081"),
    ("www-2", "127.0.0.1:18082"),
    ("jyj-web", "127.0.0.1:18083"),
    ("jyj-api", "127.0.0.1:18084"),
];

/// Starts the origins on a background runtime, prints the tour, and runs the gateway.
pub fn run(config: &Path) -> anyhow::Result<()> {
    let certs_dir = config
        .parent()
        .unwrap_or(Path::new("."))
        .join("../certs/demo");
    if certs::ensure_demo_certs(&certs_dir)? {
        println!("generated demo certificates in {}", certs_dir.display());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the demo origins' runtime")?;
    let origins: Vec<Origin> = rt.block_on(async {
        let mut v = Vec::new();
        for (name, addr) in DEMO_ORIGINS {
            let addr: SocketAddr = addr.parse().context("demo origin address")?;
            v.push(
                Origin::start(name, addr)
                    .await
                    .with_context(|| format!("cannot start demo origin {name} on {addr}"))?,
            );
        }
        anyhow::Ok(v)
    })?;
    // Approve the protected pages' current (clean) versions as their baselines.
    match crate::config::load(config, &crate::upstream::HealthRegistry::default(), 0) {
        Ok(snap) => {
            let guard = crate::protect::PageGuard::new(1);
            for site in &snap.sites {
                for path in crate::protect::exact_paths(&snap, &site.name) {
                    match rt.block_on(crate::protect::approve(
                        &guard.fetcher,
                        &crate::ratelimit::shared::RedisLimiter::default(),
                        &snap,
                        &site.name,
                        &path,
                    )) {
                        Ok(_) => println!("baseline recorded for {}{path}", site.name),
                        Err(e) => {
                            eprintln!("cannot record the baseline of {}{path}: {e}", site.name)
                        }
                    }
                }
            }
        }
        Err(e) => anyhow::bail!("the demo configuration is invalid:\n{e}"),
    }
    std::thread::Builder::new()
        .name("demo-origins".into())
        .spawn(move || {
            rt.block_on(std::future::pending::<()>());
            drop(origins);
        })?;
    print_tour();
    crate::server::run(config)
}

fn print_tour() {
    println!(
        r#"
Egret demo: two government sites behind one gateway.
  HTTPS on 127.0.0.1:8443 with certificates from the demo CA (certs/demo/ca.crt).
  origins: www.demo.gov.cn -> 127.0.0.1:18081, :18082   jyj.demo.gov.cn -> :18083 (web), :18084 (/api/)

Try, in another terminal:
  curl -H 'Host: www.demo.gov.cn' http://127.0.0.1:8080/
  curl -i -H 'Host: jyj.demo.gov.cn' http://127.0.0.1:8080/            # 308 to HTTPS
  curl --cacert certs/demo/ca.crt --resolve jyj.demo.gov.cn:8443:127.0.0.1 https://jyj.demo.gov.cn:8443/api/schools
  curl -i -H 'Host: unknown.example' http://127.0.0.1:8080/          # 404 page with a request id
  # Rate limit: 500 fast requests to the portal exceed its per-IP limit (429):
  for i in $(seq 500); do curl -s -o /dev/null -w '%{{http_code}}\n' -H 'Host: www.demo.gov.cn' http://127.0.0.1:8080/news; done | sort | uniq -c
  # Defacement (wait two seconds after the rate-limit test): the portal home page is protected.
  # Deface both origin servers, then look again:
  curl -si -H 'Host: www.demo.gov.cn' http://127.0.0.1:8080/ | grep -i x-egret-deface      # checked
  curl -X POST http://127.0.0.1:18081/__demo/tamper; curl -X POST http://127.0.0.1:18082/__demo/tamper
  curl -si -H 'Host: www.demo.gov.cn' http://127.0.0.1:8080/ | grep -i x-egret-deface      # approved-copy
  curl -s http://127.0.0.1:9901/api/v1/deface/status
  curl -s http://127.0.0.1:9901/metrics | grep egret_requests_total
  curl -s http://127.0.0.1:9901/api/v1/status
"#
    );
}
