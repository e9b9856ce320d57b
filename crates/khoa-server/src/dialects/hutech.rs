//! HUTECH SSO (seed 002): the JSON code exchanges for mobile apps (PKCE) and web apps
//! (client secret), the `{"version","data"}` envelope, and the numbered Vietnamese
//! errors (HTTP 403; 400 for unreadable requests).
//!
//! | code | options.code | when |
//! | --- | --- | --- |
//! | [26] | -1 | mobile: the authorization code has expired |
//! | [27] | -2 | mobile: unknown code, a code of another app, an unknown or non-public app-key, or the user is gone |
//! | [28] | -3 | mobile: the code has no live challenge: already redeemed, or issued without PKCE |
//! | [29] | -4 | mobile: the code_verifier does not match |
//! | [30] | -5 | mobile: this app already redeemed a code with the same code_challenge |
//! | [31] | -6 | mobile: the login session of the code has ended |
//! | [32] | -7 | web: client_id unknown, not equal to app-key, or not a confidential client |
//! | [33] | -8 | web: wrong client_secret |
//! | [34] | -1 | web: the authorization code has expired |
//! | [35] | -2 | web: the code is unknown, another app's, already used, needs PKCE, or its session ended |
//! | [36] | -9 | either: unreadable request (no app-key, malformed JSON, missing field) — HTTP 400 |

use crate::app::state::AppState;
use crate::http::error::TokenError;
use crate::service::client_authn::authenticate_credentials;
use crate::service::grants::authorization_code::{
    exchange, CodeExchange, ExchangeError, Exchanged, RedirectUri, RefreshPolicy,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use khoa_core::client_auth::ClientCredentials;
use khoa_core::code::CodeError;
use khoa_core::session::handle_hash;
use serde_json::{json, Value};

pub const MOBILE_PATH: &str = "/api/authen/sso/mobile/exchange-access-token";
pub const WEB_PATH: &str = "/api/authen/sso/web/exchange-access-token";

/// An error of this dialect: number, `options.code`, Vietnamese message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HutechError(pub u8, pub i32, pub &'static str);

pub const CODE_EXPIRED: HutechError = HutechError(26, -1, "Authorization code đã hết hạn");
pub const NOT_FOUND: HutechError = HutechError(27, -2, "Không tìm thấy thông tin đăng nhập");
pub const CHALLENGE_EXPIRED: HutechError = HutechError(28, -3, "Code challenge đã hết hạn");
pub const WRONG_VERIFIER: HutechError = HutechError(29, -4, "Code verifier không chính xác");
pub const CHALLENGE_EXISTS: HutechError = HutechError(30, -5, "Code challenge đã tồn tại");
pub const NO_SESSION: HutechError = HutechError(31, -6, "Phiên đăng nhập chưa được khởi tạo");
pub const BAD_CLIENT: HutechError = HutechError(32, -7, "Client ID không hợp lệ");
pub const BAD_SECRET: HutechError = HutechError(33, -8, "Client secret không chính xác");
pub const WEB_CODE_EXPIRED: HutechError = HutechError(34, -1, "Authorization code đã hết hạn");
pub const WEB_BAD_CODE: HutechError = HutechError(35, -2, "Authorization code không hợp lệ");
pub const BAD_REQUEST: HutechError = HutechError(36, -9, "Dữ liệu yêu cầu không hợp lệ");

pub(crate) enum Failure {
    Dialect(HutechError, StatusCode, Option<String>),
    /// Too many wrong secrets for this client: the wrong-secret error with 429 and
    /// `Retry-After` (seconds).
    Throttled(i64),
    Engine(TokenError),
}

fn fail(e: HutechError) -> Failure {
    Failure::Dialect(e, StatusCode::FORBIDDEN, None)
}

fn bad_request(detail: &str) -> Failure {
    Failure::Dialect(BAD_REQUEST, StatusCode::BAD_REQUEST, Some(detail.to_string()))
}

/// The error envelope of seed 002.
fn error_response(
    state: &AppState,
    path: &str,
    e: HutechError,
    status: StatusCode,
    detail: Option<String>,
) -> Response {
    let message = match detail {
        Some(d) => format!("[{}] {}: {d}", e.0, e.2),
        None => format!("[{}] {}", e.0, e.2),
    };
    let body = json!({
        "statusCode": status.as_u16(),
        "timestamp": super::iso8601_millis(state.clock.now_millis()),
        "path": path,
        "errorMessage": format!("HTTP Exception: {} - {message}", status.as_u16()),
        "reasons": { "message": message, "options": { "code": e.1 } },
    });
    let mut res = (status, Json(body)).into_response();
    crate::service::grants::no_store(res.headers_mut());
    res
}

fn respond(state: &AppState, path: &str, result: Result<Exchanged, Failure>) -> Response {
    match result {
        Ok(x) => {
            // The same claim release as userinfo for the token's scope: a field the
            // scope does not grant is an empty string.
            let scope = khoa_core::scope::ScopeSet::parse(&x.response.scope).unwrap_or_default();
            let claims = khoa_core::tokens::userinfo_claims(&x.user, &scope);
            let text = |claim: &str| claims.get(claim).and_then(Value::as_str).unwrap_or_default().to_string();
            let body = json!({
                "version": "1.0.0",
                "data": {
                    "token": x.response.access_token,
                    "contact_id": text("sub"),
                    "username": text("preferred_username"),
                    "data": {
                        "ho_ten": text("name"),
                        "email": text("email"),
                        "avatar": text("picture"),
                        "so_dien_thoai": text("phone_number"),
                    }
                }
            });
            let mut res = Json(body).into_response();
            crate::service::grants::no_store(res.headers_mut());
            res
        }
        Err(Failure::Dialect(e, status, detail)) => error_response(state, path, e, status, detail),
        Err(Failure::Throttled(retry_after)) => {
            let mut res = error_response(state, path, BAD_SECRET, StatusCode::TOO_MANY_REQUESTS, None);
            res.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(retry_after.max(1)));
            res
        }
        Err(Failure::Engine(e)) => e.into_response(),
    }
}

/// The `app-key` header and the JSON body's string fields.
pub(crate) fn read(headers: &HeaderMap, body: &[u8], fields: &[&str]) -> Result<(String, Vec<String>), Failure> {
    let app_key = headers
        .get("app-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| bad_request("thiếu header app-key"))?
        .to_string();
    let json: Value = serde_json::from_slice(body).map_err(|_| bad_request("nội dung không phải JSON hợp lệ"))?;
    let mut values = vec![];
    for f in fields {
        match json.get(*f).and_then(Value::as_str).filter(|v| !v.is_empty()) {
            Some(v) => values.push(v.to_string()),
            None => return Err(bad_request(&format!("thiếu trường {f}"))),
        }
    }
    Ok((app_key, values))
}

pub(crate) async fn mobile(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    respond(&state, MOBILE_PATH, mobile_exchange(&state, &headers, &body).await)
}

async fn mobile_exchange(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Exchanged, Failure> {
    let (app_key, v) = read(headers, body, &["authorization_code", "code_verifier"])?;
    let (code, verifier) = (&v[0], &v[1]);
    // The mobile exchange authenticates by PKCE alone: public clients only.
    let client = state.clients.get(state.store.as_ref(), &app_key).await.map_err(|e| Failure::Engine(e.into()))?;
    let client = client.filter(|c| c.is_public()).ok_or(fail(NOT_FOUND))?;
    let code_hash = handle_hash(code);
    let peeked = state.store.code(&code_hash).await.map_err(|e| Failure::Engine(e.into()))?;
    let peeked = peeked.filter(|c| c.client_id == client.client_id).ok_or(fail(NOT_FOUND))?;
    let Some(challenge) = &peeked.code_challenge else { return Err(fail(CHALLENGE_EXPIRED)) };
    if state
        .store
        .code_challenge_reused(&client.client_id, challenge, &code_hash)
        .await
        .map_err(|e| Failure::Engine(e.into()))?
    {
        return Err(fail(CHALLENGE_EXISTS));
    }
    let x = CodeExchange {
        code,
        redirect_uri: RedirectUri::NotCarried,
        code_verifier: Some(verifier),
        refresh: RefreshPolicy::Standard,
    };
    exchange(state, &client, x).await.map_err(|e| match e {
        ExchangeError::Code(CodeError::Expired) => fail(CODE_EXPIRED),
        ExchangeError::Code(CodeError::Replayed) => fail(CHALLENGE_EXPIRED),
        ExchangeError::Code(CodeError::WrongVerifier | CodeError::MissingVerifier | CodeError::UnexpectedVerifier) => {
            fail(WRONG_VERIFIER)
        }
        ExchangeError::Code(CodeError::Unknown | CodeError::OtherClient | CodeError::RedirectUri)
        | ExchangeError::UserGone => fail(NOT_FOUND),
        ExchangeError::SessionEnded => fail(NO_SESSION),
        ExchangeError::Other(t) => Failure::Engine(t),
    })
}

pub(crate) async fn web(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    respond(&state, WEB_PATH, web_exchange(&state, &headers, &body).await)
}

async fn web_exchange(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Exchanged, Failure> {
    let (app_key, v) = read(headers, body, &["authorization_code", "client_id", "client_secret"])?;
    let (code, client_id, secret) = (&v[0], &v[1], &v[2]);
    if *client_id != app_key {
        return Err(fail(BAD_CLIENT));
    }
    let client = state.clients.get(state.store.as_ref(), client_id).await.map_err(|e| Failure::Engine(e.into()))?;
    if client.is_none_or(|c| c.is_public()) {
        return Err(fail(BAD_CLIENT));
    }
    // The one client-authentication path: constant-time check, metric, throttle.
    let credentials = ClientCredentials::Post { client_id: client_id.clone(), secret: secret.clone() };
    let client = match authenticate_credentials(state, &credentials).await {
        Ok(client) => client,
        Err(TokenError::Throttled { retry_after }) => return Err(Failure::Throttled(retry_after)),
        Err(TokenError::Endpoint(_)) => return Err(fail(BAD_SECRET)),
        Err(e) => return Err(Failure::Engine(e)),
    };
    let x = CodeExchange {
        code,
        redirect_uri: RedirectUri::NotCarried,
        code_verifier: None,
        refresh: RefreshPolicy::Standard,
    };
    exchange(state, &client, x).await.map_err(|e| match e {
        ExchangeError::Code(CodeError::Expired) => fail(WEB_CODE_EXPIRED),
        ExchangeError::Other(t) => Failure::Engine(t),
        _ => fail(WEB_BAD_CODE),
    })
}
