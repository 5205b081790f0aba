//! Small HTML helpers used by feature extraction: entity decoding, URL hosts, cache-busting
//! query strings, hidden-style detection and `<style>` rule scanning.
//!
//! Owns no parsing of markup itself (that is lol_html's job in [`extract`](mod@super::extract)); these
//! work on attribute values and text chunks lol_html hands over.

use std::borrow::Cow;
use std::collections::HashSet;

/// Decodes numeric entities and the common named ones (`&amp; &lt; &gt; &quot; &apos; &nbsp;`).
/// Unknown entities are left as written.
pub fn decode_entities(s: &str) -> Cow<'_, str> {
    if !s.contains('&') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('&') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos..];
        let end = rest[1..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '#'))
            .map(|i| i + 1)
            .unwrap_or(rest.len());
        let name = &rest[1..end];
        let decoded = if let Some(num) = name.strip_prefix('#') {
            let value = if let Some(hex) = num.strip_prefix(['x', 'X']) {
                u32::from_str_radix(hex, 16).ok()
            } else {
                num.parse::<u32>().ok()
            };
            value.and_then(char::from_u32)
        } else {
            match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some(' '),
                _ => None,
            }
        };
        match decoded {
            Some(c) if name.len() <= 10 => {
                out.push(c);
                let consumed = if rest[end..].starts_with(';') {
                    end + 1
                } else {
                    end
                };
                rest = &rest[consumed..];
            }
            _ => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The lower-case host of an absolute (`http://h/`, `https://h/`) or scheme-relative (`//h/`)
/// URL; `None` for relative URLs and other schemes.
pub fn url_host(url: &str) -> Option<String> {
    let url = decode_entities(url.trim());
    // Browsers treat `\` like `/` in http(s) URLs.
    let url = url.replace('\\', "/");
    let lower = url.to_ascii_lowercase();
    let rest = if let Some(r) = lower.strip_prefix("//") {
        r
    } else if let Some(r) = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
    {
        r
    } else if let Some(r) = lower
        .strip_prefix("http:")
        .or_else(|| lower.strip_prefix("https:"))
    {
        // `http:/evil.com` and `http:evil.com` are still cross-origin in browsers.
        r.trim_start_matches('/')
    } else {
        return None;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = if host_port.starts_with('[') {
        host_port.split(']').next().map(|h| format!("{h}]"))?
    } else {
        host_port.split(':').next().unwrap_or("").to_owned()
    };
    let host = host.trim_end_matches('.').to_owned();
    if host.is_empty() {
        None
    } else {
        Some(host)
    }
}

/// Query parameters treated as cache busting and removed from URLs before comparison.
const CACHE_BUSTING: &[&str] = &[
    "v",
    "ver",
    "version",
    "t",
    "ts",
    "timestamp",
    "_",
    "r",
    "rnd",
    "rand",
    "random",
    "cb",
    "nocache",
    "_t",
    "time",
];

/// Removes cache-busting query parameters (`?v=123`, `&t=...`) from a URL.
pub fn strip_cache_busting(url: &str) -> Cow<'_, str> {
    let Some((base, query)) = url.split_once('?') else {
        return Cow::Borrowed(url);
    };
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split('=').next().unwrap_or("");
            !pair.is_empty() && !CACHE_BUSTING.iter().any(|k| k.eq_ignore_ascii_case(key))
        })
        .collect();
    let mut out = base.to_owned();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    Cow::Owned(out)
}

/// Lower-cased declarations with whitespace removed: `"Display: none"` -> `"display:none"`.
fn compact_style(style: &str) -> String {
    style
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

fn declarations(compact: &str) -> impl Iterator<Item = (&str, &str)> {
    compact.split(';').filter_map(|d| {
        let (k, v) = d.split_once(':')?;
        Some((k, v.trim_end_matches("!important")))
    })
}

fn is_zero_length(v: &str) -> bool {
    let num = v.trim_end_matches(|c: char| c.is_ascii_alphabetic() || c == '%');
    !num.is_empty() && num.parse::<f64>().is_ok_and(|n| n.abs() < 0.01)
}

fn is_tiny_length(v: &str) -> bool {
    let num = v.trim_end_matches(|c: char| c.is_ascii_alphabetic() || c == '%');
    let unit = &v[num.len()..];
    (unit.is_empty() || unit == "px") && num.parse::<f64>().is_ok_and(|n| n.abs() <= 2.0)
}

fn is_far_offscreen(v: &str) -> bool {
    let num = v.trim_end_matches(|c: char| c.is_ascii_alphabetic() || c == '%');
    num.parse::<f64>().is_ok_and(|n| n <= -500.0)
}

/// Why an inline style hides its element, if it does.
pub fn hidden_by_style(style: &str) -> Option<&'static str> {
    let compact = compact_style(style);
    let mut overflow_hidden = false;
    let mut tiny_box = false;
    let mut color = None;
    let mut background = None;
    for (k, v) in declarations(&compact) {
        match k {
            "display" if v == "none" => return Some("display:none"),
            "visibility" if v == "hidden" || v == "collapse" => return Some("visibility:hidden"),
            "font-size" if is_zero_length(v) || is_tiny_length(v) => return Some("font-size:0"),
            "opacity" if is_zero_length(v) => return Some("opacity:0"),
            "left" | "top" | "right" | "bottom" | "margin-left" | "margin-top" | "text-indent"
                if is_far_offscreen(v) =>
            {
                return Some("off-screen position")
            }
            "height" | "width" | "max-height" | "max-width" if is_tiny_length(v) => tiny_box = true,
            "overflow" | "overflow-x" | "overflow-y" if v == "hidden" => overflow_hidden = true,
            "color" => color = Some(v),
            "background" | "background-color" => background = Some(v),
            "clip" if v.starts_with("rect(0") => return Some("clipped"),
            _ => {}
        }
    }
    if tiny_box && overflow_hidden {
        return Some("zero size");
    }
    match (color, background) {
        (Some(c), Some(b)) if c == b => Some("same-colour text"),
        _ => None,
    }
}

/// Whether a `<marquee>`'s attributes make it a hiding trick (tiny box or absurd speed).
pub fn marquee_trick(
    height: Option<&str>,
    width: Option<&str>,
    scrollamount: Option<&str>,
) -> bool {
    let tiny = |v: Option<&str>| {
        v.is_some_and(|v| {
            let v = v.trim().trim_end_matches("px");
            v.parse::<f64>().is_ok_and(|n| n <= 5.0)
        })
    };
    tiny(height)
        || tiny(width)
        || scrollamount.is_some_and(|v| v.trim().parse::<u32>().is_ok_and(|n| n >= 1000))
}

/// Scans a `<style>` block for simple `.class` / `#id` rules that hide elements and adds
/// `.name` / `#name` to `hidden`.
pub fn scan_style_block(css: &str, hidden: &mut HashSet<String>) {
    let mut rest = css;
    while let Some(open) = rest.find('{') {
        let selectors = &rest[..open];
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            break;
        };
        let body = &after[..close];
        if hidden_by_style(body).is_some() {
            for sel in selectors.split(',') {
                let sel = sel.trim();
                // Take the last compound; keep only its last class or id.
                let last = sel.rsplit([' ', '>', '+', '~']).next().unwrap_or("");
                if let Some(pos) = last.rfind(['.', '#']) {
                    let name = &last[pos..];
                    if name.len() > 1
                        && name[1..]
                            .chars()
                            .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
                    {
                        hidden.insert(name.to_owned());
                    }
                }
            }
        }
        rest = &after[close + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities() {
        assert_eq!(decode_entities("a &amp; b"), "a & b");
        assert_eq!(decode_entities("&#21338;&#x5F69;"), "博彩");
        assert_eq!(decode_entities("&copy; &unknown; &"), "&copy; &unknown; &");
        assert_eq!(decode_entities("x&nbsp;y&lt"), "x y<");
    }

    #[test]
    fn hosts() {
        let cases = [
            ("https://Evil.Example.com/a.js", Some("evil.example.com")),
            ("//cdn.example.org:8080/x", Some("cdn.example.org")),
            ("http://user@h.cn?x", Some("h.cn")),
            ("http:\\\\evil.cn\\x", Some("evil.cn")),
            ("/local/path.js", None),
            ("js/app.js", None),
            ("javascript:void(0)", None),
            ("https://[2001:db8::1]:443/", Some("[2001:db8::1]")),
            ("http://h.cn./", Some("h.cn")),
        ];
        for (url, host) in cases {
            assert_eq!(url_host(url).as_deref(), host, "{url}");
        }
    }

    #[test]
    fn cache_busting() {
        assert_eq!(strip_cache_busting("/a.js?v=123"), "/a.js");
        assert_eq!(strip_cache_busting("/a.css?t=99&id=4#x"), "/a.css?id=4#x");
        assert_eq!(strip_cache_busting("/a"), "/a");
    }

    #[test]
    fn hidden_styles() {
        let hidden = [
            ("display: none", "display:none"),
            ("DISPLAY:NONE !important", "display:none"),
            ("visibility:hidden", "visibility:hidden"),
            ("position:absolute; left:-9999px", "off-screen position"),
            ("text-indent:-10000px", "off-screen position"),
            ("font-size:0", "font-size:0"),
            ("font-size:0px;line-height:0", "font-size:0"),
            ("height:1px;overflow:hidden", "zero size"),
            ("color:#fff;background:#fff", "same-colour text"),
        ];
        for (style, reason) in hidden {
            assert_eq!(hidden_by_style(style), Some(reason), "{style}");
        }
        for visible in [
            "display:block",
            "left:10px",
            "font-size:12px",
            "height:1px",
            "",
        ] {
            assert_eq!(hidden_by_style(visible), None, "{visible}");
        }
        assert!(marquee_trick(Some("1"), None, None));
        assert!(marquee_trick(None, None, Some("5000")));
        assert!(!marquee_trick(Some("200"), Some("100%"), Some("3")));
    }

    #[test]
    fn style_blocks() {
        let mut set = HashSet::new();
        scan_style_block(
            ".nav{color:red} .seo-x, div#y {display:none} .z{position:absolute;left:-3000px}",
            &mut set,
        );
        let mut got: Vec<_> = set.into_iter().collect();
        got.sort();
        assert_eq!(got, ["#y", ".seo-x", ".z"]);
    }
}
