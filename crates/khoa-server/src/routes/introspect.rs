//! `POST /oauth2/introspect` (RFC 7662), for authenticated confidential clients.

use crate::client_authn::{authenticate, read_form};
use crate::error::TokenError;
use crate::grants::{field, no_store};
use crate::state::AppState;
use crate::tokens::{find, Found};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use khoa_core::token_error::TokenEndpointError;
use serde_json::{json, Value};

pub(crate) async fn post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, TokenError> {
    let form = read_form(&headers, &body)?;
    let client = authenticate(&state, &headers, &form).await?;
    // A client id alone proves nothing: introspection is for confidential clients.
    if client.is_public() {
        return Err(TokenEndpointError::invalid_client("introspection requires a confidential client", false).into());
    }
    let Some(token) = field(&form, "token") else {
        return Err(TokenEndpointError::InvalidRequest("token is required").into());
    };
    let now = state.now();
    let issuer = &state.settings.issuer;
    let username = |user_id: Option<i64>| {
        let state = state.clone();
        async move {
            match user_id {
                Some(id) => state.users.get(state.store.as_ref(), id).await.map(|u| u.map(|u| u.username.clone())),
                None => Ok(None),
            }
        }
    };
    let found = find(&state, token, field(&form, "token_type_hint")).await?;
    // §2.2, §4: a token that is not live, or not this client's to know about, is
    // exactly {"active": false}, whatever the reason.
    let found = found.filter(|f| f.is_live(now) && f.introspectable_by(&client));
    let body: Value = match found {
        Some(Found::Access(c, r)) => {
            let mut v = json!({
                "active": true, "scope": c.scope, "client_id": c.client_id, "token_type": "Bearer",
                "exp": c.exp, "iat": c.iat, "sub": c.sub, "aud": c.aud, "iss": issuer, "jti": c.jti,
            });
            if let Some(name) = username(r.user_id).await? {
                v["username"] = name.into();
            }
            v
        }
        Some(Found::Refresh(r)) => {
            let mut v = json!({
                "active": true, "scope": r.token.scope, "client_id": r.token.client_id, "token_type": "refresh_token",
                "exp": r.token.expires_at, "iat": r.token.issued_at, "sub": r.token.user_id.to_string(), "aud": r.token.client_id, "iss": issuer,
            });
            if let Some(name) = username(Some(r.token.user_id)).await? {
                v["username"] = name.into();
            }
            v
        }
        None => json!({"active": false}),
    };
    let mut res = Json(body).into_response();
    no_store(res.headers_mut());
    Ok(res)
}
