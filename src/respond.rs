//! Turning a decision into a response: the one place that writes Egret's own responses
//! (error pages, blocks, limits, challenges, redirects, unknown hosts) to the client.

use crate::error_pages::ErrorPages;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

/// Extra response headers of one of Egret's own answers.
pub type ExtraHeaders<'a> = &'a [(&'static str, String)];

/// Writes a full response: `status`, an HTML `body`, the request ID header and `extra` headers.
/// `close` ends the connection afterwards (framing in doubt, or a hostile client).
pub async fn write_html(
    session: &mut Session,
    status: u16,
    body: String,
    request_id: &str,
    close: bool,
    extra: ExtraHeaders<'_>,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(6 + extra.len()))?;
    resp.insert_header("content-type", "text/html; charset=utf-8")?;
    resp.insert_header("content-length", body.len().to_string())?;
    resp.insert_header("cache-control", "no-store")?;
    resp.insert_header("x-request-id", request_id)?;
    for (k, v) in extra {
        resp.append_header(*k, v.as_str())?;
    }
    if close {
        resp.insert_header("connection", "close")?;
        session.set_keepalive(None);
    }
    let head = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(resp), head || body.is_empty())
        .await?;
    if !head && !body.is_empty() {
        session
            .write_response_body(Some(Bytes::from(body)), true)
            .await?;
    }
    Ok(())
}

/// Writes a response with any content type and an already encoded body (protected pages).
pub async fn write_body(
    session: &mut Session,
    status: u16,
    content_type: &str,
    body: Bytes,
    request_id: &str,
    extra: ExtraHeaders<'_>,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(4 + extra.len()))?;
    if !content_type.is_empty() {
        resp.insert_header("content-type", content_type)?;
    }
    resp.insert_header("content-length", body.len().to_string())?;
    resp.insert_header("x-request-id", request_id)?;
    for (k, v) in extra {
        resp.append_header(*k, v.as_str())?;
    }
    let head = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(resp), head || body.is_empty())
        .await?;
    if !head && !body.is_empty() {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// Writes the error page for `status` from `pages`.
pub async fn write_error_page(
    session: &mut Session,
    pages: &ErrorPages,
    status: u16,
    request_id: &str,
    close: bool,
    extra: ExtraHeaders<'_>,
) -> Result<()> {
    write_html(
        session,
        status,
        pages.render(status, request_id),
        request_id,
        close,
        extra,
    )
    .await
}

/// Writes a redirect to `location` with a short HTML body.
pub async fn write_redirect(
    session: &mut Session,
    status: u16,
    location: &str,
    request_id: &str,
) -> Result<()> {
    let body = format!(
        "<a href=\"{}\">{}</a>\n",
        location.replace('"', "%22"),
        location.replace('<', "%3C")
    );
    write_html(
        session,
        status,
        body,
        request_id,
        false,
        &[("location", location.to_string())],
    )
    .await
}
