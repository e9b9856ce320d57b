//! Huawei OneAccess (seed 003): `/api/v1/oauth2/authorize` and `/api/v1/oauth2/userinfo`
//! are the native endpoints under other paths; `/api/v1/oauth2/token` takes the seed's
//! form (every field mandatory, the secret in the form), gives a refresh token only
//! to clients with a refresh lifetime configured, and answers every error with 400
//! `{"error","error_description"}`.

use crate::app::state::AppState;
use crate::http::error::TokenError;
use crate::http::forms::read_form;
use crate::service::client_authn::authenticate;
use crate::service::grants::authorization_code::{exchange, CodeExchange, ExchangeError, RedirectUri, RefreshPolicy};
use crate::service::grants::{field, refresh_token, TokenResponse};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use khoa_core::client::GrantType;

pub const AUTHORIZE_PATH: &str = "/api/v1/oauth2/authorize";
pub const TOKEN_PATH: &str = "/api/v1/oauth2/token";
pub const USERINFO_PATH: &str = "/api/v1/oauth2/userinfo";

/// Seed 003 errors: always 400.
fn error(code: &str, description: &str) -> Response {
    let mut res = (StatusCode::BAD_REQUEST, Json(serde_json::json!({"error": code, "error_description": description})))
        .into_response();
    crate::service::grants::no_store(res.headers_mut());
    res
}

fn from_token_error(e: TokenError) -> Response {
    match e {
        TokenError::Endpoint(e) => error(e.code(), &e.to_string()),
        TokenError::Api(e) => e.into_response(),
        throttled @ TokenError::Throttled { .. } => throttled.into_response(),
    }
}

pub(crate) async fn token(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match token_inner(&state, &headers, &body).await {
        Ok(r) => r,
        Err(r) => r,
    }
}

async fn token_inner(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Response, Response> {
    let form = read_form(headers, body).map_err(|e| error(e.code(), &e.to_string()))?;
    let grant = field(&form, "grant_type").ok_or_else(|| error("invalid_request", "grant_type is required"))?;
    let mandatory: &[&str] = match grant {
        "authorization_code" => &["code", "client_id", "client_secret", "redirect_uri"],
        "refresh_token" => &["refresh_token", "client_id", "client_secret"],
        _ => return Err(error("unsupported_grant_type", "grant_type must be authorization_code or refresh_token")),
    };
    if let Some(missing) = mandatory.iter().find(|f| field(&form, f).is_none()) {
        return Err(error("invalid_request", &format!("{missing} is required")));
    }
    // The seed sends the secret in the form only.
    if headers.contains_key(header::AUTHORIZATION) {
        return Err(error("invalid_request", "send client_id and client_secret in the form"));
    }
    let client = authenticate(state, headers, &form).await.map_err(from_token_error)?;
    let response: TokenResponse = match grant {
        "authorization_code" => {
            if !client.allows_grant(GrantType::AuthorizationCode) {
                return Err(error("unauthorized_client", "the client may not use this grant type"));
            }
            let x = CodeExchange {
                code: field(&form, "code").unwrap_or_default(),
                redirect_uri: RedirectUri::Given(field(&form, "redirect_uri")),
                code_verifier: field(&form, "code_verifier"),
                refresh: RefreshPolicy::WhenLifetimeConfigured,
            };
            match exchange(state, &client, x).await {
                Ok(x) => x.response,
                Err(ExchangeError::Other(e)) => return Err(from_token_error(e)),
                // The seed's own wording for every refused code.
                Err(_) => return Err(error("invalid_grant", "Invalid authorization code")),
            }
        }
        _ => {
            if !client.allows_grant(GrantType::RefreshToken) {
                return Err(error("unauthorized_client", "the client may not use this grant type"));
            }
            let presented = field(&form, "refresh_token").unwrap_or_default();
            refresh_token::rotate(state, &client, presented, field(&form, "scope")).await.map_err(from_token_error)?
        }
    };
    let mut res = response.into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}
