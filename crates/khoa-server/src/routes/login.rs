//! `POST /oauth2/auth/login`: the login form. Throttled per account and per client
//! address; one message for unknown users and wrong passwords, with the same argon2id
//! work for both.

use super::form_pairs;
use crate::error::ApiError;
use crate::flow::{self, current_session};
use crate::interaction::{resume, tokens_match};
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
        return Ok(crate::pages::error_page(flow.locale, StatusCode::BAD_REQUEST, flow.locale.texts().expired));
    }
    let t = flow.locale.texts();
    let username = field("username");
    let password = field("password");
    let keys = [format!("user:{username}"), format!("ip:{}", peer.ip())];

    // Refused outright while blocked: no password check, so no oracle either.
    let now = crate::now();
    let mut blocked_until = now;
    for key in &keys {
        if let Some(until) = state.store.login_blocked_until(key).await? {
            blocked_until = blocked_until.max(until);
        }
    }
    if blocked_until > now {
        state.metrics.login_throttled.inc();
        let mut res = flow::login_page(
            &state,
            &flow,
            Some((handle, &interaction)),
            Some(t.throttled),
            StatusCode::TOO_MANY_REQUESTS,
        )
        .await?;
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(blocked_until - now));
        return Ok(res);
    }

    let user = if username.is_empty() { None } else { state.store.user_by_username(username).await? };
    let hash = match &user {
        Some(u) => u.password_hash.clone(),
        None => state.dummy_password_hash().await,
    };
    let verified = state.verify_password(password.to_string(), hash).await && user.is_some();
    let Some(user) = user.filter(|_| verified) else {
        state.metrics.login_failures.inc();
        for key in &keys {
            state.store.record_login_failure(key, crate::now(), &state.settings.login_throttle).await?;
        }
        return flow::login_page(&state, &flow, Some((handle, &interaction)), Some(t.bad_credentials), StatusCode::OK)
            .await;
    };

    state.store.clear_login_failures(&keys[0]).await?;
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
