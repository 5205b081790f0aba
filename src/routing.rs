//! Host and path routing: which site a request belongs to, and which pool serves its path.
//!
//! Host names are normalised once ([`normalize_host`]): lower case, port and trailing dot
//! removed. Exact names win over wildcards; among wildcards (`*.example.gov.cn`, matching any
//! depth of subdomain but not the bare domain, as in nginx) the longest suffix wins.

use std::collections::HashMap;

/// Lower-cases a Host header or SNI value and strips the port, IPv6 brackets' port and a
/// trailing dot. Returns `None` for a value that is not a plausible host name.
pub fn normalize_host(raw: &str) -> Option<String> {
    let raw = raw.trim();
    if raw.is_empty() || raw.contains('@') {
        return None;
    }
    let host = if let Some(rest) = raw.strip_prefix('[') {
        // [v6]:port
        let end = rest.find(']')?;
        return Some(format!("[{}]", rest[..end].to_ascii_lowercase()));
    } else {
        match raw.rsplit_once(':') {
            Some((h, port))
                if port.bytes().all(|b| b.is_ascii_digit())
                    && (port.is_empty() || port.parse::<u16>().is_ok()) =>
            {
                h
            }
            Some(_) => return None,
            None => raw,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    // Empty labels (`..`, a leading dot, two trailing dots) name no host.
    if host.is_empty()
        || host.starts_with('.')
        || host.ends_with('.')
        || host.contains("..")
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

/// Site lookup by host name.
#[derive(Debug, Default)]
pub struct HostIndex {
    exact: HashMap<String, usize>,
    /// Wildcard suffix (without `*.`) to site index.
    wildcard: HashMap<String, usize>,
}

impl HostIndex {
    /// Adds a host pattern (already lower case); returns the site that had it before, if any.
    pub fn insert(&mut self, pattern: &str, site: usize) -> Option<usize> {
        match pattern.strip_prefix("*.") {
            Some(suffix) => self.wildcard.insert(suffix.to_string(), site),
            None => self.exact.insert(pattern.to_string(), site),
        }
    }

    /// The site for a normalised host.
    pub fn lookup(&self, host: &str) -> Option<usize> {
        if let Some(&i) = self.exact.get(host) {
            return Some(i);
        }
        if self.wildcard.is_empty() {
            return None;
        }
        // Try the longest suffix first: a.b.c.d -> b.c.d -> c.d -> d
        let mut rest = host;
        while let Some(dot) = rest.find('.') {
            rest = &rest[dot + 1..];
            if let Some(&i) = self.wildcard.get(rest) {
                return Some(i);
            }
        }
        None
    }
}

/// A path-prefix route to a pool.
#[derive(Debug, Clone)]
pub struct Route {
    pub prefix: String,
    pub pool: usize,
}

/// The pool for `path`: the longest matching prefix route, else `default_pool`.
/// Routes are kept sorted longest-prefix first by the config compiler.
pub fn route_pool(routes: &[Route], default_pool: usize, path: &str) -> usize {
    // The same normalised view and prefix match as rate-limit policies and protected pages, so
    // `/x/../api/`, `//api/`, `/%61pi/`, `/API/` and `/api;p/` route like `/api/`.
    let path = crate::request_path::normalize_path(path);
    routes
        .iter()
        .find(|r| crate::request_path::has_prefix(&path, &r.prefix))
        .map(|r| r.pool)
        .unwrap_or(default_pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_hosts() {
        assert_eq!(
            normalize_host("WWW.Demo.gov.cn:8080").as_deref(),
            Some("www.demo.gov.cn")
        );
        assert_eq!(
            normalize_host("www.demo.gov.cn.").as_deref(),
            Some("www.demo.gov.cn")
        );
        assert_eq!(normalize_host("[::1]:8080").as_deref(), Some("[::1]"));
        assert_eq!(normalize_host("user@evil.com"), None);
        assert_eq!(normalize_host("a b"), None);
        assert_eq!(normalize_host(""), None);
        assert_eq!(normalize_host("host:port"), None);
        assert_eq!(normalize_host("host:99999999"), None);
        for empty_label in ["..", ".", ".a", "a..", "a..b"] {
            assert_eq!(normalize_host(empty_label), None, "{empty_label}");
        }
        assert_eq!(normalize_host("host:+80"), None);
        assert_eq!(normalize_host("host:").as_deref(), Some("host"));
    }

    #[test]
    fn exact_beats_wildcard_and_longest_wildcard_wins() {
        let mut idx = HostIndex::default();
        idx.insert("*.demo.gov.cn", 0);
        idx.insert("www.demo.gov.cn", 1);
        idx.insert("*.jyj.demo.gov.cn", 2);
        assert_eq!(idx.lookup("www.demo.gov.cn"), Some(1));
        assert_eq!(idx.lookup("other.demo.gov.cn"), Some(0));
        assert_eq!(idx.lookup("a.b.demo.gov.cn"), Some(0));
        assert_eq!(idx.lookup("x.jyj.demo.gov.cn"), Some(2));
        assert_eq!(idx.lookup("demo.gov.cn"), None);
        assert_eq!(idx.lookup("evil.cn"), None);
    }

    #[test]
    fn longest_prefix_route() {
        let routes = vec![
            Route {
                prefix: "/api/v2/".into(),
                pool: 2,
            },
            Route {
                prefix: "/api/".into(),
                pool: 1,
            },
        ];
        assert_eq!(route_pool(&routes, 0, "/api/v2/x"), 2);
        assert_eq!(route_pool(&routes, 0, "/api/x"), 1);
        assert_eq!(route_pool(&routes, 0, "/apix"), 0);
        for tricky in [
            "/x/../api/v",
            "//api/v",
            "/%61pi/v",
            "/API/v",
            "/api;p=1/v",
            "\\api\\v",
        ] {
            assert_eq!(route_pool(&routes, 0, tricky), 1, "{tricky}");
        }
    }
}
