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
    if let Some(raw) = raw_h1 {
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
    if req.method == http::Method::CONNECT {
        return Err(reject(405, "CONNECT is not proxied"));
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
