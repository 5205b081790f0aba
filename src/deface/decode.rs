//! Content-Encoding decoding within a size bound.
//!
//! Owns [`decode_body`]: identity, gzip (`x-gzip`), deflate (zlib-wrapped or raw) and br,
//! possibly stacked (`Content-Encoding: gzip, br` is undone right to left). Output is read
//! through a `take(limit + 1)` so a decompression bomb costs at most `limit + 1` bytes before it
//! is refused with [`DecodeError::TooLarge`].

use std::borrow::Cow;
use std::io::Read;

use super::error::DecodeError;

/// Most stacked encodings accepted.
const MAX_LAYERS: usize = 2;

fn read_bounded(
    reader: impl Read,
    limit: usize,
    encoding: &'static str,
) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|source| DecodeError::Corrupt { encoding, source })?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    Ok(out)
}

fn decode_one(coding: &str, body: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    match coding {
        "gzip" | "x-gzip" => read_bounded(flate2::read::MultiGzDecoder::new(body), limit, "gzip"),
        "deflate" => {
            // RFC 9110 deflate is zlib-wrapped; some servers send raw deflate.
            let zlib_header = match body {
                [cmf, flg, ..] => {
                    cmf & 0x0f == 8 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0
                }
                _ => false,
            };
            if zlib_header {
                read_bounded(flate2::read::ZlibDecoder::new(body), limit, "deflate")
            } else {
                read_bounded(flate2::read::DeflateDecoder::new(body), limit, "deflate")
            }
        }
        "br" => read_bounded(
            brotli_decompressor::Decompressor::new(body, 4096),
            limit,
            "br",
        ),
        other => Err(DecodeError::Unsupported(other.to_owned())),
    }
}

/// Whether a `Content-Type` is HTML (`text/html`, `application/xhtml+xml`); other responses
/// are not inspected.
pub fn is_html(content_type: &str) -> bool {
    let mime = content_type.split(';').next().unwrap_or("").trim();
    mime.eq_ignore_ascii_case("text/html") || mime.eq_ignore_ascii_case("application/xhtml+xml")
}

/// The `charset` parameter of a `Content-Type`, if any (`text/html; charset="GBK"` -> `GBK`).
pub fn charset_of(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|param| {
        let (k, v) = param.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"'))
            .filter(|v| !v.is_empty())
    })
}

/// Decodes `body` sent with `content_encoding` (the header value, `None` for identity) into at
/// most `limit` bytes.
pub fn decode_body<'a>(
    content_encoding: Option<&str>,
    body: &'a [u8],
    limit: usize,
) -> Result<Cow<'a, [u8]>, DecodeError> {
    let codings: Vec<String> = content_encoding
        .unwrap_or("")
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "identity")
        .collect();
    if codings.len() > MAX_LAYERS {
        return Err(DecodeError::Unsupported(
            content_encoding.unwrap_or("").to_owned(),
        ));
    }
    let mut current: Cow<'a, [u8]> = Cow::Borrowed(body);
    for coding in codings.iter().rev() {
        current = Cow::Owned(decode_one(coding, &current, limit)?);
    }
    if current.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn decodes_each_coding() {
        let page = "<html>政务公开</html>".repeat(50);
        assert_eq!(
            &*decode_body(None, page.as_bytes(), 1 << 20).unwrap(),
            page.as_bytes()
        );
        assert_eq!(
            &*decode_body(Some("GZIP"), &gzip(page.as_bytes()), 1 << 20).unwrap(),
            page.as_bytes()
        );

        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(page.as_bytes()).unwrap();
        assert_eq!(
            &*decode_body(Some("deflate"), &z.finish().unwrap(), 1 << 20).unwrap(),
            page.as_bytes()
        );
        let mut raw =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw.write_all(page.as_bytes()).unwrap();
        assert_eq!(
            &*decode_body(Some("deflate"), &raw.finish().unwrap(), 1 << 20).unwrap(),
            page.as_bytes()
        );

        let br = brotli_compress(page.as_bytes());
        assert_eq!(
            &*decode_body(Some("br"), &br, 1 << 20).unwrap(),
            page.as_bytes()
        );
        // Stacked: gzip applied first, then br.
        let stacked = brotli_compress(&gzip(page.as_bytes()));
        assert_eq!(
            &*decode_body(Some("gzip, br"), &stacked, 1 << 20).unwrap(),
            page.as_bytes()
        );
    }

    /// A stored (uncompressed) brotli stream, enough to test the decoder without an encoder.
    fn brotli_compress(data: &[u8]) -> Vec<u8> {
        // WBITS=16 header (0x0b... ), then uncompressed meta-blocks of up to 65536 bytes.
        let mut bits = BitWriter::default();
        bits.put(0, 1); // WBITS = 16
        for chunk in data.chunks(65_536) {
            bits.put(0, 1); // ISLAST = 0
            bits.put(0, 2); // MNIBBLES = 4
            let mlen = chunk.len() - 1;
            bits.put(mlen as u64, 16);
            bits.put(1, 1); // ISUNCOMPRESSED
            bits.align();
            bits.bytes.extend_from_slice(chunk);
        }
        bits.put(1, 1); // ISLAST
        bits.put(1, 1); // ISLASTEMPTY
        bits.align();
        bits.bytes
    }

    #[derive(Default)]
    struct BitWriter {
        bytes: Vec<u8>,
        acc: u64,
        n: u32,
    }

    impl BitWriter {
        fn put(&mut self, v: u64, n: u32) {
            self.acc |= v << self.n;
            self.n += n;
            while self.n >= 8 {
                self.bytes.push(self.acc as u8);
                self.acc >>= 8;
                self.n -= 8;
            }
        }
        fn align(&mut self) {
            if self.n > 0 {
                self.bytes.push(self.acc as u8);
                self.acc = 0;
                self.n = 0;
            }
        }
    }

    #[test]
    fn bomb_is_refused_at_the_bound() {
        let zeros = vec![0u8; 16 * 1024 * 1024];
        let bomb = gzip(&zeros);
        assert!(bomb.len() < 1024 * 1024);
        match decode_body(Some("gzip"), &bomb, 1024 * 1024) {
            Err(DecodeError::TooLarge { limit }) => assert_eq!(limit, 1024 * 1024),
            other => panic!("expected TooLarge, got {other:?}"),
        }
        // Identity bodies over the bound too.
        assert!(matches!(
            decode_body(None, &zeros[..2048], 1024),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn content_type_helpers() {
        assert!(is_html("text/html; charset=utf-8"));
        assert!(is_html("TEXT/HTML"));
        assert!(!is_html("application/json"));
        assert!(!is_html("text/htmlx"));
        assert_eq!(charset_of("text/html; charset=\"GBK\""), Some("GBK"));
        assert_eq!(charset_of("text/html;Charset=utf-8;x=y"), Some("utf-8"));
        assert_eq!(charset_of("text/html"), None);
    }

    #[test]
    fn corrupt_and_unknown() {
        assert!(matches!(
            decode_body(Some("gzip"), b"not gzip at all", 1024),
            Err(DecodeError::Corrupt { .. })
        ));
        assert!(matches!(
            decode_body(Some("br"), b"\xff\xff\xff\xff", 1024),
            Err(DecodeError::Corrupt { .. })
        ));
        assert!(matches!(
            decode_body(Some("zstd"), b"x", 1024),
            Err(DecodeError::Unsupported(_))
        ));
        assert!(matches!(
            decode_body(Some("gzip, gzip, gzip"), b"x", 1024),
            Err(DecodeError::Unsupported(_))
        ));
    }
}
