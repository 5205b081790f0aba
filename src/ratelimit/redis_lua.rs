//! The GCRA script for a future shared Redis backend (not used yet).
//!
//! Several Egret nodes behind one L4 balancer can enforce one limit by keeping each key's TAT
//! in Redis and running this script with `EVALSHA` (one round trip, atomic). It mirrors
//! [`Gcra::check`](super::gcra::Gcra::check): same inputs, same outcome. A Redis backend must
//! run outside the synchronous decision core (async client, bounded timeout) and fail open by
//! default when Redis is unreachable, counting the errors.
//!
//! Key: `egret:rl:{policy}:{kind}:{hex(SHA-256(value))}`, derived the same way on every node.
//! (The in-process [`KeyHash`](super::store::KeyHash) uses a per-process random SipHash key and
//! cannot be shared; the backend needs the (policy, kind, value) parts, which
//! `Policies::key_hash` has at hand.) Times are microseconds of the Redis server clock (`TIME`),
//! so nodes need not agree on time.

/// `KEYS[1]` = limiter key; `ARGV[1]` = emission interval (µs); `ARGV[2]` = tolerance, burst ×
/// interval (µs). Returns `{allowed (1|0), retry_after_us}`; stores the new TAT with a TTL equal
/// to its distance from now, so idle keys expire by themselves.
pub const GCRA_LUA: &str = r#"
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local allow_until = now + tolerance
if new_tat > allow_until then
  return {0, new_tat - allow_until}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000))
return {1, 0}
"#;
