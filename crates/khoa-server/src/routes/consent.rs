//! `POST /oauth2/auth/consent`: the user's decision. `allow` stores the consent and
//! sends the code; `deny` returns `access_denied` to the client.

use crate::app::state::AppState;
use crate::http::error::ApiError;
use crate::http::forms::form_pairs;
use crate::routes::views;
use crate::service::flow::{self, current_session};
use crate::service::interaction::{resume, tokens_match};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use khoa_core::authorize::AuthorizeErrorCode;
use std::collections::HashMap;

pub(crate) async fn post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let form: HashMap<String, String> = form_pairs(&body).into_iter().collect();
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let (interaction, flow) = match resume(&state, &headers, field("interaction")).await? {
        Ok(found) => found,
        Err(locale) => return Ok(views::expired(&state, locale)),
    };
    let expired = || views::expired(&state, flow.locale);
    if !tokens_match(field("csrf_token"), &interaction.csrf_token) {
        return Ok(expired());
    }
    // The consent belongs to the session that was asked.
    let session = current_session(&state, &headers, state.now()).await?;
    let Some(session) = session.filter(|s| interaction.sid.as_deref() == Some(s.sid.as_str())) else {
        return Ok(expired());
    };
    let Some(user) = state.users.get(state.store.as_ref(), session.user_id).await? else {
        return Ok(expired());
    };
    // Completes once, even if the form is submitted twice.
    if !state.store.delete_interaction(&interaction.id_hash).await? {
        return Ok(expired());
    }
    match field("decision") {
        "allow" => {
            // Remembered per user and client: the union of everything granted so far.
            let before = state.store.consent(user.id, &flow.client.client_id).await?.unwrap_or_default();
            let scope = format!("{before} {}", flow.request.scope);
            let scope =
                khoa_core::scope::ScopeSet::parse(&scope).unwrap_or_else(|_| flow.request.scope.clone()).to_string();
            state.store.grant_consent(user.id, &flow.client.client_id, &scope, state.now()).await?;
            let params = flow::issue_code(&state, &flow, &session, &user).await?;
            Ok(views::to_client(&state, &flow, &params))
        }
        _ => Ok(views::error_redirect(&state, &flow, AuthorizeErrorCode::AccessDenied, "the user denied the request")),
    }
}
