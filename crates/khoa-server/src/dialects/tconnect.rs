//! TCONNECT Open API (seed 004): `POST /openapi/v1/auth/login` and
//! `POST /openapi/v1/auth/refresh` for partners. The body is `{"data": hex}`, the
//! AES-256-CBC payload of `khoa_core::tconnect`. Every way a payload can fail (hex,
//! decryption, padding, JSON, or a client that is not the partner's) gives one and the
//! same answer. Refresh tokens are JWTs that carry the opaque handle; the database
//! stays the authority on rotation and revocation.
//!
//! The login is a resource-owner password grant, which RFC 9700 §2.4 forbids for
//! general clients: it exists only here, for a partner's own confidential client,
//! behind the partner's key and the login throttling.

// Helpers return the finished error response as their `Err`: it is the early-return
// path of the handlers, and boxing it would only add noise.
#![allow(clippy::result_large_err)]

use crate::app::state::AppState;
use crate::http::error::TokenError;
use crate::service::client_authn::authenticate_credentials;
use crate::service::grants::{no_store, refresh_token};
use crate::service::issue::{self, RefreshTemplate, Subject};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use khoa_core::client::Client;
use khoa_core::client_auth::ClientCredentials;
use khoa_core::jose::{jwt, SigningAlgorithm};
use khoa_core::scope::ScopeSet;
use khoa_core::tconnect::PartnerKey;
use khoa_core::token_error::TokenEndpointError;
use khoa_store::{AccessTokenRecord, NewAccessToken, Partner};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub const LOGIN_PATH: &str = "/openapi/v1/auth/login";
pub const REFRESH_PATH: &str = "/openapi/v1/auth/refresh";
/// `typ` of the refresh JWTs of this dialect.
const REFRESH_TYP: &str = "rt+jwt";

/// The one answer for every unreadable payload (no padding oracle).
fn unreadable() -> Response {
    let body =
        serde_json::json!({"error": "invalid_request", "error_description": "the encrypted payload could not be read"});
    let mut res = (StatusCode::BAD_REQUEST, Json(body)).into_response();
    no_store(res.headers_mut());
    res
}

fn not_found() -> Response {
    let body = serde_json::json!({"error": "not_found", "error_description": "unknown Partner-Code"});
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

fn oauth_error(e: TokenEndpointError) -> Response {
    TokenError::Endpoint(e).into_response()
}

#[derive(Deserialize)]
struct Envelope {
    data: String,
}

#[derive(Deserialize)]
pub(crate) struct LoginPayload {
    username: String,
    password: String,
    client_id: String,
    client_secret: String,
    /// Replay protection (optional unless the partner requires it): when the payload
    /// was made (Unix seconds) and a value never used before.
    timestamp: Option<i64>,
    nonce: Option<String>,
}

/// How old a login payload's `timestamp` may be (seconds).
pub const PAYLOAD_MAX_AGE: i64 = 300;
/// How far ahead of our clock a partner's clock may run (seconds).
const PAYLOAD_CLOCK_SKEW: i64 = 60;

/// Refuses a payload that is stale, replayed, or lacks the replay protection its
/// partner requires; records its nonce otherwise (before the password is checked, so
/// a replay cannot even cost a throttled attempt).
async fn check_freshness(state: &AppState, partner: &Partner, p: &LoginPayload, now: i64) -> Result<(), Response> {
    let refuse = |d: &'static str| oauth_error(TokenEndpointError::InvalidRequest(d));
    let (timestamp, nonce) = match (p.timestamp, p.nonce.as_deref()) {
        (None, None) if !partner.require_nonce => return Ok(()),
        (None, None) => return Err(refuse("this partner's payloads must carry timestamp and nonce")),
        (Some(t), Some(n)) => (t, n),
        _ => return Err(refuse("timestamp and nonce go together")),
    };
    let nonce_ok = (16..=128).contains(&nonce.len()) && nonce.bytes().all(|b| b.is_ascii_graphic());
    if !nonce_ok {
        return Err(refuse("nonce must be 16 to 128 printable ASCII characters"));
    }
    if timestamp < now - PAYLOAD_MAX_AGE || timestamp > now + PAYLOAD_CLOCK_SKEW {
        return Err(refuse("the payload is stale: its timestamp is not within 5 minutes of now"));
    }
    // Kept as long as a payload with this timestamp could be accepted.
    let keep_until = timestamp + PAYLOAD_MAX_AGE + PAYLOAD_CLOCK_SKEW;
    match state.store.use_partner_nonce(&partner.code, nonce, keep_until).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(refuse("the payload was used before")),
        Err(e) => Err(crate::http::error::ApiError::from(e).into_response()),
    }
}

#[derive(Deserialize)]
pub(crate) struct RefreshPayload {
    refresh_token: String,
}

/// The claims of a refresh JWT: the opaque handle (`rt`) under our signature.
#[derive(Serialize, Deserialize)]
struct RefreshClaims {
    iss: String,
    sub: String,
    aud: String,
    iat: i64,
    exp: i64,
    rt: String,
}

#[derive(Serialize)]
struct PartnerTokens {
    access_token: String,
    expires_in: i64,
    refresh_token: String,
    refresh_expires_in: i64,
    token_type: &'static str,
}

/// The partner named by `Partner-Code`, its key and its client; `Err` is the response.
async fn partner(state: &AppState, headers: &HeaderMap) -> Result<(Partner, PartnerKey, Arc<Client>), Response> {
    let code = headers.get("partner-code").and_then(|v| v.to_str().ok()).map(str::trim).filter(|c| !c.is_empty());
    let Some(code) = code else { return Err(not_found()) };
    let partner = match state.store.partner(code).await {
        Ok(Some(p)) => p,
        Ok(None) => return Err(not_found()),
        Err(e) => return Err(crate::http::error::ApiError::from(e).into_response()),
    };
    let aad = format!("partner:{}", partner.code);
    let key = state.master.open(aad.as_bytes(), &partner.key_sealed).ok().and_then(|k| PartnerKey::from_bytes(&k));
    let Some(key) = key else {
        return Err(crate::http::error::ApiError::Internal("a partner key cannot be opened".into()).into_response());
    };
    match state.clients.get(state.store.as_ref(), &partner.client_id).await {
        Ok(Some(client)) => Ok((partner, key, client)),
        Ok(None) => Err(not_found()),
        Err(e) => Err(crate::http::error::ApiError::from(e).into_response()),
    }
}

/// Decrypts the body as `T`; every failure is the same `unreadable()`.
pub(crate) fn payload<T: serde::de::DeserializeOwned>(key: &PartnerKey, body: &[u8]) -> Result<T, Response> {
    let envelope: Envelope = serde_json::from_slice(body).map_err(|_| unreadable())?;
    key.decrypt_json(&envelope.data).map_err(|_| unreadable())
}

fn refresh_jwt(
    state: &AppState,
    client: &Client,
    sub: &str,
    handle: &str,
    now: i64,
) -> Result<(String, i64), Response> {
    let lifetime = issue::refresh_token_lifetime(state, client);
    let keys = state.keys.snapshot();
    let key = keys
        .signing_key(SigningAlgorithm::RS256, now)
        .ok_or_else(|| crate::http::error::ApiError::Internal("no RS256 key".into()).into_response())?;
    let claims = RefreshClaims {
        iss: state.settings.issuer.clone(),
        sub: sub.to_string(),
        aud: client.client_id.clone(),
        iat: now,
        exp: now + lifetime,
        rt: handle.to_string(),
    };
    let token = jwt::encode(&key, Some(REFRESH_TYP), &claims)
        .map_err(|e| crate::http::error::ApiError::Internal(e.to_string()).into_response())?;
    Ok((token, lifetime))
}

fn tokens(access_token: String, expires_in: i64, refresh: (String, i64)) -> Response {
    let body = PartnerTokens {
        access_token,
        expires_in,
        refresh_token: refresh.0,
        refresh_expires_in: refresh.1,
        token_type: "Bearer",
    };
    let mut res = Json(body).into_response();
    no_store(res.headers_mut());
    res
}

pub(crate) async fn login(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (partner, key, client) = match partner(&state, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let p: LoginPayload = match payload(&key, &body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    // A payload for another client than the partner's is as unreadable as any other.
    if p.client_id != client.client_id || client.is_public() {
        return unreadable();
    }
    // The one client-authentication path: constant-time check, metric, throttle.
    let credentials = ClientCredentials::Post { client_id: p.client_id.clone(), secret: p.client_secret.clone() };
    let client = match authenticate_credentials(&state, &credentials).await {
        Ok(client) => client,
        Err(e) => return e.into_response(),
    };
    if let Err(r) = check_freshness(&state, &partner, &p, state.now()).await {
        return r;
    }
    // A password API can give one factor only: a client whose users need two is refused
    // before any password is checked, and so is a person who set up a second factor.
    if crate::service::signin::policy_requires_mfa(&state, &client) {
        return oauth_error(TokenEndpointError::UnauthorizedClient(
            "this client requires two-step verification: its users sign in through the browser",
        ));
    }
    let origin = khoa_core::throttle::LoginOrigin::Partner { code: &partner.code };
    let now = state.now();
    let single = khoa_core::authn::Requirement { level: khoa_core::authn::Level::SingleFactor, not_before: None };
    let start = khoa_core::authn::SignIn::start(single, None, now);
    use crate::service::signin::{with_password, Outcome};
    let signed = match with_password(&state, &start, &p.username, &p.password, origin, &client.client_id).await {
        Ok(Outcome::Done(signed)) => signed,
        Ok(Outcome::Failed) => return oauth_error(TokenEndpointError::InvalidGrant("invalid username or password")),
        Ok(Outcome::Disabled) => return oauth_error(TokenEndpointError::InvalidGrant("the account is disabled")),
        Ok(Outcome::Blocked { retry_after }) => {
            let body = serde_json::json!({"error": "invalid_grant", "error_description": "too many failed logins; try again later"});
            let mut res = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            return res;
        }
        Ok(Outcome::Continue { user, .. } | Outcome::Enrol { user, .. }) => {
            let mut event = khoa_core::audit::Event::new(
                now,
                khoa_core::audit::kind::LOGIN_REFUSED_POLICY,
                khoa_core::audit::Actor::User(user.id),
            )
            .client(&client.client_id)
            .detail(
                serde_json::json!({ "via": format!("partner:{}", partner.code), "reason": "second_factor_required" }),
            );
            event.user_id = Some(user.id);
            if let Err(e) = state.store.record(&event).await {
                return crate::http::error::ApiError::from(e).into_response();
            }
            return oauth_error(TokenEndpointError::InvalidGrant(
                "this account uses two-step verification: sign in through the browser",
            ));
        }
        Ok(Outcome::Replayed | Outcome::Denied(_)) => {
            return oauth_error(TokenEndpointError::InvalidGrant("invalid username or password"))
        }
        Err(e) => return e.into_response(),
    };
    match issue_family(&state, &client, &signed.user, &signed.amr).await {
        Ok(r) => r,
        Err(r) => r,
    }
}

/// The first access and refresh token of a new family for a partner login.
async fn issue_family(
    state: &AppState,
    client: &Client,
    user: &khoa_core::user::User,
    amr: &[String],
) -> Result<Response, Response> {
    let now = state.now();
    let scope: ScopeSet = client.scopes.iter().cloned().collect();
    let family = format!("partner:{}", khoa_core::random::random_token::<16>());
    let template = RefreshTemplate {
        family_id: &family,
        client_id: &client.client_id,
        lifetime: issue::refresh_token_lifetime(state, client),
        user_id: user.id,
        sid: None,
        scope: &scope,
        auth_time: now,
        amr,
    };
    let (handle, refresh_row) = issue::refresh_token(state, template, now).map_err(IntoResponse::into_response)?;
    let lifetime = issue::access_token_lifetime(state, client);
    let minted = issue::new_access_token_id(state);
    let record = AccessTokenRecord {
        token: NewAccessToken { jti: minted.jti.clone(), issued_at: now, expires_at: now + lifetime },
        grant_id: family.clone(),
        client_id: client.client_id.clone(),
        user_id: Some(user.id),
        sid: None,
        scope: scope.to_string(),
        revoked_at: None,
    };
    state
        .store
        .insert_token_family(&record, &refresh_row)
        .await
        .map_err(|e| crate::http::error::ApiError::from(e).into_response())?;
    let subject = Subject::user(user, &scope, now, None);
    let access_token =
        issue::access_token(state, client, &subject, &minted, now).map_err(IntoResponse::into_response)?;
    let refresh = refresh_jwt(state, client, &user.subject(), &handle, now)?;
    state.metrics.tokens_issued.inc();
    Ok(tokens(access_token, lifetime, refresh))
}

pub(crate) async fn refresh(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (_, key, client) = match partner(&state, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let p: RefreshPayload = match payload(&key, &body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let keys = state.keys.snapshot();
    let decoded = jwt::decode::<RefreshClaims, _>(&p.refresh_token, |kid| keys.key(kid));
    let claims = match decoded {
        Ok((header, c))
            if header.typ.as_deref() == Some(REFRESH_TYP)
                && c.iss == state.settings.issuer
                && c.aud == client.client_id =>
        {
            c
        }
        _ => return oauth_error(TokenEndpointError::InvalidGrant("the refresh token is invalid")),
    };
    // Rotation and reuse detection exactly as the core refresh grant.
    let rotated = match refresh_token::rotate(&state, &client, &claims.rt, None).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let Some(handle) = rotated.refresh_token else {
        return crate::http::error::ApiError::Internal("rotation without a successor".into()).into_response();
    };
    match refresh_jwt(&state, &client, &claims.sub, &handle, state.now()) {
        Ok(refresh) => tokens(rotated.access_token, rotated.expires_in, refresh),
        Err(r) => r,
    }
}

/// The answers that must not tell one failure from another, in-process.
#[cfg(test)]
mod tests {
    use crate::testing::{Answer, TestApp, NOW, SECRET};
    use axum::body::Body;
    use axum::http::{header, Request};
    use khoa_core::client::{SecretChoice, SecretMethod};
    use khoa_core::tconnect::PartnerKey;
    use serde_json::json;

    const UNREADABLE: &str =
        r#"{"error":"invalid_request","error_description":"the encrypted payload could not be read"}"#;

    /// The partner `ACME` of the client `acme-app`, and its key.
    async fn app() -> (TestApp, PartnerKey) {
        let app = TestApp::new().await;
        for id in ["acme-app", "other-app"] {
            app.client(id, |r| {
                r.secret = SecretChoice::Given(SECRET.into());
                r.secret_method = Some(SecretMethod::ClientSecretPost);
            })
            .await;
        }
        let key = PartnerKey::generate();
        let key_sealed = app.state.master.seal(b"partner:ACME", key.as_bytes()).unwrap();
        let partner = khoa_store::Partner {
            code: "ACME".into(),
            client_id: "acme-app".into(),
            key_sealed,
            require_nonce: false,
            created_at: NOW,
        };
        let event = khoa_core::audit::Event::new(NOW, "partner.created", khoa_core::audit::Actor::CommandLine);
        app.state.store.insert_partner(&partner, &event).await.unwrap();
        (app, key)
    }

    async fn call(app: &TestApp, path: &str, partner: Option<&str>, body: String) -> Answer {
        let mut req = Request::post(path).header(header::CONTENT_TYPE, "application/json");
        if let Some(code) = partner {
            req = req.header("partner-code", code);
        }
        app.send(req.body(Body::from(body)).unwrap()).await
    }

    fn sealed(key: &PartnerKey, payload: serde_json::Value) -> String {
        json!({"data": key.encrypt(payload.to_string().as_bytes())}).to_string()
    }

    #[tokio::test]
    async fn every_unreadable_payload_gets_one_answer() {
        // No padding oracle: a flipped bit of the IV or of the last block, a truncated
        // or foreign ciphertext, bad JSON inside or outside, all answer alike.
        let (app, key) = app().await;
        let good = key.encrypt(json!({"refresh_token": "x"}).to_string().as_bytes());
        let bytes = hex::decode(&good).unwrap();
        let mut bodies = vec![
            "{}".to_string(),
            "not json".to_string(),
            json!({"data": 5}).to_string(),
            json!({"data": "zz"}).to_string(),
            json!({"data": &good[..good.len() - 2]}).to_string(),
            json!({"data": &good[..32]}).to_string(),
            sealed(&key, json!(["not", "an", "object"])),
            sealed(&PartnerKey::generate(), json!({"refresh_token": "x"})),
            json!({"data": key.encrypt(b"not json at all")}).to_string(),
        ];
        for i in (0..16).chain(bytes.len() - 16..bytes.len()) {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[i] ^= 1 << bit;
                bodies.push(json!({"data": hex::encode(flipped)}).to_string());
            }
        }
        let mut answers = std::collections::HashSet::new();
        for body in bodies {
            let a = call(&app, "/openapi/v1/auth/refresh", Some("ACME"), body).await;
            // A flip that still decrypts to a readable payload is an unknown token.
            if a.body["error"] != "invalid_grant" {
                answers.insert((a.status.as_u16(), a.text));
            }
        }
        // A payload naming another client than the partner's is refused the same way.
        let other = sealed(
            &key,
            json!({"username": "sv01", "password": "x", "client_id": "other-app", "client_secret": SECRET}),
        );
        let a = call(&app, "/openapi/v1/auth/login", Some("ACME"), other).await;
        answers.insert((a.status.as_u16(), a.text));
        assert_eq!(answers.into_iter().collect::<Vec<_>>(), vec![(400, UNREADABLE.to_string())]);
    }

    /// A password API gives one factor: it refuses, in its own format, a person who set
    /// up a second factor, and every sign-in for a client that requires two (before any
    /// password is checked). No path signs anyone in with less than their policy asks.
    #[tokio::test]
    async fn the_password_api_refuses_whom_two_factors_are_required_of() {
        const PASSWORD: &str = "correct horse battery staple";
        let (app, key) = app().await;
        app.user_with_password(PASSWORD).await;
        let login = |key: &PartnerKey, client: &str, password: &str| {
            let payload =
                json!({"username": "sv01", "password": password, "client_id": client, "client_secret": SECRET});
            sealed(key, payload)
        };
        let path = super::LOGIN_PATH;
        let ok = call(&app, path, Some("ACME"), login(&key, "acme-app", PASSWORD)).await;
        assert_eq!(ok.status, 200, "{}", ok.text);
        assert_eq!(ok.body["access_token"].is_string(), true);
        // sv01 sets up an authenticator app: the password alone no longer signs in here.
        let user = app.state.store.user_by_username("sv01").await.unwrap().unwrap();
        let secret = khoa_core::totp::new_secret();
        let code = khoa_core::totp::code_at(&secret, NOW).unwrap();
        let actor = khoa_core::audit::Actor::System;
        crate::service::signin::add_totp(&app.state, &user, &secret, &code, actor, NOW).await.unwrap();
        let refused = call(&app, path, Some("ACME"), login(&key, "acme-app", PASSWORD)).await;
        assert_eq!(
            (refused.status.as_u16(), refused.text.as_str()),
            (
                400,
                r#"{"error":"invalid_grant","error_description":"this account uses two-step verification: sign in through the browser"}"#
            )
        );
        // A wrong password is answered as before: nothing is said of the second factor.
        let wrong = call(&app, path, Some("ACME"), login(&key, "acme-app", "wrong password")).await;
        assert_eq!(wrong.body["error_description"], "invalid username or password");
        let policy =
            khoa_store::AuditFilter { kind: Some("login.refused_policy".into()), limit: 5, ..Default::default() };
        let events = app.state.store.audit_events(&policy).await.unwrap();
        assert_eq!(
            (events.len(), events[0].user_id, events[0].detail["via"].as_str()),
            (1, Some(user.id), Some("partner:ACME"))
        );
        // A client whose users need two factors: refused before any password is checked.
        app.client("strict-app", |r| {
            r.secret = SecretChoice::Given(SECRET.into());
            r.secret_method = Some(SecretMethod::ClientSecretPost);
            r.require_mfa = true;
        })
        .await;
        let strict = PartnerKey::generate();
        let partner = khoa_store::Partner {
            code: "STRICT".into(),
            client_id: "strict-app".into(),
            key_sealed: app.state.master.seal(b"partner:STRICT", strict.as_bytes()).unwrap(),
            require_nonce: false,
            created_at: NOW,
        };
        let event = khoa_core::audit::Event::new(NOW, "partner.created", khoa_core::audit::Actor::CommandLine);
        app.state.store.insert_partner(&partner, &event).await.unwrap();
        let before = app.state.passwords.computed();
        let refused = call(&app, path, Some("STRICT"), login(&strict, "strict-app", PASSWORD)).await;
        assert_eq!((refused.status.as_u16(), refused.body["error"].as_str()), (400, Some("unauthorized_client")));
        assert_eq!(
            refused.body["error_description"],
            "this client requires two-step verification: its users sign in through the browser"
        );
        assert_eq!(app.state.passwords.computed(), before, "no password checked");
    }

    #[tokio::test]
    async fn an_unknown_or_missing_partner_code_is_404() {
        let (app, key) = app().await;
        let body = sealed(&key, json!({"refresh_token": "x"}));
        for code in [None, Some(""), Some("NOPE")] {
            let a = call(&app, "/openapi/v1/auth/refresh", code, body.clone()).await;
            assert_eq!(
                (a.status.as_u16(), a.text.as_str()),
                (404, r#"{"error":"not_found","error_description":"unknown Partner-Code"}"#),
                "{code:?}"
            );
        }
    }
}
