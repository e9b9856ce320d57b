//! Finding what a presented token is: one of our access tokens (a JWT checked against
//! the database, the authority on revocation, or an opaque handle found there by its
//! hash) or one of our refresh tokens.

use crate::app::state::AppState;
use khoa_core::jose::jwt;
use khoa_core::session::handle_hash;
use khoa_core::tokens::{AccessTokenClaims, ACCESS_TOKEN_TYP};
use khoa_store::{AccessTokenRecord, RefreshTokenRecord, StoreError};
use std::sync::Arc;

pub enum Found {
    Access(Box<AccessTokenClaims>, AccessTokenRecord),
    Refresh(RefreshTokenRecord),
}

/// [`Found::is_live`] for an access token: `khoa_core::tokens::access_token_is_live` on
/// its claims and its record.
pub fn access_token_is_live(claims: &AccessTokenClaims, record: &AccessTokenRecord, now: khoa_core::UnixTime) -> bool {
    let state = khoa_core::tokens::AccessTokenState {
        claims_client_id: &claims.client_id,
        claims_exp: claims.exp,
        record_client_id: &record.client_id,
        record_expires_at: record.token.expires_at,
        revoked: record.revoked_at.is_some(),
    };
    khoa_core::tokens::access_token_is_live(&state, now)
}

impl Found {
    /// The one definition of a live token, for userinfo, introspection, revocation and
    /// the dialects: unexpired at `now` and not revoked; an access token's record must
    /// name the client its claims name; a refresh token must not have been rotated.
    pub fn is_live(&self, now: khoa_core::UnixTime) -> bool {
        match self {
            Self::Access(claims, record) => access_token_is_live(claims, record, now),
            Self::Refresh(record) => record.is_live(now),
        }
    }

    /// The client the token was issued to.
    pub fn client_id(&self) -> &str {
        match self {
            Self::Access(_, record) => &record.client_id,
            Self::Refresh(record) => &record.token.client_id,
        }
    }

    /// Whether `client` may learn about this token by introspection
    /// (`khoa_core::tokens::introspectable`).
    pub fn introspectable_by(&self, client: &khoa_core::client::Client) -> bool {
        let is_access = matches!(self, Self::Access(..));
        khoa_core::tokens::introspectable(self.client_id(), is_access, &client.client_id, client.resource_server)
    }
}

/// An access token signed by us for our issuer, with its database record (expired or
/// revoked ones included: the caller decides).
pub async fn access_token(state: &AppState, token: &str) -> Result<Option<Found>, StoreError> {
    if !token.contains('.') {
        return opaque_access_token(state, token).await;
    }
    let keys = state.keys.snapshot();
    let digest = TokenDigest::of(token);
    let claims = match state.verified.get(&digest, |kid| keys.key(kid).is_some()) {
        Some(claims) => claims,
        None => {
            let Ok((header, claims)) = jwt::decode::<AccessTokenClaims, _>(token, |kid| keys.key(kid)) else {
                return Ok(None);
            };
            if header.typ.as_deref() != Some(ACCESS_TOKEN_TYP) || claims.iss != state.settings.issuer {
                return Ok(None);
            }
            let claims = Arc::new(claims);
            if let Some(kid) = header.kid {
                state.verified.insert(digest, kid, claims.clone());
            }
            claims
        }
    };
    // The record decides, every time: revocation and expiry take effect at once.
    Ok(state.store.access_token(&claims.jti).await?.map(|r| Found::Access(Box::new((*claims).clone()), r)))
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
        exp: record.token.expires_at,
        iat: record.token.issued_at,
        jti: record.token.jti.clone(),
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

use crate::app::caches::TokenDigest;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::caches::VerifiedAccessTokens;

    fn access(client: &str, record_client: &str, exp: i64, revoked: Option<i64>) -> Found {
        let mut c = (*claims("j")).clone();
        c.client_id = client.into();
        c.exp = exp;
        let record = AccessTokenRecord {
            token: khoa_store::NewAccessToken { jti: "j".into(), issued_at: 1000, expires_at: exp },
            grant_id: "g".into(),
            client_id: record_client.into(),
            user_id: Some(1),
            sid: None,
            scope: "openid".into(),
            revoked_at: revoked,
        };
        Found::Access(Box::new(c), record)
    }

    fn refresh(client: &str, rotated: Option<i64>, revoked: Option<i64>) -> Found {
        Found::Refresh(RefreshTokenRecord {
            token: khoa_store::RefreshToken {
                token_hash: "h".into(),
                family_id: "f".into(),
                client_id: client.into(),
                user_id: 1,
                sid: None,
                scope: "openid".into(),
                auth_time: 1000,
                amr: vec![],
                offline: false,
                issued_at: 1000,
                expires_at: 2000,
            },
            rotated_at: rotated,
            successor_hash: None,
            successor_sealed: None,
            revoked_at: revoked,
        })
    }

    #[test]
    fn one_definition_of_a_live_token() {
        let cases = [
            (access("app", "app", 2000, None), 1999, true),
            (access("app", "app", 2000, None), 2000, false),
            (access("app", "app", 2000, Some(1500)), 1600, false),
            (access("app", "other", 2000, None), 1500, false),
            (refresh("app", None, None), 1999, true),
            (refresh("app", None, None), 2000, false),
            (refresh("app", Some(1500), None), 1600, false),
            (refresh("app", None, Some(1500)), 1600, false),
        ];
        for (i, (token, now, live)) in cases.iter().enumerate() {
            assert_eq!(token.is_live(*now), *live, "case {i}");
        }
    }

    #[test]
    fn who_may_introspect_what() {
        let client = |id: &str, resource_server: bool| {
            let mut reg = khoa_core::client::ClientRegistration::new(id);
            reg.grant_types = Some(vec![khoa_core::client::GrantType::ClientCredentials]);
            reg.resource_server = resource_server;
            reg.register(0).unwrap().client
        };
        let (app, other, api) = (client("app", false), client("other", false), client("api", true));
        let (at, rt) = (access("app", "app", 2000, None), refresh("app", None, None));
        assert!(at.introspectable_by(&app) && rt.introspectable_by(&app), "its own tokens");
        assert!(!at.introspectable_by(&other) && !rt.introspectable_by(&other), "another client's");
        assert!(at.introspectable_by(&api), "a resource server: access tokens");
        assert!(!rt.introspectable_by(&api), "a resource server: never another client's refresh token");
    }

    fn claims(jti: &str) -> Arc<AccessTokenClaims> {
        Arc::new(AccessTokenClaims {
            iss: "https://sso.example".into(),
            sub: "1".into(),
            aud: "app".into(),
            client_id: "app".into(),
            exp: 2000,
            iat: 1000,
            jti: jti.into(),
            scope: "openid".into(),
            auth_time: None,
            sid: None,
        })
    }

    #[test]
    fn a_checked_token_is_found_by_its_exact_bytes_only() {
        let cache = VerifiedAccessTokens::default();
        cache.insert(TokenDigest::of("h.p.s"), "k1".into(), claims("a"));
        assert_eq!(cache.get(&TokenDigest::of("h.p.s"), |_| true).map(|c| c.jti.clone()), Some("a".into()));
        // One byte changed (a tampered payload or signature) is another token: not found.
        assert!(cache.get(&TokenDigest::of("h.p.S"), |_| true).is_none());
        assert!(cache.get(&TokenDigest::of("h.q.s"), |_| true).is_none());
    }

    #[test]
    fn an_entry_counts_only_while_its_key_is_in_the_keyring() {
        let cache = VerifiedAccessTokens::default();
        cache.insert(TokenDigest::of("t"), "k1".into(), claims("a"));
        assert!(cache.get(&TokenDigest::of("t"), |kid| kid == "k1").is_some());
        assert!(cache.get(&TokenDigest::of("t"), |kid| kid == "k2").is_none(), "k1 removed");
    }

    #[test]
    fn it_never_holds_more_than_its_capacity() {
        let cache = VerifiedAccessTokens::default();
        for i in 0..VerifiedAccessTokens::CAPACITY + 10 {
            cache.insert(TokenDigest::of(&i.to_string()), "k".into(), claims("a"));
            assert!(cache.len() <= VerifiedAccessTokens::CAPACITY);
        }
        assert_eq!(cache.len(), 10, "emptied when full, then refilled");
    }
}
