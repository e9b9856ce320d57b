//! `grant_type=authorization_code` (RFC 6749 §4.1.3, RFC 7636 §4.6).

use super::{field, Form, TokenResponse};
use crate::app::state::AppState;
use crate::http::error::TokenError;
use crate::service::issue::{self, RefreshDecision, RefreshTemplate, Subject};
use khoa_core::client::Client;
use khoa_core::code::CodeError;
use khoa_core::scope::ScopeSet;
use khoa_core::session::handle_hash;
use khoa_core::token_error::TokenEndpointError;
use khoa_store::{CodeCheck, NewAccessToken, Redemption, RefreshFor};

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
    pub user: std::sync::Arc<khoa_core::user::User>,
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
    let now = state.now();
    let code_hash = handle_hash(x.code);
    let lifetime = issue::access_token_lifetime(state, client);
    let minted = issue::new_access_token_id(state);
    let token = NewAccessToken { jti: minted.jti.clone(), issued_at: now, expires_at: now + lifetime };
    // The refresh token's row is built from the code as it is consumed, and stored in
    // the same transaction with the code's hash as its family, so a replay of the code
    // revokes it too. Whether there is one depends on the code's scope.
    // The closure owns what it needs: the store runs it in its writer.
    let refresh_handle = issue::RefreshHandle::new(state)?;
    let decision = match x.refresh {
        RefreshPolicy::Standard => RefreshDecision::standard(client),
        RefreshPolicy::WhenLifetimeConfigured => RefreshDecision::when_lifetime_configured(client),
    };
    let refresh_for: RefreshFor = {
        let (handle, client_id) = (refresh_handle.clone(), client.client_id.clone());
        let refresh_lifetime = issue::refresh_token_lifetime(state, client);
        Box::new(move |code: &khoa_core::code::AuthorizationCode| {
            let scope = ScopeSet::parse(&code.scope).unwrap_or_default();
            decision.wants(&scope).then(|| {
                let template = RefreshTemplate {
                    family_id: &code.code_hash,
                    client_id: &client_id,
                    lifetime: refresh_lifetime,
                    user_id: code.user_id,
                    sid: Some(&code.sid),
                    scope: &scope,
                    auth_time: code.auth_time,
                    amr: &code.amr,
                };
                handle.row(template, now)
            })
        })
    };
    // RFC 6749 §4.1.3, RFC 7636 §4.6: checked on the code as the store consumes it, so a
    // failed check spends the code and records no token.
    let check: CodeCheck = {
        let redirect_uri = match x.redirect_uri {
            RedirectUri::Given(uri) => Some(uri.map(str::to_owned)),
            RedirectUri::NotCarried => None,
        };
        let verifier = x.code_verifier.map(str::to_owned);
        Box::new(move |code: &khoa_core::code::AuthorizationCode| {
            let presented = match &redirect_uri {
                Some(given) => given.as_deref(),
                None => Some(code.redirect_uri.as_str()),
            };
            code.check_redemption(presented, verifier.as_deref(), now)
        })
    };
    let code = match state.store.redeem_code(&code_hash, &client.client_id, now, check, &token, refresh_for).await? {
        Redemption::Redeemed(code) => *code,
        Redemption::Refused(e) => return Err(ExchangeError::Code(e)),
        Redemption::Replayed { revoked } => {
            tracing::warn!(client_id = %client.client_id, revoked, "authorization code replayed; tokens issued from it revoked");
            return Err(ExchangeError::Code(CodeError::Replayed));
        }
        Redemption::OtherClient => return Err(ExchangeError::Code(CodeError::OtherClient)),
        // A code outlives no logout: its session must still be there.
        Redemption::SessionEnded => return Err(ExchangeError::SessionEnded),
        Redemption::Unknown => return Err(ExchangeError::Code(CodeError::Unknown)),
    };
    let scope = ScopeSet::parse(&code.scope).unwrap_or_default();
    // A disabled account gets nothing (disabling ended its sessions; this covers a cache).
    let user = state.users.get(state.store.as_ref(), code.user_id).await?.filter(|u| !u.is_disabled());
    let Some(user) = user else {
        state.store.revoke_family(&code.code_hash, now).await?;
        return Err(ExchangeError::UserGone);
    };
    let subject = Subject::user(&user, &scope, code.auth_time, Some(&code.sid));
    let access_token = issue::access_token(state, client, &subject, &minted, now)?;
    let id_token = issue::id_token(state, client, &subject, code.nonce.as_deref(), &code.amr, &access_token, now)?;
    state.metrics.tokens_issued.inc();
    let response = TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: lifetime,
        id_token,
        refresh_token: decision.wants(&scope).then_some(refresh_handle.handle),
        scope: scope.to_string(),
    };
    Ok(Exchanged { response, user })
}
