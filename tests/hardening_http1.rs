//! HTTP/1 hostile clients against the real gateway: framing and smuggling variants, malformed
//! request lines and headers, oversized requests, pipelined desync attempts, and the WAF seeing
//! every body byte the origin sees. A recording raw-TCP origin shows what got through: nothing
//! of a refused request, and never a second request smuggled behind a first.
//! (tests/proxy.rs already covers CL+TE, TE+CL, duplicate CL, obs-fold, `chunked, identity`,
//! `xchunked`, a space before the colon, duplicate and missing Host; they are not repeated.)

mod common;
mod hardening_support;
use common::*;
use hardening_support::*;
use std::time::Duration;

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: s.test\r\n\r\n";

async fn gateway(o: &RecordingOrigin, limits: &str) -> Gateway {
    Gateway::start(
        &[("s", simple_site("s", "s.test", &[o.addr], limits))],
        "",
        "",
    )
}

async fn send(g: &Gateway, raw: impl Into<Vec<u8>>) -> RawReply {
    let raw = raw.into();
    let addr = g.http;
    tokio::task::spawn_blocking(move || send_raw(addr, &raw, Duration::from_millis(1500)))
        .await
        .unwrap()
}

/// Each case must get exactly `status`, a closed connection, and nothing at the origin.
async fn refused(g: &Gateway, o: &RecordingOrigin, cases: &[(&str, String, u16)]) {
    let mut failures = Vec::new();
    for (name, raw, want) in cases {
        let before = o.requests().len();
        let r = send(g, raw.clone()).await;
        let seen = o.requests().len() - before;
        if r.statuses() != [*want] || !r.closed || seen != 0 {
            failures.push(format!(
                "{name}: statuses {:?} (want [{want}]), closed {}, origin saw {seen}: {:?}",
                r.statuses(),
                r.closed,
                r.text.lines().next()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        !o.raw_text().contains("/smuggled"),
        "a smuggled request reached the origin: {}",
        o.raw_text()
    );
}

fn post(headers: &str, body: &str) -> String {
    format!("POST /x HTTP/1.1\r\nHost: s.test\r\n{headers}\r\n{body}{SMUGGLED}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_and_transfer_encoding_variants_are_refused() {
    let o = RecordingOrigin::start().await;
    let g = gateway(&o, "").await;
    let cases: Vec<(&str, String, u16)> = vec![
        ("TE chunked + CL 0", post("Transfer-Encoding: chunked\r\nContent-Length: 0\r\n", "0\r\n\r\n"), 400),
        ("TE+CL upper case", post("TRANSFER-ENCODING: CHUNKED\r\nCONTENT-LENGTH: 5\r\n", "0\r\n\r\n"), 400),
        ("CL list 4, 4", post("Content-Length: 4, 4\r\n", "abcd"), 400),
        ("CL +4", post("Content-Length: +4\r\n", "abcd"), 400),
        ("CL -1", post("Content-Length: -1\r\n", "abcd"), 400),
        ("CL 0x4", post("Content-Length: 0x4\r\n", "abcd"), 400),
        ("CL 1 0", post("Content-Length: 1 0\r\n", "abcd"), 400),
        ("CL overflow", post("Content-Length: 99999999999999999999999\r\n", "abcd"), 400),
        ("TE identity, chunked", post("Transfer-Encoding: identity, chunked\r\n", "0\r\n\r\n"), 501),
        ("TE gzip, chunked", post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"), 501),
        ("TE chunkedx", post("Transfer-Encoding: chunkedx\r\n", "0\r\n\r\n"), 400),
        ("TE twice", post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"), 400),
        ("TE tab before colon", post("Transfer-Encoding\t: chunked\r\n", "0\r\n\r\n"), 400),
        ("TE obs-fold value", post("Transfer-Encoding:\r\n chunked\r\n", "0\r\n\r\n"), 400),
        ("TE vertical tab", post("Transfer-Encoding:\x0bchunked\r\n", "0\r\n\r\n"), 400),
        ("TE in HTTP/1.0", format!("POST /x HTTP/1.0\r\nHost: s.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n{SMUGGLED}"), 400),
        ("chunk size zz", post("Transfer-Encoding: chunked\r\n", "zz\r\nabc\r\n0\r\n\r\n"), 400),
        ("chunk size -1", post("Transfer-Encoding: chunked\r\n", "-1\r\nabc\r\n0\r\n\r\n"), 400),
        ("chunk size 0x3", post("Transfer-Encoding: chunked\r\n", "0x3\r\nabc\r\n0\r\n\r\n"), 400),
        ("chunk size overflow", post("Transfer-Encoding: chunked\r\n", "fffffffffffffffffffff3\r\nabc\r\n0\r\n\r\n"), 400),
        ("chunk size leading space", post("Transfer-Encoding: chunked\r\n", " 3\r\nabc\r\n0\r\n\r\n"), 400),
        ("chunk size bare LF", post("Transfer-Encoding: chunked\r\n", "3\nabc\r\n0\r\n\r\n"), 400),
        ("chunk data longer than its size", post("Transfer-Encoding: chunked\r\n", "3\r\nabcdef\r\n0\r\n\r\n"), 400),
        ("chunk without CRLF", post("Transfer-Encoding: chunked\r\n", "3\r\nabc0\r\n\r\n"), 400),
        // CL.0: an origin that ignores the body of a GET would read it as the next request.
        ("GET with a body", format!("GET /x HTTP/1.1\r\nHost: s.test\r\nContent-Length: {}\r\n\r\n{SMUGGLED}", SMUGGLED.len()), 400),
        ("HEAD chunked", format!("HEAD /x HTTP/1.1\r\nHost: s.test\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{SMUGGLED}\r\n0\r\n\r\n", SMUGGLED.len()), 400),
    ];
    refused(&g, &o, &cases).await;
    assert!(o.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_request_lines_and_header_bytes_are_refused() {
    let o = RecordingOrigin::start().await;
    let g = gateway(&o, "").await;
    let get = |line: &str, headers: &str| format!("{line}\r\nHost: s.test\r\n{headers}\r\n");
    let cases: Vec<(&str, String, u16)> = vec![
        ("two spaces", get("GET  /x HTTP/1.1", ""), 400),
        ("tab separator", get("GET\t/x HTTP/1.1", ""), 400),
        ("asterisk-form GET", get("GET * HTTP/1.1", ""), 400),
        ("asterisk-form OPTIONS", get("OPTIONS * HTTP/1.1", ""), 400),
        ("authority-form GET", get("GET s.test:80 HTTP/1.1", ""), 400),
        ("relative target", get("GET x HTTP/1.1", ""), 400),
        (
            "absolute-form ftp",
            get("GET ftp://s.test/x HTTP/1.1", ""),
            400,
        ),
        (
            "absolute-form naming another host",
            get("GET http://s.test/x HTTP/1.1", "").replace("Host: s.test", "Host: other.test"),
            400,
        ),
        (
            "CONNECT",
            "CONNECT s.test:443 HTTP/1.1\r\nHost: s.test:443\r\n\r\n".into(),
            405,
        ),
        ("invalid method G@T", get("G@T /x HTTP/1.1", ""), 400),
        ("HTTP/1.2", get("GET /x HTTP/1.2", ""), 400),
        ("HTTP/2.0 on HTTP/1", get("GET /x HTTP/2.0", ""), 400),
        ("HTTP/3.0", get("GET /x HTTP/3.0", ""), 400),
        ("lower-case version", get("GET /x http/1.1", ""), 400),
        ("HTTP/1.10", get("GET /x HTTP/1.10", ""), 400),
        ("FOO/1.1", get("GET /x FOO/1.1", ""), 400),
        (
            "HTTP/1.0 without Host",
            "GET /x HTTP/1.0\r\n\r\n".into(),
            400,
        ),
        ("HTTP/0.9", "GET /x\r\n\r\n".into(), 400),
        (
            "h2 preface on HTTP/1",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".into(),
            400,
        ),
        (
            "bare CR in a value",
            get("GET /x HTTP/1.1", "X-A: a\rb\r\n"),
            400,
        ),
        (
            "NUL in a value",
            get("GET /x HTTP/1.1", "X-A: a\x00b\r\n"),
            400,
        ),
        (
            "control byte in a name",
            get("GET /x HTTP/1.1", "X\x01A: b\r\n"),
            400,
        ),
        (
            "DEL in a value",
            get("GET /x HTTP/1.1", "X-A: a\x7fb\r\n"),
            400,
        ),
        (
            "ESC in a value",
            get("GET /x HTTP/1.1", "X-A: a\x1bb\r\n"),
            400,
        ),
        ("empty header name", get("GET /x HTTP/1.1", ": v\r\n"), 400),
        (
            "header without colon",
            get("GET /x HTTP/1.1", "nocolon\r\n"),
            400,
        ),
        (
            "Host with userinfo",
            "GET /x HTTP/1.1\r\nHost: u@s.test\r\n\r\n".into(),
            400,
        ),
        ("empty Host", "GET /x HTTP/1.1\r\nHost:\r\n\r\n".into(), 400),
        (
            "Host list",
            "GET /x HTTP/1.1\r\nHost: s.test, other.test\r\n\r\n".into(),
            400,
        ),
    ];
    refused(&g, &o, &cases).await;

    // Methods that parse but are not allowed are the WAF's to refuse (403), never proxied.
    for line in ["get /x HTTP/1.1", "TRACE /x HTTP/1.1", "FOO /x HTTP/1.1"] {
        let r = send(&g, get(line, "Connection: close\r\n")).await;
        assert_eq!(r.status(), Some(403), "{line}: {}", r.text);
    }
    // pingora percent-encodes a target it cannot parse (`/x y` -> `/x%20y`, NUL -> `%00`) and
    // everything after it (WAF, routing, the origin) sees that one escaped form.
    let r = send(&g, get("GET /x\x00y HTTP/1.1", "Connection: close\r\n")).await;
    assert_eq!(r.status(), Some(403), "NUL in the target: {}", r.text);
    let long_method = format!("{} /x HTTP/1.1", "A".repeat(5000));
    let r = send(&g, get(&long_method, "Connection: close\r\n")).await;
    assert!(matches!(r.status(), Some(400..=405)), "{}", r.text);
    assert!(o.requests().is_empty(), "{:?}", o.targets());
    let r = send(&g, get("GET /x y HTTP/1.1", "Connection: close\r\n")).await;
    assert_eq!(r.status(), Some(200), "{}", r.text);
    assert_eq!(o.targets(), ["/x%20y"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tolerated_variants_reach_the_origin_reframed() {
    let o = RecordingOrigin::start().await;
    let g = gateway(&o, "").await;
    let close = "Connection: close\r\n";
    let cases: Vec<(&str, String, &str)> = vec![
        ("tab around the TE value", format!("POST /x HTTP/1.1\r\nHost: s.test\r\n{close}Transfer-Encoding:\tchunked\t\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), "abc"),
        ("upper-case TE", format!("POST /x HTTP/1.1\r\nHost: s.test\r\n{close}TRANSFER-ENCODING: CHUNKED\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), "abc"),
        ("chunk extension", format!("POST /x HTTP/1.1\r\nHost: s.test\r\n{close}Transfer-Encoding: chunked\r\n\r\n3;name=val\r\nabc\r\n0\r\n\r\n"), "abc"),
        ("chunk extension with a bare LF", format!("POST /x HTTP/1.1\r\nHost: s.test\r\n{close}Transfer-Encoding: chunked\r\n\r\n3;a\nxx\r\nabc\r\n0\r\n\r\n"), "abc"),
        ("bare LF line ends", format!("POST /x HTTP/1.1\nHost: s.test\n{}Content-Length: 3\n\nabc", close.replace("\r\n", "\n")), "abc"),
        ("absolute-form", format!("POST http://s.test/x HTTP/1.1\r\nHost: s.test\r\n{close}Content-Length: 3\r\n\r\nabc"), "abc"),
        ("trailer", format!("POST /x HTTP/1.1\r\nHost: s.test\r\n{close}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n"), "abc"),
    ];
    for (name, raw, body) in &cases {
        let before = o.requests().len();
        let r = send(&g, raw.clone()).await;
        assert_eq!(r.status(), Some(200), "{name}: {}", r.text);
        let seen = o.requests();
        assert_eq!(seen.len(), before + 1, "{name}");
        let last = &seen[before];
        assert!(
            last.head.starts_with("POST /x HTTP/1.1\r\n"),
            "{name}: {}",
            last.head
        );
        assert_eq!(String::from_utf8_lossy(&last.body), *body, "{name}");
    }
    // The origin got clean framing: no extension, no bare LF, no absolute-form, no trailer.
    let raw = o.raw_text();
    for bad in ["name=val", ";a\n", "xx\r\n", "http://", "X-Trailer", "\n\n"] {
        assert!(!raw.contains(bad), "origin saw {bad:?}: {raw:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_lines_and_header_sections() {
    let o = RecordingOrigin::start().await;
    let g = gateway(&o, "[limits]\nmax_uri_bytes = 8192\n").await;
    let line = |n: usize| format!("GET /{} HTTP/1.1\r\nHost: s.test\r\n\r\n", "a".repeat(n));
    let headers = |n: usize, size: usize| {
        format!(
            "GET /x HTTP/1.1\r\nHost: s.test\r\n{}\r\n",
            (0..n)
                .map(|i| format!("X-H{i}: {}\r\n", "v".repeat(size)))
                .collect::<String>()
        )
    };
    let cases: Vec<(&str, String, u16)> = vec![
        ("10 KB request line", line(10_000), 414),
        // Above 64 KiB the URI parser refuses the target: a parse error, 400.
        ("70 KB request line", line(70_000), 400),
        ("2 MB request line", line(2_000_000), 400),
        ("200 header fields", headers(200, 1), 431),
        // More fields than the parser's table (256): a parse error, 400 (nginx: 400 too).
        ("3000 header fields", headers(3000, 1), 400),
        ("one 200 KB field", headers(1, 200_000), 431),
    ];
    refused(&g, &o, &cases).await;
    // The gateway is still up and serving.
    let r = send(
        &g,
        "GET /ok HTTP/1.1\r\nHost: s.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status(), Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_each_parsed_and_checked() {
    let o = RecordingOrigin::start().await;
    let g = gateway(&o, "").await;
    // Pipelining is off (pingora's default): the first request is answered, the connection
    // closes, and whatever was sent behind it is dropped unread, so no second request (smuggled
    // or not) reaches the origin from a pipelined batch.
    let r = send(
        &g,
        format!("GET /one HTTP/1.1\r\nHost: s.test\r\n\r\n{SMUGGLED}"),
    )
    .await;
    assert_eq!(r.statuses(), [200], "{}", r.text);
    assert!(r.closed, "the connection stays open after pipelined bytes");
    let r = send(
        &g,
        "POST /two HTTP/1.1\r\nHost: s.test\r\nContent-Length: 3\r\n\r\nabcGET /b?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E HTTP/1.1\r\nHost: s.test\r\n\r\n",
    )
    .await;
    assert_eq!(r.statuses(), [200], "{}", r.text);
    assert!(r.closed);
    // A request hidden in a declared body is body bytes, and arrives as such.
    let r = send(
        &g,
        format!("POST /c HTTP/1.1\r\nHost: s.test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{SMUGGLED}", SMUGGLED.len()),
    )
    .await;
    assert_eq!(r.statuses(), [200], "{}", r.text);
    // A refused request closes the connection: what follows is never parsed.
    let r = send(
        &g,
        format!("GET /e HTTP/1.1\r\nHost: s.test\r\nHost: s.test\r\n\r\n{SMUGGLED}"),
    )
    .await;
    assert_eq!(r.statuses(), [400]);
    assert!(r.closed);
    // Sequential keep-alive requests (each sent after the previous answer) are all served.
    let addr = g.http;
    let n = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut served = 0;
        for i in 0..3 {
            s.write_all(format!("GET /k{i} HTTP/1.1\r\nHost: s.test\r\n\r\n").as_bytes())
                .unwrap();
            let mut buf = Vec::new();
            let mut b = [0u8; 4096];
            while !buf.ends_with(b"0\r\n\r\n")
                && !String::from_utf8_lossy(&buf).contains("\r\n\r\nok")
            {
                let n = s.read(&mut b).unwrap();
                assert!(n > 0, "closed after {served} keep-alive requests");
                buf.extend_from_slice(&b[..n]);
            }
            served += 1;
        }
        served
    })
    .await
    .unwrap();
    assert_eq!(n, 3);
    assert_eq!(o.targets(), ["/one", "/two", "/c", "/k0", "/k1", "/k2"]);
    assert!(
        o.requests()[2].body.starts_with(b"GET /smuggled"),
        "the hidden request arrived as the body it was declared to be"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waf_sees_every_body_byte_the_origin_sees() {
    let o = RecordingOrigin::start().await;
    let g = gateway(&o, "").await;
    let attack = "cmd=%3Bcat%20%2Fetc%2Fpasswd";
    let form = "Content-Type: application/x-www-form-urlencoded\r\nConnection: close\r\n";
    let chunked = |chunks: &[&str], ext: &str| {
        let mut body = String::new();
        for c in chunks {
            body.push_str(&format!("{:x}{ext}\r\n{c}\r\n", c.len()));
        }
        format!("POST /submit HTTP/1.1\r\nHost: s.test\r\n{form}Transfer-Encoding: chunked\r\n\r\n{body}0\r\n\r\n")
    };
    let split: Vec<String> = attack.chars().map(|c| c.to_string()).collect();
    let split: Vec<&str> = split.iter().map(String::as_str).collect();
    let cases: Vec<(&str, String)> = vec![
        ("attack in a later chunk", chunked(&["a=1&b=2&", &"c".repeat(3000), "&", attack], "")),
        ("attack split across chunks", chunked(&["a=1&", &attack[..9], &attack[9..]], "")),
        ("one byte per chunk", chunked(&split, "")),
        ("chunks with extensions", chunked(&["a=1&", attack], ";x=y")),
        ("Content-Length body", format!("POST /submit HTTP/1.1\r\nHost: s.test\r\n{form}Content-Length: {}\r\n\r\n{attack}", attack.len())),
        ("attack after a large clean prefix", format!("POST /submit HTTP/1.1\r\nHost: s.test\r\n{form}Content-Length: {}\r\n\r\nz={}&{attack}", attack.len() + 60_003, "z".repeat(60_000))),
    ];
    for (name, raw) in &cases {
        let r = send(&g, raw.clone()).await;
        assert_eq!(r.status(), Some(403), "{name}: {}", r.text);
    }
    assert!(
        o.requests().iter().all(|s| s.body.is_empty()),
        "a blocked body reached the origin"
    );
    assert!(!o.raw_text().contains("passwd"), "{}", o.raw_text());
    // The same framing with a clean body passes whole.
    let r = send(&g, chunked(&["a=1&", "b=2"], ";x=y")).await;
    assert_eq!(r.status(), Some(200), "{}", r.text);
    assert_eq!(o.requests().last().unwrap().body, b"a=1&b=2");
}
