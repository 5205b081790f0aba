//! Request paths as origins resolve them: the one normalised view that per-path policies
//! (rate limits) and protected-page lookup (defacement) match on.
//!
//! Owns [`normalize_path`] and [`has_prefix`]: a client must not step around a per-path policy
//! with `/a/../login`, `//login`, `/%6Cogin` or `/LOGIN` (IIS, common on government sites,
//! ignores case). Matching errs toward applying a policy.

use std::borrow::Cow;

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The path part of `path` (query and fragment dropped) with percent-encoded unreserved
/// characters decoded (once: `%252e` stays `%2e`), `\` read as `/`, `;` path parameters dropped
/// from every segment (as Java servlet containers do: `/login;x=1` is `/login`, `/..;/` is
/// `/../`), repeated slashes collapsed and `.` / `..` segments resolved. An encoded slash
/// (`%2F`) is not a separator (Apache, nginx and Tomcat do not decode it either).
/// Borrowed when nothing changes.
pub fn normalize_path(path: &str) -> Cow<'_, str> {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    if !path.contains(['%', '\\', ';']) && !path.contains("//") && !path.contains("/.") {
        return Cow::Borrowed(path);
    }
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            if let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex_val),
                bytes.get(i + 2).copied().and_then(hex_val),
            ) {
                let v = h * 16 + l;
                if is_unreserved(v) {
                    decoded.push(v);
                    i += 3;
                    continue;
                }
            }
        }
        decoded.push(if b == b'\\' { b'/' } else { b });
        i += 1;
    }
    // Only ASCII bytes were substituted, so valid UTF-8 stays valid.
    let decoded = String::from_utf8_lossy(&decoded);
    let mut segments: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        let seg = seg.split(';').next().unwrap_or(seg);
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    out.push('/');
    out.push_str(&segments.join("/"));
    let last = decoded.rsplit('/').next().unwrap_or("");
    let last = last.split(';').next().unwrap_or(last);
    if !segments.is_empty() && (decoded.ends_with('/') || last == "." || last == "..") {
        out.push('/');
    }
    Cow::Owned(out)
}

/// Segment-wise, ASCII-case-insensitive prefix match of a normalized path: `/api` matches
/// `/api`, `/API/x` and `/api/`, not `/apix`; a prefix ending in `/` matches anything below it.
pub fn has_prefix(path: &str, prefix: &str) -> bool {
    let (p, pre) = (path.as_bytes(), prefix.as_bytes());
    if p.len() < pre.len() || !p[..pre.len()].eq_ignore_ascii_case(pre) {
        return false;
    }
    prefix.ends_with('/') || matches!(p.get(pre.len()), None | Some(b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_evasions() {
        let cases = [
            ("/login", "/login"),
            ("/login?x=1", "/login"),
            ("//login", "/login"),
            ("/a/../login", "/login"),
            ("/./login/", "/login/"),
            ("/%6Cogin", "/login"),
            ("/%2e%2e/login", "/login"),
            ("/a%2Fb", "/a%2Fb"),
            ("\\login", "/login"),
            ("/../../..", "/"),
            ("/news/%E6%96%B0", "/news/%E6%96%B0"),
            ("/a/b/..", "/a/"),
            ("/login;jsessionid=1", "/login"),
            ("/x/..;/login", "/login"),
            ("/api;a=b/v1", "/api/v1"),
            ("/%252e%252e/login", "/%252e%252e/login"),
            ("/%2e%2e%2flogin", "/..%2flogin"),
            ("/%c0%ae%c0%ae/login", "/%c0%ae%c0%ae/login"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_path(input), want, "{input}");
        }
        assert!(matches!(normalize_path("/plain/path"), Cow::Borrowed(_)));
    }

    #[test]
    fn prefixes() {
        assert!(has_prefix("/login", "/login"));
        assert!(has_prefix("/LOGIN/x", "/login"));
        assert!(has_prefix("/api/v1", "/api/"));
        assert!(!has_prefix("/loginx", "/login"));
        assert!(!has_prefix("/log", "/login"));
        assert!(has_prefix("/anything", "/"));
    }
}
