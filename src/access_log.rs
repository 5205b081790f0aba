//! The access log: one JSON line per request, written by a dedicated thread off the request path.
//!
//! Requests format their line and hand it to a bounded channel; if the writer falls behind the
//! line is dropped and counted rather than slowing requests down. [`AccessLog::reopen`] (on
//! SIGUSR1) makes the writer reopen its file, for logrotate.

use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use crate::snapshot::AccessLogTarget;

/// One access log line. Fields reserved for features that have not acted stay empty.
#[derive(Debug, Serialize, Default)]
pub struct AccessRecord<'a> {
    pub time: String,
    pub request_id: &'a str,
    pub site: &'a str,
    pub client_ip: String,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub protocol: &'a str,
    pub status: u16,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub upstream_addr: String,
    pub upstream_status: Option<u16>,
    pub duration_ms: f64,
    pub upstream_duration_ms: Option<f64>,
    pub user_agent: &'a str,
    pub referer: &'a str,
    /// What Egret did: proxied, blocked, limited, challenged, substituted, error, unknown_host, rejected.
    pub action: &'a str,
    pub waf_action: &'a str,
    pub waf_rules: &'a str,
    pub waf_score: Option<u32>,
    pub ratelimit_policy: &'a str,
    pub ratelimit_key: &'a str,
    pub ratelimit_action: &'a str,
    pub deface_action: &'a str,
    pub error: &'a str,
}

/// Handle to the access log writer; cheap to clone.
#[derive(Clone)]
pub struct AccessLog {
    tx: Option<SyncSender<Vec<u8>>>,
    reopen: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
}

/// Lines queued at most before new lines are dropped.
const QUEUE: usize = 65_536;

impl AccessLog {
    /// Starts the writer thread for `target`. `Off` starts nothing.
    pub fn start(target: &AccessLogTarget) -> std::io::Result<AccessLog> {
        let reopen = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let tx = match target {
            AccessLogTarget::Off => None,
            AccessLogTarget::Stdout => {
                let (tx, rx) = sync_channel(QUEUE);
                std::thread::Builder::new()
                    .name("egret-access-log".into())
                    .spawn(move || write_loop(rx, Sink::Stdout, None))?;
                Some(tx)
            }
            AccessLogTarget::File(path) => {
                let f = open_append(path)?;
                let (tx, rx) = sync_channel(QUEUE);
                let r = reopen.clone();
                let path = path.clone();
                std::thread::Builder::new()
                    .name("egret-access-log".into())
                    .spawn(move || write_loop(rx, Sink::File(f), Some((path, r))))?;
                Some(tx)
            }
        };
        Ok(AccessLog {
            tx,
            reopen,
            dropped,
        })
    }

    /// A log that discards everything.
    pub fn off() -> AccessLog {
        AccessLog {
            tx: None,
            reopen: Arc::new(AtomicBool::new(false)),
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn is_on(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues one record. Never blocks.
    pub fn write(&self, rec: &AccessRecord<'_>) {
        let Some(tx) = &self.tx else { return };
        let mut line = match serde_json::to_vec(rec) {
            Ok(l) => l,
            Err(_) => return,
        };
        line.push(b'\n');
        if let Err(TrySendError::Full(_)) = tx.try_send(line) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues any serializable value as one line (the WAF audit log). Never blocks.
    pub fn write_json(&self, value: &serde_json::Value) {
        let Some(tx) = &self.tx else { return };
        let mut line = value.to_string().into_bytes();
        line.push(b'\n');
        if let Err(TrySendError::Full(_)) = tx.try_send(line) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Asks the writer to reopen its file (logrotate's postrotate SIGUSR1).
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Relaxed);
    }

    /// Lines dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

enum Sink {
    Stdout,
    File(std::fs::File),
}

fn open_append(path: &PathBuf) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

fn write_loop(rx: Receiver<Vec<u8>>, mut sink: Sink, reopen: Option<(PathBuf, Arc<AtomicBool>)>) {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    while let Ok(first) = rx.recv() {
        buf.extend_from_slice(&first);
        // Batch whatever else is queued into one write.
        while buf.len() < 256 * 1024 {
            match rx.try_recv() {
                Ok(l) => buf.extend_from_slice(&l),
                Err(_) => break,
            }
        }
        if let Some((path, flag)) = &reopen {
            if flag.swap(false, Ordering::Relaxed) {
                match open_append(path) {
                    Ok(f) => sink = Sink::File(f),
                    Err(e) => log::error!("access log: cannot reopen {}: {e}", path.display()),
                }
            }
        }
        let res = match &mut sink {
            Sink::Stdout => std::io::stdout().lock().write_all(&buf),
            Sink::File(f) => f.write_all(&buf),
        };
        if let Err(e) = res {
            log::error!("access log: write failed: {e}");
        }
        buf.clear();
    }
}

/// RFC 3339 time with milliseconds in UTC, e.g. `2026-11-25T12:43:15.123Z`.
pub fn rfc3339_now() -> String {
    let now = std::time::SystemTime::now();
    let d = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let ms = d.subsec_millis();
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, dd) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// RFC 3339 UTC time of a Unix timestamp in seconds.
pub fn rfc3339_from_unix(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil conversion.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_417), (2025, 11, 25));
    }

    #[test]
    fn writes_and_reopens_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::start(&AccessLogTarget::File(path.clone())).unwrap();
        log.write(&AccessRecord {
            request_id: "r1",
            status: 200,
            ..Default::default()
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::read_to_string(&path)
            .unwrap_or_default()
            .is_empty()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::fs::rename(&path, dir.path().join("access.log.1")).unwrap();
        log.reopen();
        log.write(&AccessRecord {
            request_id: "r2",
            status: 404,
            ..Default::default()
        });
        while !path.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        while std::fs::read_to_string(&path)
            .unwrap_or_default()
            .is_empty()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let old = std::fs::read_to_string(dir.path().join("access.log.1")).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert!(old.contains("\"r1\""), "{old}");
        assert!(new.contains("\"r2\""), "{new}");
        let v: serde_json::Value = serde_json::from_str(new.trim()).unwrap();
        assert_eq!(v["status"], 404);
    }
}
