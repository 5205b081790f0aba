//! Automatic certificates with ACME (RFC 8555, HTTP-01): a background service that obtains and
//! renews the certificate of every site with `[tls] acme = true`, answers the CA's HTTP-01
//! challenges on the plain HTTP listener, stores the account and certificates under
//! `[acme] state_dir`, and reloads the configuration so new handshakes use the new certificate.
//! Failures are logged, shown in the admin status and retried with backoff (5 seconds, doubling,
//! at most 1 hour).

use crate::snapshot::AcmeSettings;
use crate::state::AppState;
use async_trait::async_trait;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use parking_lot::Mutex;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// HTTP-01 tokens being validated now: token -> key authorization.
#[derive(Default)]
pub struct ChallengeTokens {
    map: Mutex<HashMap<String, String>>,
}

impl ChallengeTokens {
    /// The key authorization for a `/.well-known/acme-challenge/TOKEN` request.
    pub fn answer(&self, token: &str) -> Option<String> {
        self.map.lock().get(token).cloned()
    }
    fn set(&self, token: String, key_auth: String) {
        self.map.lock().insert(token, key_auth);
    }
    fn remove(&self, token: &str) {
        self.map.lock().remove(token);
    }
}

/// The background service.
pub struct AcmeManager {
    pub state: Arc<AppState>,
}

/// Per-site retry state.
struct Backoff {
    failures: u32,
    next: Instant,
}

#[async_trait]
impl BackgroundService for AcmeManager {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut backoff: HashMap<String, Backoff> = HashMap::new();
        let mut wait = Duration::from_millis(500);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            let snap = self.state.snapshot.load_full();
            let Some(acme) = snap.acme.clone() else {
                wait = Duration::from_secs(30);
                continue;
            };
            wait = acme.check_interval;
            for (site, hosts) in &acme.sites {
                if backoff.get(site).is_some_and(|b| Instant::now() < b.next)
                    || !needs_certificate(&acme, site)
                {
                    continue;
                }
                match issue(&self.state, &acme, site, hosts).await {
                    Ok(()) => {
                        backoff.remove(site);
                        log::info!(
                            "acme: certificate for site {site} ({}) issued",
                            hosts.join(", ")
                        );
                        let state = self.state.clone();
                        let _ = tokio::task::spawn_blocking(move || state.reload()).await;
                    }
                    Err(e) => {
                        let b = backoff.entry(site.clone()).or_insert(Backoff {
                            failures: 0,
                            next: Instant::now(),
                        });
                        b.failures += 1;
                        // 5 s, 10 s, 20 s ... at most an hour: a CA (or network) that is not
                        // up yet when the gateway starts is retried soon.
                        let delay =
                            Duration::from_secs(5u64.saturating_mul(1 << (b.failures - 1).min(10)))
                                .min(Duration::from_secs(3600));
                        b.next = Instant::now() + delay;
                        log::error!(
                            "acme: site {site}: {e} (attempt {}, next in {delay:?})",
                            b.failures
                        );
                        wait = wait.min(delay);
                    }
                }
            }
        }
    }
}

/// Whether a site has no certificate yet, or one that expires within `renew_before`.
pub fn needs_certificate(acme: &AcmeSettings, site: &str) -> bool {
    let Ok(pem) = std::fs::read(acme.cert_path(site)) else {
        return true;
    };
    let Some(Ok(der)) = rustls_pemfile::certs(&mut pem.as_slice()).next() else {
        return true;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return true;
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    cert.validity().not_after.timestamp() - now < acme.renew_before.as_secs() as i64
}

fn builder(acme: &AcmeSettings) -> Result<instant_acme::AccountBuilder, String> {
    match &acme.ca_file {
        Some(ca) => Account::builder_with_root(ca)
            .map_err(|e| format!("ACME client with root {}: {e}", ca.display())),
        None => Account::builder().map_err(|e| format!("ACME client: {e}")),
    }
}

/// The ACME account: loaded from the state directory, or created and saved there.
async fn account(acme: &AcmeSettings) -> Result<Account, String> {
    let path = acme.state_dir.join("account.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(creds) = serde_json::from_str::<AccountCredentials>(&text) {
            return builder(acme)?
                .from_credentials(creds)
                .await
                .map_err(|e| format!("ACME account {}: {e}", path.display()));
        }
    }
    let contact: Vec<&str> = acme.contact.iter().map(String::as_str).collect();
    let (account, creds) = builder(acme)?
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            acme.directory.clone(),
            None,
        )
        .await
        .map_err(|e| format!("cannot create an ACME account at {}: {e}", acme.directory))?;
    let json = serde_json::to_string(&creds).map_err(|e| e.to_string())?;
    write_private(&path, json.as_bytes())?;
    Ok(account)
}

/// Orders, validates (HTTP-01) and stores a certificate for `hosts`.
async fn issue(
    state: &AppState,
    acme: &AcmeSettings,
    site: &str,
    hosts: &[String],
) -> Result<(), String> {
    if hosts.is_empty() {
        return Err("no exact host names to certify".into());
    }
    let account = account(acme).await?;
    let identifiers: Vec<Identifier> = hosts.iter().map(|h| Identifier::Dns(h.clone())).collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|e| format!("new order: {e}"))?;
    let mut tokens = Vec::new();
    {
        let mut authorizations = order.authorizations();
        while let Some(result) = authorizations.next().await {
            let mut authz = result.map_err(|e| format!("authorization: {e}"))?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => return Err(format!("authorization is {other:?}")),
            }
            let mut challenge = authz
                .challenge(ChallengeType::Http01)
                .ok_or("the CA offers no http-01 challenge")?;
            let token = challenge.token.clone();
            state.acme_tokens.set(
                token.clone(),
                challenge.key_authorization().as_str().to_string(),
            );
            tokens.push(token);
            challenge
                .set_ready()
                .await
                .map_err(|e| format!("challenge: {e}"))?;
        }
    }
    let retry = RetryPolicy::default();
    let status = order.poll_ready(&retry).await;
    for t in &tokens {
        state.acme_tokens.remove(t);
    }
    let status = status.map_err(|e| format!("order: {e}"))?;
    if status != OrderStatus::Ready {
        return Err(format!("order is {status:?} after validation"));
    }
    let key_pem = order
        .finalize()
        .await
        .map_err(|e| format!("finalize: {e}"))?;
    let chain_pem = order
        .poll_certificate(&retry)
        .await
        .map_err(|e| format!("certificate: {e}"))?;
    write_private(&acme.key_path(site), key_pem.as_bytes())?;
    write_private(&acme.cert_path(site), chain_pem.as_bytes())?;
    Ok(())
}

/// Writes `data` to `path` atomically (temporary file, then rename), readable by the owner only.
fn write_private(path: &Path, data: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().ok_or("no parent directory")?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    f.write_all(data)
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot rename to {}: {e}", path.display()))
}
