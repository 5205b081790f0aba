//! Certificate choice by SNI for the one HTTPS listener, swappable at run time.
//!
//! The map lives behind an `ArcSwap`: a reload builds a new [`CertStore`] with the snapshot and
//! stores it here, so new handshakes get new certificates while open connections keep theirs.

use arc_swap::ArcSwap;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

/// Certificates by host name, compiled with the snapshot.
#[derive(Debug, Default)]
pub struct CertStore {
    pub exact: HashMap<String, Arc<CertifiedKey>>,
    /// Suffix (without `*.`) to certificate.
    pub wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// Served for an unknown or missing SNI; `None` refuses the handshake.
    pub default: Option<Arc<CertifiedKey>>,
}

impl CertStore {
    pub fn lookup(&self, name: &str) -> Option<&Arc<CertifiedKey>> {
        if let Some(c) = self.exact.get(name) {
            return Some(c);
        }
        let mut rest = name;
        while let Some(dot) = rest.find('.') {
            rest = &rest[dot + 1..];
            if let Some(c) = self.wildcard.get(rest) {
                return Some(c);
            }
        }
        None
    }
}

/// The rustls resolver given to pingora's listener.
#[derive(Debug, Default)]
pub struct SniResolver {
    pub store: ArcSwap<CertStore>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let store = self.store.load();
        let found = hello.server_name().and_then(|sni| {
            let sni = sni.trim_end_matches('.').to_ascii_lowercase();
            store.lookup(&sni).cloned()
        });
        found.or_else(|| store.default.clone())
    }
}

/// What the HTTP layer learns about the TLS connection.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    pub sni: Option<String>,
}

/// Captures the SNI at the end of the handshake (stored in the session's SSL digest).
pub struct SniCapture;

#[async_trait::async_trait]
impl TlsAccept for SniCapture {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let sni = tls
            .server_name()
            .map(|s| s.trim_end_matches('.').to_ascii_lowercase());
        Some(Arc::new(TlsInfo { sni }))
    }
}
