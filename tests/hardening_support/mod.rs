//! Support for the hardening tests: a recording raw-TCP origin (every request it parsed, byte for
//! byte), scripted broken origins, raw clients that report whether the connection was closed,
//! and process probes (open descriptors, metrics).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream as TokioStream};

/// One request as the origin parsed it: the raw header block and the decoded body.
#[derive(Debug, Clone)]
pub struct Seen {
    pub head: String,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn target(&self) -> &str {
        self.head.split(' ').nth(1).unwrap_or("")
    }
}

/// A strict HTTP/1.1 origin on a raw socket that records every request it receives and answers
/// each with `200 ok` (keep-alive). It reads bodies by Content-Length or chunked framing.
pub struct RecordingOrigin {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub raw: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RecordingOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RecordingOrigin {
    pub async fn start() -> RecordingOrigin {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let raw: Arc<Mutex<Vec<u8>>> = Arc::default();
        let (s2, r2) = (seen.clone(), raw.clone());
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = l.accept().await {
                tokio::spawn(record_conn(sock, s2.clone(), r2.clone()));
            }
        });
        RecordingOrigin {
            addr,
            seen,
            raw,
            task,
        }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Every byte the origin received, on all connections, as text.
    pub fn raw_text(&self) -> String {
        String::from_utf8_lossy(&self.raw.lock().unwrap()).into_owned()
    }

    pub fn targets(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|s| s.target().to_string())
            .collect()
    }
}

async fn record_conn(mut sock: TokioStream, seen: Arc<Mutex<Vec<Seen>>>, raw: Arc<Mutex<Vec<u8>>>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut tmp = [0u8; 16384];
    loop {
        // Header.
        let end = loop {
            if let Some(p) = find(&buf, b"\r\n\r\n") {
                break p + 4;
            }
            match sock.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    raw.lock().unwrap().extend_from_slice(&tmp[..n]);
                    buf.extend_from_slice(&tmp[..n]);
                }
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let lower = head.to_ascii_lowercase();
        let chunked = lower.contains("\r\ntransfer-encoding: chunked");
        let cl: usize = lower
            .split("\r\n")
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let mut body = Vec::new();
        if chunked {
            loop {
                let line_end = loop {
                    if let Some(p) = find(&buf, b"\r\n") {
                        break p;
                    }
                    match sock.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            raw.lock().unwrap().extend_from_slice(&tmp[..n]);
                            buf.extend_from_slice(&tmp[..n]);
                        }
                    }
                };
                let line = String::from_utf8_lossy(&buf[..line_end]).into_owned();
                let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                    .unwrap_or(0);
                let need = line_end + 2 + size + 2;
                while buf.len() < need {
                    match sock.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            raw.lock().unwrap().extend_from_slice(&tmp[..n]);
                            buf.extend_from_slice(&tmp[..n]);
                        }
                    }
                }
                body.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
                buf.drain(..need);
                if size == 0 {
                    break;
                }
            }
        } else {
            while buf.len() < cl {
                match sock.read(&mut tmp).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        raw.lock().unwrap().extend_from_slice(&tmp[..n]);
                        buf.extend_from_slice(&tmp[..n]);
                    }
                }
            }
            body.extend_from_slice(&buf[..cl]);
            buf.drain(..cl);
        }
        seen.lock().unwrap().push(Seen { head, body });
        if sock
            .write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok",
            )
            .await
            .is_err()
        {
            return;
        }
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// What a raw client got back: the bytes and whether the server closed the connection.
#[derive(Debug)]
pub struct RawReply {
    pub text: String,
    pub closed: bool,
}

impl RawReply {
    pub fn status(&self) -> Option<u16> {
        self.text.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()
    }

    /// Every status line in the reply (pipelined responses).
    pub fn statuses(&self) -> Vec<u16> {
        self.text
            .match_indices("HTTP/1.1 ")
            .filter_map(|(i, _)| self.text.get(i + 9..i + 12)?.parse().ok())
            .collect()
    }
}

/// Sends `bytes` on a fresh connection and reads until the server closes it or `wait` passes
/// with nothing new; `closed` tells which.
pub fn send_raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> RawReply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    let mut last = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(15);
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                last = Instant::now();
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                if last.elapsed() > wait || Instant::now() > deadline {
                    break false;
                }
            }
            Err(_) => break true,
        }
    };
    RawReply {
        text: String::from_utf8_lossy(&out).into_owned(),
        closed,
    }
}

/// Open file descriptors of a process.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Threads of a process.
pub fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Resident set size of a process in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Value of one metric sample line (exact name and labels) in a Prometheus text scrape.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}
