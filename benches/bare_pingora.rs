//! The bare pingora reference proxy for `scripts/bench/e2e.sh` (see docs/performance.md).
//!
//! A `ProxyHttp` with only `upstream_peer`, returning one plain-HTTP `HttpPeer`: the floor any
//! pingora-based gateway stands on. Same pingora version (0.9.1, the crate's own dependency),
//! the same allocator as Egret (mimalloc as `#[global_allocator]`) and the same server
//! settings as `[server] threads = 1`, `work_stealing = false`, with the `ServerConf` built in
//! code as `src/server.rs` does.
//!
//! ```sh
//! cargo build --release --example bare_pingora
//! target/release/examples/bare_pingora 127.0.0.1:18100 127.0.0.1:18000   # LISTEN UPSTREAM
//! ```

use async_trait::async_trait;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use std::net::SocketAddr;

struct Bare {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bench") {
        // `cargo bench --bench bare_pingora`: this is a server, not a benchmark.
        println!(
            "bare_pingora is the reference proxy of scripts/bench/e2e.sh; nothing to run here"
        );
        return;
    }
    if args.len() != 3 {
        eprintln!(
            "usage: {} LISTEN_ADDR UPSTREAM_ADDR   (e.g. 127.0.0.1:18100 127.0.0.1:18000)",
            args[0]
        );
        std::process::exit(2);
    }
    let listen: SocketAddr = args[1].parse().expect("LISTEN_ADDR: expected IP:port");
    let upstream: SocketAddr = args[2].parse().expect("UPSTREAM_ADDR: expected IP:port");

    let conf = ServerConf {
        threads: 1,
        work_stealing: false,
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(&server.configuration, Bare { upstream });
    proxy.add_tcp(&listen.to_string());
    server.add_service(proxy);
    eprintln!("bare_pingora listening on {listen}, upstream {upstream}");
    server.run_forever();
}
