//! Request framing and size checks, run before a request is routed.
//!
//! pingora already rejects conflicting Content-Length values and a non-chunked final
//! Transfer-Encoding; when a request carries both Content-Length and Transfer-Encoding it drops
//! Content-Length and proceeds, which RFC 9112 allows but a security gateway should not: such a
//! request is a smuggling attempt, so we look at the raw header bytes and reject it.

use crate::snapshot::Limits;
use pingora::http::RequestHeader;

/// Why a request is refused before routing: the status and whether to close the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    pub status: u16,
    pub reason: &'static str,
    pub close: bool,
}

const fn reject(status: u16, reason: &'static str) -> Reject {
    Reject {
        status,
        reason,
        close: true,
    }
}

/// Framing checks that do not depend on the site. `raw_h1` is the raw header block of an
/// HTTP/1 request (None for HTTP/2, whose framing is done by the h2 layer).
pub fn check_framing(req: &RequestHeader, raw_h1: Option<&[u8]>) -> Result<(), Reject> {
    if req.method == http::Method::CONNECT {
        return Err(reject(405, "CONNECT is not proxied"));
    }
    if let Some(raw) = raw_h1 {
        check_request_line(raw)?;
        let mut cl = 0;
        let mut te = 0;
        for line in raw.split(|&b| b == b'\n').skip(1) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                return Err(reject(400, "obsolete line folding"));
            }
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let name = &line[..colon];
            if name.eq_ignore_ascii_case(b"content-length") {
                cl += 1;
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                te += 1;
            }
        }
        if cl > 0 && te > 0 {
            return Err(reject(400, "both Content-Length and Transfer-Encoding"));
        }
        if cl > 1 {
            return Err(reject(400, "duplicate Content-Length"));
        }
        if te > 1 {
            return Err(reject(400, "duplicate Transfer-Encoding"));
        }
    }
    let mut te_values = req.headers.get_all(http::header::TRANSFER_ENCODING).iter();
    if let Some(v) = te_values.next() {
        let v = v.as_bytes();
        if !v.trim_ascii().eq_ignore_ascii_case(b"chunked") {
            return Err(reject(501, "unsupported Transfer-Encoding"));
        }
    }
    let hosts = req.headers.get_all(http::header::HOST).iter().count();
    if hosts > 1 {
        return Err(reject(400, "duplicate Host"));
    }
    // A GET or HEAD with a body is the CL.0 desync vector against origins that ignore the body
    // of such requests and read it as the next request (CRS rules 920170/920171 refuse it too).
    if req.method == http::Method::GET || req.method == http::Method::HEAD {
        let te = req.headers.contains_key(http::header::TRANSFER_ENCODING);
        let cl = req
            .headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes().trim_ascii() != b"0");
        if te || cl {
            return Err(reject(400, "GET or HEAD with a body"));
        }
    }
    Ok(())
}

/// The HTTP/1 request line must be `method SP target SP version` with exactly one space between
/// the parts (pingora tolerates more and percent-encodes what lands in the target), and the
/// target in origin-form (`/...`) or absolute-form (`http://`, `https://`), without control
/// bytes or spaces. Bytes of 0x80 and above (raw UTF-8 paths) are let through as nginx does.
fn check_request_line(raw: &[u8]) -> Result<(), Reject> {
    let line = raw.split(|&b| b == b'\n').next().unwrap_or(raw);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(_version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(reject(400, "malformed request line"));
    };
    if method.is_empty() || target.is_empty() {
        return Err(reject(400, "malformed request line"));
    }
    if target.iter().any(|&b| b < 0x21 || b == 0x7f) {
        return Err(reject(400, "control byte in the request target"));
    }
    let absolute = target.len() > 8
        && (target[..7].eq_ignore_ascii_case(b"http://")
            || target[..8].eq_ignore_ascii_case(b"https://"));
    if target[0] != b'/' && !absolute {
        return Err(reject(
            400,
            "request target not in origin-form or absolute-form",
        ));
    }
    Ok(())
}

/// Size checks against the site's limits.
pub fn check_limits(
    req: &RequestHeader,
    raw_h1_len: Option<usize>,
    limits: &Limits,
) -> Result<(), Reject> {
    if req.headers.len() > limits.max_headers {
        return Err(reject(431, "too many header fields"));
    }
    let header_bytes = raw_h1_len.unwrap_or_else(|| {
        req.headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum()
    });
    if header_bytes > limits.max_header_bytes {
        return Err(reject(431, "header section too large"));
    }
    let uri_len = req
        .uri
        .path_and_query()
        .map(|p| p.as_str().len())
        .unwrap_or(0);
    if uri_len > limits.max_uri_bytes {
        return Err(reject(414, "URI too long"));
    }
    if let Some(cl) = req.headers.get(http::header::CONTENT_LENGTH) {
        match std::str::from_utf8(cl.as_bytes())
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
        {
            Some(n) if n > limits.max_body_bytes => {
                return Err(Reject {
                    status: 413,
                    reason: "body too large",
                    close: true,
                })
            }
            Some(_) => {}
            None => return Err(reject(400, "invalid Content-Length")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/x", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn rejects_cl_and_te_in_raw_header() {
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n";
        let r = req(&[("host", "a"), ("transfer-encoding", "chunked")]);
        assert_eq!(check_framing(&r, Some(raw)).unwrap_err().status, 400);
    }

    #[test]
    fn rejects_odd_transfer_encodings() {
        let r = req(&[("host", "a"), ("transfer-encoding", "gzip, chunked")]);
        assert_eq!(check_framing(&r, None).unwrap_err().status, 501);
        let r = req(&[("host", "a"), ("transfer-encoding", "Chunked")]);
        assert!(check_framing(&r, None).is_ok());
    }

    #[test]
    fn rejects_duplicate_host_and_folding() {
        let r = req(&[("host", "a"), ("host", "b")]);
        assert_eq!(check_framing(&r, None).unwrap_err().status, 400);
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n  c\r\n\r\n";
        let r = req(&[("host", "a")]);
        assert_eq!(
            check_framing(&r, Some(raw)).unwrap_err().reason,
            "obsolete line folding"
        );
    }

    #[test]
    fn request_lines() {
        let r = req(&[("host", "a")]);
        for bad in [
            &b"GET  /x HTTP/1.1\r\n\r\n"[..],
            b"GET /x y HTTP/1.1\r\n\r\n",
            b"GET /x\x00 HTTP/1.1\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\n\r\n",
            b"GET x HTTP/1.1\r\n\r\n",
            b"GET ftp://a/x HTTP/1.1\r\n\r\n",
            b"GET /x\r\n\r\n",
        ] {
            let e = check_framing(&r, Some(bad)).unwrap_err();
            assert_eq!(e.status, 400, "{}", String::from_utf8_lossy(bad));
        }
        for good in [
            &b"GET /x HTTP/1.1\r\n\r\n"[..],
            b"GET /\xe6\x96\xb0 HTTP/1.1\n\n",
            b"GET HTTP://a/x HTTP/1.1\r\n\r\n",
        ] {
            assert!(check_framing(&r, Some(good)).is_ok());
        }
    }

    #[test]
    fn get_with_a_body() {
        let mut r = RequestHeader::build("GET", b"/x", None).unwrap();
        r.append_header("content-length", "0").unwrap();
        assert!(check_framing(&r, None).is_ok());
        r.insert_header("content-length", "5").unwrap();
        assert_eq!(check_framing(&r, None).unwrap_err().status, 400);
    }

    #[test]
    fn limits() {
        let l = Limits {
            max_headers: 2,
            max_header_bytes: 100,
            max_uri_bytes: 10,
            max_body_bytes: 5,
            ..Limits::default()
        };
        assert_eq!(
            check_limits(&req(&[("a", "1"), ("b", "2"), ("c", "3")]), None, &l)
                .unwrap_err()
                .status,
            431
        );
        assert_eq!(
            check_limits(&req(&[("a", &"x".repeat(200))]), None, &l)
                .unwrap_err()
                .status,
            431
        );
        assert_eq!(
            check_limits(&req(&[("content-length", "6")]), None, &l)
                .unwrap_err()
                .status,
            413
        );
        assert!(check_limits(&req(&[("content-length", "5")]), None, &l).is_ok());
        let long = RequestHeader::build("GET", b"/0123456789abc", None).unwrap();
        assert_eq!(check_limits(&long, None, &l).unwrap_err().status, 414);
    }
}
