//! Client identity: the client's IP and the request ID.
//!
//! The client IP is the socket peer, unless the peer is a trusted proxy: then the rightmost
//! address in X-Forwarded-For that is not itself a trusted proxy (or X-Real-IP when there is no
//! X-Forwarded-For). An untrusted peer cannot choose its IP or request ID with headers.

use std::net::IpAddr;

/// The client IP for a request from `peer`.
pub fn resolve_client_ip(
    peer: IpAddr,
    peer_trusted: bool,
    xff: Option<&[u8]>,
    x_real_ip: Option<&[u8]>,
    is_trusted: impl Fn(&IpAddr) -> bool,
) -> IpAddr {
    if !peer_trusted {
        return peer;
    }
    if let Some(xff) = xff.and_then(|v| std::str::from_utf8(v).ok()) {
        let mut leftmost = None;
        for part in xff.rsplit(',') {
            let Some(ip) = parse_ip(part) else {
                // A malformed hop: stop trusting the chain here.
                return leftmost.unwrap_or(peer);
            };
            if !is_trusted(&ip) {
                return ip;
            }
            leftmost = Some(ip);
        }
        if let Some(ip) = leftmost {
            return ip;
        }
    }
    if let Some(ip) = x_real_ip
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(parse_ip)
    {
        return ip;
    }
    peer
}

/// Parses `1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]:5678`.
fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    s.parse::<std::net::SocketAddr>().ok().map(|a| a.ip())
}

/// A client-supplied request ID is kept (from trusted proxies only) when it is short and plain.
pub fn acceptable_request_id(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// A new random request ID: 32 hex digits.
pub fn new_request_id() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(32);
    for word in [fastrand::u64(..), fastrand::u64(..)] {
        for shift in (0..16).rev() {
            id.push(HEX[((word >> (shift * 4)) & 0xf) as usize] as char);
        }
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusted(i: &IpAddr) -> bool {
        i.to_string().starts_with("10.")
    }

    #[test]
    fn untrusted_peer_is_the_client() {
        assert_eq!(
            resolve_client_ip(
                ip("1.1.1.1"),
                false,
                Some(b"9.9.9.9"),
                Some(b"8.8.8.8"),
                trusted
            ),
            ip("1.1.1.1")
        );
    }

    #[test]
    fn trusted_peer_uses_rightmost_untrusted_xff() {
        let peer = ip("10.0.0.1");
        assert_eq!(
            resolve_client_ip(
                peer,
                true,
                Some(b"6.6.6.6, 2.2.2.2, 10.0.0.5"),
                None,
                trusted
            ),
            ip("2.2.2.2")
        );
        assert_eq!(
            resolve_client_ip(peer, true, Some(b"10.0.0.9"), None, trusted),
            ip("10.0.0.9")
        );
        assert_eq!(
            resolve_client_ip(peer, true, None, Some(b"3.3.3.3"), trusted),
            ip("3.3.3.3")
        );
        assert_eq!(
            resolve_client_ip(peer, true, Some(b"garbage"), None, trusted),
            peer
        );
        assert_eq!(
            resolve_client_ip(peer, true, Some(b"[2001:db8::1]:443"), None, trusted),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn request_ids() {
        assert!(acceptable_request_id(b"abc-123"));
        assert!(!acceptable_request_id(b"a b"));
        assert!(!acceptable_request_id(&[b'a'; 129]));
        let (a, b) = (new_request_id(), new_request_id());
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }
}
