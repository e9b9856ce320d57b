//! Entry points for the fuzz targets in `fuzz/` and for the corpus replay test
//! (`tests/fuzz_corpus.rs`): every parser that takes outside input, fed arbitrary
//! bytes. Each must return (an answer or an error), never panic or hang.
//!
//! Not part of khoa's interface; the functions exist only for those two callers.

use crate::dialects::{hutech, tconnect};
use crate::http::forms::read_form;
use axum::http::{header, HeaderMap, HeaderValue};
use khoa_core::authorize::{self, Params};
use khoa_core::client::{Client, ClientRegistration, SecretChoice};
use khoa_core::client_auth;
use khoa_core::jose::{jwt, SigningAlgorithm, SigningKey};
use khoa_core::tconnect::PartnerKey;
use std::collections::HashMap;
use std::sync::OnceLock;

/// A confidential client with a known secret, a registered web redirect URI and a
/// loopback one.
fn client() -> &'static Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let mut r = ClientRegistration::new("web-app");
        r.secret = SecretChoice::Given("a-fixed-secret-of-at-least-32-characters".into());
        r.redirect_uris = vec!["https://app.example/cb".into(), "http://127.0.0.1/cb".into()];
        match r.register(0) {
            Ok(registered) => registered.client,
            Err(e) => panic!("the fuzzing client is valid: {e:?}"),
        }
    })
}

/// One key per algorithm, by kid.
fn keys() -> &'static HashMap<String, SigningKey> {
    static KEYS: OnceLock<HashMap<String, SigningKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        SigningAlgorithm::ALL
            .into_iter()
            .filter_map(|alg| SigningKey::generate(alg).ok())
            .map(|k| (k.kid().to_string(), k))
            .collect()
    })
}

fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// A token request: the first line is the `Authorization` header, the rest the
/// form body (RFC 6749 §2.3.1, §3.2).
pub fn token_request(data: &[u8]) {
    let (authorization, body) = split_line(data);
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
    let Ok(form) = read_form(&headers, body) else { return };
    let field = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let authorization = std::str::from_utf8(authorization).ok();
    if let Ok(credentials) = client_auth::parse(authorization, field("client_id"), field("client_secret")) {
        let _ = client_auth::verify(&credentials, Some(client()), 0);
        let _ = client_auth::verify(&credentials, None, 0);
    }
}

/// An authorization request's query string, validated against the client; and the
/// same bytes as a presented redirect URI.
pub fn authorization_request(data: &[u8]) {
    let pairs = url::form_urlencoded::parse(data).into_owned();
    let params = Params::new(pairs);
    let _ = authorize::validate(&params, Some(client()));
    let _ = authorize::validate(&params, None);
    if let Ok(presented) = std::str::from_utf8(data) {
        for registered in &client().redirect_uris {
            let _ = authorize::redirect_uri_matches(registered, presented);
        }
    }
}

/// A JWT as presented at userinfo or as `id_token_hint`.
pub fn jwt(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else { return };
    let _ = jwt::decode::<serde_json::Value, _>(token, |kid| keys().get(kid));
    if let Ok(unverified) = jwt::parse(token) {
        let _ = unverified.kid();
    }
}

/// A TCONNECT request body: JSON `{"data": hex}`, AES-256-CBC, then the login or
/// refresh payload's JSON.
pub fn tconnect(data: &[u8]) {
    static KEY: OnceLock<Option<PartnerKey>> = OnceLock::new();
    let Some(key) = KEY.get_or_init(|| PartnerKey::from_bytes(&[7u8; 32])) else { return };
    let _ = tconnect::payload::<tconnect::LoginPayload>(key, data);
    let _ = tconnect::payload::<tconnect::RefreshPayload>(key, data);
    if let Ok(hex) = std::str::from_utf8(data) {
        let _ = key.decrypt_json::<serde_json::Value>(hex);
    }
}

/// A HUTECH JSON body, read for the mobile and the web exchange.
pub fn hutech(data: &[u8]) {
    let mut headers = HeaderMap::new();
    headers.insert("app-key", HeaderValue::from_static("app"));
    let _ = hutech::read(&headers, data, &["authorization_code", "code_verifier"]);
    let _ = hutech::read(&headers, data, &["authorization_code", "client_id", "client_secret"]);
}

/// A fuzz target: any bytes in, no panic out.
pub type Target = fn(&[u8]);

/// The targets by name, for the corpus replay test and the fuzz crate.
pub const TARGETS: [(&str, Target); 5] = [
    ("token_request", token_request),
    ("authorization_request", authorization_request),
    ("jwt", jwt),
    ("tconnect", tconnect),
    ("hutech", hutech),
];
