//! Loading and checking certificates: PEM chain and key, key/certificate match, chain order,
//! names covering the site's hosts, expiry. Everything is checked here, before pingora or rustls
//! see a file (pingora's own loader panics on a bad file).

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// What `egret certs` and the metrics show about a certificate.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CertInfo {
    pub site: String,
    pub file: PathBuf,
    pub names: Vec<String>,
    pub issuer: String,
    pub not_after_unix: i64,
    pub key_type: String,
}

impl CertInfo {
    /// Whole days until expiry (negative once expired).
    pub fn days_left(&self, now: SystemTime) -> i64 {
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs() as i64;
        (self.not_after_unix - now).div_euclid(86_400)
    }
}

/// A loaded certificate ready for the resolver, with its description and any warnings.
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    pub info: CertInfo,
    pub warnings: Vec<String>,
}

/// Warn when a certificate expires within this many days.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// Loads `cert` (PEM chain, leaf first) and `key` (PEM, PKCS#8/PKCS#1/SEC1) for `site`, checking
/// that `hosts` are covered. Errors are sentences naming the file.
pub fn load(
    site: &str,
    cert: &Path,
    key: &Path,
    ocsp: Option<&Path>,
    hosts: &[String],
    now: SystemTime,
) -> Result<LoadedCert, String> {
    let cert_pem = std::fs::read(cert)
        .map_err(|e| format!("cannot read certificate {}: {e}", cert.display()))?;
    let mut chain = Vec::new();
    for item in rustls_pemfile::certs(&mut cert_pem.as_slice()) {
        chain.push(item.map_err(|e| format!("certificate {}: invalid PEM: {e}", cert.display()))?);
    }
    if chain.is_empty() {
        return Err(format!(
            "certificate {} holds no PEM certificate",
            cert.display()
        ));
    }
    let key_pem =
        std::fs::read(key).map_err(|e| format!("cannot read key {}: {e}", key.display()))?;
    let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| format!("key {}: invalid PEM: {e}", key.display()))?
        .ok_or_else(|| format!("key {} holds no private key", key.display()))?;

    // Parse every certificate of the chain and check its order: each is issued by the next.
    let mut parsed = Vec::new();
    for (i, der) in chain.iter().enumerate() {
        let (_, c) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| {
            format!(
                "certificate {} (#{} in the chain): not X.509: {e}",
                cert.display(),
                i + 1
            )
        })?;
        parsed.push(c);
    }
    for (i, pair) in parsed.windows(2).enumerate() {
        if pair[0].issuer() != pair[1].subject() {
            return Err(format!(
                "certificate {}: chain out of order: #{} is issued by \"{}\" but #{} is \"{}\" (put the leaf first, then its issuer)",
                cert.display(),
                i + 1,
                pair[0].issuer(),
                i + 2,
                pair[1].subject()
            ));
        }
    }
    let leaf = &parsed[0];
    let not_after = leaf.validity().not_after.timestamp();
    let not_before = leaf.validity().not_before.timestamp();
    let now_unix = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    if not_after < now_unix {
        return Err(format!(
            "certificate {} expired at {}",
            cert.display(),
            leaf.validity().not_after
        ));
    }
    let mut names: Vec<String> = Vec::new();
    if let Ok(Some(san)) = leaf.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        for cn in leaf.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                names.push(s.to_ascii_lowercase());
            }
        }
    }
    for h in hosts {
        if !names.iter().any(|n| name_covers(n, h)) {
            return Err(format!(
                "certificate {} does not cover host {h:?} (it names {names:?})",
                cert.display()
            ));
        }
    }
    let key_type = key_type_name(
        leaf.public_key()
            .algorithm
            .algorithm
            .to_id_string()
            .as_str(),
    );
    let issuer = leaf.issuer().to_string();

    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let mut ck = CertifiedKey::from_der(chain.clone(), key_der, &provider).map_err(|e| {
        format!(
            "key {} does not fit certificate {}: {e}",
            key.display(),
            cert.display()
        )
    })?;
    ck.keys_match().map_err(|e| {
        format!(
            "key {} does not match certificate {}: {e}",
            key.display(),
            cert.display()
        )
    })?;
    if let Some(ocsp) = ocsp {
        let resp = std::fs::read(ocsp)
            .map_err(|e| format!("cannot read OCSP response {}: {e}", ocsp.display()))?;
        ck.ocsp = Some(resp);
    }
    let mut warnings = Vec::new();
    let info = CertInfo {
        site: site.to_string(),
        file: cert.to_path_buf(),
        names,
        issuer,
        not_after_unix: not_after,
        key_type,
    };
    let days = info.days_left(now);
    if days < EXPIRY_WARNING_DAYS {
        warnings.push(format!(
            "certificate {} expires in {days} days",
            cert.display()
        ));
    }
    if not_before > now_unix {
        warnings.push(format!(
            "certificate {} is not valid before {}",
            cert.display(),
            leaf.validity().not_before
        ));
    }
    Ok(LoadedCert {
        key: Arc::new(ck),
        info,
        warnings,
    })
}

/// Whether certificate name `pattern` (possibly `*.example.gov.cn`) covers host pattern `host`.
/// A wildcard host needs a wildcard certificate for the same suffix.
pub fn name_covers(pattern: &str, host: &str) -> bool {
    if pattern == host {
        return true;
    }
    match (pattern.strip_prefix("*."), host.strip_prefix("*.")) {
        (Some(_), Some(_)) => false,
        (Some(suffix), None) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        _ => false,
    }
}

fn key_type_name(oid: &str) -> String {
    match oid {
        "1.2.840.113549.1.1.1" => "RSA".into(),
        "1.2.840.10045.2.1" => "ECDSA".into(),
        "1.3.101.112" => "Ed25519".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_coverage() {
        assert!(name_covers("www.a.cn", "www.a.cn"));
        assert!(name_covers("*.a.cn", "www.a.cn"));
        assert!(!name_covers("*.a.cn", "a.cn"));
        assert!(!name_covers("*.a.cn", "x.www.a.cn"));
        assert!(!name_covers("*.a.cn", "*.www.a.cn"));
        assert!(name_covers("*.a.cn", "*.a.cn"));
    }
}
