//! `GET, POST /oauth2/auth` (RFC 6749 §4.1.1, OIDC Core §3.1.2) and
//! `GET /oauth2/auth/continue` (after the login form).

use crate::app::state::AppState;
use crate::http::error::ApiError;
use crate::http::forms::{form_pairs, query_pairs};
use crate::http::i18n::Locale;
use crate::http::pages;
use crate::service::flow::{self, current_session, Flow};
use crate::service::interaction::resume;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::Response;
use khoa_core::authorize::{validate, AuthorizeError, Params, UntrustedRequest};

pub(crate) async fn get(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Result<Response, ApiError> {
    authorize(&state, &headers, query_pairs(&uri)).await
}

pub(crate) async fn post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    authorize(&state, &headers, form_pairs(&body)).await
}

async fn authorize(state: &AppState, headers: &HeaderMap, pairs: Vec<(String, String)>) -> Result<Response, ApiError> {
    let params = Params::new(pairs);
    let client = match params.client_id() {
        Some(id) => state.clients.get(state.store.as_ref(), id).await?,
        None => None,
    };
    let request = match validate(&params, client.as_deref()) {
        Ok(r) => r,
        Err(AuthorizeError::Untrusted(e)) => {
            // RFC 6749 §4.1.2.1: never redirect to an unverified URI.
            let accept = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok());
            let locale = Locale::negotiate(&[], accept);
            return Ok(pages::error_page(
                &state.settings.branding,
                locale,
                StatusCode::BAD_REQUEST,
                &untrusted_message(locale, &e),
            ));
        }
        Err(AuthorizeError::Redirect(e)) => {
            // A 303 See Other (RFC 9700 §4.12: never 307 after a POST), or form_post.
            let accept = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok());
            let locale = Locale::negotiate(&[], accept);
            let params = e.params(&state.settings.issuer);
            return Ok(pages::to_client(&state.settings.branding, locale, &e.redirect_uri, e.response_mode, &params));
        }
    };
    let Some(client) = client else { return Err(ApiError::Internal("validated without client".into())) };
    let flow = Flow::new(client, request, headers);
    let session = current_session(state, headers, state.now()).await?;
    flow::proceed(state, &flow, session, None, false).await
}

fn untrusted_message(locale: Locale, e: &UntrustedRequest) -> String {
    match (locale, e) {
        (Locale::En, e) => format!("{e}."),
        (Locale::Vi, UntrustedRequest::MissingClientId) => "Yêu cầu thiếu client_id.".into(),
        (Locale::Vi, UntrustedRequest::Repeated(p)) => format!("Tham số {p} xuất hiện nhiều lần."),
        (Locale::Vi, UntrustedRequest::UnknownClient) => "Ứng dụng không tồn tại.".into(),
        (Locale::Vi, UntrustedRequest::MissingRedirectUri) => {
            "Yêu cầu thiếu redirect_uri trong khi ứng dụng đăng ký nhiều địa chỉ.".into()
        }
        (Locale::Vi, UntrustedRequest::UnregisteredRedirectUri) => {
            "redirect_uri chưa được đăng ký cho ứng dụng này.".into()
        }
    }
}

#[derive(serde::Deserialize)]
pub(crate) struct ContinueQuery {
    interaction: String,
}

/// After a successful login (POST → 303 → here): consent or the code.
pub(crate) async fn resume_after_login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ContinueQuery>,
) -> Result<Response, ApiError> {
    let (interaction, flow) = match resume(&state, &headers, &q.interaction).await? {
        Ok(found) => found,
        Err(page) => return Ok(page),
    };
    let session = current_session(&state, &headers, state.now()).await?;
    // The login of this interaction is the session of this browser.
    let logged_in_now = matches!((&session, &interaction.sid), (Some(s), Some(sid)) if &s.sid == sid);
    flow::proceed(&state, &flow, session, Some((&q.interaction, &interaction)), logged_in_now).await
}
