//! Error pages shown to citizens: one clean bilingual (Chinese and English) page per status,
//! with the request ID so that a citizen can quote it to the help desk.
//!
//! A site (or the global config) may replace any page with its own HTML file; the placeholders
//! `{{status}}` and `{{request_id}}` are filled in. Pages are read at config load, never per request.

use std::collections::HashMap;
use std::sync::Arc;

/// Statuses with a built-in page.
pub const STATUSES: &[u16] = &[
    400, 403, 404, 408, 413, 414, 421, 429, 431, 500, 502, 503, 504,
];

/// The Chinese and English titles and explanations of a status.
fn texts(status: u16) -> (&'static str, &'static str, &'static str, &'static str) {
    match status {
        400 => ("请求无效", "Bad Request", "您的浏览器发送的请求无法被理解。", "The request could not be understood."),
        403 => ("访问被拒绝", "Forbidden", "您的请求被安全策略拦截。如有疑问，请联系网站管理员并提供下方的请求编号。", "Your request was blocked by the security policy. If you think this is a mistake, contact the site administrator with the request ID below."),
        404 => ("页面不存在", "Not Found", "您访问的页面不存在。", "The page you asked for does not exist."),
        408 => ("请求超时", "Request Timeout", "请求发送时间过长。", "The request took too long to arrive."),
        413 => ("请求内容过大", "Payload Too Large", "上传的内容超过了允许的大小。", "The request body is larger than allowed."),
        414 => ("网址过长", "URI Too Long", "请求的网址过长。", "The requested address is too long."),
        421 => ("请求目标错误", "Misdirected Request", "该连接不能用于此网站。", "This connection cannot serve the requested site."),
        429 => ("访问过于频繁", "Too Many Requests", "您的访问过于频繁，请稍后再试。", "Too many requests: please wait and try again."),
        431 => ("请求头过大", "Request Header Fields Too Large", "请求头过大。", "The request headers are too large."),
        500 => ("服务器内部错误", "Internal Server Error", "服务器遇到了问题。", "The server hit a problem."),
        502 => ("网关错误", "Bad Gateway", "网站服务器暂时无法访问，请稍后再试。", "The website's server could not be reached; please try again later."),
        503 => ("服务暂不可用", "Service Unavailable", "网站正在维护或暂时不可用，请稍后再试。", "The site is under maintenance or unavailable; please try again later."),
        504 => ("网关超时", "Gateway Timeout", "网站服务器响应超时，请稍后再试。", "The website's server took too long to answer; please try again later."),
        _ => ("错误", "Error", "请求未能完成。", "The request could not be completed."),
    }
}

/// The built-in page for a status.
pub fn builtin_template(status: u16) -> String {
    let (zh_title, en_title, zh, en) = texts(status);
    format!(
        "<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{{{{status}}}} {zh_title} | {en_title}</title>\
<style>body{{font-family:-apple-system,\"PingFang SC\",\"Microsoft YaHei\",sans-serif;background:#f5f6f8;color:#222;margin:0}}\
main{{max-width:640px;margin:12vh auto;background:#fff;padding:2.5em;border-top:4px solid #b22;box-shadow:0 1px 4px rgba(0,0,0,.08)}}\
h1{{font-size:1.6em;margin:0 0 .3em}}h2{{font-size:1.1em;color:#666;font-weight:normal;margin:0 0 1.5em}}\
p{{line-height:1.7}}code{{background:#f0f0f0;padding:.2em .4em}}footer{{margin-top:2em;color:#888;font-size:.85em}}</style></head>\
<body><main><h1>{{{{status}}}} {zh_title}</h1><h2>{en_title}</h2><p>{zh}</p><p>{en}</p>\
<p>请求编号 / Request ID: <code>{{{{request_id}}}}</code></p><footer>Egret</footer></main></body></html>\n"
    )
}

/// Templates by status, compiled for one site (site files over global files over built-ins).
/// Cheap to clone: the map is shared.
#[derive(Debug, Clone, Default)]
pub struct ErrorPages {
    custom: Arc<HashMap<u16, Arc<str>>>,
}

impl ErrorPages {
    pub fn new(custom: HashMap<u16, Arc<str>>) -> ErrorPages {
        ErrorPages {
            custom: Arc::new(custom),
        }
    }

    /// Layers `over` on top of `self`.
    pub fn overlay(&self, over: &ErrorPages) -> ErrorPages {
        let mut custom = HashMap::clone(&self.custom);
        custom.extend(over.custom.iter().map(|(k, v)| (*k, v.clone())));
        ErrorPages {
            custom: Arc::new(custom),
        }
    }

    /// The rendered page for `status` with `request_id` filled in.
    pub fn render(&self, status: u16, request_id: &str) -> String {
        let rid = escape_html(request_id);
        let status_s = status.to_string();
        match self.custom.get(&status) {
            Some(t) => t
                .replace("{{status}}", &status_s)
                .replace("{{request_id}}", &rid),
            None => builtin_template(status)
                .replace("{{status}}", &status_s)
                .replace("{{request_id}}", &rid),
        }
    }
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_pages_are_bilingual_with_request_id() {
        let p = ErrorPages::default();
        for &s in STATUSES {
            let html = p.render(s, "abc123");
            assert!(html.contains(&s.to_string()));
            assert!(html.contains("abc123"));
            assert!(html.contains("Request ID"));
            assert!(html.contains("请求编号"));
        }
    }

    #[test]
    fn custom_page_overrides_and_escapes() {
        let mut m = HashMap::new();
        m.insert(
            404u16,
            Arc::<str>::from("<p>missing {{request_id}} {{status}}</p>"),
        );
        let p = ErrorPages::default().overlay(&ErrorPages::new(m));
        assert_eq!(p.render(404, "<x>"), "<p>missing &lt;x&gt; 404</p>");
        assert!(p.render(403, "r").contains("访问被拒绝"));
    }
}
