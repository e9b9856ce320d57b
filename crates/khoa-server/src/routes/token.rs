//! `POST /oauth2/token` (RFC 6749 §3.2, §4.1.3): client authentication, then one
//! handler per grant type.

use super::form_pairs;
use crate::error::TokenError;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use khoa_core::client::{Client, GrantType};
use khoa_core::client_auth;
use khoa_core::code::CodeError;
use khoa_core::jose::{jwt, SigningAlgorithm};
use khoa_core::scope::{ScopeSet, OPENID};
use khoa_core::session::handle_hash;
use khoa_core::token_error::TokenEndpointError;
use khoa_core::tokens::{at_hash, AccessTokenClaims, IdTokenClaims, ACCESS_TOKEN_TYP};
use khoa_store::{NewAccessToken, Redemption};
use serde::Serialize;
use std::collections::HashMap;

/// RFC 6749 §5.1.
#[derive(Debug, Serialize)]
pub(crate) struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
}

impl IntoResponse for TokenResponse {
    fn into_response(self) -> Response {
        let mut res = Json(self).into_response();
        no_store(res.headers_mut());
        res
    }
}

/// RFC 6749 §5.1: responses carrying tokens must not be cached.
pub(crate) fn no_store(h: &mut axum::http::HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// The form, with duplicate parameters refused (RFC 6749 §3.2).
fn read_form(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, TokenEndpointError> {
    let form_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
    });
    if !form_type {
        return Err(TokenEndpointError::InvalidRequest("the body must be application/x-www-form-urlencoded"));
    }
    let mut form = HashMap::new();
    for (k, v) in form_pairs(body) {
        if form.insert(k, v).is_some() {
            return Err(TokenEndpointError::InvalidRequest("a parameter appears more than once"));
        }
    }
    Ok(form)
}

pub(crate) async fn post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, TokenError> {
    let form = read_form(&headers, &body)?;
    let field = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let credentials = client_auth::parse(authorization, field("client_id"), field("client_secret"))?;
    let client = state.clients.get(state.store.as_ref(), credentials.client_id()).await?;
    if let Err(e) = client_auth::verify(&credentials, client.as_deref()) {
        state.metrics.client_auth_failures.inc();
        return Err(e.into());
    }
    let Some(client) = client else {
        return Err(TokenEndpointError::invalid_client("client authentication failed", false).into());
    };
    let grant = match field("grant_type") {
        None => return Err(TokenEndpointError::InvalidRequest("grant_type is required").into()),
        Some("authorization_code") => GrantType::AuthorizationCode,
        Some(_) => return Err(TokenEndpointError::UnsupportedGrantType("the grant type is not supported").into()),
    };
    if !client.allows_grant(grant) {
        return Err(TokenEndpointError::UnauthorizedClient("the client may not use this grant type").into());
    }
    match grant {
        GrantType::AuthorizationCode => authorization_code(&state, &client, &form).await,
        _ => Err(TokenEndpointError::UnsupportedGrantType("the grant type is not supported").into()),
    }
}

fn invalid_grant(e: CodeError) -> TokenError {
    TokenEndpointError::InvalidGrant(match e {
        CodeError::Unknown => "the authorization code is invalid",
        CodeError::Replayed => "the authorization code was already used",
        CodeError::OtherClient => "the authorization code was issued to another client",
        CodeError::Expired => "the authorization code has expired",
        CodeError::RedirectUri => "redirect_uri does not match the authorization request",
        CodeError::MissingVerifier => "code_verifier is required",
        CodeError::WrongVerifier => "code_verifier does not match the code_challenge",
        CodeError::UnexpectedVerifier => "code_verifier was sent but the authorization request had no code_challenge",
    })
    .into()
}

/// RFC 6749 §4.1.3 with PKCE (RFC 7636 §4.6).
async fn authorization_code(
    state: &AppState,
    client: &Client,
    form: &HashMap<String, String>,
) -> Result<Response, TokenError> {
    let field = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let Some(code) = field("code") else {
        return Err(TokenEndpointError::InvalidRequest("code is required").into());
    };
    let now = crate::now();
    let lifetime = client.lifetimes.access_token.unwrap_or(state.settings.lifetimes.access_token);
    let jti = khoa_core::random::random_token::<16>();
    let code_hash = handle_hash(code);
    let token = NewAccessToken { jti: jti.clone(), issued_at: now, expires_at: now + lifetime };
    let code = match state.store.redeem_code(&code_hash, &client.client_id, now, &token).await? {
        Redemption::Redeemed(code) => *code,
        Redemption::Replayed { revoked } => {
            tracing::warn!(client_id = %client.client_id, revoked, "authorization code replayed; tokens issued from it revoked");
            return Err(invalid_grant(CodeError::Replayed));
        }
        Redemption::OtherClient => return Err(invalid_grant(CodeError::OtherClient)),
        Redemption::Unknown => return Err(invalid_grant(CodeError::Unknown)),
    };
    if let Err(e) = code.check_redemption(field("redirect_uri"), field("code_verifier"), now) {
        // The code is spent; the token recorded with it is never handed out.
        state.store.revoke_grant(&code.code_hash, now).await?;
        return Err(invalid_grant(e));
    }
    let Some(user) = state.store.user_by_id(code.user_id).await? else {
        state.store.revoke_grant(&code.code_hash, now).await?;
        return Err(TokenEndpointError::InvalidGrant("the user no longer exists").into());
    };
    let scope = ScopeSet::parse(&code.scope).unwrap_or_default();
    let keys = state.keys.snapshot();
    let at_key =
        keys.signing_key(SigningAlgorithm::RS256, now).ok_or_else(|| TokenError::internal("no RS256 signing key"))?;
    let access_token = jwt::encode(
        &at_key,
        Some(ACCESS_TOKEN_TYP),
        &AccessTokenClaims {
            iss: state.settings.issuer.clone(),
            sub: user.subject(),
            aud: client.client_id.clone(),
            client_id: client.client_id.clone(),
            exp: now + lifetime,
            iat: now,
            jti,
            scope: scope.to_string(),
            auth_time: Some(code.auth_time),
            sid: Some(code.sid.clone()),
        },
    )
    .map_err(|e| TokenError::internal(&e.to_string()))?;
    let id_token = if scope.contains(OPENID) {
        let alg = client.id_token_signed_response_alg;
        let key = keys
            .signing_key(alg, now)
            .ok_or_else(|| TokenError::internal("no signing key for the client's algorithm"))?;
        let id_lifetime = client.lifetimes.id_token.unwrap_or(state.settings.lifetimes.id_token);
        let claims = IdTokenClaims {
            iss: state.settings.issuer.clone(),
            sub: user.subject(),
            aud: client.client_id.clone(),
            azp: client.client_id.clone(),
            exp: now + id_lifetime,
            iat: now,
            auth_time: code.auth_time,
            nonce: code.nonce.clone(),
            at_hash: Some(at_hash(alg, &access_token)),
            sid: Some(code.sid.clone()),
            amr: code.amr.clone(),
        };
        Some(jwt::encode(&key, Some("JWT"), &claims).map_err(|e| TokenError::internal(&e.to_string()))?)
    } else {
        None
    };
    state.metrics.tokens_issued.inc();
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: lifetime,
        id_token,
        refresh_token: None,
        scope: scope.to_string(),
    }
    .into_response())
}
