//! `grant_type=authorization_code` (RFC 6749 §4.1.3, RFC 7636 §4.6).

use super::{field, Form, TokenResponse};
use crate::error::TokenError;
use crate::issue::{self, RefreshTemplate, Subject};
use crate::state::AppState;
use khoa_core::client::Client;
use khoa_core::code::CodeError;
use khoa_core::scope::ScopeSet;
use khoa_core::session::handle_hash;
use khoa_core::token_error::TokenEndpointError;
use khoa_store::{NewAccessToken, Redemption};

pub fn invalid_grant(e: CodeError) -> TokenError {
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

/// How the token request speaks of the redirect URI.
#[derive(Debug, Clone, Copy)]
pub enum RedirectUri<'a> {
    /// RFC 6749 §4.1.3: the value sent (or none).
    Given(Option<&'a str>),
    /// The dialect's request has no such field (e.g. the HUTECH JSON exchange).
    NotCarried,
}

/// When a code exchange yields a refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshPolicy {
    /// `offline_access` granted, or the client always receives one.
    Standard,
    /// Only when the client has a refresh token lifetime configured (OneAccess).
    WhenLifetimeConfigured,
}

/// A code exchange as the caller received it (the native form, or a dialect's body
/// translated onto it).
pub struct CodeExchange<'a> {
    pub code: &'a str,
    pub redirect_uri: RedirectUri<'a>,
    pub code_verifier: Option<&'a str>,
    pub refresh: RefreshPolicy,
}

/// Why an exchange gave no tokens, for each dialect to word in its own way.
#[derive(Debug)]
pub enum ExchangeError {
    Code(CodeError),
    /// The session the code was issued in has ended (logout).
    SessionEnded,
    UserGone,
    Other(TokenError),
}

impl From<khoa_store::StoreError> for ExchangeError {
    fn from(e: khoa_store::StoreError) -> Self {
        Self::Other(e.into())
    }
}

impl From<TokenError> for ExchangeError {
    fn from(e: TokenError) -> Self {
        Self::Other(e)
    }
}

impl From<ExchangeError> for TokenError {
    fn from(e: ExchangeError) -> Self {
        match e {
            ExchangeError::Code(c) => invalid_grant(c),
            ExchangeError::SessionEnded => {
                TokenEndpointError::InvalidGrant("the session of the authorization code has ended").into()
            }
            ExchangeError::UserGone => TokenEndpointError::InvalidGrant("the user no longer exists").into(),
            ExchangeError::Other(t) => t,
        }
    }
}

/// Tokens, and the user they speak for.
pub struct Exchanged {
    pub response: TokenResponse,
    pub user: khoa_core::user::User,
}

pub async fn handle(state: &AppState, client: &Client, form: &Form) -> Result<TokenResponse, TokenError> {
    let Some(code) = field(form, "code") else {
        return Err(TokenEndpointError::InvalidRequest("code is required").into());
    };
    let x = CodeExchange {
        code,
        redirect_uri: RedirectUri::Given(field(form, "redirect_uri")),
        code_verifier: field(form, "code_verifier"),
        refresh: RefreshPolicy::Standard,
    };
    Ok(exchange(state, client, x).await?.response)
}

pub async fn exchange(state: &AppState, client: &Client, x: CodeExchange<'_>) -> Result<Exchanged, ExchangeError> {
    let now = crate::now();
    let code_hash = handle_hash(x.code);
    // Codes never change but for consumption, so the refresh token can be prepared
    // from a read; it is stored in the transaction that consumes the code, with the
    // code's hash as its family, so a replay of the code revokes it too.
    let Some(peeked) = state.store.code(&code_hash).await? else {
        return Err(ExchangeError::Code(CodeError::Unknown));
    };
    let scope = ScopeSet::parse(&peeked.scope).unwrap_or_default();
    let wants_refresh = match x.refresh {
        RefreshPolicy::Standard => issue::wants_refresh_token(client, &scope),
        RefreshPolicy::WhenLifetimeConfigured => {
            client.allows_grant(khoa_core::client::GrantType::RefreshToken) && client.lifetimes.refresh_token.is_some()
        }
    };
    let refresh = if wants_refresh {
        let template = RefreshTemplate {
            family_id: &code_hash,
            client,
            user_id: peeked.user_id,
            sid: Some(&peeked.sid),
            scope: &scope,
            auth_time: peeked.auth_time,
            amr: &peeked.amr,
        };
        Some(issue::refresh_token(state, template, now)?)
    } else {
        None
    };
    let lifetime = issue::access_token_lifetime(state, client);
    let jti = khoa_core::random::random_token::<16>();
    let token = NewAccessToken { jti: jti.clone(), issued_at: now, expires_at: now + lifetime };
    let stored_refresh = refresh.as_ref().map(|(_, row)| row);
    let code = match state.store.redeem_code(&code_hash, &client.client_id, now, &token, stored_refresh).await? {
        Redemption::Redeemed(code) => *code,
        Redemption::Replayed { revoked } => {
            tracing::warn!(client_id = %client.client_id, revoked, "authorization code replayed; tokens issued from it revoked");
            return Err(ExchangeError::Code(CodeError::Replayed));
        }
        Redemption::OtherClient => return Err(ExchangeError::Code(CodeError::OtherClient)),
        Redemption::Unknown => return Err(ExchangeError::Code(CodeError::Unknown)),
    };
    let presented_redirect = match x.redirect_uri {
        RedirectUri::Given(uri) => uri,
        RedirectUri::NotCarried => Some(code.redirect_uri.as_str()),
    };
    if let Err(e) = code.check_redemption(presented_redirect, x.code_verifier, now) {
        // The code is spent; the tokens recorded with it are never handed out.
        state.store.revoke_family(&code.code_hash, now).await?;
        return Err(ExchangeError::Code(e));
    }
    // A code outlives no logout: its session must still be there.
    let session_ended = state.store.session_by_sid(&code.sid).await?.is_none_or(|s| s.ended_at.is_some());
    if session_ended {
        state.store.revoke_family(&code.code_hash, now).await?;
        return Err(ExchangeError::SessionEnded);
    }
    let Some(user) = state.store.user_by_id(code.user_id).await? else {
        state.store.revoke_family(&code.code_hash, now).await?;
        return Err(ExchangeError::UserGone);
    };
    let subject = Subject { sub: user.subject(), scope: &scope, auth_time: Some(code.auth_time), sid: Some(&code.sid) };
    let access_token = issue::access_token(state, client, &subject, &jti, now)?;
    let id_token = issue::id_token(state, client, &subject, code.nonce.as_deref(), &code.amr, &access_token, now)?;
    state.metrics.tokens_issued.inc();
    let response = TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: lifetime,
        id_token,
        refresh_token: refresh.map(|(handle, _)| handle),
        scope: scope.to_string(),
    };
    Ok(Exchanged { response, user })
}
