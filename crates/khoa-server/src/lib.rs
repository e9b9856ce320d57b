//! khoa's HTTP layer: a thin axum application over the protocol core and the store.

// Layers, each using only those listed before it (`layers_do_not_reach_upwards`):
// app (state, settings, clock, metrics, caches, keys, background jobs), http (the
// accept loop, forms, cookies, errors, pages, CORS), service (client authentication,
// grants, issuing, the authorization flow, logout), then the adapters (routes,
// dialects).
pub mod app;
pub mod http;
pub mod service;

mod dialects;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod routes;
#[cfg(test)]
mod testing;

pub use app::{clients, clock, keys, mail, metrics, passwords, settings, state};
pub use http::{error, i18n};
pub use service::logout;

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

/// The admin listener's application (`/admin/*`, health, metrics).
pub fn admin_router(state: AppState) -> Router {
    routes::admin_router(state)
}

/// A running server: its address and the handle that stops it.
pub struct RunningServer {
    pub local_addr: SocketAddr,
    /// The `metrics.listen` listener's address, when configured.
    pub metrics_addr: Option<SocketAddr>,
    /// The admin API's address (`admin.listen`), when configured.
    pub admin_addr: Option<SocketAddr>,
    /// The plain-http redirecting listener's address (`tls.redirect_listen`).
    pub redirect_addr: Option<SocketAddr>,
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

/// Binds `addr`; an error names the setting it came from.
async fn bind(addr: SocketAddr, setting: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr} ({setting}): {e}")))
}

async fn bind_optional(addr: Option<SocketAddr>, setting: &str) -> std::io::Result<Option<TcpListener>> {
    match addr {
        Some(addr) => bind(addr, setting).await.map(Some),
        None => Ok(None),
    }
}

/// Binds the listener, starts the change watcher and serves until shut down.
pub async fn start(state: AppState) -> std::io::Result<RunningServer> {
    let settings = &state.settings;
    let listener = bind(settings.listen, "listen").await?;
    let local_addr = listener.local_addr()?;
    let metrics_listener = bind_optional(settings.metrics_listen, "metrics.listen").await?;
    let metrics_addr = metrics_listener.as_ref().map(TcpListener::local_addr).transpose()?;
    let admin_listener = bind_optional(settings.admin_listen, "admin.listen").await?;
    let admin_addr = admin_listener.as_ref().map(TcpListener::local_addr).transpose()?;
    let redirect_listener = bind_optional(settings.redirect_listen, "tls.redirect_listen").await?;
    let redirect_addr = redirect_listener.as_ref().map(TcpListener::local_addr).transpose()?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    app::watcher::spawn(state.clone(), rx.clone());
    app::cleanup::spawn(state.clone(), rx.clone());
    service::backchannel::spawn(state.clone(), rx.clone());
    let app = router(state.clone());
    let (header_read_timeout, drain) = (state.settings.header_read_timeout, state.settings.request_timeout);
    if let Some(metrics) = metrics_listener {
        let app = routes::metrics_router(state.clone());
        tokio::spawn(http::serve(metrics, app, header_read_timeout, drain, None, rx.clone()));
        tracing::info!(metrics_addr = ?metrics_addr, "metrics listening");
    }
    if let Some(admin) = admin_listener {
        let app = routes::admin_router(state.clone());
        tokio::spawn(http::serve(admin, app, header_read_timeout, drain, None, rx.clone()));
        tracing::info!(admin_addr = ?admin_addr, "admin API listening");
    }
    if let Some(redirect) = redirect_listener {
        let app = routes::redirect_router(&state.settings.issuer);
        tokio::spawn(http::serve(redirect, app, header_read_timeout, drain, None, rx.clone()));
        tracing::info!(redirect_addr = ?redirect_addr, "redirecting plain http to the https issuer");
    }
    let tls = match &state.settings.tls {
        Some(files) => {
            let certificates = http::tls::Certificates::new(files.clone()).map_err(std::io::Error::other)?;
            http::tls::spawn_reload(certificates.clone(), state.settings.watch_interval, rx.clone());
            Some(certificates.server_config().map_err(std::io::Error::other)?)
        }
        None => None,
    };
    let task = tokio::spawn(http::serve(listener, app, header_read_timeout, drain, tls, rx));
    tracing::info!(%local_addr, issuer = %state.settings.issuer, "khoa listening");
    // Give the accept loop a moment to be scheduled before callers connect.
    tokio::time::sleep(Duration::from_millis(1)).await;
    Ok(RunningServer { local_addr, metrics_addr, admin_addr, redirect_addr, state, shutdown: tx, task })
}

#[cfg(test)]
mod layer_tests {
    /// Each layer uses only the layers below it: app ← http ← service ← adapters.
    #[test]
    fn layers_do_not_reach_upwards() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let rules: [(&str, &[&str]); 3] = [
            ("app", &["http", "service", "routes", "dialects", "fuzzing"]),
            ("http", &["service", "routes", "dialects", "fuzzing"]),
            ("service", &["routes", "dialects", "fuzzing"]),
        ];
        let mut seen = 0;
        for (layer, above) in rules {
            let mut dirs = vec![root.join(layer)];
            while let Some(dir) = dirs.pop() {
                for entry in std::fs::read_dir(&dir).unwrap() {
                    let path = entry.unwrap().path();
                    if path.is_dir() {
                        dirs.push(path);
                        continue;
                    }
                    let text = std::fs::read_to_string(&path).unwrap();
                    seen += 1;
                    for upper in above {
                        for pattern in [format!("crate::{upper}::"), format!("crate::{upper};")] {
                            assert!(!text.contains(&pattern), "{} ({layer}) uses {pattern}", path.display());
                        }
                        // `use crate::{…}` lists.
                        for list in text.split("crate::{").skip(1) {
                            let names = list.split('}').next().unwrap_or_default();
                            let reaches =
                                names.split([',', ' ', '\n']).any(|n| n.trim().split("::").next() == Some(upper));
                            assert!(!reaches, "{} ({layer}) uses crate::{{{upper}…}}", path.display());
                        }
                    }
                }
            }
        }
        assert!(seen > 20, "read {seen} files");
    }
}
