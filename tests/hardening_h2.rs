//! HTTP/2 floods over TLS against the real gateway, with raw frames (no client library would
//! send them): rapid reset, CONTINUATION flood, more streams than allowed, HPACK table abuse,
//! SETTINGS flood. Each is bounded (the connection is closed or the work capped), and another
//! client is served meanwhile. Bounded in frame count and time.

mod common;
mod hardening_support;
use common::*;
use egret::demo::certs::TestCa;
use hardening_support::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

struct Setup {
    g: Gateway,
    o: Origin,
    ca: TestCa,
}

async fn setup() -> Setup {
    let o = origin("o").await;
    let ca = TestCa::new("H2 CA").unwrap();
    let (crt, key) = ca.issue(&["s.test"], 30).unwrap();
    let site = format!(
        "name = \"s\"\nhosts = [\"s.test\"]\n[pools.main]\nbackends = [\"{}\"]\n[tls]\ncert = \"s.crt\"\nkey = \"s.key\"\nredirect_http = false\n",
        o.addr
    );
    let g = Gateway::start_with_files(
        &[("s", site)],
        &[("certs/s.crt", crt), ("certs/s.key", key)],
        "",
        "",
        true,
    );
    Setup { g, o, ca }
}

async fn connect(s: &Setup) -> Tls {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut s.ca.cert_pem().as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    // The harness waits for the plain and admin listeners; the TLS one may come up just after.
    let deadline = Instant::now() + Duration::from_secs(10);
    let tcp = loop {
        match tokio::net::TcpStream::connect(s.g.https.unwrap()).await {
            Ok(t) => break t,
            Err(e) => {
                assert!(Instant::now() < deadline, "TLS listener not up: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let name = rustls::pki_types::ServerName::try_from("s.test").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    tls
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;

/// An HPACK integer with an `n`-bit prefix whose other bits are `first`.
fn hpack_int(first: u8, n: u32, mut v: usize, out: &mut Vec<u8>) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// A literal header field without indexing, new name, no Huffman.
fn literal(name: &str, value: &str, out: &mut Vec<u8>) {
    out.push(0);
    hpack_int(0, 7, name.len(), out);
    out.extend_from_slice(name.as_bytes());
    hpack_int(0, 7, value.len(), out);
    out.extend_from_slice(value.as_bytes());
}

fn request_block(method: &str, path: &str) -> Vec<u8> {
    let mut b = Vec::new();
    literal(":method", method, &mut b);
    literal(":scheme", "https", &mut b);
    literal(":path", path, &mut b);
    literal(":authority", "s.test", &mut b);
    b
}

fn preface() -> Vec<u8> {
    let mut p = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    p.extend(frame(SETTINGS, 0, 0, &[]));
    p
}

/// What the server sent on a connection, read by a task until it closes.
#[derive(Default)]
struct Seen {
    goaway: std::sync::Mutex<Option<u32>>,
    rst: AtomicUsize,
    headers: AtomicUsize,
    settings: AtomicUsize,
    closed: AtomicBool,
}

fn reader(mut rd: tokio::io::ReadHalf<Tls>) -> Arc<Seen> {
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    tokio::spawn(async move {
        let mut buf = Vec::new();
        let mut tmp = vec![0u8; 65536];
        loop {
            match tokio::time::timeout(Duration::from_secs(20), rd.read(&mut tmp)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&tmp[..n]),
                _ => break,
            }
            while buf.len() >= 9 {
                let len = ((buf[0] as usize) << 16) | ((buf[1] as usize) << 8) | buf[2] as usize;
                if buf.len() < 9 + len {
                    break;
                }
                let kind = buf[3];
                let payload = &buf[9..9 + len];
                match kind {
                    GOAWAY if len >= 8 => {
                        let code =
                            u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
                        *s.goaway.lock().unwrap() = Some(code);
                    }
                    RST_STREAM => {
                        s.rst.fetch_add(1, Ordering::Relaxed);
                    }
                    HEADERS => {
                        s.headers.fetch_add(1, Ordering::Relaxed);
                    }
                    SETTINGS => {
                        s.settings.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
                buf.drain(..9 + len);
            }
        }
        s.closed.store(true, Ordering::Relaxed);
    });
    seen
}

/// Writes `frames` in batches until done, the server closes, or `limit` passes.
async fn flood(
    wr: &mut tokio::io::WriteHalf<Tls>,
    frames: impl Iterator<Item = Vec<u8>>,
    seen: &Seen,
    limit: Duration,
) -> (usize, usize) {
    let t = Instant::now();
    let (mut sent, mut bytes) = (0, 0);
    let mut batch = Vec::new();
    for f in frames {
        batch.extend(f);
        sent += 1;
        if batch.len() >= 32 * 1024 {
            let n = batch.len();
            match tokio::time::timeout(Duration::from_secs(5), wr.write_all(&batch)).await {
                Ok(Ok(())) => bytes += n,
                _ => return (sent, bytes),
            }
            batch.clear();
            if seen.closed.load(Ordering::Relaxed)
                || seen.goaway.lock().unwrap().is_some()
                || t.elapsed() > limit
            {
                return (sent, bytes);
            }
        }
    }
    if tokio::time::timeout(Duration::from_secs(5), wr.write_all(&batch))
        .await
        .is_ok_and(|r| r.is_ok())
    {
        bytes += batch.len();
    }
    (sent, bytes)
}

/// Waits until the server has closed the connection or sent GOAWAY.
async fn ended(seen: &Seen, within: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < within {
        if seen.closed.load(Ordering::Relaxed) || seen.goaway.lock().unwrap().is_some() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A well-behaved HTTP/2 client is served (checked while and after an attack).
async fn other_client_ok(s: &Setup) {
    let https = s.g.https.unwrap();
    let c = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .add_root_certificate(reqwest::Certificate::from_pem(s.ca.cert_pem().as_bytes()).unwrap())
        .resolve("s.test", https)
        .build()
        .unwrap();
    let r = c
        .get(format!("https://s.test:{}/other", https.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
}

fn describe(seen: &Seen) -> String {
    format!(
        "goaway {:?}, rst {}, responses {}, settings {}, closed {}",
        seen.goaway.lock().unwrap(),
        seen.rst.load(Ordering::Relaxed),
        seen.headers.load(Ordering::Relaxed),
        seen.settings.load(Ordering::Relaxed),
        seen.closed.load(Ordering::Relaxed)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_is_cut_off() {
    let s = setup().await;
    other_client_ok(&s).await;
    let before = s.o.hits();
    let tls = connect(&s).await;
    let (rd, mut wr) = tokio::io::split(tls);
    let seen = reader(rd);
    wr.write_all(&preface()).await.unwrap();
    let block = request_block("GET", "/reset");
    let frames = (0..20_000u32).flat_map(|i| {
        let id = 1 + 2 * i;
        [
            frame(HEADERS, END_HEADERS | END_STREAM, id, &block),
            frame(RST_STREAM, 0, id, &8u32.to_be_bytes()),
        ]
    });
    let (sent, _) = flood(&mut wr, frames, &seen, Duration::from_secs(10)).await;
    let end = ended(&seen, Duration::from_secs(10)).await;
    let report = format!(
        "{sent} frames sent; {}; origin hits {}",
        describe(&seen),
        s.o.hits() - before
    );
    println!("rapid reset: {report}");
    assert!(end, "the connection survived a rapid-reset flood: {report}");
    assert!(s.o.hits() - before < 2_000, "{report}");
    other_client_ok(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_flood_is_cut_off() {
    let s = setup().await;
    let tls = connect(&s).await;
    let (rd, mut wr) = tokio::io::split(tls);
    let seen = reader(rd);
    wr.write_all(&preface()).await.unwrap();
    // A header block that never ends: HEADERS without END_HEADERS, then CONTINUATION frames of
    // 16 KB of literal fields each, up to 64 MB.
    let mut first = request_block("GET", "/cont");
    literal("x-a", "b", &mut first);
    let mut chunk = Vec::new();
    while chunk.len() < 16_000 {
        literal("x-flood", &"a".repeat(100), &mut chunk);
    }
    let frames = std::iter::once(frame(HEADERS, END_STREAM, 1, &first))
        .chain((0..4_000).map(|_| frame(CONTINUATION, 0, 1, &chunk)));
    let (sent, bytes) = flood(&mut wr, frames, &seen, Duration::from_secs(15)).await;
    let end = ended(&seen, Duration::from_secs(10)).await;
    let report = format!(
        "{sent} frames, {} KB accepted; {}",
        bytes / 1024,
        describe(&seen)
    );
    println!("continuation flood: {report}");
    assert!(
        end,
        "the connection survived a CONTINUATION flood: {report}"
    );
    assert!(
        bytes < 16 * 1024 * 1024,
        "the server read {bytes} bytes of one header block"
    );
    assert_eq!(seen.headers.load(Ordering::Relaxed), 0, "{report}");
    other_client_ok(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_the_concurrency_limit_are_refused() {
    let s = setup().await;
    let tls = connect(&s).await;
    let (rd, mut wr) = tokio::io::split(tls);
    let seen = reader(rd);
    wr.write_all(&preface()).await.unwrap();
    // 1000 POSTs whose bodies never come: each stream stays open.
    let mut block = request_block("POST", "/stream");
    literal("content-length", "10", &mut block);
    let frames = (0..1_000u32).map(|i| frame(HEADERS, END_HEADERS, 1 + 2 * i, &block));
    let (sent, _) = flood(&mut wr, frames, &seen, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = format!("{sent} streams opened; {}", describe(&seen));
    println!("concurrent streams: {report}");
    // pingora advertises 100 concurrent streams: the rest are refused (RST_STREAM) or the
    // connection is ended.
    let refused = seen.rst.load(Ordering::Relaxed);
    assert!(
        refused >= 800
            || seen.goaway.lock().unwrap().is_some()
            || seen.closed.load(Ordering::Relaxed),
        "{report}"
    );
    other_client_ok(&s).await;
    drop(wr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpack_table_abuse_ends_the_connection() {
    let s = setup().await;
    // 1. The client allows a 4 GiB table for the server's encoder and asks for a 1 GiB table in
    //    the server's decoder (a dynamic table size update above the advertised 4096).
    let tls = connect(&s).await;
    let (rd, mut wr) = tokio::io::split(tls);
    let seen = reader(rd);
    let mut p = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    let mut settings = vec![0, 1];
    settings.extend_from_slice(&u32::MAX.to_be_bytes());
    p.extend(frame(SETTINGS, 0, 0, &settings));
    let mut block = Vec::new();
    hpack_int(0x20, 5, 1 << 30, &mut block);
    block.extend(request_block("GET", "/hpack"));
    p.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &block));
    wr.write_all(&p).await.unwrap();
    assert!(
        ended(&seen, Duration::from_secs(10)).await,
        "{}",
        describe(&seen)
    );
    println!("hpack size update: {}", describe(&seen));
    let code = *seen.goaway.lock().unwrap();
    // PROTOCOL_ERROR (1) or COMPRESSION_ERROR (9).
    assert!(matches!(code, Some(1) | Some(9)), "{}", describe(&seen));

    // 2. An index far beyond the table.
    let tls = connect(&s).await;
    let (rd, mut wr) = tokio::io::split(tls);
    let seen = reader(rd);
    let mut p = preface();
    let mut block = Vec::new();
    hpack_int(0x80, 7, 1_000_000, &mut block);
    p.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &block));
    wr.write_all(&p).await.unwrap();
    assert!(
        ended(&seen, Duration::from_secs(10)).await,
        "{}",
        describe(&seen)
    );
    println!("hpack bad index: {}", describe(&seen));

    // 3. One header list over the 64 KiB limit (in a single block of many fields).
    let tls = connect(&s).await;
    let (rd, mut wr) = tokio::io::split(tls);
    let seen = reader(rd);
    let mut p = preface();
    let mut block = request_block("GET", "/big");
    for i in 0..100 {
        literal(&format!("x-h{i}"), &"v".repeat(1000), &mut block);
    }
    // Split into frames of at most 16 KB.
    let chunks: Vec<&[u8]> = block.chunks(16_000).collect();
    for (i, c) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        let kind = if i == 0 { HEADERS } else { CONTINUATION };
        let flags = if last { END_HEADERS } else { 0 } | if i == 0 { END_STREAM } else { 0 };
        p.extend(frame(kind, flags, 1, c));
    }
    wr.write_all(&p).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!("header list over the limit: {}", describe(&seen));
    // Refused: a 431 response, a stream reset, or the connection ended; never proxied.
    assert_eq!(s.o.hits(), 0, "{}", describe(&seen));
    other_client_ok(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_flood_stays_bounded() {
    let s = setup().await;
    let pid = s.g.child.id();
    other_client_ok(&s).await;
    let rss_before = rss_kib(pid);
    let tls = connect(&s).await;
    let (rd, mut wr) = tokio::io::split(tls);
    let seen = reader(rd);
    wr.write_all(&preface()).await.unwrap();
    let mut one = vec![0, 4];
    one.extend_from_slice(&65_535u32.to_be_bytes());
    let frames = (0..100_000).map(|_| frame(SETTINGS, 0, 0, &one));
    let t = Instant::now();
    let (sent, _) = flood(&mut wr, frames, &seen, Duration::from_secs(10)).await;
    // Another client is served while the flood connection is alive.
    other_client_ok(&s).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss_kib(pid);
    let report = format!(
        "{sent} SETTINGS frames in {:?}; {}; RSS {rss_before} -> {rss_after} KiB",
        t.elapsed(),
        describe(&seen)
    );
    println!("settings flood: {report}");
    assert!(rss_after < rss_before + 50 * 1024, "{report}");
    // Also a stream of DATA on a stream that does not exist ends the connection.
    let frames = (0..10u32).map(|i| frame(DATA, 0, 1001 + 2 * i, b"xxxx"));
    let _ = flood(&mut wr, frames, &seen, Duration::from_secs(2)).await;
    assert!(
        ended(&seen, Duration::from_secs(5)).await,
        "{}",
        describe(&seen)
    );
}
