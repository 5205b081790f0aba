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
use std::sync::Arc;

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
        self.proxy.process_new_http(session, shutdown).await
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
