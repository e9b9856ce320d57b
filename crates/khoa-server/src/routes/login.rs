//! `POST /oauth2/auth/login`: the login form. Throttled per account and per client
//! address; one message for unknown users and wrong passwords, with the same argon2id
//! work for both.

use super::form_pairs;
use crate::error::ApiError;
use crate::flow::{self, current_session};
use crate::interaction::{resume, tokens_match};
use crate::password_login::{password_login, LoginOutcome};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use std::collections::HashMap;
use std::net::SocketAddr;

pub(crate) async fn post(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let form: HashMap<String, String> = form_pairs(&body).into_iter().collect();
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let handle = field("interaction");
    let (interaction, flow) = match resume(&state, &headers, handle).await? {
        Ok(found) => found,
        Err(page) => return Ok(page),
    };
    if !tokens_match(field("csrf_token"), &interaction.csrf_token) {
        return Ok(crate::pages::error_page(
            &state.settings.branding,
            flow.locale,
            StatusCode::BAD_REQUEST,
            flow.locale.texts().expired,
        ));
    }
    let t = flow.locale.texts();
    let user = match password_login(&state, field("username"), field("password"), peer.ip()).await? {
        LoginOutcome::Blocked { retry_after } => {
            let interaction = Some((handle, &interaction));
            let status = StatusCode::TOO_MANY_REQUESTS;
            let mut res = flow::login_page(&state, &flow, interaction, Some(t.throttled), status).await?;
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            return Ok(res);
        }
        LoginOutcome::Failed => {
            let interaction = Some((handle, &interaction));
            return flow::login_page(&state, &flow, interaction, Some(t.bad_credentials), StatusCode::OK).await;
        }
        LoginOutcome::Succeeded(user) => user,
    };
    let previous = current_session(&state, &headers, crate::now()).await?;
    let (session, cookie) = flow::start_session(&state, &user, previous.as_ref()).await?;
    state.store.set_interaction_session(&interaction.id_hash, &session.sid).await?;
    let next = format!("/oauth2/auth/continue?interaction={handle}");
    let mut res = Redirect::to(&next).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie.1) {
        res.headers_mut().append(cookie.0, v);
    }
    Ok(res)
}
