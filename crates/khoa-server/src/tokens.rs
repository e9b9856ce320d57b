//! Finding what a presented token is: one of our JWT access tokens (checked against
//! the database, the authority on revocation) or one of our refresh tokens.

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
    let keys = state.keys.snapshot();
    let Ok((header, claims)) = jwt::decode::<AccessTokenClaims, _>(token, |kid| keys.key(kid)) else {
        return Ok(None);
    };
    if header.typ.as_deref() != Some(ACCESS_TOKEN_TYP) || claims.iss != state.settings.issuer {
        return Ok(None);
    }
    Ok(state.store.access_token(&claims.jti).await?.map(|r| Found::Access(Box::new(claims), r)))
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
