//! In-process tests through the router: an [`AppState`] on an in-memory SQLite
//! database and a [`ManualClock`], requests sent with `oneshot`, answers read whole.

use crate::clock::ManualClock;
use crate::{AppState, Settings};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use base64::Engine;
use khoa_core::client::{Client, ClientRegistration, SecretChoice};
use khoa_core::sealing::MasterKey;
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt;

pub(crate) const NOW: i64 = 1_800_000_000;
pub(crate) const CALLBACK: &str = "https://app.example/cb";

pub(crate) struct TestApp {
    pub state: AppState,
    pub clock: Arc<ManualClock>,
}

/// An answer: status, headers and the body as JSON (`Null` when it is not JSON).
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// `(status, error, error_description)` of an RFC 6749 error answer.
    pub fn error(&self) -> (u16, &str, &str) {
        let text = |k: &str| self.body[k].as_str().unwrap_or_default();
        (self.status.as_u16(), text("error"), text("error_description"))
    }
}

impl TestApp {
    pub async fn new() -> Self {
        let store = khoa_store::connect("sqlite::memory:").await.expect("in-memory SQLite");
        store.migrate().await.expect("migrate");
        let master = MasterKey::generate().0;
        let settings = Settings::new("https://sso.example.vn", ([127, 0, 0, 1], 0).into());
        crate::keys::ensure_initial_keys(store.as_ref(), &master, &settings.algorithms, NOW).await.expect("keys");
        let clock = Arc::new(ManualClock::new(NOW));
        let state = AppState::with_clock(settings, store, master, clock.clone()).await.expect("state");
        Self { state, clock }
    }

    /// Registers a client (`change` adjusts the registration); its secret, if any.
    pub async fn client(&self, id: &str, change: impl FnOnce(&mut ClientRegistration)) -> (Client, Option<String>) {
        let mut r = ClientRegistration::new(id);
        r.redirect_uris = vec![CALLBACK.into()];
        r.skip_consent = true;
        change(&mut r);
        let given = match &r.secret {
            SecretChoice::Given(s) => Some(s.clone()),
            _ => None,
        };
        let registered = r.register(NOW).expect("a valid registration");
        self.state.store.insert_client(&registered.client).await.expect("insert");
        (registered.client, registered.plaintext_secret.or(given))
    }

    /// A form POST, with `Authorization: Basic` when `basic` is given.
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> Answer {
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let mut req = Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some((id, secret)) = basic {
            let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let creds = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(id), enc(secret)));
            req = req.header(header::AUTHORIZATION, format!("Basic {creds}"));
        }
        self.send(req.body(Body::from(body)).expect("request")).await
    }

    pub async fn send(&self, req: Request<Body>) -> Answer {
        let res = crate::router(self.state.clone()).oneshot(req).await.expect("the router answers");
        let (status, headers) = (res.status(), res.headers().clone());
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.expect("body");
        Answer { status, headers, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
    }
}
