//! `POST /oauth2/auth/login`: the login form. Throttled per account and per client
//! address; one message for unknown users and wrong passwords, with the same argon2id
//! work for both.

use crate::app::state::AppState;
use crate::http::error::ApiError;
use crate::http::forms::form_pairs;
use crate::service::flow::{self, current_session};
use crate::service::interaction::{resume, tokens_match};
use crate::service::password_login::{device_cookie, known_device, password_login, LoginOutcome, DEVICE_COOKIE};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use khoa_core::throttle::LoginOrigin;
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
        return Ok(crate::http::pages::error_page(
            &state.settings.branding,
            flow.locale,
            StatusCode::BAD_REQUEST,
            flow.locale.texts().expired,
        ));
    }
    let t = flow.locale.texts();
    let now = state.now();
    let username = field("username");
    let device = known_device(&state, crate::http::cookies::get(&headers, DEVICE_COOKIE).as_deref(), username, now);
    let address = crate::http::client_address(&state.settings, peer.ip(), &headers);
    let origin = LoginOrigin::Browser { address, device: device.as_deref() };
    let user = match password_login(&state, username, field("password"), origin).await? {
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
    let previous = current_session(&state, &headers, now).await?;
    let (session, cookie) = flow::start_session(&state, &user, previous.as_ref()).await?;
    // The interaction is now the session's (a row of its own, if it was sealed).
    let (handle, _, csrf_cookie) =
        flow::interaction_for(&state, &flow, Some((handle, &interaction)), Some(&session.sid)).await?;
    let next = format!("/oauth2/auth/continue?interaction={handle}");
    let mut res = Redirect::to(&next).into_response();
    let cookies = std::iter::once(cookie.1).chain(csrf_cookie.into_iter().map(|(_, v)| v));
    for value in cookies.chain(device_cookie(&state, &user.username, now)) {
        if let Ok(v) = HeaderValue::from_str(&value) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(res)
}
