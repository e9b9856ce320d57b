//! khoa's HTTP layer: a thin axum application over the protocol core and the store.

mod backchannel;
mod cleanup;
mod client_authn;
pub mod clients;
pub mod clock;
mod cookies;
mod cors;
mod dialects;
pub mod error;
mod flow;
#[doc(hidden)]
pub mod fuzzing;
mod grants;
pub mod http;
pub mod i18n;
mod interaction;
mod issue;
pub mod keys;
pub mod logout;
pub mod metrics;
mod pages;
mod password_login;
mod routes;
pub mod settings;
pub mod state;
#[cfg(test)]
mod testing;
mod tokens;
mod watcher;

pub use settings::{Branding, Lifetimes, Settings};
pub use state::AppState;

use axum::Router;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

/// The application with every route and middleware.
pub fn router(state: AppState) -> Router {
    routes::router(state)
}

/// A running server: its address and the handle that stops it.
pub struct RunningServer {
    pub local_addr: SocketAddr,
    /// The `metrics.listen` listener's address, when configured.
    pub metrics_addr: Option<SocketAddr>,
    pub state: AppState,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Asks the server to stop, lets in-flight requests finish, and waits.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.shutdown.send(true);
        self.task.await.unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }

    /// Resolves when the server has stopped on its own or was told to.
    pub async fn wait(self) -> std::io::Result<()> {
        self.task.await.unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }

    pub fn stopper(&self) -> tokio::sync::watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Binds the listener, starts the change watcher and serves until shut down.
pub async fn start(state: AppState) -> std::io::Result<RunningServer> {
    let listener = TcpListener::bind(state.settings.listen).await?;
    let local_addr = listener.local_addr()?;
    let metrics_listener = match state.settings.metrics_listen {
        Some(addr) => Some(TcpListener::bind(addr).await?),
        None => None,
    };
    let metrics_addr = metrics_listener.as_ref().map(TcpListener::local_addr).transpose()?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    watcher::spawn(state.clone(), rx.clone());
    cleanup::spawn(state.clone(), rx.clone());
    backchannel::spawn(state.clone(), rx.clone());
    let app = router(state.clone());
    let (header_read_timeout, drain) = (state.settings.header_read_timeout, state.settings.request_timeout);
    if let Some(metrics) = metrics_listener {
        let app = routes::metrics_router(state.clone());
        tokio::spawn(http::serve(metrics, app, header_read_timeout, drain, rx.clone()));
        tracing::info!(metrics_addr = ?metrics_addr, "metrics listening");
    }
    let task = tokio::spawn(http::serve(listener, app, header_read_timeout, drain, rx));
    tracing::info!(%local_addr, issuer = %state.settings.issuer, "khoa listening");
    // Give the accept loop a moment to be scheduled before callers connect.
    tokio::time::sleep(Duration::from_millis(1)).await;
    Ok(RunningServer { local_addr, metrics_addr, state, shutdown: tx, task })
}
