//! The request input view ([`Request`]) and the one-time decoding of it into variable
//! collections ([`Vars`]): request line, query arguments, headers, cookies, and request
//! bodies (urlencoded, strict multipart, JSON, XML). Rules never decode anything themselves.

use std::net::IpAddr;

use smallvec::SmallVec;

use super::model::{Variable, VARIABLE_COUNT};

/// Hard cap on decoded arguments / parts per request, so decoding itself is bounded.
pub const MAX_ITEMS: usize = 4096;
/// JSON / XML nesting cap.
const MAX_DEPTH: usize = 64;

/// What the proxy hands to the engine: a borrowed view of the request as received.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// Raw request target (`/path?query`, or absolute-form), as received.
    pub uri: &'a str,
    /// `HTTP/1.1`, `HTTP/2.0`, ...
    pub version: &'a str,
    /// Header fields in order, duplicates kept.
    pub headers: &'a [(&'a str, &'a [u8])],
    pub client_ip: IpAddr,
    /// The (possibly truncated) body, if already read; [`super::Transaction::eval_body`]
    /// takes it explicitly instead.
    pub body: Option<&'a [u8]>,
    /// Overrides the `Content-Type` header for body processing.
    pub content_type: Option<&'a str>,
}

impl<'a> Request<'a> {
    /// First value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// Effective content type: the override, else the header.
    pub fn effective_content_type(&self) -> Option<String> {
        self.content_type.map(str::to_owned).or_else(|| {
            self.header("content-type")
                .map(|v| String::from_utf8_lossy(v).into_owned())
        })
    }
}

/// One decoded member: its key (argument/header/cookie name, empty for scalars) and value.
#[derive(Debug, Clone)]
pub struct Item {
    pub key: String,
    pub value: Vec<u8>,
}

/// All decoded variables of one request. Members get a stable id (index) used by the
/// engine's transformation cache.
#[derive(Debug, Clone)]
pub struct Vars {
    pub items: Vec<Item>,
    /// Member ids per variable; scalars (one member) and small collections stay inline, so
    /// decoding a request does not allocate once per variable.
    coll: Vec<SmallVec<[u32; 2]>>,
}

impl Default for Vars {
    fn default() -> Self {
        Vars {
            items: Vec::new(),
            coll: std::iter::repeat_with(SmallVec::new)
                .take(VARIABLE_COUNT)
                .collect(),
        }
    }
}

impl Vars {
    /// Adds a member to a collection (or a scalar value) and returns its id.
    pub fn push(&mut self, var: Variable, key: &str, value: impl Into<Vec<u8>>) -> u32 {
        let id = self.items.len() as u32;
        self.items.push(Item {
            key: key.to_owned(),
            value: value.into(),
        });
        self.coll[var.index()].push(id);
        id
    }

    /// Adds a member under an existing id to another collection (e.g. ARGS_GET into ARGS).
    fn alias(&mut self, var: Variable, id: u32) {
        self.coll[var.index()].push(id);
    }

    /// Replaces a scalar's value.
    pub fn set(&mut self, var: Variable, value: impl Into<Vec<u8>>) {
        self.coll[var.index()].clear();
        self.push(var, "", value);
    }

    /// Member ids of a variable, in insertion order.
    pub fn ids(&self, var: Variable) -> &[u32] {
        &self.coll[var.index()]
    }

    pub fn item(&self, id: u32) -> &Item {
        &self.items[id as usize]
    }

    pub fn first(&self, var: Variable) -> Option<&[u8]> {
        self.ids(var)
            .first()
            .map(|&id| self.item(id).value.as_slice())
    }

    fn add_arg(&mut self, post: bool, name: &str, value: Vec<u8>) {
        if let Some((id, nid)) = self.add_native_arg(post, name, value) {
            // The SecLang views share the items (no copy).
            self.alias(Variable::SecLangArgs, id);
            self.alias(Variable::SecLangArgsNames, nid);
            if post {
                self.alias(Variable::SecLangArgsPost, id);
                self.alias(Variable::SecLangArgsPostNames, nid);
            }
        }
    }

    /// An argument native rules see but SecLang rules do not (XML body values); returns
    /// the ids of the value and name items.
    fn add_native_arg(&mut self, post: bool, name: &str, value: Vec<u8>) -> Option<(u32, u32)> {
        if self.ids(Variable::Args).len() >= MAX_ITEMS {
            return None;
        }
        let (v, n) = if post {
            (Variable::ArgsPost, Variable::ArgsPostNames)
        } else {
            (Variable::ArgsGet, Variable::ArgsGetNames)
        };
        let id = self.push(v, name, value);
        self.alias(Variable::Args, id);
        let nid = self.push(n, name, name.as_bytes().to_vec());
        self.alias(Variable::ArgsNames, nid);
        Some((id, nid))
    }

    /// SecLang rules' REQUEST_BODY ([`Variable::SecLangRequestBody`]): the raw body item
    /// (shared, not copied) unless the XML processor parses the body, as in ModSecurity.
    fn set_seclang_request_body(&mut self, kind: BodyKind) {
        self.coll[Variable::SecLangRequestBody.index()].clear();
        if kind == BodyKind::Xml {
            return;
        }
        if let Some(&id) = self.ids(Variable::RequestBody).first() {
            self.alias(Variable::SecLangRequestBody, id);
        }
    }

    /// Adds the response status and headers (phase 3 variables).
    pub fn add_response_headers(&mut self, status: u16, headers: &[(&str, &[u8])]) {
        self.set(Variable::ResponseStatus, status.to_string());
        for (name, value) in headers.iter().take(MAX_ITEMS) {
            self.push(Variable::ResponseHeaders, name, value.to_vec());
        }
    }

    /// Sets the (already decompressed, possibly truncated) response body (phase 4).
    pub fn set_response_body(&mut self, body: &[u8]) {
        self.set(Variable::ResponseBody, body.to_vec());
    }

    /// Recomputes ARGS_COMBINED_SIZE (names plus values).
    fn update_combined_size(&mut self) {
        let total: usize = self
            .ids(Variable::Args)
            .iter()
            .map(|&id| {
                let it = self.item(id);
                it.key.len() + it.value.len()
            })
            .sum();
        self.set(Variable::ArgsCombinedSize, decimal(total as u64));
    }
}

/// A number in decimal, without the formatting machinery (set for every request).
pub fn decimal(n: u64) -> Vec<u8> {
    itoa::Buffer::new().format(n).as_bytes().to_vec()
}

/// An address as text (`192.0.2.1`, `2001:db8::1`); IPv4 without the formatting machinery.
pub fn ip_text(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => {
            let mut out = Vec::with_capacity(15);
            let mut digits = itoa::Buffer::new();
            for (i, o) in v4.octets().iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(digits.format(*o).as_bytes());
            }
            out
        }
        IpAddr::V6(_) => ip.to_string().into_bytes(),
    }
}

/// Percent-decodes (optionally `+` as space); returns the bytes and whether any `%` was invalid.
pub fn percent_decode(input: &[u8], plus_as_space: bool) -> (Vec<u8>, bool) {
    let mut out = Vec::with_capacity(input.len());
    let mut invalid = false;
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let h = input.get(i + 1).and_then(|&b| (b as char).to_digit(16));
                let l = input.get(i + 2).and_then(|&b| (b as char).to_digit(16));
                match (h, l) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                    }
                    _ => {
                        invalid = true;
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    (out, invalid)
}

/// Splits `a=1&b=2` into decoded pairs; returns whether any encoding was invalid.
pub fn parse_urlencoded(input: &[u8], mut f: impl FnMut(String, Vec<u8>)) -> bool {
    let mut invalid = false;
    for pair in input.split(|&b| b == b'&') {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = match memchr::memchr(b'=', pair) {
            Some(p) => (&pair[..p], &pair[p + 1..]),
            None => (pair, &b""[..]),
        };
        let (k, e1) = percent_decode(k, true);
        let (v, e2) = percent_decode(v, true);
        invalid |= e1 | e2;
        f(String::from_utf8_lossy(&k).into_owned(), v);
    }
    invalid
}

/// Decodes the request line, query string, headers and cookies (phase 1 variables).
pub fn decode_headers(req: &Request<'_>) -> Vars {
    let mut v = Vars::default();
    v.set(Variable::RequestMethod, req.method);
    v.set(Variable::RequestProtocol, req.version);
    v.set(
        Variable::RequestLine,
        [req.method, req.uri, req.version].join(" "),
    );
    v.set(Variable::RequestUriRaw, req.uri);
    v.set(Variable::RemoteAddr, ip_text(req.client_ip));

    // Absolute-form targets: drop scheme and authority.
    let mut target = req.uri;
    if let Some(rest) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        target = rest.find('/').map(|p| &rest[p..]).unwrap_or("/");
    }
    v.set(Variable::RequestUri, target);
    let (path, query) = match target.find('?') {
        Some(p) => (&target[..p], &target[p + 1..]),
        None => (target, ""),
    };
    let (dpath, bad_path) = percent_decode(path.as_bytes(), false);
    v.set(Variable::RequestFilename, dpath.clone());
    let base_start = dpath
        .iter()
        .rposition(|&b| b == b'/')
        .map(|p| p + 1)
        .unwrap_or(0);
    let base = dpath[base_start..].to_vec();
    let ext = match base.iter().rposition(|&b| b == b'.') {
        Some(p) => base[p..].to_ascii_lowercase(),
        None => Vec::new(),
    };
    v.set(Variable::RequestBasename, base);
    v.set(Variable::FileExt, ext);
    v.set(Variable::QueryString, query);
    let bad_query = parse_urlencoded(query.as_bytes(), |k, val| v.add_arg(false, &k, val));
    v.set(
        Variable::UrlencodedError,
        if bad_query || bad_path { "1" } else { "0" },
    );

    for (name, value) in req.headers.iter().take(MAX_ITEMS) {
        v.push(Variable::RequestHeaders, name, value.to_vec());
        v.push(
            Variable::RequestHeadersNames,
            name,
            name.as_bytes().to_vec(),
        );
        if name.eq_ignore_ascii_case("cookie") {
            for c in value.split(|&b| b == b';') {
                let c = c.trim_ascii();
                if c.is_empty() {
                    continue;
                }
                let (k, val) = match memchr::memchr(b'=', c) {
                    Some(p) => (&c[..p], &c[p + 1..]),
                    None => (c, &b""[..]),
                };
                let k = String::from_utf8_lossy(k.trim_ascii()).into_owned();
                v.push(Variable::RequestCookies, &k, val.to_vec());
                v.push(Variable::RequestCookiesNames, &k, k.as_bytes().to_vec());
            }
        }
    }
    v.update_combined_size();
    v
}

/// Newline-delimited JSON: decoded by the JSON processor one document per line (`json.N.key`).
/// With no processor, only REQUEST_BODY would see these bodies.
const NDJSON: &[&str] = &[
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/x-jsonlines",
];

/// Which body processor a content type selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    UrlEncoded,
    Multipart,
    Json,
    Xml,
    Other,
}

impl BodyKind {
    pub fn from_content_type(ct: Option<&str>, body: &[u8]) -> BodyKind {
        let Some(ct) = ct else {
            // No content type: treat form-looking printable bodies as urlencoded.
            return if looks_like_form(body) {
                BodyKind::UrlEncoded
            } else {
                BodyKind::Other
            };
        };
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if mime == "application/x-www-form-urlencoded" {
            BodyKind::UrlEncoded
        } else if mime.starts_with("multipart/form-data") {
            BodyKind::Multipart
        } else if mime == "application/json"
            || mime.ends_with("+json")
            || mime == "text/json"
            || NDJSON.contains(&mime.as_str())
        {
            BodyKind::Json
        } else if mime == "application/xml" || mime == "text/xml" || mime.ends_with("+xml") {
            BodyKind::Xml
        } else {
            BodyKind::Other
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BodyKind::UrlEncoded => "URLENCODED",
            BodyKind::Multipart => "MULTIPART",
            BodyKind::Json => "JSON",
            BodyKind::Xml => "XML",
            BodyKind::Other => "",
        }
    }
}

/// A printable ASCII body with `=`: treated as urlencoded when the content type is absent or wrong.
fn looks_like_form(body: &[u8]) -> bool {
    !body.is_empty()
        && body.contains(&b'=')
        && body.iter().all(|&b| b.is_ascii_graphic() || b == b' ')
}

/// Decodes a request body into the phase 2 variables.
pub fn decode_body(v: &mut Vars, content_type: Option<&str>, body: &[u8]) {
    v.set(Variable::RequestBody, body.to_vec());
    v.set(Variable::RequestBodyLength, body.len().to_string());
    let kind = BodyKind::from_content_type(content_type, body);
    v.set_seclang_request_body(kind);
    if body.is_empty() {
        v.set(Variable::ReqbodyError, "0");
        return;
    }
    v.set(Variable::ReqbodyProcessor, kind.name());
    let mut error = false;
    match kind {
        BodyKind::UrlEncoded => {
            let bad = parse_urlencoded(body, |k, val| v.add_arg(true, &k, val));
            if bad {
                v.set(Variable::UrlencodedError, "1");
            }
        }
        BodyKind::Multipart => {
            let boundary = content_type.and_then(multipart_boundary);
            let parsed = super::multipart::parse(boundary.as_deref(), body);
            for part in &parsed.parts {
                for (hn, hv) in &part.headers {
                    v.push(
                        Variable::MultipartPartHeaders,
                        &part.name,
                        format!("{hn}: {hv}"),
                    );
                }
                v.push(Variable::MultipartName, "", part.name.clone());
                match &part.filename {
                    Some(fname) => {
                        v.push(Variable::Files, &part.name, fname.clone());
                        v.push(Variable::FilesNames, &part.name, part.name.clone());
                        v.push(Variable::FilesContent, &part.name, part.data.clone());
                        v.push(
                            Variable::FilesSizes,
                            &part.name,
                            part.data.len().to_string(),
                        );
                        v.push(Variable::MultipartFilename, "", fname.clone());
                    }
                    None => v.add_arg(true, &part.name, part.data.clone()),
                }
            }
            parsed.flags.export(v);
            error = parsed.flags.strict_error();
        }
        BodyKind::Json => {
            error = !decode_json(v, body);
            // Misdeclared form posts still get their arguments inspected.
            if error && looks_like_form(body) {
                parse_urlencoded(body, |k, val| v.add_arg(true, &k, val));
            }
        }
        BodyKind::Xml => {
            error = !decode_xml(v, body);
        }
        BodyKind::Other => {}
    }
    v.set(Variable::ReqbodyError, if error { "1" } else { "0" });
    v.update_combined_size();
}

/// The raw `boundary=` parameter of a multipart content type (validated by the parser).
pub fn multipart_boundary(ct: &str) -> Option<String> {
    ct.split(';').skip(1).find_map(|p| {
        let (k, val) = p.split_once('=')?;
        if k.trim().eq_ignore_ascii_case("boundary") {
            Some(val.to_owned())
        } else {
            None
        }
    })
}

fn decode_json(v: &mut Vars, body: &[u8]) -> bool {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(val) => {
            flatten_json(v, "json", &val, 0);
            true
        }
        Err(_) => {
            // ndjson: one document per line.
            let mut ok = false;
            for (n, line) in body.split(|&b| b == b'\n').enumerate() {
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                match serde_json::from_slice::<serde_json::Value>(line) {
                    Ok(val) => {
                        flatten_json(v, &format!("json.{n}"), &val, 0);
                        ok = true;
                    }
                    Err(_) => return false,
                }
            }
            ok
        }
    }
}

fn flatten_json(v: &mut Vars, path: &str, val: &serde_json::Value, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    use serde_json::Value as J;
    match val {
        J::Object(map) => {
            for (k, child) in map {
                flatten_json(v, &format!("{path}.{k}"), child, depth + 1);
            }
        }
        J::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                flatten_json(v, &format!("{path}.{i}"), child, depth + 1);
            }
        }
        J::String(s) => v.add_arg(true, path, s.as_bytes().to_vec()),
        J::Number(n) => v.add_arg(true, path, n.to_string().into_bytes()),
        J::Bool(b) => v.add_arg(true, path, b.to_string().into_bytes()),
        J::Null => v.add_arg(true, path, Vec::new()),
    }
}

fn decode_xml(v: &mut Vars, body: &[u8]) -> bool {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut stack: Vec<String> = Vec::new();
    let mut buf = Vec::new();
    let mut any = false;
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) => {
                any = true;
                let name = xml_element(v, &stack, &e);
                if stack.len() >= MAX_DEPTH {
                    return false;
                }
                stack.push(name);
            }
            Ok(Event::Empty(e)) => {
                any = true;
                xml_element(v, &stack, &e);
            }
            Ok(Event::End(_)) => {
                stack.pop();
            }
            Ok(Event::Text(t)) => {
                // Entities are resolved (&lt; -> <) so rules see what the application sees.
                let unescaped: Vec<u8> = match t.unescape() {
                    Ok(u) => u.into_owned().into_bytes(),
                    Err(_) => t.into_inner().into_owned(),
                };
                let text = unescaped.trim_ascii();
                if !text.is_empty() {
                    let key = xml_path(&stack);
                    v.push(Variable::Xml, &key, text.to_vec());
                    v.add_native_arg(true, &key, text.to_vec());
                }
            }
            Ok(Event::CData(t)) => {
                let key = xml_path(&stack);
                let data = t.into_inner().to_vec();
                v.push(Variable::Xml, &key, data.clone());
                v.add_native_arg(true, &key, data);
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(_) => return false,
        }
        buf.clear();
        if v.items.len() > MAX_ITEMS * 4 {
            break;
        }
    }
    any
}

/// Records an element's attributes; returns its name.
fn xml_element(v: &mut Vars, stack: &[String], e: &quick_xml::events::BytesStart<'_>) -> String {
    let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
    let mut path = xml_path(stack);
    path.push('.');
    path.push_str(&name);
    for attr in e.attributes().flatten() {
        let an = String::from_utf8_lossy(attr.key.as_ref()).into_owned();
        let key = format!("{path}@{an}");
        let value: Vec<u8> = match attr.unescape_value() {
            Ok(u) => u.into_owned().into_bytes(),
            Err(_) => attr.value.to_vec(),
        };
        v.push(Variable::Xml, &key, value.clone());
        v.add_native_arg(true, &key, value);
    }
    name
}

fn xml_path(stack: &[String]) -> String {
    let mut p = String::from("xml");
    for s in stack {
        p.push('.');
        p.push_str(s);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_numbers_read_as_std_formats_them() {
        let mut rng = fastrand::Rng::with_seed(3);
        let mut ips: Vec<IpAddr> = vec![
            "0.0.0.0".parse().expect("ip"),
            "255.255.255.255".parse().expect("ip"),
            "10.0.100.9".parse().expect("ip"),
            "2001:db8::1".parse().expect("ip"),
            "::ffff:192.0.2.1".parse().expect("ip"),
        ];
        ips.extend((0..1000).map(|_| IpAddr::from(rng.u32(..).to_be_bytes())));
        for ip in ips {
            assert_eq!(ip_text(ip), ip.to_string().into_bytes(), "{ip}");
        }
        for n in [0u64, 9, 10, 4096, u64::MAX]
            .into_iter()
            .chain((0..100).map(|_| rng.u64(..)))
        {
            assert_eq!(decimal(n), n.to_string().into_bytes());
        }
    }

    #[test]
    fn request_line_is_method_target_version() {
        let v = decode_headers(&req("/a?b=c", &[]));
        assert_eq!(
            v.first(Variable::RequestLine),
            Some(&b"GET /a?b=c HTTP/1.1"[..])
        );
        assert_eq!(v.first(Variable::RemoteAddr), Some(&b"127.0.0.1"[..]));
    }

    fn req<'a>(uri: &'a str, headers: &'a [(&'a str, &'a [u8])]) -> Request<'a> {
        Request {
            method: "GET",
            uri,
            version: "HTTP/1.1",
            headers,
            client_ip: "127.0.0.1".parse().expect("ip literal"),
            body: None,
            content_type: None,
        }
    }

    fn vals(v: &Vars, var: Variable) -> Vec<(String, String)> {
        v.ids(var)
            .iter()
            .map(|&id| {
                (
                    v.item(id).key.clone(),
                    String::from_utf8_lossy(&v.item(id).value).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn request_line_query_headers_cookies() {
        let headers: &[(&str, &[u8])] = &[
            ("Host", b"a.gov.cn"),
            ("Cookie", b"sid=1; lang=zh"),
            ("X-A", b"1"),
        ];
        let v = decode_headers(&req("/a/b%2e%2e/c.PHP?q=%E6%94%BF+x&q=2&flag", headers));
        assert_eq!(
            v.first(Variable::RequestFilename),
            Some(&b"/a/b../c.PHP"[..])
        );
        assert_eq!(v.first(Variable::RequestBasename), Some(&b"c.PHP"[..]));
        assert_eq!(v.first(Variable::FileExt), Some(&b".php"[..]));
        assert_eq!(
            vals(&v, Variable::Args),
            vec![
                ("q".into(), "政 x".into()),
                ("q".into(), "2".into()),
                ("flag".into(), "".into())
            ]
        );
        assert_eq!(
            vals(&v, Variable::RequestCookies),
            vec![("sid".into(), "1".into()), ("lang".into(), "zh".into())]
        );
        assert_eq!(vals(&v, Variable::RequestCookiesNames)[1].1, "lang");
        assert_eq!(v.first(Variable::UrlencodedError), Some(&b"0"[..]));
        let v = decode_headers(&req("http://x/p?a=%zz", headers));
        assert_eq!(v.first(Variable::UrlencodedError), Some(&b"1"[..]));
        assert_eq!(v.first(Variable::RequestFilename), Some(&b"/p"[..]));
    }

    #[test]
    fn json_body_leaves_have_paths() {
        let mut v = decode_headers(&req("/api", &[]));
        decode_body(
            &mut v,
            Some("application/json"),
            br#"{"a":{"b":[1,"x"]},"c":null}"#,
        );
        let args = vals(&v, Variable::ArgsPost);
        assert!(args.contains(&("json.a.b.1".into(), "x".into())));
        assert_eq!(v.first(Variable::ReqbodyError), Some(&b"0"[..]));
        decode_body(&mut v, Some("application/json"), b"{\"a\":1}\n{\"b\":2}\n");
        assert_eq!(v.first(Variable::ReqbodyError), Some(&b"0"[..]));
        decode_body(&mut v, Some("application/json"), b"{oops");
        assert_eq!(v.first(Variable::ReqbodyError), Some(&b"1"[..]));
    }

    #[test]
    fn xml_body_text_and_attributes() {
        let mut v = decode_headers(&req("/ws", &[]));
        decode_body(
            &mut v,
            Some("text/xml"),
            br#"<a><b id="7">hi &lt;x&gt;</b><c/></a>"#,
        );
        let args = vals(&v, Variable::ArgsPost);
        assert!(
            args.contains(&("xml.a.b@id".into(), "7".into())),
            "{args:?}"
        );
        assert!(
            args.contains(&("xml.a.b".into(), "hi <x>".into())),
            "{args:?}"
        );
        decode_body(&mut v, Some("text/xml"), b"<a><b></a>");
        assert_eq!(v.first(Variable::ReqbodyError), Some(&b"1"[..]));
    }

    #[test]
    fn seclang_views_leave_xml_bodies_to_the_xml_collection() {
        let mut v = decode_headers(&req("/ws?q=1", &[]));
        decode_body(&mut v, Some("text/xml"), br#"<a><b id="7">hi</b></a>"#);
        assert_eq!(vals(&v, Variable::Args).len(), 3);
        assert_eq!(vals(&v, Variable::RequestBody).len(), 1);
        assert_eq!(
            vals(&v, Variable::SecLangArgs),
            vec![("q".into(), "1".into())]
        );
        assert!(vals(&v, Variable::SecLangArgsPost).is_empty());
        assert!(vals(&v, Variable::SecLangRequestBody).is_empty());
        assert_eq!(vals(&v, Variable::Xml).len(), 2);
        decode_body(&mut v, Some("application/json"), br#"{"a":"x"}"#);
        assert_eq!(vals(&v, Variable::SecLangRequestBody).len(), 1);
        assert_eq!(vals(&v, Variable::SecLangArgsPostNames)[0].1, "json.a");
    }

    #[test]
    fn urlencoded_body_and_untyped_form() {
        let mut v = decode_headers(&req("/f?x=1", &[]));
        decode_body(&mut v, None, b"name=%E5%BC%A0&msg=hi");
        assert_eq!(vals(&v, Variable::ArgsPost).len(), 2);
        assert_eq!(vals(&v, Variable::Args).len(), 3);
    }
}
