//! On-disk baseline store: the approved copy of each protected page and its features.
//!
//! Owns the layout under the state directory and its safety rules:
//! `<state_dir>/<h(site)>/<h(path)>.html.gz` (the approved HTML, gzip) and
//! `<h(path)>.json` (a [`BaselineRecord`]: site, path, approval time, SHA-256 of the copy, policy
//! digest, [`Features`]), where `h` is the first 32 hex digits of SHA-256. Request paths and
//! site names never become file names, so nothing a client sends can traverse the file system.
//! Every write goes to a temporary file in the same directory, is synced, then renamed over the
//! old file, so readers (other nodes sharing the directory included) see the old or the new
//! version, never half of one; a copy and record from two different approvals are caught by the
//! hash check on load. Synchronous `std::fs`: call it off the request path or accept the cost of
//! one small read.

use std::borrow::Cow;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::decode::decode_body;
use super::error::{BaselineError, ExtractError};
use super::extract::extract;
use super::features::{Features, FEATURES_VERSION};
use super::policy::{hex, CheckPolicy};
use crate::request_path::normalize_path;

/// Format version of records.
pub const RECORD_VERSION: u32 = 1;

/// What is stored next to each approved copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineRecord {
    /// Record format version.
    pub version: u32,
    /// Site name.
    pub site: String,
    /// Request path (query string removed).
    pub path: String,
    /// Approval time, seconds since the Unix epoch.
    pub approved_at: u64,
    /// SHA-256 (hex) of the approved HTML.
    pub content_sha256: String,
    /// Length of the approved HTML.
    pub content_length: usize,
    /// Charset from the origin's `Content-Type`, when it gave one.
    #[serde(default)]
    pub charset: Option<String>,
    /// Digest of the policy the features were extracted with (re-extract when it differs).
    pub policy_digest: String,
    /// The approved page's features.
    pub features: Features,
}

/// A page to approve: the origin's decoded body and where it came from.
#[derive(Debug, Clone, Copy)]
pub struct Approval<'a> {
    /// Site name.
    pub site: &'a str,
    /// Request path (a query string is dropped).
    pub path: &'a str,
    /// Decoded body (Content-Encoding undone).
    pub html: &'a [u8],
    /// Charset from the `Content-Type`, if any.
    pub charset: Option<&'a str>,
}

/// An approved copy with its record.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    /// The record.
    pub record: BaselineRecord,
    /// The approved HTML (decoded).
    pub html: Vec<u8>,
}

impl Baseline {
    /// The baseline's features under `policy`: the stored ones when they were extracted with
    /// this policy and feature format, else re-extracted from the approved copy (after a config
    /// change such as a new dynamic region).
    pub fn features_for(&self, policy: &CheckPolicy) -> Result<Cow<'_, Features>, ExtractError> {
        if self.record.policy_digest == policy.digest()
            && self.record.features.version == FEATURES_VERSION
        {
            return Ok(Cow::Borrowed(&self.record.features));
        }
        extract(&self.html, self.record.charset.as_deref(), policy).map(Cow::Owned)
    }
}

/// The baseline directory.
#[derive(Debug, Clone)]
pub struct BaselineStore {
    dir: PathBuf,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn short_hash(s: &str) -> String {
    let mut h = hex(&Sha256::digest(s.as_bytes()));
    h.truncate(32);
    h
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BaselineError + '_ {
    move |source| BaselineError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The path a baseline is kept under: normalized, query string and fragment dropped.
pub fn page_path(path: &str) -> Cow<'_, str> {
    normalize_path(path)
}

/// Writes `data` to `target` atomically (temp file in the same directory, sync, rename).
fn write_atomic(target: &Path, data: &[u8]) -> Result<(), BaselineError> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".tmp.{}.{}.{name}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(data).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, target).map_err(io_err(target))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    } else if let Ok(d) = fs::File::open(dir) {
        // Persist the rename; not fatal where directories cannot be synced.
        let _ = d.sync_all();
    }
    result
}

impl BaselineStore {
    /// Opens (creating if needed) the store at `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, BaselineError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(Self { dir })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn site_dir(&self, site: &str) -> PathBuf {
        self.dir.join(short_hash(site))
    }

    fn files(&self, site: &str, path: &str) -> (PathBuf, PathBuf) {
        let base = self.site_dir(site).join(short_hash(&page_path(path)));
        (base.with_extension("html.gz"), base.with_extension("json"))
    }

    /// Approves `page`: extracts its features under `policy` and stores copy and record.
    pub fn approve(
        &self,
        page: &Approval<'_>,
        policy: &CheckPolicy,
        now: SystemTime,
    ) -> Result<BaselineRecord, BaselineError> {
        let features = extract(page.html, page.charset, policy).map_err(BaselineError::Extract)?;
        self.approve_with_features(page, features, policy.digest(), now)
    }

    /// Stores `page` as approved with features already extracted under `policy_digest`.
    pub fn approve_with_features(
        &self,
        page: &Approval<'_>,
        features: Features,
        policy_digest: &str,
        now: SystemTime,
    ) -> Result<BaselineRecord, BaselineError> {
        let dir = self.site_dir(page.site);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let (copy, record_path) = self.files(page.site, page.path);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(page.html).map_err(io_err(&copy))?;
        let gz = gz.finish().map_err(io_err(&copy))?;
        let record = BaselineRecord {
            version: RECORD_VERSION,
            site: page.site.to_owned(),
            path: page_path(page.path).into_owned(),
            approved_at: now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            content_sha256: hex(&Sha256::digest(page.html)),
            content_length: page.html.len(),
            charset: page.charset.map(str::to_owned),
            policy_digest: policy_digest.to_owned(),
            features,
        };
        let json = serde_json::to_vec_pretty(&record).map_err(|source| BaselineError::Corrupt {
            path: record_path.clone(),
            source,
        })?;
        write_atomic(&copy, &gz)?;
        write_atomic(&record_path, &json)?;
        Ok(record)
    }

    /// The record of (`site`, `path`), if approved.
    pub fn record(&self, site: &str, path: &str) -> Result<Option<BaselineRecord>, BaselineError> {
        let (_, record_path) = self.files(site, path);
        read_record(&record_path)
    }

    /// The gzip-compressed approved copy, as stored (to serve with `Content-Encoding: gzip`).
    pub fn compressed_copy(
        &self,
        site: &str,
        path: &str,
    ) -> Result<Option<Vec<u8>>, BaselineError> {
        let (copy, _) = self.files(site, path);
        match fs::read(&copy) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&copy)(e)),
        }
    }

    /// The approved copy and record of (`site`, `path`), if approved; the copy is decompressed
    /// within `max_bytes` and checked against the recorded hash.
    pub fn load(
        &self,
        site: &str,
        path: &str,
        max_bytes: usize,
    ) -> Result<Option<Baseline>, BaselineError> {
        let (copy, record_path) = self.files(site, path);
        let Some(record) = read_record(&record_path)? else {
            return Ok(None);
        };
        let Some(gz) = self.compressed_copy(site, path)? else {
            return Err(BaselineError::HashMismatch { path: copy });
        };
        let html = decode_body(Some("gzip"), &gz, max_bytes)
            .map_err(|source| BaselineError::Decode {
                path: copy.clone(),
                source,
            })?
            .into_owned();
        if hex(&Sha256::digest(&html)) != record.content_sha256 {
            return Err(BaselineError::HashMismatch { path: copy });
        }
        Ok(Some(Baseline { record, html }))
    }

    /// Removes the baseline of (`site`, `path`); returns whether there was one.
    pub fn remove(&self, site: &str, path: &str) -> Result<bool, BaselineError> {
        let (copy, record_path) = self.files(site, path);
        let mut existed = false;
        for p in [&record_path, &copy] {
            match fs::remove_file(p) {
                Ok(()) => existed = true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(p)(e)),
            }
        }
        Ok(existed)
    }

    /// Every record of `site` (or of all sites), sorted by site and path, plus the errors of
    /// unreadable records (listed, not fatal).
    pub fn list(
        &self,
        site: Option<&str>,
    ) -> Result<(Vec<BaselineRecord>, Vec<BaselineError>), BaselineError> {
        let dirs: Vec<PathBuf> = match site {
            Some(s) => vec![self.site_dir(s)],
            None => {
                let mut v = Vec::new();
                for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
                    let entry = entry.map_err(io_err(&self.dir))?;
                    if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        v.push(entry.path());
                    }
                }
                v
            }
        };
        let mut records = Vec::new();
        let mut errors = Vec::new();
        for dir in dirs {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&dir)(e)),
            };
            for entry in entries {
                let entry = entry.map_err(io_err(&dir))?;
                let p = entry.path();
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with('.') || !name.ends_with(".json") {
                    continue;
                }
                match read_record(&p) {
                    Ok(Some(r)) => records.push(r),
                    Ok(None) => {}
                    Err(e) => errors.push(e),
                }
            }
        }
        records.sort_by(|a, b| (&a.site, &a.path).cmp(&(&b.site, &b.path)));
        Ok((records, errors))
    }
}

fn read_record(path: &Path) -> Result<Option<BaselineRecord>, BaselineError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| BaselineError::Corrupt {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn page<'a>(site: &'a str, path: &'a str, html: &'a [u8]) -> Approval<'a> {
        Approval {
            site,
            path,
            html,
            charset: None,
        }
    }

    fn features(title: &str) -> Features {
        Features {
            title: title.into(),
            ..Features::default()
        }
    }

    #[test]
    fn round_trip_list_and_reapprove() {
        let tmp = tempfile::tempdir().unwrap();
        let store = BaselineStore::open(tmp.path().join("state")).unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let html = "<html><title>首页</title></html>".as_bytes();
        let rec = store
            .approve_with_features(
                &page("www.demo.gov.cn", "/index.htm?x=1", html),
                features("首页"),
                "pd",
                now,
            )
            .unwrap();
        assert_eq!(rec.path, "/index.htm");
        assert_eq!(rec.approved_at, 1_700_000_000);
        let loaded = store
            .load("www.demo.gov.cn", "/index.htm", 1 << 20)
            .unwrap()
            .unwrap();
        assert_eq!(loaded.html, html);
        assert_eq!(loaded.record, rec);
        assert!(store
            .load("www.demo.gov.cn", "/other", 1 << 20)
            .unwrap()
            .is_none());
        store
            .approve_with_features(
                &page("www.demo.gov.cn", "/", b"<p>home</p>"),
                features("home"),
                "pd",
                now,
            )
            .unwrap();
        store
            .approve_with_features(
                &page("b.gov.cn", "/", b"<p>b</p>"),
                features("b"),
                "pd",
                now,
            )
            .unwrap();
        let (all, errors) = store.list(None).unwrap();
        assert!(errors.is_empty());
        let names: Vec<(&str, &str)> = all
            .iter()
            .map(|r| (r.site.as_str(), r.path.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("b.gov.cn", "/"),
                ("www.demo.gov.cn", "/"),
                ("www.demo.gov.cn", "/index.htm")
            ]
        );
        assert_eq!(store.list(Some("b.gov.cn")).unwrap().0.len(), 1);
        // Re-approval replaces; the stored copy is gzip.
        store
            .approve_with_features(
                &page("b.gov.cn", "/", b"<p>b2</p>"),
                features("b2"),
                "pd",
                now,
            )
            .unwrap();
        let b = store.load("b.gov.cn", "/", 1 << 20).unwrap().unwrap();
        assert_eq!(b.html, b"<p>b2</p>");
        let gz = store.compressed_copy("b.gov.cn", "/").unwrap().unwrap();
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
        assert!(store.remove("b.gov.cn", "/").unwrap());
        assert!(store.load("b.gov.cn", "/", 1 << 20).unwrap().is_none());
        // No temporary files are left behind.
        for entry in fs::read_dir(store.site_dir("www.demo.gov.cn")).unwrap() {
            assert!(!entry
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".tmp"));
        }
    }

    #[test]
    fn hostile_paths_stay_inside_the_store() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        let store = BaselineStore::open(&state).unwrap();
        let now = SystemTime::now();
        for (site, path) in [
            ("www.demo.gov.cn", "/../../../../etc/passwd"),
            ("../../outside", "/x"),
            ("www.demo.gov.cn", "/a/%2e%2e/%2e%2e/b"),
            ("www.demo.gov.cn", "/\0/evil"),
            ("www.demo.gov.cn", "C:\\Windows\\win.ini"),
        ] {
            store
                .approve_with_features(&page(site, path, b"x"), features("t"), "pd", now)
                .unwrap();
            assert_eq!(store.load(site, path, 1024).unwrap().unwrap().html, b"x");
        }
        // Everything written is exactly two levels below the state directory, with hashed names.
        let mut files = 0;
        for site_dir in fs::read_dir(&state).unwrap() {
            let site_dir = site_dir.unwrap().path();
            assert_eq!(site_dir.parent(), Some(state.as_path()));
            for f in fs::read_dir(&site_dir).unwrap() {
                let name = f.unwrap().file_name().to_string_lossy().into_owned();
                assert!(
                    name.chars()
                        .all(|c| c.is_ascii_hexdigit() || c == '.' || c.is_ascii_alphabetic()),
                    "{name}"
                );
                files += 1;
            }
        }
        assert_eq!(files, 10);
        assert!(!tmp.path().join("outside").exists());
    }

    #[test]
    fn tampered_store_files_are_detected() {
        let tmp = tempfile::tempdir().unwrap();
        let store = BaselineStore::open(tmp.path()).unwrap();
        store
            .approve_with_features(
                &page("s", "/", b"<p>ok</p>"),
                features("t"),
                "pd",
                SystemTime::now(),
            )
            .unwrap();
        let (copy, record) = store.files("s", "/");
        // A copy swapped for another page fails the hash check.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"<p>evil</p>").unwrap();
        fs::write(&copy, gz.finish().unwrap()).unwrap();
        assert!(matches!(
            store.load("s", "/", 1024),
            Err(BaselineError::HashMismatch { .. })
        ));
        // A corrupt record is an error naming the file, and listed as such.
        fs::write(&record, b"{not json").unwrap();
        let err = store.load("s", "/", 1024).unwrap_err();
        assert!(err.to_string().contains(".json"), "{err}");
        let (records, errors) = store.list(Some("s")).unwrap();
        assert!(records.is_empty());
        assert_eq!(errors.len(), 1);
    }
}
