//! Strict, synchronous `multipart/form-data` parser. It never rejects: every deviation from
//! RFC 7578 / RFC 2046 that parsers disagree on is recorded as a flag and exported as a
//! `MULTIPART_*` variable, so that rules (not the parser) decide.

use super::model::Variable;
use super::request::Vars;

/// Maximum number of parts parsed.
const MAX_PARTS: usize = 1024;

/// One decoded part.
#[derive(Debug, Clone, Default)]
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub headers: Vec<(String, String)>,
    pub data: Vec<u8>,
}

/// Parser anomalies (each exported as a `MULTIPART_*` variable with value 0/1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    pub boundary_missing: bool,
    pub boundary_invalid: bool,
    pub boundary_quoted: bool,
    pub data_before: bool,
    pub data_after: bool,
    pub header_folding: bool,
    pub invalid_quoting: bool,
    pub invalid_part: bool,
    pub lf_line: bool,
    pub missing_semicolon: bool,
    pub unterminated: bool,
    pub duplicate_disposition: bool,
    pub unmatched_boundary: bool,
}

impl Flags {
    /// MULTIPART_STRICT_ERROR: any anomaly that lets two parsers see different fields.
    /// (Quoted boundaries and bare-LF lines are recorded but not counted: common clients send them.)
    pub fn strict_error(&self) -> bool {
        self.boundary_missing
            || self.boundary_invalid
            || self.data_before
            || self.data_after
            || self.header_folding
            || self.invalid_quoting
            || self.invalid_part
            || self.missing_semicolon
            || self.unterminated
            || self.duplicate_disposition
            || self.unmatched_boundary
    }

    pub fn export(&self, v: &mut Vars) {
        let b = |x: bool| if x { "1" } else { "0" };
        v.set(Variable::MultipartStrictError, b(self.strict_error()));
        v.set(
            Variable::MultipartBoundaryMissing,
            b(self.boundary_missing || self.boundary_invalid),
        );
        v.set(Variable::MultipartDataBefore, b(self.data_before));
        v.set(Variable::MultipartDataAfter, b(self.data_after));
        v.set(Variable::MultipartHeaderFolding, b(self.header_folding));
        v.set(
            Variable::MultipartInvalidHeaderFolding,
            b(self.header_folding),
        );
        v.set(Variable::MultipartInvalidQuoting, b(self.invalid_quoting));
        v.set(Variable::MultipartInvalidPart, b(self.invalid_part));
        v.set(Variable::MultipartLfLine, b(self.lf_line));
        v.set(
            Variable::MultipartMissingSemicolon,
            b(self.missing_semicolon),
        );
        v.set(Variable::MultipartUnterminated, b(self.unterminated));
        v.set(
            Variable::MultipartDuplicateDisposition,
            b(self.duplicate_disposition),
        );
        v.set(
            Variable::MultipartUnmatchedBoundary,
            b(self.unmatched_boundary),
        );
    }
}

/// Parse result.
#[derive(Debug, Clone, Default)]
pub struct Multipart {
    pub parts: Vec<Part>,
    pub flags: Flags,
}

fn valid_boundary(b: &str) -> bool {
    !b.is_empty()
        && b.len() <= 70
        && !b.ends_with(' ')
        && b.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&c))
}

/// Parses a body given the raw `boundary=` parameter value (if any).
pub fn parse(boundary_param: Option<&str>, body: &[u8]) -> Multipart {
    let mut out = Multipart::default();
    let Some(raw) = boundary_param else {
        out.flags.boundary_missing = true;
        return out;
    };
    let mut boundary = raw.trim();
    if boundary.len() >= 2 && boundary.starts_with('"') && boundary.ends_with('"') {
        out.flags.boundary_quoted = true;
        boundary = &boundary[1..boundary.len() - 1];
    } else if boundary.contains('"') {
        out.flags.invalid_quoting = true;
    }
    if !valid_boundary(boundary) {
        out.flags.boundary_invalid = true;
        return out;
    }
    let delim = format!("--{boundary}").into_bytes();

    // The first delimiter must open the body (at a line start).
    let Some(first) = find_delim(body, &delim, 0, true) else {
        out.flags.unterminated = true;
        if !body.is_empty() {
            out.flags.data_before = true;
        }
        return out;
    };
    if body[..first].iter().any(|b| !b.is_ascii_whitespace()) {
        out.flags.data_before = true;
    }
    let mut pos = first + delim.len();
    loop {
        // After a delimiter: `--` closes, otherwise optional padding then a line break.
        if body[pos..].starts_with(b"--") {
            let rest = &body[pos + 2..];
            if rest.iter().any(|b| !b.is_ascii_whitespace()) {
                out.flags.data_after = true;
            }
            return out;
        }
        while pos < body.len() && (body[pos] == b' ' || body[pos] == b'\t') {
            pos += 1;
        }
        if body[pos..].starts_with(b"\r\n") {
            pos += 2;
        } else if body[pos..].starts_with(b"\n") {
            out.flags.lf_line = true;
            pos += 1;
        } else {
            out.flags.invalid_part = true;
            out.flags.unterminated = pos >= body.len();
            return out;
        }
        if out.parts.len() >= MAX_PARTS {
            return out;
        }
        // Headers.
        let mut part = Part::default();
        let mut saw_disposition = false;
        loop {
            let Some(nl) = memchr::memchr(b'\n', &body[pos..]) else {
                out.flags.unterminated = true;
                return out;
            };
            let mut line = &body[pos..pos + nl];
            pos += nl + 1;
            if let Some(l) = line.strip_suffix(b"\r") {
                line = l;
            } else {
                out.flags.lf_line = true;
            }
            if line.is_empty() {
                break;
            }
            if line[0] == b' ' || line[0] == b'\t' {
                out.flags.header_folding = true;
                continue;
            }
            let text = String::from_utf8_lossy(line).into_owned();
            let Some((hn, hv)) = text.split_once(':') else {
                out.flags.invalid_part = true;
                continue;
            };
            let (hn, hv) = (hn.trim().to_owned(), hv.trim().to_owned());
            if hn.eq_ignore_ascii_case("content-disposition") {
                if saw_disposition {
                    out.flags.duplicate_disposition = true;
                }
                saw_disposition = true;
                parse_disposition(&hv, &mut part, &mut out.flags);
            }
            part.headers.push((hn, hv));
        }
        if !saw_disposition {
            out.flags.invalid_part = true;
        }
        // Data up to the next delimiter, which must start a line.
        let Some(next) = find_delim(body, &delim, pos, false) else {
            out.flags.unterminated = true;
            part.data = body[pos..].to_vec();
            out.parts.push(part);
            return out;
        };
        let mut end = next;
        if end > pos && body[end - 1] == b'\n' {
            end -= 1;
            if end > pos && body[end - 1] == b'\r' {
                end -= 1;
            } else {
                out.flags.lf_line = true;
            }
        }
        let data = &body[pos..end.max(pos)];
        if looks_like_other_boundary(data, boundary) {
            out.flags.unmatched_boundary = true;
        }
        part.data = data.to_vec();
        out.parts.push(part);
        pos = next + delim.len();
    }
}

/// Finds `delim` at a line start at or after `from` (or at `from` itself when `at_start`).
fn find_delim(body: &[u8], delim: &[u8], from: usize, at_start: bool) -> Option<usize> {
    let mut i = from;
    while let Some(p) = memchr::memmem::find(&body[i..], delim) {
        let at = i + p;
        let line_start = at == 0 || body[at - 1] == b'\n' || (at_start && at == from);
        if line_start {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

/// A data line that starts like our boundary but differs (boundary confusion attempts).
///
/// The probe is most of the boundary (all but its last 4 bytes, at least 8), so that lines
/// of dashes in ordinary text never match Firefox's `-----…1234` boundaries.
fn looks_like_other_boundary(data: &[u8], boundary: &str) -> bool {
    let b = boundary.as_bytes();
    if b.len() < 8 {
        return false;
    }
    let prefix_len = b.len().saturating_sub(4).max(8).min(b.len());
    if b[..prefix_len].iter().all(|&c| c == b'-') {
        return false;
    }
    let mut probe = b"--".to_vec();
    probe.extend_from_slice(&b[..prefix_len]);
    data.split(|&c| c == b'\n').any(|l| l.starts_with(&probe))
}

fn parse_disposition(v: &str, part: &mut Part, flags: &mut Flags) {
    let mut rest = v.trim();
    let Some(after) = rest.strip_prefix("form-data") else {
        flags.invalid_part = true;
        return;
    };
    rest = after.trim_start();
    while !rest.is_empty() {
        match rest.strip_prefix(';') {
            Some(r) => rest = r.trim_start(),
            None => {
                flags.missing_semicolon = true;
            }
        }
        let Some(eq) = rest.find('=') else {
            if !rest.trim().is_empty() {
                flags.invalid_part = true;
            }
            return;
        };
        let key = rest[..eq].trim().to_ascii_lowercase();
        rest = rest[eq + 1..].trim_start();
        let value: String;
        if let Some(r) = rest.strip_prefix('"') {
            let mut val = String::new();
            let mut chars = r.char_indices();
            let mut close = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            val.push(n);
                        }
                    }
                    '"' => {
                        close = Some(i);
                        break;
                    }
                    c => val.push(c),
                }
            }
            let Some(ci) = close else {
                flags.invalid_quoting = true;
                value = val;
                assign(&key, value, part, flags);
                return;
            };
            value = val;
            rest = r[ci + 1..].trim_start();
        } else {
            let end = rest.find(';').unwrap_or(rest.len());
            let raw = rest[..end].trim();
            // RFC 5987 `filename*=UTF-8''name` legitimately contains quotes.
            if key != "filename*" && (raw.contains('\'') || raw.contains('"')) {
                flags.invalid_quoting = true;
            }
            value = raw.to_owned();
            rest = &rest[end..];
        }
        assign(&key, value, part, flags);
    }
}

fn assign(key: &str, value: String, part: &mut Part, flags: &mut Flags) {
    match key {
        "name" => {
            if !part.name.is_empty() {
                flags.invalid_part = true;
            }
            part.name = value;
        }
        "filename" => {
            if part.filename.is_some() {
                flags.invalid_part = true;
            }
            part.filename = Some(value);
        }
        "filename*" => part.filename = Some(value),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    #[test]
    fn well_formed() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhello\r\n--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8data\r\n--XyZ--\r\n";
        let m = parse(b("XyZ").as_deref(), body);
        assert_eq!(m.flags, Flags::default(), "{:?}", m.flags);
        assert_eq!(m.parts.len(), 2);
        assert_eq!(m.parts[0].name, "title");
        assert_eq!(m.parts[0].data, b"hello");
        assert_eq!(m.parts[1].filename.as_deref(), Some("a.jpg"));
        assert_eq!(m.parts[1].data, b"\xff\xd8data");
    }

    #[test]
    fn anomalies_are_flagged() {
        type Case = (Option<String>, &'static [u8], fn(&Flags) -> bool);
        let cases: &[Case] = &[
            (None, b"x", |f| f.boundary_missing),
            (b("bad\u{1}"), b"x", |f| f.boundary_invalid),
            (b("B"), b"junk\r\n--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--B--", |f| f.data_before),
            (b("B"), b"--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--B--\r\nextra", |f| f.data_after),
            (b("B"), b"--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1", |f| f.unterminated),
            (b("B"), b"--B\r\nContent-Disposition: form-data; name=\"a\"\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\n1\r\n--B--", |f| f.duplicate_disposition),
            (b("B"), b"--B\r\nContent-Disposition: form-data; name=\"a\r\n\r\n1\r\n--B--", |f| f.invalid_quoting),
            (b("B"), b"--B\r\nContent-Disposition: form-data; name=\"a\"\r\n folded\r\n\r\n1\r\n--B--", |f| f.header_folding),
            (b("B"), b"--B\r\nX-Other: 1\r\n\r\n1\r\n--B--", |f| f.invalid_part),
            (b("B"), b"--B\r\nContent-Disposition: form-data name=\"a\"\r\n\r\n1\r\n--B--", |f| f.missing_semicolon),
            (b("BoundaryABCDEFGH"), b"--BoundaryABCDEFGH\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n--BoundaryABCDXXXX\r\n\r\n--BoundaryABCDEFGH--", |f| f.unmatched_boundary),
            (b("\"B\""), b"--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--B--", |f| f.boundary_quoted && !f.strict_error()),
        ];
        for (i, (bd, body, check)) in cases.iter().enumerate() {
            let m = parse(bd.as_deref(), body);
            assert!(check(&m.flags), "case {i}: {:?}", m.flags);
        }
    }

    #[test]
    fn ordinary_clients_are_not_flagged() {
        let firefox = "---------------------------3189547192364120437891234567";
        let body = format!("--{firefox}\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nline one\r\n------------------------------\r\nline two\r\n--{firefox}\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"; filename*=UTF-8''%E7%94%B3.txt\r\n\r\nx\r\n--{firefox}--\r\n");
        let m = parse(Some(firefox), body.as_bytes());
        assert!(!m.flags.strict_error(), "{:?}", m.flags);
        assert_eq!(m.parts.len(), 2);
    }

    #[test]
    fn truncated_inputs_never_panic() {
        let body: &[u8] = b"--B\r\nContent-Disposition: form-data; name=\"a\"; filename=\"x\"\r\n\r\ndata\r\n--B--\r\n";
        for n in 0..body.len() {
            let _ = parse(b("B").as_deref(), &body[..n]);
        }
    }
}
