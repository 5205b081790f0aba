//! Transformations (SecLang `t:` names): a closed enum, each a pure function from bytes to
//! bytes returning `Cow` so that a value the transformation leaves unchanged costs nothing.
//!
//! The engine caches the result of a whole chain per value and per request.

use std::borrow::Cow;
use std::fmt;

/// One transformation. Names mirror ModSecurity / Coraza exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transform {
    None,
    UrlDecode,
    UrlDecodeUni,
    HtmlEntityDecode,
    JsDecode,
    CssDecode,
    Base64Decode,
    HexDecode,
    Lowercase,
    Uppercase,
    CompressWhitespace,
    RemoveWhitespace,
    RemoveNulls,
    ReplaceNulls,
    RemoveComments,
    ReplaceComments,
    NormalizePath,
    NormalizePathWin,
    CmdLine,
    Utf8ToUnicode,
    Length,
    Trim,
    TrimLeft,
    TrimRight,
    Sha1,
    HexEncode,
    EscapeSeqDecode,
    RemoveCommentsChar,
}

impl Transform {
    /// Whether this transformation returns a plain value exactly as it is (the plain-keeping
    /// ones except those that change ASCII case).
    pub fn identity_on_plain(self) -> bool {
        self.keeps_plain()
            && !matches!(
                self,
                Transform::Lowercase | Transform::Uppercase | Transform::CmdLine
            )
    }

    /// Whether this transformation leaves a plain value (ASCII letters, digits, `_`, and
    /// non-ASCII bytes other than 0xA0) unchanged up to ASCII case, and a stable value too
    /// (plain bytes and `/ . - :`, see `engine::value_class`). The engine's prefilter fast
    /// path relies on it: keep it `false` for anything that rewrites such bytes or sequences.
    pub fn keeps_plain(self) -> bool {
        use Transform::*;
        match self {
            None | UrlDecode | UrlDecodeUni | HtmlEntityDecode | JsDecode | CssDecode
            | Lowercase | Uppercase | CompressWhitespace | RemoveWhitespace | RemoveNulls
            | ReplaceNulls | RemoveComments | ReplaceComments | NormalizePath
            | NormalizePathWin | CmdLine | Trim | TrimLeft | TrimRight | EscapeSeqDecode
            | RemoveCommentsChar => true,
            Base64Decode | HexDecode | Utf8ToUnicode | Length | Sha1 | HexEncode => false,
        }
    }
}

const TRANSFORM_NAMES: &[(Transform, &str)] = &[
    (Transform::None, "none"),
    (Transform::UrlDecode, "urlDecode"),
    (Transform::UrlDecodeUni, "urlDecodeUni"),
    (Transform::HtmlEntityDecode, "htmlEntityDecode"),
    (Transform::JsDecode, "jsDecode"),
    (Transform::CssDecode, "cssDecode"),
    (Transform::Base64Decode, "base64Decode"),
    (Transform::HexDecode, "hexDecode"),
    (Transform::Lowercase, "lowercase"),
    (Transform::Uppercase, "uppercase"),
    (Transform::CompressWhitespace, "compressWhitespace"),
    (Transform::RemoveWhitespace, "removeWhitespace"),
    (Transform::RemoveNulls, "removeNulls"),
    (Transform::ReplaceNulls, "replaceNulls"),
    (Transform::RemoveComments, "removeComments"),
    (Transform::ReplaceComments, "replaceComments"),
    (Transform::NormalizePath, "normalizePath"),
    (Transform::NormalizePathWin, "normalizePathWin"),
    (Transform::CmdLine, "cmdLine"),
    (Transform::Utf8ToUnicode, "utf8toUnicode"),
    (Transform::Length, "length"),
    (Transform::Trim, "trim"),
    (Transform::TrimLeft, "trimLeft"),
    (Transform::TrimRight, "trimRight"),
    (Transform::Sha1, "sha1"),
    (Transform::HexEncode, "hexEncode"),
    (Transform::EscapeSeqDecode, "escapeSeqDecode"),
    (Transform::RemoveCommentsChar, "removeCommentsChar"),
];

impl Transform {
    /// Parses a SecLang transformation name (case-insensitive, as ModSecurity does).
    pub fn parse(s: &str) -> Option<Transform> {
        TRANSFORM_NAMES
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(s))
            .map(|(t, _)| *t)
    }

    pub fn name(self) -> &'static str {
        TRANSFORM_NAMES
            .iter()
            .find(|(t, _)| *t == self)
            .map(|(_, n)| *n)
            .unwrap_or("?")
    }

    /// Applies the transformation.
    pub fn apply(self, input: &[u8]) -> Cow<'_, [u8]> {
        match self {
            Transform::None => Cow::Borrowed(input),
            Transform::UrlDecode => url_decode(input, false),
            Transform::UrlDecodeUni => url_decode(input, true),
            Transform::HtmlEntityDecode => html_entity_decode(input),
            Transform::JsDecode => js_decode(input),
            Transform::CssDecode => css_decode(input),
            Transform::Base64Decode => Cow::Owned(base64_decode(input)),
            Transform::HexDecode => Cow::Owned(hex_decode(input)),
            Transform::Lowercase => map_if(
                input,
                |b| b.is_ascii_uppercase(),
                |b| b.to_ascii_lowercase(),
            ),
            Transform::Uppercase => map_if(
                input,
                |b| b.is_ascii_lowercase(),
                |b| b.to_ascii_uppercase(),
            ),
            Transform::CompressWhitespace => compress_whitespace(input),
            Transform::RemoveWhitespace => remove_if(input, is_space),
            Transform::RemoveNulls => remove_if(input, |b| b == 0),
            Transform::ReplaceNulls => map_if(input, |b| b == 0, |_| b' '),
            Transform::RemoveComments => comments(input, false),
            Transform::ReplaceComments => comments(input, true),
            Transform::NormalizePath => normalize_path(input, false),
            Transform::NormalizePathWin => normalize_path(input, true),
            Transform::CmdLine => Cow::Owned(cmd_line(input)),
            Transform::Utf8ToUnicode => utf8_to_unicode(input),
            Transform::Length => Cow::Owned(input.len().to_string().into_bytes()),
            Transform::Trim => trim(input, true, true),
            Transform::TrimLeft => trim(input, true, false),
            Transform::TrimRight => trim(input, false, true),
            Transform::Sha1 => {
                use sha1::Digest;
                Cow::Owned(sha1::Sha1::digest(input).to_vec())
            }
            Transform::HexEncode => Cow::Owned(hex_encode(input)),
            Transform::EscapeSeqDecode => escape_seq_decode(input),
            Transform::RemoveCommentsChar => remove_comment_chars(input),
        }
    }
}

impl fmt::Display for Transform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Applies a chain, keeping the borrow when no step changed anything.
pub fn apply_chain<'a>(chain: &[Transform], input: &'a [u8]) -> Cow<'a, [u8]> {
    let mut cur: Cow<'a, [u8]> = Cow::Borrowed(input);
    for t in chain {
        cur = match cur {
            Cow::Borrowed(b) => t.apply(b),
            Cow::Owned(o) => match t.apply(&o) {
                Cow::Borrowed(_) => Cow::Owned(o),
                Cow::Owned(n) => Cow::Owned(n),
            },
        };
    }
    cur
}

fn hex_encode(input: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(input.len() * 2);
    for &b in input {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
    out
}

/// ANSI C escapes (`\n`, `\x41`, `\101`, `\\`...), as ModSecurity's `escapeSeqDecode`.
fn escape_seq_decode(input: &[u8]) -> Cow<'_, [u8]> {
    if !input.contains(&b'\\') {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] != b'\\' || i + 1 >= input.len() {
            out.push(input[i]);
            i += 1;
            continue;
        }
        let n = input[i + 1];
        let simple = match n {
            b'a' => Some(0x07),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'v' => Some(0x0b),
            b'\\' | b'?' | b'\'' | b'"' => Some(n),
            _ => None,
        };
        if let Some(c) = simple {
            out.push(c);
            i += 2;
            continue;
        }
        if n == b'x' || n == b'X' {
            if let (Some(h), Some(l)) = (
                input.get(i + 2).copied().and_then(hex_val),
                input.get(i + 3).copied().and_then(hex_val),
            ) {
                out.push((h << 4) | l);
                i += 4;
                continue;
            }
        }
        if (b'0'..=b'7').contains(&n) {
            let mut j = i + 1;
            let mut v: u32 = 0;
            while j < input.len() && j < i + 4 && (b'0'..=b'7').contains(&input[j]) {
                v = v * 8 + u32::from(input[j] - b'0');
                j += 1;
            }
            out.push((v & 0xff) as u8);
            i = j;
            continue;
        }
        // Unknown escape: keep both characters.
        out.push(b'\\');
        out.push(n);
        i += 2;
    }
    Cow::Owned(out)
}

/// Removes the comment characters themselves: `/*`, `*/`, `--` and `#`.
fn remove_comment_chars(input: &[u8]) -> Cow<'_, [u8]> {
    let has = input.contains(&b'#')
        || memchr::memmem::find(input, b"/*").is_some()
        || memchr::memmem::find(input, b"*/").is_some()
        || memchr::memmem::find(input, b"--").is_some();
    if !has {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let rest = &input[i..];
        if rest.starts_with(b"/*") || rest.starts_with(b"*/") || rest.starts_with(b"--") {
            i += 2;
        } else if rest[0] == b'#' {
            i += 1;
        } else {
            out.push(rest[0]);
            i += 1;
        }
    }
    Cow::Owned(out)
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0xa0)
}

fn map_if(input: &[u8], pred: impl Fn(u8) -> bool, f: impl Fn(u8) -> u8) -> Cow<'_, [u8]> {
    if input.iter().any(|&b| pred(b)) {
        Cow::Owned(
            input
                .iter()
                .map(|&b| if pred(b) { f(b) } else { b })
                .collect(),
        )
    } else {
        Cow::Borrowed(input)
    }
}

fn remove_if(input: &[u8], pred: impl Fn(u8) -> bool) -> Cow<'_, [u8]> {
    if input.iter().any(|&b| pred(b)) {
        Cow::Owned(input.iter().copied().filter(|&b| !pred(b)).collect())
    } else {
        Cow::Borrowed(input)
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn push_char(out: &mut Vec<u8>, cp: u32) {
    // Full-width ASCII forms map to ASCII, like ModSecurity's default unicode map.
    let cp = if (0xFF01..=0xFF5E).contains(&cp) {
        cp - 0xFEE0
    } else {
        cp
    };
    match char::from_u32(cp) {
        Some(c) => {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
        None => out.push(b'?'),
    }
}

fn url_decode(input: &[u8], uni: bool) -> Cow<'_, [u8]> {
    if !input.iter().any(|&b| b == b'%' || b == b'+') {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b'+' {
            out.push(b' ');
            i += 1;
        } else if b == b'%' {
            if uni && i + 5 < input.len() && (input[i + 1] == b'u' || input[i + 1] == b'U') {
                let h = &input[i + 2..i + 6];
                if let (Some(a), Some(b2), Some(c), Some(d)) =
                    (hex_val(h[0]), hex_val(h[1]), hex_val(h[2]), hex_val(h[3]))
                {
                    let cp = (u32::from(a) << 12)
                        | (u32::from(b2) << 8)
                        | (u32::from(c) << 4)
                        | u32::from(d);
                    push_char(&mut out, cp);
                    i += 6;
                    continue;
                }
            }
            match (
                input.get(i + 1).copied().and_then(hex_val),
                input.get(i + 2).copied().and_then(hex_val),
            ) {
                (Some(h), Some(l)) => {
                    out.push((h << 4) | l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            }
        } else {
            out.push(b);
            i += 1;
        }
    }
    Cow::Owned(out)
}

fn named_entity(name: &[u8]) -> Option<u32> {
    let lower = name.to_ascii_lowercase();
    Some(match lower.as_slice() {
        b"lt" => '<' as u32,
        b"gt" => '>' as u32,
        b"amp" => '&' as u32,
        b"quot" => '"' as u32,
        b"apos" => '\'' as u32,
        b"nbsp" => 0xa0,
        b"colon" => ':' as u32,
        b"tab" => '\t' as u32,
        b"newline" => '\n' as u32,
        b"lpar" => '(' as u32,
        b"rpar" => ')' as u32,
        b"sol" => '/' as u32,
        b"bsol" => '\\' as u32,
        b"semi" => ';' as u32,
        b"equals" => '=' as u32,
        b"grave" => '`' as u32,
        b"lsqb" | b"lbrack" => '[' as u32,
        b"rsqb" | b"rbrack" => ']' as u32,
        b"lcub" | b"lbrace" => '{' as u32,
        b"rcub" | b"rbrace" => '}' as u32,
        b"period" => '.' as u32,
        b"comma" => ',' as u32,
        b"excl" => '!' as u32,
        b"num" => '#' as u32,
        b"dollar" => '$' as u32,
        b"percnt" => '%' as u32,
        b"plus" => '+' as u32,
        b"vert" | b"verbar" => '|' as u32,
        _ => return None,
    })
}

fn html_entity_decode(input: &[u8]) -> Cow<'_, [u8]> {
    if !input.contains(&b'&') {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut changed = false;
    let mut i = 0;
    while i < input.len() {
        if input[i] != b'&' {
            // Copy the run up to the next '&' at once.
            let end = memchr::memchr(b'&', &input[i..]).map_or(input.len(), |p| i + p);
            out.extend_from_slice(&input[i..end]);
            i = end;
            continue;
        }
        let rest = &input[i + 1..];
        if rest.first() == Some(&b'#') {
            let (hex, start) = match rest.get(1) {
                Some(b'x') | Some(b'X') => (true, 2),
                _ => (false, 1),
            };
            let mut j = start;
            let mut cp: u32 = 0;
            while j < rest.len() && j - start < 8 {
                let d = if hex {
                    hex_val(rest[j]).map(u32::from)
                } else if rest[j].is_ascii_digit() {
                    Some(u32::from(rest[j] - b'0'))
                } else {
                    None
                };
                match d {
                    Some(d) => {
                        cp = cp
                            .saturating_mul(if hex { 16 } else { 10 })
                            .saturating_add(d)
                    }
                    None => break,
                }
                j += 1;
            }
            if j > start {
                push_char(&mut out, cp);
                changed = true;
                i += 1 + j;
                if input.get(i) == Some(&b';') {
                    i += 1;
                }
                continue;
            }
        } else {
            let mut j = 0;
            while j < rest.len() && j < 10 && rest[j].is_ascii_alphanumeric() {
                j += 1;
            }
            if j > 0 {
                if let Some(cp) = named_entity(&rest[..j]) {
                    push_char(&mut out, cp);
                    changed = true;
                    i += 1 + j;
                    if input.get(i) == Some(&b';') {
                        i += 1;
                    }
                    continue;
                }
            }
        }
        out.push(b'&');
        i += 1;
    }
    // Ampersands that start no entity (form separators) leave the value as it was.
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(input)
    }
}

fn js_decode(input: &[u8]) -> Cow<'_, [u8]> {
    if !input.contains(&b'\\') {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] != b'\\' || i + 1 >= input.len() {
            out.push(input[i]);
            i += 1;
            continue;
        }
        let n = input[i + 1];
        match n {
            b'u' | b'U' => {
                let h: Option<Vec<u8>> = input.get(i + 2..i + 6).map(|s| s.to_vec());
                if let Some(h) = h {
                    let vals: Option<Vec<u8>> = h.iter().map(|&b| hex_val(b)).collect();
                    if let Some(v) = vals {
                        let cp = v.iter().fold(0u32, |a, &d| (a << 4) | u32::from(d));
                        push_char(&mut out, cp);
                        i += 6;
                        continue;
                    }
                }
                out.push(n);
                i += 2;
            }
            b'x' | b'X' => {
                match (
                    input.get(i + 2).copied().and_then(hex_val),
                    input.get(i + 3).copied().and_then(hex_val),
                ) {
                    (Some(h), Some(l)) => {
                        out.push((h << 4) | l);
                        i += 4;
                    }
                    _ => {
                        out.push(n);
                        i += 2;
                    }
                }
            }
            b'0'..=b'7' => {
                let mut j = i + 1;
                let mut v: u32 = 0;
                while j < input.len() && j < i + 4 && (b'0'..=b'7').contains(&input[j]) {
                    v = v * 8 + u32::from(input[j] - b'0');
                    j += 1;
                }
                out.push((v & 0xff) as u8);
                i = j;
            }
            b'n' => {
                out.push(b'\n');
                i += 2;
            }
            b'r' => {
                out.push(b'\r');
                i += 2;
            }
            b't' => {
                out.push(b'\t');
                i += 2;
            }
            b'f' => {
                out.push(0x0c);
                i += 2;
            }
            b'v' => {
                out.push(0x0b);
                i += 2;
            }
            b'a' => {
                out.push(0x07);
                i += 2;
            }
            b'b' => {
                out.push(0x08);
                i += 2;
            }
            _ => {
                out.push(n);
                i += 2;
            }
        }
    }
    Cow::Owned(out)
}

fn css_decode(input: &[u8]) -> Cow<'_, [u8]> {
    if !input.contains(&b'\\') {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] != b'\\' {
            out.push(input[i]);
            i += 1;
            continue;
        }
        let mut j = i + 1;
        let mut cp: u32 = 0;
        while j < input.len() && j < i + 7 {
            match hex_val(input[j]) {
                Some(d) => cp = (cp << 4) | u32::from(d),
                None => break,
            }
            j += 1;
        }
        if j > i + 1 {
            push_char(&mut out, cp);
            if input.get(j).is_some_and(|&b| is_space(b)) {
                j += 1;
            }
            i = j;
        } else if let Some(&b) = input.get(i + 1) {
            if b != b'\n' {
                out.push(b);
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    Cow::Owned(out)
}

fn base64_value(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

/// Lenient base64 (standard and URL-safe alphabets): decodes up to the first invalid byte.
pub fn base64_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 3);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in input {
        if b == b'=' {
            break;
        }
        let Some(v) = base64_value(b) else {
            if is_space(b) {
                continue;
            }
            break;
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    out
}

fn hex_decode(input: &[u8]) -> Vec<u8> {
    input
        .chunks(2)
        .filter_map(|c| match c {
            [h, l] => Some((hex_val(*h)? << 4) | hex_val(*l)?),
            _ => None,
        })
        .collect()
}

fn compress_whitespace(input: &[u8]) -> Cow<'_, [u8]> {
    let needs = input.windows(2).any(|w| is_space(w[0]) && is_space(w[1]))
        || input.iter().any(|&b| is_space(b) && b != b' ');
    if !needs {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut in_space = false;
    for &b in input {
        if is_space(b) {
            if !in_space {
                out.push(b' ');
            }
            in_space = true;
        } else {
            out.push(b);
            in_space = false;
        }
    }
    Cow::Owned(out)
}

fn comments(input: &[u8], replace: bool) -> Cow<'_, [u8]> {
    let has = memchr::memmem::find(input, b"/*").is_some()
        || memchr::memmem::find(input, b"<!--").is_some()
        || (!replace && (memchr::memmem::find(input, b"--").is_some() || input.contains(&b'#')));
    if !has {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let rest = &input[i..];
        if rest.starts_with(b"/*") {
            match memchr::memmem::find(&rest[2..], b"*/") {
                Some(end) => i += 2 + end + 2,
                None => i = input.len(),
            }
            if replace {
                out.push(b' ');
            }
        } else if rest.starts_with(b"<!--") {
            match memchr::memmem::find(&rest[4..], b"-->") {
                Some(end) => i += 4 + end + 3,
                None => i = input.len(),
            }
            if replace {
                out.push(b' ');
            }
        } else if !replace && (rest.starts_with(b"--") || rest[0] == b'#') {
            // Line comment: drop to end of line.
            match memchr::memchr(b'\n', rest) {
                Some(end) => i += end,
                None => i = input.len(),
            }
        } else {
            out.push(rest[0]);
            i += 1;
        }
    }
    Cow::Owned(out)
}

fn normalize_path(input: &[u8], win: bool) -> Cow<'_, [u8]> {
    let has_bs = win && input.contains(&b'\\');
    let suspicious = has_bs
        || memchr::memmem::find(input, b"/.").is_some()
        || memchr::memmem::find(input, b"//").is_some()
        || input.starts_with(b"./")
        || input.starts_with(b"../");
    if !suspicious {
        return Cow::Borrowed(input);
    }
    let buf: Vec<u8> = if win {
        input
            .iter()
            .map(|&b| if b == b'\\' { b'/' } else { b })
            .collect()
    } else {
        input.to_vec()
    };
    let absolute = buf.first() == Some(&b'/');
    let trailing = buf.last() == Some(&b'/');
    let mut segs: Vec<&[u8]> = Vec::new();
    let mut leading_up = 0usize;
    for seg in buf.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                if segs.pop().is_none() && !absolute {
                    leading_up += 1;
                }
            }
            s => segs.push(s),
        }
    }
    let mut out = Vec::with_capacity(buf.len());
    if absolute {
        out.push(b'/');
    }
    for _ in 0..leading_up {
        out.extend_from_slice(b"../");
    }
    for (n, s) in segs.iter().enumerate() {
        if n > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(s);
    }
    if trailing && !segs.is_empty() {
        out.push(b'/');
    }
    Cow::Owned(out)
}

/// ModSecurity `cmdLine`: drop `\ " ' ^`, drop spaces before `/` and `(`, turn `,` and `;`
/// into spaces, compress whitespace, lowercase.
fn cmd_line(input: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(input.len());
    let mut in_space = false;
    for &b in input {
        match b {
            b'\\' | b'"' | b'\'' | b'^' => {}
            b' ' | b'\t' | b'\n' | b'\r' | b',' | b';' | 0x0b | 0x0c => {
                if !in_space {
                    out.push(b' ');
                    in_space = true;
                }
            }
            b'/' | b'(' => {
                if in_space {
                    out.pop();
                }
                in_space = false;
                out.push(b);
            }
            _ => {
                in_space = false;
                out.push(b.to_ascii_lowercase());
            }
        }
    }
    out
}

fn utf8_to_unicode(input: &[u8]) -> Cow<'_, [u8]> {
    if input.is_ascii() {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len() * 2);
    for chunk in input.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_ascii() {
                out.push(c as u8);
            } else {
                push_percent_u(&mut out, c as u32);
            }
        }
        out.extend_from_slice(chunk.invalid());
    }
    Cow::Owned(out)
}

/// Appends `%u` and `code` in lowercase hex, at least four digits (as `%u{:04x}`).
fn push_percent_u(out: &mut Vec<u8>, code: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"%u");
    let digits = (32 - code.leading_zeros()).div_ceil(4).max(4);
    for i in (0..digits).rev() {
        out.push(HEX[((code >> (4 * i)) & 0xf) as usize]);
    }
}

fn trim(input: &[u8], left: bool, right: bool) -> Cow<'_, [u8]> {
    let mut s = input;
    if left {
        while let [first, rest @ ..] = s {
            if is_space(*first) {
                s = rest;
            } else {
                break;
            }
        }
    }
    if right {
        while let [rest @ .., last] = s {
            if is_space(*last) {
                s = rest;
            } else {
                break;
            }
        }
    }
    Cow::Borrowed(s)
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_u_is_four_or_more_lowercase_hex_digits() {
        for code in (0..0x11_0000u32)
            .step_by(7)
            .chain([0x80, 0xfff, 0x1000, 0xffff, 0x10000, 0x10ffff])
        {
            let mut out = Vec::new();
            super::push_percent_u(&mut out, code);
            assert_eq!(out, format!("%u{code:04x}").into_bytes());
        }
        let t = super::utf8_to_unicode("a政务😀".as_bytes());
        assert_eq!(&t[..], b"a%u653f%u52a1%u1f600");
    }

    /// The engine's prefilter fast path: every `keeps_plain` transformation leaves plain
    /// values (letters, digits, `_`, non-ASCII bytes but 0xA0) unchanged up to ASCII case.
    #[test]
    fn keeps_plain_transformations_do_not_change_plain_values() {
        let samples = super::super::operator::plain_samples(
            &["", "政务公开abc", "Union_Select_1", "市政府办公厅"],
            0x9e37_79b9_7f4a_7c15,
            2000,
        );
        for (t, _) in super::TRANSFORM_NAMES {
            if !t.keeps_plain() {
                continue;
            }
            for v in &samples {
                assert!(super::super::engine::is_plain_for_tests(v));
                let out = t.apply(v);
                if t.identity_on_plain() {
                    assert_eq!(&out[..], &v[..], "{} changed plain value", t.name());
                }
                assert!(
                    out.eq_ignore_ascii_case(v),
                    "{} changed plain value {:?} into {:?}",
                    t.name(),
                    v,
                    out
                );
            }
        }
    }

    /// The same for stable values (paths and host names; see `engine::value_class`): the
    /// engine's prefilter fast path treats them as it treats plain values.
    #[test]
    fn keeps_plain_transformations_do_not_change_stable_values() {
        use super::super::engine::is_stable_for_tests as stable;
        for v in [
            "//", "a//b", "/./", "/a/.", "a/..", "..", ".x", "a--b", "/a/.b", "a b", "a%2f",
        ] {
            assert!(!stable(v.as_bytes()), "{v:?} taken as stable");
        }
        let mut samples: Vec<Vec<u8>> = [
            "/news/2024/list-1.html",
            "www.bench.gov.cn:8443",
            "/A-b/C.d/",
            "-",
            "a:b",
            "/",
            "a/",
            "/政务公开/通知.html",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        // Plain values with separators scattered through them, kept when stable.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for v in super::super::operator::plain_samples(&[], 7, 6000) {
            let mut w = Vec::with_capacity(v.len() * 2);
            for b in v {
                // Runs of separators too, so that `..`, `//` and the like come up.
                loop {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    if seed % 3 != 0 {
                        break;
                    }
                    w.push(b"/.-:"[(seed >> 8) as usize % 4]);
                }
                w.push(b);
            }
            if stable(&w) {
                samples.push(w);
            }
        }
        assert!(
            samples.len() > 1000,
            "only {} stable samples",
            samples.len()
        );
        for v in &samples {
            assert!(stable(v), "{:?}", String::from_utf8_lossy(v));
        }
        for (t, _) in super::TRANSFORM_NAMES {
            if !t.keeps_plain() {
                continue;
            }
            for v in &samples {
                let out = t.apply(v);
                if t.identity_on_plain() {
                    assert_eq!(&out[..], &v[..], "{} changed stable value", t.name());
                }
                assert!(
                    out.eq_ignore_ascii_case(v) && stable(&out),
                    "{} changed stable value {:?} into {:?}",
                    t.name(),
                    String::from_utf8_lossy(v),
                    String::from_utf8_lossy(&out)
                );
            }
        }
    }

    use super::*;

    fn t(tr: Transform, input: &str) -> String {
        String::from_utf8_lossy(&tr.apply(input.as_bytes())).into_owned()
    }

    #[test]
    fn names_round_trip() {
        for (tr, name) in TRANSFORM_NAMES {
            assert_eq!(Transform::parse(name), Some(*tr));
            assert_eq!(tr.name(), *name);
        }
        assert_eq!(
            Transform::parse("URLDECODEUNI"),
            Some(Transform::UrlDecodeUni)
        );
        assert_eq!(Transform::parse("bogus"), None);
    }

    #[test]
    fn table() {
        let cases: &[(Transform, &str, &str)] = &[
            (Transform::None, "AbC", "AbC"),
            (Transform::UrlDecode, "a%20b+c%2", "a b c%2"),
            (Transform::UrlDecode, "%u0041", "%u0041"),
            (Transform::UrlDecodeUni, "%u003cscript%U003E", "<script>"),
            (Transform::UrlDecodeUni, "%uff1cx", "<x"),
            (Transform::UrlDecodeUni, "%E6%94%BF", "政"),
            (
                Transform::HtmlEntityDecode,
                "&lt;a&#x3E;&#60&quot;&colon;&bogus;",
                "<a><\":&bogus;",
            ),
            (
                Transform::JsDecode,
                "\\x3cscript\\u003e\\74\\n",
                "<script><\n",
            ),
            (Transform::CssDecode, "\\6a avascript\\:", "javascript:"),
            (Transform::Base64Decode, "PHNjcmlwdD4=", "<script>"),
            (Transform::Base64Decode, "YWJj!!!", "abc"),
            (Transform::HexDecode, "3c7363", "<sc"),
            (Transform::Lowercase, "SeLeCt 中", "select 中"),
            (Transform::Uppercase, "abc", "ABC"),
            (Transform::CompressWhitespace, "a  \t\nb c", "a b c"),
            (Transform::RemoveWhitespace, " a b\tc ", "abc"),
            (Transform::RemoveNulls, "a\0b", "ab"),
            (Transform::ReplaceNulls, "a\0b", "a b"),
            (
                Transform::RemoveComments,
                "un/**/ion sel<!--x-->ect -- rest",
                "union select ",
            ),
            (Transform::ReplaceComments, "un/**/ion", "un ion"),
            (
                Transform::NormalizePath,
                "/a/./b/../../etc//passwd",
                "/etc/passwd",
            ),
            (
                Transform::NormalizePath,
                "../../etc/passwd",
                "../../etc/passwd",
            ),
            (
                Transform::NormalizePathWin,
                "..\\..\\windows\\win.ini",
                "../../windows/win.ini",
            ),
            (
                Transform::CmdLine,
                "C^at /e\"tc/pa's's'wd;ID",
                "cat/etc/passwd id",
            ),
            (Transform::Utf8ToUnicode, "a政", "a%u653f"),
            (Transform::Length, "abcd", "4"),
            (Transform::Trim, "  x y \t", "x y"),
            (Transform::TrimLeft, "  x ", "x "),
            (Transform::TrimRight, "  x ", "  x"),
        ];
        for (tr, input, want) in cases {
            assert_eq!(t(*tr, input), *want, "{tr} on {input:?}");
        }
    }

    #[test]
    fn seclang_additions() {
        assert_eq!(t(Transform::HexEncode, "a/"), "612f");
        assert_eq!(
            hex_encode(&Transform::Sha1.apply(b"abc")),
            b"a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(t(Transform::EscapeSeqDecode, r"a\x41\n\101\q"), "aA\nA\\q");
        assert_eq!(t(Transform::RemoveCommentsChar, "a/*b*/c--d#e"), "abcde");
    }

    #[test]
    fn unchanged_input_is_borrowed() {
        for (tr, _) in TRANSFORM_NAMES {
            if matches!(
                tr,
                Transform::Base64Decode
                    | Transform::HexDecode
                    | Transform::Length
                    | Transform::CmdLine
                    | Transform::Uppercase
                    | Transform::Sha1
                    | Transform::HexEncode
            ) {
                continue;
            }
            assert!(matches!(tr.apply(b"plain"), Cow::Borrowed(_)), "{tr}");
        }
    }

    #[test]
    fn chain_applies_in_order() {
        let out = apply_chain(
            &[
                Transform::UrlDecodeUni,
                Transform::UrlDecodeUni,
                Transform::Lowercase,
            ],
            b"%253CScRiPt",
        );
        assert_eq!(&*out, b"<script");
    }

    #[test]
    fn malformed_input_does_not_panic() {
        for (tr, _) in TRANSFORM_NAMES {
            for s in [
                "%",
                "%u",
                "%u12",
                "&#",
                "&#x",
                "\\",
                "\\u12",
                "\\x",
                "/..",
                "\u{0}\u{ff}",
            ] {
                let _ = tr.apply(s.as_bytes());
            }
            let _ = tr.apply(&[0xff, 0xfe, b'%', 0xc3]);
        }
    }
}
