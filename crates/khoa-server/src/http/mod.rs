//! The HTTP/1.1 connection layer: accepts connections, applies the limits a request
//! meets before any handler runs, and stops gracefully.
//!
//! - A request's line and headers together may take [`MAX_HEAD_BYTES`] and
//!   [`MAX_HEADERS`] fields (431 beyond), and must arrive within
//!   `Settings::header_read_timeout`: a client that trickles bytes is disconnected
//!   instead of holding its connection open indefinitely (slowloris).
//! - The URI is limited in `routes` (414), the body to `Settings::body_limit` (413) and
//!   the whole request to `Settings::request_timeout` (408).
//! - On stop the listener closes at once; requests in flight finish (for up to
//!   `request_timeout`), idle keep-alive connections are closed.

pub mod account_texts;
pub(crate) mod cookies;
pub(crate) mod cors;
pub mod error;
pub mod factor_texts;
pub(crate) mod forms;
pub mod i18n;
pub(crate) mod pages;
pub mod problem;
pub mod tls;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::time::Duration;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// The request line and headers together, in bytes (hyper answers 431 beyond).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Header fields per request (431 beyond).
pub const MAX_HEADERS: usize = 64;

/// Serves `app` on `listener` until `stop` turns true, then drains. With `tls`, each
/// connection's handshake must finish within `header_read_timeout` too.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    drain_timeout: Duration,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS);
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        let _ = stream.set_nodelay(true);
        let service = app.clone().map_request(move |mut req: axum::http::Request<Incoming>| {
            // What `ConnectInfo<SocketAddr>` extracts (login throttling per address).
            req.extensions_mut().insert(ConnectInfo(peer));
            req
        });
        let service = TowerToHyperService::new(service);
        match &acceptor {
            None => {
                let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                });
            }
            Some(acceptor) => {
                let (acceptor, http, watcher) = (acceptor.clone(), http.clone(), graceful.watcher());
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(header_read_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => return tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                        Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                    };
                    let connection = watcher.watch(http.serve_connection(TokioIo::new(stream), service));
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(drain_timeout, graceful.shutdown()).await.is_err() {
        tracing::warn!(?drain_timeout, "requests still in flight when the drain time ran out");
    }
    Ok(())
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// The client's address: the TCP peer, or what a trusted proxy (`http.trusted_proxies`)
/// says in `Forwarded` / `X-Forwarded-For` (see `khoa_core::forwarded`).
pub fn client_address(
    settings: &crate::Settings,
    peer: std::net::IpAddr,
    headers: &axum::http::HeaderMap,
) -> std::net::IpAddr {
    if settings.trusted_proxies.is_empty() {
        return peer;
    }
    let values = |name: &str| -> Vec<&str> { headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect() };
    khoa_core::forwarded::client_address(
        peer,
        &settings.trusted_proxies,
        &values("forwarded"),
        &values("x-forwarded-for"),
    )
}
