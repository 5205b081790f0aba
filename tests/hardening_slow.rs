//! Slow and idle clients: idle keep-alive connections are closed by the idle timeout, a client
//! that stops reading a large response is cut off by the send timeout, while a normal client is
//! served. (Slowloris headers, stalled and slow bodies are in tests/proxy.rs.)

mod common;
mod hardening_support;
use common::*;
use hardening_support::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_by_the_idle_timeout() {
    let o = origin("o").await;
    let g = Gateway::start(&[("s", simple_site("s", "s.test", &[o.addr], ""))], "", "");
    g.set_server_keys("client_header_timeout = \"1s\"").await;
    let http = g.http;
    let pid = g.child.id();
    let fds_before = open_fds(pid);
    // 200 clients each make one keep-alive request and then go idle.
    let conns = tokio::task::spawn_blocking(move || {
        (0..200)
            .map(|_| {
                let mut s = std::net::TcpStream::connect(http).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
                s.write_all(b"GET /x HTTP/1.1\r\nHost: s.test\r\n\r\n")
                    .unwrap();
                let mut buf = [0u8; 8192];
                let n = s.read(&mut buf).unwrap();
                assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
                s
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert!(
        open_fds(pid) >= fds_before + 150,
        "the idle connections are open"
    );
    // Meanwhile a normal client is served.
    assert_eq!(get(&g, "s.test", "/other").await.0, 200);
    let t = Instant::now();
    let closed = tokio::task::spawn_blocking(move || {
        conns
            .into_iter()
            .filter(|s| {
                let mut s = s;
                let mut buf = [0u8; 64];
                // Drain any rest of the response, then expect the close.
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => return true,
                        Ok(_) => continue,
                        Err(_) => return false,
                    }
                }
            })
            .count()
    })
    .await
    .unwrap();
    let took = t.elapsed();
    println!("idle: {closed} of 200 closed after {took:?}");
    assert_eq!(closed, 200, "idle keep-alive connections left open");
    assert!(took < Duration::from_secs(6), "took {took:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        open_fds(pid) <= fds_before + 8,
        "descriptors {} -> {}",
        fds_before,
        open_fds(pid)
    );
    assert_eq!(get(&g, "s.test", "/after").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off() {
    let o = origin("o").await;
    // A 32 MB page: far more than socket buffers hold.
    o.set_page("/big.bin", vec![b'x'; 32 * 1024 * 1024], None);
    let g = Gateway::start(
        &[(
            "s",
            simple_site(
                "s",
                "s.test",
                &[o.addr],
                "[limits]\nclient_send_timeout = \"2s\"\n",
            ),
        )],
        "",
        "",
    );
    let http = g.http;
    let (got, closed_after) = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(http).unwrap();
        s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: s.test\r\n\r\n")
            .unwrap();
        // Read a little, then stop reading for a while.
        let mut buf = vec![0u8; 65536];
        let mut got = s.read(&mut buf).unwrap();
        std::thread::sleep(Duration::from_secs(6));
        let t = Instant::now();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // Now read what is left: the gateway gave up on this client, so the stream ends early.
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
            if t.elapsed() > Duration::from_secs(20) {
                break;
            }
        }
        (got, t.elapsed())
    })
    .await
    .unwrap();
    println!(
        "slow reader: got {got} of 32 MiB, stream ended {closed_after:?} after reading resumed"
    );
    assert!(
        got < 32 * 1024 * 1024,
        "the whole response was delivered to a stalled reader"
    );
    assert_eq!(get(&g, "s.test", "/x").await.0, 200);
}
