//! TLS termination: certificates per site chosen by SNI, policy, and certificate checks.

pub mod acme;
pub mod certs;
pub mod resolver;

pub use certs::{CertInfo, LoadedCert};
pub use resolver::{CertStore, SniCapture, SniResolver, TlsInfo};

/// Installs the process-wide rustls crypto provider before any TLS is set up. With
/// `tls13_only`, TLS 1.2 suites are removed, so TLS 1.2 clients are refused (pingora has no
/// per-listener version setting; this also applies to TLS towards origins).
pub fn install_crypto_provider(tls13_only: bool) {
    let mut p = rustls::crypto::ring::default_provider();
    if tls13_only {
        p.cipher_suites
            .retain(|cs| matches!(cs, rustls::SupportedCipherSuite::Tls13(_)));
    }
    let _ = p.install_default();
}
