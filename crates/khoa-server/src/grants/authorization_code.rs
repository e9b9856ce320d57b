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

/// A code exchange as the caller received it (the native form, or a dialect's body
/// translated onto it).
pub struct CodeExchange<'a> {
    pub code: &'a str,
    pub redirect_uri: Option<&'a str>,
    pub code_verifier: Option<&'a str>,
}

pub async fn handle(state: &AppState, client: &Client, form: &Form) -> Result<TokenResponse, TokenError> {
    let Some(code) = field(form, "code") else {
        return Err(TokenEndpointError::InvalidRequest("code is required").into());
    };
    let x =
        CodeExchange { code, redirect_uri: field(form, "redirect_uri"), code_verifier: field(form, "code_verifier") };
    exchange(state, client, x).await
}

pub async fn exchange(state: &AppState, client: &Client, x: CodeExchange<'_>) -> Result<TokenResponse, TokenError> {
    let now = crate::now();
    let code_hash = handle_hash(x.code);
    // Codes never change but for consumption, so the refresh token can be prepared
    // from a read; it is stored in the transaction that consumes the code, with the
    // code's hash as its family, so a replay of the code revokes it too.
    let Some(peeked) = state.store.code(&code_hash).await? else {
        return Err(invalid_grant(CodeError::Unknown));
    };
    let scope = ScopeSet::parse(&peeked.scope).unwrap_or_default();
    let refresh = if issue::wants_refresh_token(client, &scope) {
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
            return Err(invalid_grant(CodeError::Replayed));
        }
        Redemption::OtherClient => return Err(invalid_grant(CodeError::OtherClient)),
        Redemption::Unknown => return Err(invalid_grant(CodeError::Unknown)),
    };
    if let Err(e) = code.check_redemption(x.redirect_uri, x.code_verifier, now) {
        // The code is spent; the tokens recorded with it are never handed out.
        state.store.revoke_family(&code.code_hash, now).await?;
        return Err(invalid_grant(e));
    }
    let Some(user) = state.store.user_by_id(code.user_id).await? else {
        state.store.revoke_family(&code.code_hash, now).await?;
        return Err(TokenEndpointError::InvalidGrant("the user no longer exists").into());
    };
    let subject = Subject { sub: user.subject(), scope: &scope, auth_time: Some(code.auth_time), sid: Some(&code.sid) };
    let access_token = issue::access_token(state, client, &subject, &jti, now)?;
    let id_token = issue::id_token(state, client, &subject, code.nonce.as_deref(), &code.amr, &access_token, now)?;
    state.metrics.tokens_issued.inc();
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: lifetime,
        id_token,
        refresh_token: refresh.map(|(handle, _)| handle),
        scope: scope.to_string(),
    })
}
