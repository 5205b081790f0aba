//! PCRE-to-`regex` syntax adjustments for SecLang `@rx` patterns. ModSecurity runs PCRE
//! in byte mode, where `\x{ff}` is the byte 0xFF; the `regex` crate (bytes, Unicode off)
//! spells that `\xFF`. Patterns are otherwise passed through: CRS v4 avoids the PCRE-only
//! features (look-around, back-references), and anything else the `regex` crate rejects is a
//! load error.

/// Rewrites `\x{HH}` (value <= 0xFF) to `\xHH`; leaves everything else untouched.
pub fn translate(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = String::with_capacity(p.len());
    let mut i = 0;
    let mut last = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if b.get(i + 1) == Some(&b'x') && b.get(i + 2) == Some(&b'{') {
                if let Some(end) = p[i + 3..].find('}') {
                    let hex = &p[i + 3..i + 3 + end];
                    if let Ok(v) = u32::from_str_radix(hex, 16) {
                        if v <= 0xff {
                            out.push_str(&p[last..i]);
                            out.push_str(&format!("\\x{v:02X}"));
                            i += 3 + end + 1;
                            last = i;
                            continue;
                        }
                    }
                }
            }
            // Skip the escaped character (so `\\x{..}` is left alone).
            i += 2;
            continue;
        }
        i += 1;
    }
    out.push_str(&p[last.min(p.len())..]);
    out
}

#[cfg(test)]
mod tests {
    use super::translate;

    #[test]
    fn byte_escapes() {
        assert_eq!(translate(r"a\x{bc}[^>\x{be}]"), r"a\xBC[^>\xBE]");
        assert_eq!(translate(r"\\x{bc}"), r"\\x{bc}");
        assert_eq!(translate(r"\x{100}"), r"\x{100}");
    }
}
