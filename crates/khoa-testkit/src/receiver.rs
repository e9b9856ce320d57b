//! A relying party's logout endpoints on a loopback port: records every back-channel
//! POST (`/bc`, `/bc2`) and front-channel GET (`/fc`), and answers back-channel calls
//! with the statuses the test queues (200 once the queue is empty).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, Uri};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// The `logout_token` of a back-channel POST, or the query of a front-channel GET.
    pub value: String,
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    statuses: Mutex<std::collections::HashMap<String, VecDeque<u16>>>,
}

pub struct Receiver {
    pub port: u16,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

async fn backchannel(State(s): State<Arc<Shared>>, uri: Uri, body: Bytes) -> StatusCode {
    let token = url::form_urlencoded::parse(&body).find(|(k, _)| k == "logout_token").map(|(_, v)| v.into_owned());
    s.received.lock().unwrap().push(Received { path: uri.path().to_string(), value: token.unwrap_or_default() });
    let status = s.statuses.lock().unwrap().get_mut(uri.path()).and_then(|q| q.pop_front()).unwrap_or(200);
    StatusCode::from_u16(status).unwrap()
}

async fn frontchannel(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> &'static str {
    s.received.lock().unwrap().push(Received { path: "/fc".into(), value: q.unwrap_or_default() });
    "ok"
}

impl Receiver {
    /// Listens on 127.0.0.1:`port` (0 for any free port).
    pub async fn start(port: u16) -> Self {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/bc", post(backchannel))
            .route("/bc2", post(backchannel))
            .route("/fc", get(frontchannel))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind the receiver");
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Self { port, shared, stop: Some(tx) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Statuses for the next back-channel calls to `path`, in order.
    pub fn answer_with(&self, path: &str, statuses: &[u16]) {
        self.shared.statuses.lock().unwrap().entry(path.to_string()).or_default().extend(statuses.iter().copied());
    }

    pub fn received(&self, path: &str) -> Vec<String> {
        self.shared.received.lock().unwrap().iter().filter(|r| r.path == path).map(|r| r.value.clone()).collect()
    }

    /// Waits (up to `secs`) until `n` calls to `path` arrived.
    pub async fn wait_for(&self, path: &str, n: usize, secs: u64) -> Vec<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let got = self.received(path);
            if got.len() >= n || std::time::Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Verifies an RS256, ES256 or EdDSA compact JWS against a JWKS document, as a relying
/// party would; returns (header, claims).
pub fn verify_with_jwks(token: &str, jwks: &serde_json::Value) -> Option<(serde_json::Value, serde_json::Value)> {
    use aws_lc_rs::signature::{
        RsaPublicKeyComponents, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ED25519, RSA_PKCS1_2048_8192_SHA256,
    };
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = token.split('.');
    let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
    let header: serde_json::Value = serde_json::from_slice(&b64.decode(h).ok()?).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&b64.decode(p).ok()?).ok()?;
    let sig = b64.decode(s).ok()?;
    let key = jwks["keys"].as_array()?.iter().find(|k| k["kid"] == header["kid"])?;
    let d = |name: &str| b64.decode(key[name].as_str().unwrap_or_default()).ok();
    let message = format!("{h}.{p}");
    let ok = match header["alg"].as_str()? {
        "RS256" => RsaPublicKeyComponents { n: d("n")?, e: d("e")? }
            .verify(&RSA_PKCS1_2048_8192_SHA256, message.as_bytes(), &sig)
            .is_ok(),
        "ES256" => {
            let mut point = vec![4u8];
            point.extend(d("x")?);
            point.extend(d("y")?);
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).verify(message.as_bytes(), &sig).is_ok()
        }
        "EdDSA" => UnparsedPublicKey::new(&ED25519, d("x")?).verify(message.as_bytes(), &sig).is_ok(),
        _ => false,
    };
    ok.then_some((header, claims))
}
