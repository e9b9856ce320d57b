//! Minting tokens: JWT access tokens (RFC 9068), ID tokens (OIDC Core §2, §12.2 on
//! refresh) and opaque refresh tokens. Shared by every grant.

use crate::app::settings::AccessTokenFormat;
use crate::app::state::AppState;
use crate::http::error::TokenError;
use khoa_core::client::{Client, GrantType, TokenKind};
use khoa_core::jose::{jwt, SigningAlgorithm};
use khoa_core::scope::{ScopeSet, OFFLINE_ACCESS, OPENID};
use khoa_core::session::{handle_hash, new_handle};
use khoa_core::tokens::{at_hash, AccessTokenClaims, IdTokenClaims, ACCESS_TOKEN_TYP};
use khoa_core::UnixTime;
use khoa_store::{RefreshSuccessor, RefreshToken, RefreshTokenRecord};
use serde::Serialize;

/// Who and what a token is for.
pub struct Subject<'a> {
    /// The user's subject, or the client_id for client_credentials.
    pub sub: String,
    pub scope: &'a ScopeSet,
    pub auth_time: Option<UnixTime>,
    pub sid: Option<&'a str>,
    /// The user's address and whether it is verified, released in the ID token when
    /// the `email` scope is granted.
    pub email: Option<(&'a str, bool)>,
}

impl<'a> Subject<'a> {
    /// A user's subject for `scope`.
    pub fn user(
        user: &'a khoa_core::user::User,
        scope: &'a ScopeSet,
        auth_time: UnixTime,
        sid: Option<&'a str>,
    ) -> Self {
        Self {
            sub: user.subject(),
            scope,
            auth_time: Some(auth_time),
            sid,
            email: user.email.as_deref().map(|e| (e, user.email_verified)),
        }
    }
}

pub fn access_token_lifetime(state: &AppState, client: &Client) -> i64 {
    lifetime(state, client, TokenKind::AccessToken)
}

/// This client's lifetime for `kind` (`ClientLifetimes::effective`).
pub fn lifetime(state: &AppState, client: &Client, kind: TokenKind) -> i64 {
    client.lifetimes.effective(kind, &state.settings.lifetimes)
}

/// The identity of an access token, chosen before the token is recorded: the `jti`
/// of a JWT, or for an opaque token the SHA-256 of its handle (the handle itself is
/// never stored).
pub struct AccessTokenId {
    pub jti: String,
    handle: Option<String>,
}

pub fn new_access_token_id(state: &AppState) -> AccessTokenId {
    match state.settings.access_token_format {
        AccessTokenFormat::Jwt => AccessTokenId { jti: khoa_core::random::random_token::<16>(), handle: None },
        AccessTokenFormat::Opaque => {
            let handle = new_handle();
            AccessTokenId { jti: handle_hash(&handle), handle: Some(handle) }
        }
    }
}

/// The access token for the client: the opaque handle, or an RFC 9068 JWT signed
/// with the current key of the client's algorithm, else the server's (RS256 by default).
pub fn access_token(
    state: &AppState,
    client: &Client,
    s: &Subject<'_>,
    id: &AccessTokenId,
    now: UnixTime,
) -> Result<String, TokenError> {
    if let Some(handle) = &id.handle {
        return Ok(handle.clone());
    }
    let claims = AccessTokenClaims {
        iss: state.settings.issuer.clone(),
        sub: s.sub.clone(),
        aud: client.client_id.clone(),
        client_id: client.client_id.clone(),
        exp: now + access_token_lifetime(state, client),
        iat: now,
        jti: id.jti.clone(),
        scope: s.scope.to_string(),
        auth_time: s.auth_time,
        sid: s.sid.map(str::to_string),
    };
    let alg = client.access_token_signed_response_alg.unwrap_or(state.settings.access_token_alg);
    sign(state, alg, Some(ACCESS_TOKEN_TYP), &claims, now)
}

/// Signs an ID token with the client's algorithm when `openid` was granted.
pub fn id_token(
    state: &AppState,
    client: &Client,
    s: &Subject<'_>,
    nonce: Option<&str>,
    amr: &[String],
    access_token: &str,
    now: UnixTime,
) -> Result<Option<String>, TokenError> {
    if !s.scope.contains(OPENID) {
        return Ok(None);
    }
    let alg = client.id_token_signed_response_alg;
    let lifetime = lifetime(state, client, TokenKind::IdToken);
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
        // The level reached, read from what was done: refreshed ID tokens say the same.
        acr: khoa_core::authn::level_of_amr(amr).map(|l| l.acr().to_string()),
        // OIDC Core §5.4: the email claims of the granted scope, as userinfo has them.
        email: s.email.filter(|_| s.scope.contains("email")).map(|(e, _)| e.to_string()),
        email_verified: s.email.filter(|_| s.scope.contains("email")).map(|(_, v)| v),
    };
    sign(state, alg, Some("JWT"), &claims, now).map(Some)
}

/// Signs `claims` with the current key of `alg`, on the worker that asks.
///
/// An RS256 signature costs about 0.25 ms of CPU. It once ran on the blocking pool,
/// so that it would not hold up a task that held the SQLite writer connection between
/// two statements; since the SQLite engine runs every statement on the thread that
/// owns its connection, no task holds a connection across an await, and the hand-off
/// (two thread switches a signature, about 8 % of the server's CPU in the sso
/// profile of docs/benchmarks.md) bought nothing. The other worker steals what queues
/// behind a signature.
fn sign<C: Serialize>(
    state: &AppState,
    alg: SigningAlgorithm,
    typ: Option<&'static str>,
    claims: &C,
    now: UnixTime,
) -> Result<String, TokenError> {
    let key = state
        .keys
        .snapshot()
        .signing_key(alg, now)
        .ok_or_else(|| TokenError::internal(&format!("no {} signing key", alg.as_str())))?;
    jwt::encode(&key, typ, claims).map_err(|e| TokenError::internal(&e.to_string()))
}

/// Whether a code exchange yields a refresh token, decided from the code's scope.
#[derive(Debug, Clone, Copy)]
pub struct RefreshDecision {
    /// The client may use the refresh grant (and meets the dialect's extra rule).
    allowed: bool,
    /// It receives one without asking for `offline_access`.
    always: bool,
}

impl RefreshDecision {
    /// The client may use the refresh grant, and asked for `offline_access` or always
    /// receives one.
    pub fn standard(client: &Client) -> Self {
        Self { allowed: client.allows_grant(GrantType::RefreshToken), always: client.always_issue_refresh_token }
    }

    /// OneAccess: whenever the client may use the refresh grant and has a refresh
    /// token lifetime configured.
    pub fn when_lifetime_configured(client: &Client) -> Self {
        Self {
            allowed: client.allows_grant(GrantType::RefreshToken) && client.lifetimes.refresh_token.is_some(),
            always: true,
        }
    }

    pub fn wants(self, scope: &ScopeSet) -> bool {
        self.allowed && (self.always || scope.contains(OFFLINE_ACCESS))
    }
}

/// A refresh token's lifetime for this client.
pub fn refresh_token_lifetime(state: &AppState, client: &Client) -> UnixTime {
    lifetime(state, client, TokenKind::RefreshToken)
}

/// The template of a new refresh token: its handle (for the client) and the row to store.
pub struct RefreshTemplate<'a> {
    pub family_id: &'a str,
    pub client_id: &'a str,
    pub lifetime: UnixTime,
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
) -> Result<(String, RefreshToken), TokenError> {
    let handle = RefreshHandle::new(state)?;
    let row = handle.row(t, now);
    Ok((handle.handle, row))
}

/// A new refresh token's handle (for the client), its hash, and the handle sealed
/// under the master key (kept for the grace window); independent of what it is for.
#[derive(Clone)]
pub struct RefreshHandle {
    pub handle: String,
    token_hash: String,
    sealed: Vec<u8>,
}

impl RefreshHandle {
    pub fn new(state: &AppState) -> Result<Self, TokenError> {
        let handle = new_handle();
        let token_hash = handle_hash(&handle);
        let sealed = state
            .master
            .seal(token_hash.as_bytes(), handle.as_bytes())
            .map_err(|e| TokenError::internal(&e.to_string()))?;
        Ok(Self { handle, token_hash, sealed })
    }

    /// The row to store for this handle.
    pub fn row(&self, t: RefreshTemplate, now: UnixTime) -> RefreshToken {
        RefreshToken {
            token_hash: self.token_hash.clone(),
            family_id: t.family_id.to_string(),
            client_id: t.client_id.to_string(),
            user_id: t.user_id,
            sid: t.sid.map(str::to_string),
            scope: t.scope.to_string(),
            auth_time: t.auth_time,
            amr: t.amr.to_vec(),
            offline: t.scope.contains(OFFLINE_ACCESS),
            issued_at: now,
            expires_at: now + t.lifetime,
        }
    }
}

/// A new handle as the successor of a refresh token being rotated, its row built by
/// the store from the presented token's record (see [`RefreshSuccessor`]).
pub struct Successor {
    pub handle: String,
    successor: RefreshSuccessor,
}

impl Successor {
    pub fn into_store(self) -> RefreshSuccessor {
        self.successor
    }
}

impl RefreshHandle {
    /// This handle as a successor: `row(handle, presented)` builds its row with
    /// [`RefreshHandle::row`], or refuses the rotation with `None`.
    pub fn successor<F>(self, row: F) -> Successor
    where
        F: Fn(&RefreshHandle, &RefreshTokenRecord) -> Option<RefreshToken> + Send + Sync + 'static,
    {
        let successor = RefreshSuccessor {
            token_hash: self.token_hash.clone(),
            sealed: self.sealed.clone(),
            row: Box::new({
                let handle = self.clone();
                move |presented| row(&handle, presented)
            }),
        };
        Successor { handle: self.handle, successor }
    }
}

/// Opens a successor handle sealed by [`refresh_token`].
pub fn unseal_refresh_handle(state: &AppState, token_hash: &str, sealed: &[u8]) -> Result<String, TokenError> {
    let bytes = state.master.open(token_hash.as_bytes(), sealed).map_err(|e| TokenError::internal(&e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| TokenError::internal(&e.to_string()))
}
