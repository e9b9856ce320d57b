//! Finding what a presented token is: one of our access tokens (a JWT checked against
//! the database, the authority on revocation, or an opaque handle found there by its
//! hash) or one of our refresh tokens.

use crate::state::AppState;
use khoa_core::jose::jwt;
use khoa_core::session::handle_hash;
use khoa_core::tokens::{AccessTokenClaims, ACCESS_TOKEN_TYP};
use khoa_store::{AccessTokenRecord, RefreshTokenRecord, StoreError};

pub enum Found {
    Access(Box<AccessTokenClaims>, AccessTokenRecord),
    Refresh(RefreshTokenRecord),
}

/// An access token signed by us for our issuer, with its database record (expired or
/// revoked ones included: the caller decides).
pub async fn access_token(state: &AppState, token: &str) -> Result<Option<Found>, StoreError> {
    if !token.contains('.') {
        return opaque_access_token(state, token).await;
    }
    let keys = state.keys.snapshot();
    let Ok((header, claims)) = jwt::decode::<AccessTokenClaims, _>(token, |kid| keys.key(kid)) else {
        return Ok(None);
    };
    if header.typ.as_deref() != Some(ACCESS_TOKEN_TYP) || claims.iss != state.settings.issuer {
        return Ok(None);
    }
    Ok(state.store.access_token(&claims.jti).await?.map(|r| Found::Access(Box::new(claims), r)))
}

/// An opaque access token: a handle whose SHA-256 is the recorded `jti`. Its claims
/// are those of the record, as a JWT would have carried them.
async fn opaque_access_token(state: &AppState, token: &str) -> Result<Option<Found>, StoreError> {
    if token.len() > 128 {
        return Ok(None);
    }
    let Some(record) = state.store.access_token(&handle_hash(token)).await? else {
        return Ok(None);
    };
    let claims = AccessTokenClaims {
        iss: state.settings.issuer.clone(),
        // A client_credentials token speaks for its client (RFC 9068 §2.2).
        sub: record.user_id.map_or_else(|| record.client_id.clone(), |id| id.to_string()),
        aud: record.client_id.clone(),
        client_id: record.client_id.clone(),
        exp: record.expires_at,
        iat: record.issued_at,
        jti: record.jti.clone(),
        scope: record.scope.clone(),
        auth_time: None,
        sid: record.sid.clone(),
    };
    Ok(Some(Found::Access(Box::new(claims), record)))
}

pub async fn refresh_token(state: &AppState, token: &str) -> Result<Option<Found>, StoreError> {
    if token.len() > 128 {
        return Ok(None);
    }
    Ok(state.store.refresh_token(&handle_hash(token)).await?.map(Found::Refresh))
}

/// RFC 7009 §2.1 / RFC 7662 §2.1: the hint says where to look first; a wrong hint
/// does not prevent finding the token.
pub async fn find(state: &AppState, token: &str, hint: Option<&str>) -> Result<Option<Found>, StoreError> {
    if hint == Some("refresh_token") {
        if let Some(f) = refresh_token(state, token).await? {
            return Ok(Some(f));
        }
        return access_token(state, token).await;
    }
    if let Some(f) = access_token(state, token).await? {
        return Ok(Some(f));
    }
    refresh_token(state, token).await
}
