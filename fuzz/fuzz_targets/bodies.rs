//! Request body decoders (urlencoded, multipart, JSON, XML and sniffed) on arbitrary bytes; the
//! first byte picks the content type. Never panics.
#![no_main]
use egret::waf::request::{
    decode_body, multipart_boundary, parse_urlencoded, percent_decode, Vars,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let ct = match sel % 8 {
        0 => Some("application/x-www-form-urlencoded"),
        1 => Some("multipart/form-data; boundary=XyZ"),
        2 => Some("application/json"),
        3 => Some("text/xml; charset=utf-8"),
        4 => Some("application/xml"),
        5 => None,
        6 => Some("text/plain"),
        // The content type itself from the input (its first line).
        _ => None,
    };
    let mut v = Vars::default();
    if sel % 8 == 7 {
        let (ct_line, rest) = match body.iter().position(|&b| b == b'\n') {
            Some(p) => (&body[..p], &body[p + 1..]),
            None => (body, &[][..]),
        };
        let ct = String::from_utf8_lossy(ct_line);
        let _ = multipart_boundary(&ct);
        decode_body(&mut v, Some(&ct), rest);
    } else {
        decode_body(&mut v, ct, body);
    }
    let _ = egret::waf::multipart::parse(Some("XyZ"), body);
    let _ = parse_urlencoded(body, |_, _| {});
    let (decoded, _) = percent_decode(body, true);
    assert!(decoded.len() <= body.len());
});
