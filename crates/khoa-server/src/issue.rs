//! Minting tokens: JWT access tokens (RFC 9068), ID tokens (OIDC Core §2, §12.2 on
//! refresh) and opaque refresh tokens. Shared by every grant.

use crate::error::TokenError;
use crate::state::AppState;
use khoa_core::client::{Client, GrantType};
use khoa_core::jose::{jwt, SigningAlgorithm};
use khoa_core::scope::{ScopeSet, OFFLINE_ACCESS, OPENID};
use khoa_core::session::{handle_hash, new_handle};
use khoa_core::tokens::{at_hash, AccessTokenClaims, IdTokenClaims, ACCESS_TOKEN_TYP};
use khoa_core::UnixTime;
use khoa_store::NewRefreshToken;

/// Who and what a token is for.
pub struct Subject<'a> {
    /// The user's subject, or the client_id for client_credentials.
    pub sub: String,
    pub scope: &'a ScopeSet,
    pub auth_time: Option<UnixTime>,
    pub sid: Option<&'a str>,
}

pub fn access_token_lifetime(state: &AppState, client: &Client) -> i64 {
    client.lifetimes.access_token.unwrap_or(state.settings.lifetimes.access_token)
}

/// Signs an RFC 9068 access token with the current RS256 key.
pub fn access_token(
    state: &AppState,
    client: &Client,
    s: &Subject,
    jti: &str,
    now: UnixTime,
) -> Result<String, TokenError> {
    let keys = state.keys.snapshot();
    let key =
        keys.signing_key(SigningAlgorithm::RS256, now).ok_or_else(|| TokenError::internal("no RS256 signing key"))?;
    jwt::encode(
        &key,
        Some(ACCESS_TOKEN_TYP),
        &AccessTokenClaims {
            iss: state.settings.issuer.clone(),
            sub: s.sub.clone(),
            aud: client.client_id.clone(),
            client_id: client.client_id.clone(),
            exp: now + access_token_lifetime(state, client),
            iat: now,
            jti: jti.to_string(),
            scope: s.scope.to_string(),
            auth_time: s.auth_time,
            sid: s.sid.map(str::to_string),
        },
    )
    .map_err(|e| TokenError::internal(&e.to_string()))
}

/// Signs an ID token with the client's algorithm when `openid` was granted.
pub fn id_token(
    state: &AppState,
    client: &Client,
    s: &Subject,
    nonce: Option<&str>,
    amr: &[String],
    access_token: &str,
    now: UnixTime,
) -> Result<Option<String>, TokenError> {
    if !s.scope.contains(OPENID) {
        return Ok(None);
    }
    let alg = client.id_token_signed_response_alg;
    let keys = state.keys.snapshot();
    let key =
        keys.signing_key(alg, now).ok_or_else(|| TokenError::internal("no signing key for the client's algorithm"))?;
    let lifetime = client.lifetimes.id_token.unwrap_or(state.settings.lifetimes.id_token);
    let claims = IdTokenClaims {
        iss: state.settings.issuer.clone(),
        sub: s.sub.clone(),
        aud: client.client_id.clone(),
        azp: client.client_id.clone(),
        exp: now + lifetime,
        iat: now,
        auth_time: s.auth_time.unwrap_or(now),
        nonce: nonce.map(str::to_string),
        at_hash: Some(at_hash(alg, access_token)),
        sid: s.sid.map(str::to_string),
        amr: amr.to_vec(),
    };
    jwt::encode(&key, Some("JWT"), &claims).map(Some).map_err(|e| TokenError::internal(&e.to_string()))
}

/// Whether a code exchange yields a refresh token: the client may use the refresh
/// grant, and asked for `offline_access` or always receives one.
pub fn wants_refresh_token(client: &Client, scope: &ScopeSet) -> bool {
    client.allows_grant(GrantType::RefreshToken)
        && (scope.contains(OFFLINE_ACCESS) || client.always_issue_refresh_token)
}

/// The template of a new refresh token: its handle (for the client) and the row to store.
pub struct RefreshTemplate<'a> {
    pub family_id: &'a str,
    pub client: &'a Client,
    pub user_id: i64,
    pub sid: Option<&'a str>,
    pub scope: &'a ScopeSet,
    pub auth_time: UnixTime,
    pub amr: &'a [String],
}

pub fn refresh_token(
    state: &AppState,
    t: RefreshTemplate,
    now: UnixTime,
) -> Result<(String, NewRefreshToken), TokenError> {
    let handle = new_handle();
    let token_hash = handle_hash(&handle);
    let sealed = state
        .master
        .seal(token_hash.as_bytes(), handle.as_bytes())
        .map_err(|e| TokenError::internal(&e.to_string()))?;
    let lifetime = t.client.lifetimes.refresh_token.unwrap_or(state.settings.lifetimes.refresh_token);
    Ok((
        handle,
        NewRefreshToken {
            token_hash,
            family_id: t.family_id.to_string(),
            client_id: t.client.client_id.clone(),
            user_id: t.user_id,
            sid: t.sid.map(str::to_string),
            scope: t.scope.to_string(),
            auth_time: t.auth_time,
            amr: t.amr.to_vec(),
            offline: t.scope.contains(OFFLINE_ACCESS),
            issued_at: now,
            expires_at: now + lifetime,
            sealed,
        },
    ))
}

/// Opens a successor handle sealed by [`refresh_token`].
pub fn unseal_refresh_handle(state: &AppState, token_hash: &str, sealed: &[u8]) -> Result<String, TokenError> {
    let bytes = state.master.open(token_hash.as_bytes(), sealed).map_err(|e| TokenError::internal(&e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| TokenError::internal(&e.to_string()))
}
