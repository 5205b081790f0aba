//! Certificates for the demo (and the tests): a local CA and leaf certificates for host names.

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use std::path::Path;

/// A certificate authority that can issue leaf certificates.
pub struct TestCa {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

impl TestCa {
    /// A new self-signed CA named `cn`.
    pub fn new(cn: &str) -> anyhow::Result<TestCa> {
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, cn);
        p.distinguished_name.push(DnType::OrganizationName, "Egret");
        let key = KeyPair::generate()?;
        let cert = p.self_signed(&key)?;
        Ok(TestCa { cert, key })
    }

    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf certificate for `names` valid for `days` days from now (negative: already expired).
    /// Returns (chain PEM: leaf then CA, key PEM).
    pub fn issue(&self, names: &[&str], days: i64) -> anyhow::Result<(String, String)> {
        let mut p =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        p.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("egret"),
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs() as i64;
        let (nb, na) = if days >= 0 {
            (now - 86_400, now + days * 86_400)
        } else {
            (now + (days - 30) * 86_400, now + days * 86_400)
        };
        p.not_before = rcgen::date_time_ymd(1970, 1, 1) + time_secs(nb);
        p.not_after = rcgen::date_time_ymd(1970, 1, 1) + time_secs(na);
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &self.cert, &self.key)?;
        Ok((
            format!("{}{}", cert.pem(), self.cert.pem()),
            key.serialize_pem(),
        ))
    }
}

fn time_secs(s: i64) -> std::time::Duration {
    std::time::Duration::from_secs(s.max(0) as u64)
}

/// The demo's sites and the names their certificates carry.
pub const DEMO_CERTS: &[(&str, &[&str])] = &[
    ("www.demo.gov.cn", &["www.demo.gov.cn", "demo.gov.cn"]),
    ("jyj.demo.gov.cn", &["jyj.demo.gov.cn", "*.jyj.demo.gov.cn"]),
];

/// Makes sure `dir` holds the demo CA and site certificates, creating them when missing.
/// Returns true when it generated new ones.
pub fn ensure_demo_certs(dir: &Path) -> anyhow::Result<bool> {
    let all_there = dir.join("ca.crt").exists()
        && DEMO_CERTS.iter().all(|(n, _)| {
            dir.join(format!("{n}.crt")).exists() && dir.join(format!("{n}.key")).exists()
        });
    if all_there {
        return Ok(false);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let ca = TestCa::new("Egret Demo CA")?;
    std::fs::write(dir.join("ca.crt"), ca.cert_pem())?;
    for (name, names) in DEMO_CERTS {
        let (chain, key) = ca.issue(names, 365)?;
        std::fs::write(dir.join(format!("{name}.crt")), chain)?;
        write_private(&dir.join(format!("{name}.key")), key.as_bytes())?;
    }
    Ok(true)
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}
