//! Feature extraction from HTML with lol_html (no regex over markup).
//!
//! Owns [`extract`], which turns a decoded HTML body into [`Features`] in three streaming
//! passes, each bounded by the policy's size limit and lol_html's memory limit:
//! 1. **scan** the whole page (dynamic regions included, since injected spam inside a news list
//!    is still spam): title, meta keywords/description/refresh, external script/iframe/object/
//!    link/form domains, links inside hidden blocks, inline-script location changes, keyword hits;
//! 2. **strip** dynamic regions (the policy's CSS selectors), scripts, styles and comments;
//! 3. **normalize** what remains: visible text with whitespace collapsed and dynamic text
//!    patterns removed, plus the element structure with attributes sorted and nonces and
//!    cache-busting query strings dropped; hashed into the fingerprint and sketched for
//!    similarity.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;
use std::sync::OnceLock;

use lol_html::html_content::{Element, TextChunk, TextType};
use lol_html::{
    AsciiCompatibleEncoding, DocumentContentHandlers, ElementContentHandlers, HandlerResult,
    HtmlRewriter, MemorySettings, Selector, Settings,
};
use regex::Regex;
use sha2::{Digest, Sha256};

use super::error::ExtractError;
use super::features::{ExternalRef, Features, HiddenLink, RefKind, TextSketch, FEATURES_VERSION};
use super::html::{
    decode_entities, hidden_by_style, marquee_trick, scan_style_block, strip_cache_busting,
    url_host,
};
use super::policy::{hex, CheckPolicy};

/// lol_html's own memory ceiling per pass.
const PARSER_MEMORY_LIMIT: usize = 16 * 1024 * 1024;
/// Caps on collected evidence.
const MAX_REFS: usize = 256;
const MAX_HIDDEN_LINKS: usize = 256;
const MAX_REDIRECTS: usize = 64;
const MAX_URL_LEN: usize = 512;
const MAX_META_LEN: usize = 2048;
/// Largest inline script or style block scanned.
const MAX_BLOCK_LEN: usize = 256 * 1024;
/// Attributes ignored in the structure fingerprint.
const VOLATILE_ATTRS: &[&str] = &[
    "nonce",
    "integrity",
    "csrf-token",
    "data-csrf",
    "data-nonce",
    "data-timestamp",
];

fn redirect_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        // A constant pattern, covered by tests: it always compiles.
        Regex::new(
            r#"(?x)
            (?:\b(?:window|document|self|top|parent)\s*\.\s*)?\blocation(?:\s*\.\s*href)?\s*=\s*["'`]([^"'`]{1,2048})
            | \blocation\s*\.\s*(?:replace|assign)\s*\(\s*["'`]([^"'`]{1,2048})
            | \bwindow\s*\.\s*open\s*\(\s*["'`]([^"'`]{1,2048})
            "#,
        )
        .expect("constant redirect regex compiles")
    })
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

fn collapse_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses a meta refresh `content` (`"0; url=http://x"`) into its target.
fn refresh_target(content: &str) -> Option<String> {
    let (_, rest) = content.split_once([';', ','])?;
    let rest = rest.trim();
    let lower = rest.to_ascii_lowercase();
    let target = if lower.starts_with("url") {
        rest[3..].trim_start().strip_prefix('=')?.trim()
    } else {
        rest
    };
    let target = target.trim_matches(['\'', '"']).trim();
    (!target.is_empty()).then(|| truncate(target, MAX_URL_LEN))
}

fn encoding_for(charset: Option<&str>) -> Option<AsciiCompatibleEncoding> {
    charset
        .and_then(|c| encoding_rs::Encoding::for_label(c.trim().as_bytes()))
        .and_then(AsciiCompatibleEncoding::new)
}

fn settings<'h>(
    elements: Vec<(Cow<'static, Selector>, ElementContentHandlers<'h>)>,
    document: Vec<DocumentContentHandlers<'h>>,
    charset: Option<&str>,
) -> Settings<'h, 'static> {
    let mut memory = MemorySettings::new();
    memory.max_allowed_memory_usage = PARSER_MEMORY_LIMIT;
    let mut settings = Settings::new();
    settings.element_content_handlers = elements;
    settings.document_content_handlers = document;
    settings.memory_settings = memory;
    settings.strict = false;
    // An unknown or UTF-16 charset label keeps lol_html's UTF-8 default.
    let known = encoding_for(charset);
    if let Some(encoding) = known {
        settings.encoding = encoding;
    }
    settings.adjust_charset_on_meta_tag = known.is_none();
    settings
}

fn run(settings: Settings<'_, '_>, html: &[u8], out: &mut Vec<u8>) -> Result<(), ExtractError> {
    let mut rewriter = HtmlRewriter::new(settings, |chunk: &[u8]| out.extend_from_slice(chunk));
    rewriter
        .write(html)
        .map_err(|e| ExtractError::Parser(e.to_string()))?;
    rewriter
        .end()
        .map_err(|e| ExtractError::Parser(e.to_string()))
}

fn selector(s: &str) -> Result<Cow<'static, Selector>, ExtractError> {
    s.parse::<Selector>()
        .map(Cow::Owned)
        .map_err(|e| ExtractError::Parser(format!("selector `{s}`: {e}")))
}

#[derive(Default)]
struct Scan {
    hidden_classes: HashSet<String>,
    hidden: Vec<&'static str>,
    title: String,
    meta_keywords: String,
    meta_description: String,
    external: BTreeMap<(RefKind, String), String>,
    hidden_links: Vec<HiddenLink>,
    meta_refresh: Vec<String>,
    script_redirects: Vec<String>,
    text: String,
    text_limit: usize,
    block: String,
    truncated: bool,
}

impl Scan {
    fn push_text(&mut self, s: &str) {
        if self.text.len() + s.len() + 1 > self.text_limit {
            self.truncated = true;
            return;
        }
        self.text.push_str(s);
        self.text.push(' ');
    }

    fn add_ref(&mut self, kind: RefKind, url: &str) {
        let Some(host) = url_host(url) else {
            return;
        };
        if self.external.len() >= MAX_REFS {
            self.truncated = true;
            return;
        }
        self.external
            .entry((kind, host))
            .or_insert_with(|| truncate(&decode_entities(url.trim()), MAX_URL_LEN));
    }

    fn end_block(&mut self, kind: TextType) {
        let block = std::mem::take(&mut self.block);
        match kind {
            TextType::ScriptData => {
                for caps in redirect_regex().captures_iter(&block) {
                    if let Some(m) = caps.get(1).or_else(|| caps.get(2)).or_else(|| caps.get(3)) {
                        if self.script_redirects.len() >= MAX_REDIRECTS {
                            self.truncated = true;
                            break;
                        }
                        self.script_redirects
                            .push(truncate(m.as_str().trim(), MAX_URL_LEN));
                    }
                }
            }
            TextType::RawText => scan_style_block(&block, &mut self.hidden_classes),
            _ => {}
        }
    }
}

fn scan_element(st: &Rc<RefCell<Scan>>, el: &mut Element<'_, '_>) -> HandlerResult {
    let tag = el.tag_name();
    let attr = |name: &str| el.get_attribute(name);
    let mut s = st.borrow_mut();
    // Hidden block?
    let mut reason = None;
    if el.has_attribute("hidden") {
        reason = Some("hidden attribute");
    } else if let Some(style) = attr("style") {
        reason = hidden_by_style(&decode_entities(&style));
    }
    if reason.is_none() && !s.hidden_classes.is_empty() {
        let by_class = attr("class").is_some_and(|c| {
            c.split_whitespace()
                .any(|c| s.hidden_classes.contains(&format!(".{c}")))
        });
        let by_id =
            attr("id").is_some_and(|id| s.hidden_classes.contains(&format!("#{}", id.trim())));
        if by_class || by_id {
            reason = Some("hidden by stylesheet");
        }
    }
    if reason.is_none()
        && tag == "marquee"
        && marquee_trick(
            attr("height").as_deref(),
            attr("width").as_deref(),
            attr("scrollamount").as_deref(),
        )
    {
        reason = Some("marquee");
    }
    match tag.as_str() {
        "a" | "area" => {
            if let Some(href) = attr("href") {
                if let Some(top) = s.hidden.first().copied().or(reason) {
                    if s.hidden_links.len() < MAX_HIDDEN_LINKS {
                        s.hidden_links.push(HiddenLink {
                            href: truncate(&decode_entities(href.trim()), MAX_URL_LEN),
                            reason: top.to_owned(),
                        });
                    } else {
                        s.truncated = true;
                    }
                }
            }
            if let Some(t) = attr("title") {
                s.push_text(&decode_entities(&t));
            }
        }
        "img" => {
            for name in ["alt", "title"] {
                if let Some(t) = attr(name) {
                    s.push_text(&decode_entities(&t));
                }
            }
        }
        "script" => {
            if let Some(src) = attr("src") {
                s.add_ref(RefKind::Script, &src);
            }
        }
        "iframe" | "frame" => {
            if let Some(src) = attr("src") {
                s.add_ref(RefKind::Iframe, &src);
            }
        }
        "object" => {
            if let Some(data) = attr("data") {
                s.add_ref(RefKind::Object, &data);
            }
        }
        "embed" => {
            if let Some(src) = attr("src") {
                s.add_ref(RefKind::Object, &src);
            }
        }
        "link" | "base" => {
            if let Some(href) = attr("href") {
                s.add_ref(RefKind::Link, &href);
            }
        }
        "form" => {
            if let Some(action) = attr("action") {
                s.add_ref(RefKind::Form, &action);
            }
        }
        "meta" => {
            let content = attr("content").map(|c| truncate(&decode_entities(&c), MAX_META_LEN));
            let name = attr("name").map(|n| n.trim().to_ascii_lowercase());
            let equiv = attr("http-equiv").map(|n| n.trim().to_ascii_lowercase());
            if let Some(content) = content {
                match (name.as_deref(), equiv.as_deref()) {
                    (Some("keywords"), _) => {
                        s.meta_keywords = collapse_ws(&content);
                        s.push_text(&content);
                    }
                    (Some("description"), _) => {
                        s.meta_description = collapse_ws(&content);
                        s.push_text(&content);
                    }
                    (_, Some("refresh")) => {
                        if let Some(target) = refresh_target(&content) {
                            if s.meta_refresh.len() < MAX_REDIRECTS {
                                s.meta_refresh.push(target);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    if let Some(reason) = reason {
        if el.can_have_content() && !el.is_self_closing() {
            s.hidden.push(reason);
            drop(s);
            let st2 = Rc::clone(st);
            let registered = el.on_end_tag(Box::new(move |_end| {
                st2.borrow_mut().hidden.pop();
                Ok(())
            }));
            if registered.is_err() {
                st.borrow_mut().hidden.pop();
            }
        }
    }
    Ok(())
}

fn scan_text(st: &Rc<RefCell<Scan>>, t: &mut TextChunk<'_>) -> HandlerResult {
    let mut s = st.borrow_mut();
    let kind = t.text_type();
    match kind {
        TextType::ScriptData | TextType::RawText => {
            if s.block.len() + t.as_str().len() <= MAX_BLOCK_LEN {
                s.block.push_str(t.as_str());
            } else {
                s.truncated = true;
            }
            if kind == TextType::ScriptData {
                // Spam is often written by scripts: scan their text for keywords too.
                s.push_text(t.as_str());
            }
            if t.last_in_text_node() {
                s.end_block(kind);
            }
        }
        _ => {
            let decoded = decode_entities(t.as_str());
            s.push_text(&decoded);
        }
    }
    Ok(())
}

fn scan(html: &[u8], charset: Option<&str>, limit: usize) -> Result<Scan, ExtractError> {
    let st = Rc::new(RefCell::new(Scan {
        text_limit: limit,
        ..Scan::default()
    }));
    {
        let (a, b, c) = (Rc::clone(&st), Rc::clone(&st), Rc::clone(&st));
        let elements = vec![
            (
                selector("*")?,
                ElementContentHandlers::default()
                    .element(move |el: &mut Element<'_, '_>| scan_element(&a, el)),
            ),
            (
                selector("title")?,
                ElementContentHandlers::default().text(move |t: &mut TextChunk<'_>| {
                    let mut s = b.borrow_mut();
                    if s.title.len() < MAX_META_LEN {
                        s.title.push_str(t.as_str());
                    }
                    Ok(())
                }),
            ),
        ];
        let document =
            vec![DocumentContentHandlers::default()
                .text(move |t: &mut TextChunk<'_>| scan_text(&c, t))];
        let mut sink = Vec::new();
        run(settings(elements, document, charset), html, &mut sink)?;
    }
    let scan = std::mem::take(&mut *st.borrow_mut());
    Ok(scan)
}

/// Removes dynamic regions, scripts, styles and comments; returns the remaining HTML.
fn strip(
    html: &[u8],
    charset: Option<&str>,
    policy: &CheckPolicy,
) -> Result<Vec<u8>, ExtractError> {
    let mut elements = Vec::new();
    for s in policy
        .dynamic_selectors
        .iter()
        .map(String::as_str)
        .chain(["script", "style", "noscript", "template"])
    {
        elements.push((
            selector(s)?,
            ElementContentHandlers::default().element(|el: &mut Element<'_, '_>| {
                el.remove();
                Ok(())
            }),
        ));
    }
    let document = vec![DocumentContentHandlers::default().comments(
        |c: &mut lol_html::html_content::Comment<'_>| {
            c.remove();
            Ok(())
        },
    )];
    let mut out = Vec::with_capacity(html.len());
    run(settings(elements, document, charset), html, &mut out)?;
    Ok(out)
}

/// Visible text and structure of stripped HTML.
fn normalize(html: &[u8], charset: Option<&str>) -> Result<(String, String), ExtractError> {
    let text = RefCell::new(String::new());
    let structure = RefCell::new(String::new());
    {
        let elements = vec![(
            selector("*")?,
            ElementContentHandlers::default().element(|el: &mut Element<'_, '_>| {
                // Hidden form fields carry per-response tokens (CSRF, view state).
                let hidden_input = el.tag_name() == "input"
                    && el
                        .get_attribute("type")
                        .is_some_and(|t| t.eq_ignore_ascii_case("hidden"));
                let mut attrs: Vec<(String, String)> = el
                    .attributes()
                    .iter()
                    .filter(|a| !VOLATILE_ATTRS.contains(&a.name().as_str()))
                    .filter(|a| !(hidden_input && a.name() == "value"))
                    .map(|a| {
                        let name = a.name();
                        let value = decode_entities(&a.value()).into_owned();
                        let value = match name.as_str() {
                            "href" | "src" | "action" | "data" => {
                                strip_cache_busting(&value).into_owned()
                            }
                            _ => collapse_ws(&value),
                        };
                        (name, value)
                    })
                    .collect();
                attrs.sort();
                let mut s = structure.borrow_mut();
                s.push('<');
                s.push_str(&el.tag_name());
                for (k, v) in attrs {
                    s.push(' ');
                    s.push_str(&k);
                    s.push('=');
                    s.push_str(&v);
                }
                s.push('>');
                Ok(())
            }),
        )];
        let document = vec![
            DocumentContentHandlers::default().text(|t: &mut TextChunk<'_>| {
                let mut s = text.borrow_mut();
                s.push_str(&decode_entities(t.as_str()));
                if t.last_in_text_node() {
                    s.push(' ');
                }
                Ok(())
            }),
        ];
        let mut sink = Vec::new();
        run(settings(elements, document, charset), html, &mut sink)?;
    }
    Ok((text.into_inner(), structure.into_inner()))
}

/// Extracts the features of `html` under `policy`. `charset` is the `Content-Type` charset when
/// known; otherwise `<meta charset>` is honoured and UTF-8 assumed.
pub fn extract(
    html: &[u8],
    charset: Option<&str>,
    policy: &CheckPolicy,
) -> Result<Features, ExtractError> {
    if html.len() > policy.max_body_bytes {
        return Err(ExtractError::TooLarge {
            size: html.len(),
            limit: policy.max_body_bytes,
        });
    }
    let scan = scan(html, charset, policy.max_body_bytes.saturating_mul(2))?;
    let mut keywords = BTreeMap::new();
    policy.keywords.scan(&scan.text, &mut keywords);

    let stripped = strip(html, charset, policy)?;
    let (text, structure) = normalize(&stripped, charset)?;
    let mut text = collapse_ws(&text);
    for re in &policy.dynamic_text {
        if let Cow::Owned(replaced) = re.replace_all(&text, " ") {
            text = collapse_ws(&replaced);
        }
    }
    let fingerprint = hex(&Sha256::new()
        .chain_update(text.as_bytes())
        .chain_update([0u8])
        .chain_update(structure.as_bytes())
        .finalize());

    Ok(Features {
        version: FEATURES_VERSION,
        title: collapse_ws(&decode_entities(&scan.title)),
        meta_keywords: scan.meta_keywords,
        meta_description: scan.meta_description,
        external: scan
            .external
            .into_iter()
            .map(|((kind, domain), url)| ExternalRef { kind, domain, url })
            .collect(),
        hidden_links: scan.hidden_links,
        meta_refresh: scan.meta_refresh,
        script_redirects: scan.script_redirects,
        keywords,
        sketch: TextSketch::of(&text),
        fingerprint,
        truncated: scan.truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deface::keywords::Keywords;
    use std::sync::Arc;

    fn policy(dynamic: &[&str]) -> CheckPolicy {
        let mut p = CheckPolicy::default_with(Arc::new(Keywords::builtin().unwrap()));
        p.dynamic_selectors = dynamic.iter().map(|s| s.to_string()).collect();
        p
    }

    #[test]
    fn extracts_basic_features() {
        let html = r#"<html><head><title> 市政府  门户 </title>
<meta name="keywords" content="政务,公开"><meta name="description" content="官方网站">
<meta http-equiv="refresh" content="0; URL='https://evil.example/'">
<script src="https://cdn.example.com/a.js?v=1"></script>
<script>if(document.referrer.indexOf('baidu')>-1){window.location.href="http://bad.example/x"}</script>
<style>.seo{display:none}</style></head>
<body><div class="seo"><a href="http://spam.example/">澳门赌场</a></div>
<div style="position:absolute;left:-9999px"><p><a href="http://spam2.example/">x</a></p></div>
<a href="/ok">正常链接</a><iframe src="//frame.example/"></iframe>
<form action="https://collect.example/post"></form></body></html>"#;
        let f = extract(html.as_bytes(), None, &policy(&[])).unwrap();
        assert_eq!(f.title, "市政府 门户");
        assert_eq!(f.meta_keywords, "政务,公开");
        assert_eq!(f.meta_description, "官方网站");
        assert_eq!(f.meta_refresh, ["https://evil.example/"]);
        assert_eq!(f.script_redirects, ["http://bad.example/x"]);
        let domains: Vec<(&str, &str)> = f
            .external
            .iter()
            .map(|r| (r.kind.as_str(), r.domain.as_str()))
            .collect();
        assert_eq!(
            domains,
            [
                ("script", "cdn.example.com"),
                ("iframe", "frame.example"),
                ("form", "collect.example"),
            ]
        );
        let hidden: Vec<(&str, &str)> = f
            .hidden_links
            .iter()
            .map(|h| (h.href.as_str(), h.reason.as_str()))
            .collect();
        assert_eq!(
            hidden,
            [
                ("http://spam.example/", "hidden by stylesheet"),
                ("http://spam2.example/", "off-screen position"),
            ]
        );
        assert_eq!(f.keywords["澳门赌场"].count, 1);
    }

    #[test]
    fn dynamic_regions_and_trivia_do_not_change_the_fingerprint() {
        let p = policy(&["#counter", ".news li .date"]);
        let a = r#"<div id="counter">访问量 123</div><ul class="news"><li><a href="/n1?v=1">通知</a><span class="date">2024-01-01</span></li></ul>
<p class="x"   id="y">正文   内容</p><script nonce="abc">var t=1;</script>"#;
        let b = r#"<div id="counter">访问量 98765</div><ul class="news"><li><a href="/n1?v=2">通知</a><span class="date">2024-06-30</span></li></ul>
<p id="y" class="x">正文 内容</p><script nonce="zzz">var t=2;</script><!-- built 2024-06-30 -->"#;
        let fa = extract(a.as_bytes(), None, &p).unwrap();
        let fb = extract(b.as_bytes(), None, &p).unwrap();
        assert_eq!(fa.fingerprint, fb.fingerprint);
        let c = b.replace("正文 内容", "新的 内容");
        assert_ne!(
            fa.fingerprint,
            extract(c.as_bytes(), None, &p).unwrap().fingerprint
        );
    }

    #[test]
    fn gbk_pages_are_decoded() {
        let (bytes, _, _) = encoding_rs::GBK.encode("<html><head><meta charset=\"gbk\"><title>政府网站</title></head><body>百家乐</body></html>");
        let f = extract(&bytes, None, &policy(&[])).unwrap();
        assert_eq!(f.title, "政府网站");
        assert_eq!(f.keywords["百家乐"].count, 1);
        let f = extract(&bytes, Some("gb2312"), &policy(&[])).unwrap();
        assert_eq!(f.title, "政府网站");
    }

    #[test]
    fn refresh_targets() {
        assert_eq!(
            refresh_target("0;url=http://a/").as_deref(),
            Some("http://a/")
        );
        assert_eq!(refresh_target("5; URL = \"/b\"").as_deref(), Some("/b"));
        assert_eq!(refresh_target("30"), None);
    }
}
