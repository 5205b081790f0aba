//! Request paths as origins resolve them, for protected-page lookup and baseline keys.
//!
//! Owns [`normalize_path`]: `/a/../index.htm`, `//index.htm` and `/%69ndex.htm` are the page
//! `/index.htm`, so a protected page cannot be reached unchecked through another spelling.
//! Case is kept (most origins are case-sensitive; a case-folded match would compare error pages
//! with baselines).

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
/// characters decoded, `\` read as `/`, repeated slashes collapsed and `.` / `..` segments
/// resolved. Borrowed when nothing changes.
pub fn normalize_path(path: &str) -> Cow<'_, str> {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    if !path.contains(['%', '\\']) && !path.contains("//") && !path.contains("/.") {
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
    if !segments.is_empty() && (decoded.ends_with('/') || last == "." || last == "..") {
        out.push('/');
    }
    Cow::Owned(out)
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
        ];
        for (input, want) in cases {
            assert_eq!(normalize_path(input), want, "{input}");
        }
        assert!(matches!(normalize_path("/plain/path"), Cow::Borrowed(_)));
    }
}
