//! Flood-mode JavaScript challenge and HMAC-signed clearance cookie.
//!
//! Owns three things, all synchronous and free of I/O:
//! - the clearance cookie: `1.<ip>.<expiry>.<mac>` where `<ip>` is the client IP's bytes and
//!   `<mac>` an HMAC-SHA256 over (ip, expiry) under the configured secret, both base64url;
//!   [`Challenge::issue`] makes one and [`Challenge::verify`] tells forged, expired and wrong-IP
//!   cookies apart;
//! - the challenge page ([`Challenge::page`]): a small self-contained HTML page whose script
//!   finds a proof of work (a counter `n` such that SHA-256(`token:n`) starts with `difficulty`
//!   zero bits; SHA-256 is written out in the page because `crypto.subtle` needs HTTPS), posts
//!   it to the verify path and reloads;
//! - the answer check ([`Challenge::verify_answer`]): the posted token is signed, bound to the
//!   client IP and short-lived; a valid answer yields a new clearance cookie.
//!
//! Times are wall-clock ([`SystemTime`]) because cookies outlive processes and cross nodes that
//! share the secret.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::error::{ChallengeError, ConfigError};

type HmacSha256 = Hmac<Sha256>;

/// Longest cookie or token accepted before any decoding.
const MAX_VALUE_LEN: usize = 256;
/// Longest posted answer body accepted.
pub const MAX_ANSWER_LEN: usize = 1024;
/// Shortest accepted secret, in bytes.
pub const MIN_SECRET_LEN: usize = 32;
/// Largest accepted difficulty (leading zero bits); 24 is already seconds of work in a browser.
pub const MAX_DIFFICULTY: u8 = 24;

const COOKIE_DOMAIN: &[u8] = b"egret-clearance\0";
const TOKEN_DOMAIN: &[u8] = b"egret-challenge\0";

/// Runtime challenge settings (compiled from config).
#[derive(Clone)]
pub struct Challenge {
    keyed: HmacSha256,
    clearance_ttl: Duration,
    token_ttl: Duration,
    difficulty: u8,
    cookie_name: String,
    verify_path: String,
    counter: std::sync::Arc<AtomicU64>,
}

impl std::fmt::Debug for Challenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Challenge")
            .field("clearance_ttl", &self.clearance_ttl)
            .field("token_ttl", &self.token_ttl)
            .field("difficulty", &self.difficulty)
            .field("cookie_name", &self.cookie_name)
            .field("verify_path", &self.verify_path)
            .finish_non_exhaustive()
    }
}

/// Parameters of [`Challenge::new`]; validated by the config compiler.
#[derive(Debug, Clone)]
pub struct ChallengeSettings {
    /// How long a clearance cookie is valid.
    pub clearance_ttl: Duration,
    /// How long a challenge token may be answered.
    pub token_ttl: Duration,
    /// Leading zero bits of proof of work (0 = just post the token back).
    pub difficulty: u8,
    /// Cookie name, `[A-Za-z0-9_-]+`.
    pub cookie_name: String,
    /// Path the page posts its answer to, `/[A-Za-z0-9/_.-]*`.
    pub verify_path: String,
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

fn leading_zero_bits(digest: &[u8]) -> u32 {
    let mut bits = 0;
    for b in digest {
        if *b == 0 {
            bits += 8;
        } else {
            return bits + b.leading_zeros();
        }
    }
    bits
}

/// Splits `prefix.a.b...` into exactly `N` dot-separated parts after checking length and charset.
fn split_value<const N: usize>(value: &str) -> Result<[&str; N], ChallengeError> {
    if value.len() > MAX_VALUE_LEN
        || !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(ChallengeError::Malformed);
    }
    let mut out = [""; N];
    let mut parts = value.split('.');
    for slot in &mut out {
        *slot = parts.next().ok_or(ChallengeError::Malformed)?;
    }
    if parts.next().is_some() {
        return Err(ChallengeError::Malformed);
    }
    Ok(out)
}

impl Challenge {
    /// Builds the challenge from a secret of at least [`MIN_SECRET_LEN`] bytes; errors name the
    /// `ratelimit.challenge` field at fault.
    pub fn new(secret: &[u8], settings: ChallengeSettings) -> Result<Self, ConfigError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(ConfigError::new(
                "ratelimit.challenge.secret",
                format!(
                    "secret is {} bytes, at least {MIN_SECRET_LEN} are needed",
                    secret.len()
                ),
            ));
        }
        if settings.difficulty > MAX_DIFFICULTY {
            return Err(ConfigError::new(
                "ratelimit.challenge.difficulty",
                format!(
                    "difficulty {} is over the maximum {MAX_DIFFICULTY}",
                    settings.difficulty
                ),
            ));
        }
        if settings.cookie_name.is_empty()
            || !settings
                .cookie_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        {
            return Err(ConfigError::new(
                "ratelimit.challenge.cookie_name",
                format!(
                    "cookie name `{}` must be letters, digits, `_` or `-`",
                    settings.cookie_name
                ),
            ));
        }
        if !settings.verify_path.starts_with('/')
            || settings.verify_path.starts_with("//")
            || !settings
                .verify_path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'.'))
        {
            return Err(ConfigError::new(
                "ratelimit.challenge.verify_path",
                format!(
                    "verify path `{}` must start with `/` and use letters, digits, `/_-.`",
                    settings.verify_path
                ),
            ));
        }
        let keyed = HmacSha256::new_from_slice(secret)
            .map_err(|e| ConfigError::new("ratelimit.challenge.secret", e))?;
        Ok(Self {
            keyed,
            clearance_ttl: settings.clearance_ttl,
            token_ttl: settings.token_ttl,
            difficulty: settings.difficulty,
            cookie_name: settings.cookie_name,
            verify_path: settings.verify_path,
            counter: std::sync::Arc::new(AtomicU64::new(0)),
        })
    }

    /// Name of the clearance cookie.
    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// Path the challenge page posts its answer to.
    pub fn verify_path(&self) -> &str {
        &self.verify_path
    }

    fn mac(&self, domain: &[u8], parts: &[&[u8]]) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(domain);
        for p in parts {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p);
        }
        mac
    }

    /// Issues a clearance cookie value for `ip`, valid for the clearance TTL from `now`.
    pub fn issue(&self, ip: IpAddr, now: SystemTime) -> String {
        let ipb = ip_bytes(ip);
        let expiry = unix_secs(now).saturating_add(self.clearance_ttl.as_secs());
        let tag = self
            .mac(COOKIE_DOMAIN, &[&ipb, &expiry.to_be_bytes()])
            .finalize()
            .into_bytes();
        format!(
            "1.{}.{expiry}.{}",
            URL_SAFE_NO_PAD.encode(&ipb),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The `Set-Cookie` header value for a clearance cookie.
    pub fn set_cookie(&self, value: &str) -> String {
        format!(
            "{}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax",
            self.cookie_name,
            self.clearance_ttl.as_secs()
        )
    }

    /// Checks a clearance cookie value for `ip` at `now`.
    pub fn verify(&self, cookie: &str, ip: IpAddr, now: SystemTime) -> Result<(), ChallengeError> {
        let [version, ip_part, expiry, tag] = split_value::<4>(cookie)?;
        if version != "1" {
            return Err(ChallengeError::Malformed);
        }
        let (ipb, expiry, tag) = decode_common(ip_part, expiry, tag)?;
        self.mac(COOKIE_DOMAIN, &[&ipb, &expiry.to_be_bytes()])
            .verify_slice(&tag)
            .map_err(|_| ChallengeError::Forged)?;
        if ipb != ip_bytes(ip) {
            return Err(ChallengeError::WrongIp);
        }
        if expiry <= unix_secs(now) {
            return Err(ChallengeError::Expired);
        }
        Ok(())
    }

    /// A fresh challenge token for `ip`: `2.<ip>.<expiry>.<nonce>.<mac>`.
    pub fn token(&self, ip: IpAddr, now: SystemTime) -> String {
        let ipb = ip_bytes(ip);
        let expiry = unix_secs(now).saturating_add(self.token_ttl.as_secs().max(1));
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let nonce = std::collections::hash_map::RandomState::new()
            .hash_one(n)
            .to_be_bytes();
        let tag = self
            .mac(TOKEN_DOMAIN, &[&ipb, &expiry.to_be_bytes(), &nonce])
            .finalize()
            .into_bytes();
        format!(
            "2.{}.{expiry}.{}.{}",
            URL_SAFE_NO_PAD.encode(&ipb),
            URL_SAFE_NO_PAD.encode(nonce),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// Checks a posted answer (`application/x-www-form-urlencoded` body `t=<token>&n=<counter>`)
    /// from `ip` at `now`; on success returns a new clearance cookie value.
    pub fn verify_answer(
        &self,
        body: &[u8],
        ip: IpAddr,
        now: SystemTime,
    ) -> Result<String, ChallengeError> {
        if body.len() > MAX_ANSWER_LEN {
            return Err(ChallengeError::Malformed);
        }
        let body = std::str::from_utf8(body).map_err(|_| ChallengeError::Malformed)?;
        let (mut token, mut counter) = (None, None);
        for pair in body.trim().split('&') {
            match pair.split_once('=') {
                Some(("t", v)) => token = Some(v),
                Some(("n", v)) => counter = Some(v),
                _ => return Err(ChallengeError::Malformed),
            }
        }
        let (token, counter) = token.zip(counter).ok_or(ChallengeError::Malformed)?;
        if counter.is_empty() || counter.len() > 20 || !counter.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(ChallengeError::Malformed);
        }
        let [version, ip_part, expiry, nonce, tag] = split_value::<5>(token)?;
        if version != "2" {
            return Err(ChallengeError::Malformed);
        }
        let (ipb, expiry_secs, tag) = decode_common(ip_part, expiry, tag)?;
        let nonce = URL_SAFE_NO_PAD
            .decode(nonce)
            .map_err(|_| ChallengeError::Malformed)?;
        self.mac(TOKEN_DOMAIN, &[&ipb, &expiry_secs.to_be_bytes(), &nonce])
            .verify_slice(&tag)
            .map_err(|_| ChallengeError::Forged)?;
        if ipb != ip_bytes(ip) {
            return Err(ChallengeError::WrongIp);
        }
        if expiry_secs <= unix_secs(now) {
            return Err(ChallengeError::Expired);
        }
        let digest = Sha256::new()
            .chain_update(token.as_bytes())
            .chain_update(b":")
            .chain_update(counter.as_bytes())
            .finalize();
        if leading_zero_bits(&digest) < u32::from(self.difficulty) {
            return Err(ChallengeError::InsufficientWork {
                difficulty: self.difficulty,
            });
        }
        Ok(self.issue(ip, now))
    }

    /// The challenge page for `ip` (serve with status 503, `Cache-Control: no-store`,
    /// `Content-Type: text/html; charset=utf-8`).
    pub fn page(&self, ip: IpAddr, now: SystemTime) -> String {
        // The token, the path and the difficulty are limited to characters that need no escaping
        // in HTML or a JavaScript string (checked in `new` and by construction).
        PAGE_TEMPLATE
            .replace("__TOKEN__", &self.token(ip, now))
            .replace("__PATH__", &self.verify_path)
            .replace("__DIFFICULTY__", &self.difficulty.to_string())
    }
}

fn decode_common(
    ip: &str,
    expiry: &str,
    tag: &str,
) -> Result<(Vec<u8>, u64, Vec<u8>), ChallengeError> {
    let ipb = URL_SAFE_NO_PAD
        .decode(ip)
        .map_err(|_| ChallengeError::Malformed)?;
    if ipb.len() != 4 && ipb.len() != 16 {
        return Err(ChallengeError::Malformed);
    }
    if expiry.is_empty() || expiry.len() > 20 || !expiry.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ChallengeError::Malformed);
    }
    let expiry: u64 = expiry.parse().map_err(|_| ChallengeError::Malformed)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| ChallengeError::Malformed)?;
    Ok((ipb, expiry, tag))
}

/// Self-contained challenge page. SHA-256 constants are derived from primes as in FIPS 180-4.
const PAGE_TEMPLATE: &str = r#"<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="robots" content="noindex">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>安全验证 Security check</title>
<style>body{font-family:sans-serif;text-align:center;margin-top:15%;color:#333}</style>
</head><body>
<h1>正在进行安全验证…</h1><p id="m">Checking your browser, this takes a moment.</p>
<noscript><p>请启用 JavaScript 后刷新页面。Please enable JavaScript and reload.</p></noscript>
<script>
(function(){
var T="__TOKEN__",P="__PATH__",D=__DIFFICULTY__;
var K=[],H0=[],n=2,c=0;
function fr(x){return ((x-Math.floor(x))*4294967296)|0}
while(c<64){var p=1;for(var d=2;d*d<=n;d++){if(n%d==0){p=0;break}}
if(p){if(c<8){H0[c]=fr(Math.pow(n,1/2))}K[c]=fr(Math.pow(n,1/3));c++}n++}
function r(x,k){return (x>>>k)|(x<<(32-k))}
function sha(s){var b=[],i,j,l=s.length;for(i=0;i<l;i++)b.push(s.charCodeAt(i)&255);
b.push(128);while(b.length%64!=56)b.push(0);var bits=l*8;
b.push(0,0,0,0,(bits>>>24)&255,(bits>>>16)&255,(bits>>>8)&255,bits&255);
var h=H0.slice(),w=[];
for(i=0;i<b.length;i+=64){for(j=0;j<64;j++){if(j<16){w[j]=(b[i+4*j]<<24)|(b[i+4*j+1]<<16)|(b[i+4*j+2]<<8)|b[i+4*j+3]}else{
var a=w[j-15],e=w[j-2];w[j]=(w[j-16]+(r(a,7)^r(a,18)^(a>>>3))+w[j-7]+(r(e,17)^r(e,19)^(e>>>10)))|0}}
var A=h[0],B=h[1],C=h[2],E=h[3],F=h[4],G=h[5],I=h[6],J=h[7];
for(j=0;j<64;j++){var t1=(J+(r(F,6)^r(F,11)^r(F,25))+((F&G)^(~F&I))+K[j]+w[j])|0;
var t2=((r(A,2)^r(A,13)^r(A,22))+((A&B)^(A&C)^(B&C)))|0;J=I;I=G;G=F;F=(E+t1)|0;E=C;C=B;B=A;A=(t1+t2)|0}
h[0]=(h[0]+A)|0;h[1]=(h[1]+B)|0;h[2]=(h[2]+C)|0;h[3]=(h[3]+E)|0;h[4]=(h[4]+F)|0;h[5]=(h[5]+G)|0;h[6]=(h[6]+I)|0;h[7]=(h[7]+J)|0}
return h}
function lz(h){var z=0;for(var i=0;i<8;i++){if(h[i]==0){z+=32}else{return z+Math.clz32(h[i])}}return z}
var k=0;
function go(){var end=k+4000;for(;k<end;k++){if(lz(sha(T+":"+k))>=D){send(k);return}}setTimeout(go,0)}
function send(v){var x=new XMLHttpRequest();x.open("POST",P);
x.setRequestHeader("Content-Type","application/x-www-form-urlencoded");
x.onload=function(){if(x.status>=200&&x.status<300){location.reload()}else{document.getElementById("m").textContent="验证失败，请刷新重试。Check failed, please reload."}};
x.send("t="+T+"&n="+v)}
go();
})();
</script>
</body></html>
"#;

/// Exposed for tests in other modules: SHA-256 proof-of-work check of `token:n`.
pub fn work_bits(token: &str, counter: u64) -> u32 {
    let digest = Sha256::new()
        .chain_update(token.as_bytes())
        .chain_update(b":")
        .chain_update(counter.to_string().as_bytes())
        .finalize();
    leading_zero_bits(&digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(difficulty: u8) -> Challenge {
        Challenge::new(
            b"0123456789abcdef0123456789abcdef-test",
            ChallengeSettings {
                clearance_ttl: Duration::from_secs(1800),
                token_ttl: Duration::from_secs(120),
                difficulty,
                cookie_name: "egret_clearance".into(),
                verify_path: "/__egret/challenge".into(),
            },
        )
        .unwrap()
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn cookie_round_trip_and_refusals() {
        let c = challenge(0);
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let cookie = c.issue(ip, at(1_800_000_000));
        assert_eq!(c.verify(&cookie, ip, at(1_800_000_100)), Ok(()));
        assert_eq!(
            c.verify(&cookie, ip, at(1_800_001_800)),
            Err(ChallengeError::Expired)
        );
        let other: IpAddr = "203.0.113.8".parse().unwrap();
        assert_eq!(
            c.verify(&cookie, other, at(1_800_000_100)),
            Err(ChallengeError::WrongIp)
        );
        // Extending the expiry breaks the signature.
        let parts: Vec<&str> = cookie.split('.').collect();
        let forged = format!("1.{}.{}.{}", parts[1], 1_900_000_000, parts[3]);
        assert_eq!(
            c.verify(&forged, ip, at(1_800_000_100)),
            Err(ChallengeError::Forged)
        );
        // Another secret's cookie is forged too.
        let other_secret = Challenge::new(
            b"another-secret-another-secret-0000",
            ChallengeSettings {
                clearance_ttl: Duration::from_secs(1800),
                token_ttl: Duration::from_secs(120),
                difficulty: 0,
                cookie_name: "egret_clearance".into(),
                verify_path: "/x".into(),
            },
        )
        .unwrap();
        assert_eq!(
            other_secret.verify(&cookie, ip, at(1_800_000_100)),
            Err(ChallengeError::Forged)
        );
        for junk in [
            "",
            "1",
            "1.a.b.c",
            "1.AAAA.x.AAAA",
            "1.<script>.1.2",
            &"1.".repeat(300),
        ] {
            assert_eq!(
                c.verify(junk, ip, at(1_800_000_100)),
                Err(ChallengeError::Malformed),
                "{junk}"
            );
        }
    }

    #[test]
    fn ipv4_mapped_ipv6_is_the_same_client() {
        let c = challenge(0);
        let v4: IpAddr = "198.51.100.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:198.51.100.1".parse().unwrap();
        let cookie = c.issue(v4, at(1_000));
        assert_eq!(c.verify(&cookie, mapped, at(1_001)), Ok(()));
    }

    fn solve(token: &str, difficulty: u8) -> u64 {
        (0u64..)
            .find(|n| work_bits(token, *n) >= u32::from(difficulty))
            .unwrap()
    }

    #[test]
    fn answer_flow() {
        let c = challenge(8);
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let now = at(1_700_000_000);
        let page = c.page(ip, now);
        assert!(page.contains("/__egret/challenge"));
        let token = page
            .split("var T=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap()
            .to_owned();
        let n = solve(&token, 8);
        let body = format!("t={token}&n={n}");
        let cookie = c.verify_answer(body.as_bytes(), ip, now).unwrap();
        assert_eq!(c.verify(&cookie, ip, now), Ok(()));
        assert!(c.set_cookie(&cookie).starts_with("egret_clearance=1."));

        // Wrong work, wrong IP, expired token, garbage.
        let bad_n = (0u64..).find(|n| work_bits(&token, *n) < 8).unwrap();
        assert_eq!(
            c.verify_answer(format!("t={token}&n={bad_n}").as_bytes(), ip, now),
            Err(ChallengeError::InsufficientWork { difficulty: 8 })
        );
        let other: IpAddr = "2001:db8::2".parse().unwrap();
        assert_eq!(
            c.verify_answer(body.as_bytes(), other, now),
            Err(ChallengeError::WrongIp)
        );
        assert_eq!(
            c.verify_answer(body.as_bytes(), ip, at(1_700_000_121)),
            Err(ChallengeError::Expired)
        );
        for junk in ["", "t=&n=", "n=1", "t=2.a.b.c.d&n=1", "t=x&n=-1&z=1"] {
            assert_eq!(
                c.verify_answer(junk.as_bytes(), ip, now),
                Err(ChallengeError::Malformed),
                "{junk}"
            );
        }
        // A clearance cookie is not a token and vice versa.
        assert!(c.verify(&token, ip, now).is_err());
    }

    #[test]
    fn rejects_weak_settings() {
        let settings = ChallengeSettings {
            clearance_ttl: Duration::from_secs(1),
            token_ttl: Duration::from_secs(1),
            difficulty: 0,
            cookie_name: "a b".into(),
            verify_path: "/ok".into(),
        };
        assert_eq!(
            Challenge::new(b"short", settings.clone())
                .unwrap_err()
                .field,
            "ratelimit.challenge.secret"
        );
        assert_eq!(
            Challenge::new(&[7; 32], settings).unwrap_err().field,
            "ratelimit.challenge.cookie_name"
        );
    }
}
