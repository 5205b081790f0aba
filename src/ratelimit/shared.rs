//! The shared rate-limit backend: GCRA state in Redis, so several Egret nodes behind one L4
//! balancer enforce one limit. One `EVALSHA` of [`super::redis_lua::GCRA_LUA`] per policy check
//! (atomic, one round trip), with a bounded timeout. When Redis is unreachable or slow the request
//! is allowed (fail open, the default) or refused with 503, and the error is counted; the
//! connection manager reconnects by itself and checks resume when Redis is back.

use super::policy::{RedisSettings, SharedCheck};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Outcome of the shared checks for one request.
#[derive(Debug)]
pub enum SharedOutcome {
    Allow,
    /// Index of the refusing check and how long until a request would pass.
    Limited(usize, Duration),
    /// Redis could not answer in time.
    Unavailable(String),
}

/// The Redis connection, created on first use and re-created after a failure.
#[derive(Default)]
pub struct RedisLimiter {
    conn: Mutex<Option<(String, redis::aio::ConnectionManager)>>,
    last_attempt: parking_lot::Mutex<Option<Instant>>,
}

impl RedisLimiter {
    /// The connection, created on first use (at most one attempt per second while Redis is down).
    pub async fn connection(
        &self,
        settings: &RedisSettings,
    ) -> Result<redis::aio::ConnectionManager, String> {
        let mut guard = self.conn.lock().await;
        if let Some((url, c)) = guard.as_ref() {
            if *url == settings.url {
                return Ok(c.clone());
            }
        }
        {
            // Do not hammer a Redis that is down: one connection attempt per second.
            let mut last = self.last_attempt.lock();
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return Err("redis unreachable (retrying)".into());
            }
            *last = Some(Instant::now());
        }
        let client = redis::Client::open(settings.url.as_str()).map_err(|e| e.to_string())?;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout.max(Duration::from_millis(200))))
            .set_response_timeout(Some(settings.timeout));
        let c = tokio::time::timeout(
            settings.timeout.max(Duration::from_millis(500)),
            redis::aio::ConnectionManager::new_with_config(client, cfg),
        )
        .await
        .map_err(|_| "redis connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
        *guard = Some((settings.url.clone(), c.clone()));
        Ok(c)
    }

    /// Runs the checks in order; the first refusal wins.
    pub async fn check(&self, settings: &RedisSettings, checks: &[SharedCheck]) -> SharedOutcome {
        if checks.is_empty() {
            return SharedOutcome::Allow;
        }
        let mut conn = match self.connection(settings).await {
            Ok(c) => c,
            Err(e) => return SharedOutcome::Unavailable(e),
        };
        let script = redis::Script::new(super::redis_lua::GCRA_LUA);
        for (i, c) in checks.iter().enumerate() {
            let mut inv = script.key(&c.redis_key);
            inv.arg(c.interval_us).arg(c.tolerance_us);
            let res: Result<Result<(i64, i64), redis::RedisError>, _> =
                tokio::time::timeout(settings.timeout, inv.invoke_async(&mut conn)).await;
            match res {
                Ok(Ok((1, _))) => {}
                Ok(Ok((_, retry_us))) => {
                    return SharedOutcome::Limited(i, Duration::from_micros(retry_us.max(0) as u64))
                }
                Ok(Err(e)) => return SharedOutcome::Unavailable(e.to_string()),
                Err(_) => return SharedOutcome::Unavailable("redis timed out".into()),
            }
        }
        SharedOutcome::Allow
    }
}
