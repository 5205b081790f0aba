//! Approvals shared between nodes through Redis, when `[ratelimit.redis]` is configured: an
//! approval is published as one value (record and page); other nodes pull it into their own
//! baseline store before judging the page (at most every 2 s per page). Without Redis, nodes share
//! approvals through a shared `[deface] state_dir`.

use crate::deface::{Approval, BaselineRecord, BaselineStore};
use crate::ratelimit::policy::RedisSettings;
use crate::ratelimit::shared::RedisLimiter;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime};

fn key(settings: &RedisSettings, site: &str, path: &str) -> String {
    let h = Sha256::digest(path.as_bytes());
    let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}deface:{site}:{hex}", settings.prefix)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Shared {
    record: BaselineRecord,
    html_b64: String,
}

/// Publishes an approval made on this node.
pub async fn publish(
    settings: &RedisSettings,
    redis: &RedisLimiter,
    record: &BaselineRecord,
    html: &[u8],
) -> Result<(), String> {
    let value = serde_json::to_string(&Shared {
        record: record.clone(),
        html_b64: base64::engine::general_purpose::STANDARD.encode(html),
    })
    .map_err(|e| e.to_string())?;
    let mut conn = redis.connection(settings).await?;
    let k = key(settings, &record.site, &record.path);
    tokio::time::timeout(
        settings.timeout.max(Duration::from_millis(500)),
        redis::cmd("SET")
            .arg(&k)
            .arg(value)
            .query_async::<()>(&mut conn),
    )
    .await
    .map_err(|_| "redis timed out".to_string())?
    .map_err(|e| e.to_string())
}

/// Pulls the shared approval of (`site`, `path`) into `store` when it differs from the local one.
/// Returns true when the local baseline changed.
pub async fn pull(
    settings: &RedisSettings,
    redis: &RedisLimiter,
    store: &BaselineStore,
    site: &str,
    path: &str,
) -> Result<bool, String> {
    let mut conn = redis.connection(settings).await?;
    let value: Option<String> = tokio::time::timeout(
        settings.timeout.max(Duration::from_millis(500)),
        redis::cmd("GET")
            .arg(key(settings, site, path))
            .query_async(&mut conn),
    )
    .await
    .map_err(|_| "redis timed out".to_string())?
    .map_err(|e| e.to_string())?;
    let Some(value) = value else { return Ok(false) };
    let shared: Shared =
        serde_json::from_str(&value).map_err(|e| format!("shared baseline: {e}"))?;
    let local = store.record(site, path).map_err(|e| e.to_string())?;
    if local.is_some_and(|l| l.content_sha256 == shared.record.content_sha256) {
        return Ok(false);
    }
    let html = base64::engine::general_purpose::STANDARD
        .decode(shared.html_b64)
        .map_err(|e| format!("shared baseline: {e}"))?;
    let approval = Approval {
        site,
        path,
        html: &html,
        charset: shared.record.charset.as_deref(),
    };
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(shared.record.approved_at);
    store
        .approve_with_features(
            &approval,
            shared.record.features,
            &shared.record.policy_digest,
            at,
        )
        .map_err(|e| e.to_string())?;
    Ok(true)
}
