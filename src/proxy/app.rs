//! The HTTP application around pingora's proxy: sets the client header read timeout (which is
//! also the keep-alive idle timeout) on every new session before pingora reads the request header
//! (pingora has no hook there), then hands the session to the proxy. Everything else is delegated unchanged.

use super::EgretProxy;
use crate::state::AppState;
use async_trait::async_trait;
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::protocols::http::ServerSession;
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Set once the proxy has read a request header on this connection.
pub struct HeaderSeen(pub Arc<AtomicBool>);

/// The proxy service's application.
pub struct EgretHttpApp {
    pub proxy: Arc<HttpProxy<EgretProxy>>,
    pub state: Arc<AppState>,
}

#[async_trait]
impl HttpServerApp for EgretHttpApp {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        // A client must send each part of its request header within this time (408 in the log;
        // the connection is closed, as nginx does).
        let timeout = self.state.snapshot.load().global.client_header_timeout;
        // pingora reads a header with its keep-alive timer while keep-alive is on (per read, whole
        // seconds), and with the read timeout otherwise: set both.
        session.set_read_timeout(Some(timeout));
        if session.get_keepalive().is_some() {
            session.set_keepalive(Some(timeout.as_secs().max(1)));
        }
        if session.is_http2() {
            return self.proxy.process_new_http(session, shutdown).await;
        }
        // A total deadline for the header, whatever the per-read timeout: the proxy marks the
        // header as read (through the connection context, in `on_connection_reuse`), and a
        // client still trickling it at the deadline loses the connection.
        let deadline = self.state.snapshot.load().global.client_header_deadline;
        let seen = Arc::new(AtomicBool::new(false));
        session.set_connection_user_context(Some(Box::new(HeaderSeen(seen.clone()))));
        let fut = self.proxy.process_new_http(session, shutdown);
        tokio::pin!(fut);
        let timer = tokio::time::sleep(deadline);
        tokio::pin!(timer);
        let mut timer_done = false;
        loop {
            tokio::select! {
                r = &mut fut => return r,
                _ = &mut timer, if !timer_done => {
                    timer_done = true;
                    if !seen.load(Ordering::Relaxed) {
                        self.state.metrics.connections_refused.with_label_values(&["header_deadline"]).inc();
                        return None;
                    }
                }
            }
        }
    }

    fn h2_options(&self) -> Option<pingora::protocols::http::v2::server::H2Options> {
        self.proxy.h2_options()
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        self.proxy.server_options()
    }

    async fn http_cleanup(&self) {
        self.proxy.http_cleanup().await
    }
}
