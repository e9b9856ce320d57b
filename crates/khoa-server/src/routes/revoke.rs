//! `POST /oauth2/revoke` (RFC 7009).

use crate::app::state::AppState;
use crate::http::cors::Verdict;
use crate::http::error::TokenError;
use crate::http::forms::read_form;
use crate::service::client_authn::{authenticate, check_origin};
use crate::service::grants::{field, no_store};
use crate::service::tokens::{find, Found};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use khoa_core::token_error::TokenEndpointError;

pub(crate) async fn post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let mut verdict = Verdict::of(&headers, None);
    let result = revoke(&state, &headers, &body, &mut verdict).await;
    verdict.respond(&state, result, None).await
}

/// A CORS preflight (browser apps).
pub(crate) async fn preflight(State(state): State<AppState>, headers: HeaderMap) -> Response {
    crate::http::cors::preflight(&state, &headers, "POST").await
}

async fn revoke(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    verdict: &mut Verdict,
) -> Result<Response, TokenError> {
    let form = read_form(headers, body)?;
    // A foreign origin is refused before anything is revoked (`cors.rs`).
    check_origin(state, headers, &form, verdict).await?;
    let client = authenticate(state, headers, &form).await?;
    let Some(token) = field(&form, "token") else {
        return Err(TokenEndpointError::InvalidRequest("token is required").into());
    };
    let hint = field(&form, "token_type_hint");
    // §2.2.1: a type the server cannot revoke.
    if hint.is_some_and(|h| h != "access_token" && h != "refresh_token") {
        return Err(
            TokenEndpointError::UnsupportedTokenType("only access_token and refresh_token can be revoked").into()
        );
    }
    let now = state.now();
    match find(state, token, hint).await? {
        // §2.1: a token of another client is refused, and stays valid.
        Some(found) if found.client_id() != client.client_id => {
            return Err(TokenEndpointError::UnauthorizedClient("the token was issued to another client").into());
        }
        Some(Found::Access(claims, _)) => {
            state.store.revoke_access_token(&claims.jti, now).await?;
        }
        // Revoking a refresh token revokes its family: every refresh token and every
        // access token minted from it.
        Some(Found::Refresh(r)) => {
            state.store.revoke_family(&r.token.family_id, now).await?;
        }
        // §2.2: unknown (or already invalid) tokens also get 200.
        None => {}
    }
    let mut res = StatusCode::OK.into_response();
    no_store(res.headers_mut());
    Ok(res)
}

/// RFC 7009 at the revocation endpoint, one rule a test, in-process.
#[cfg(test)]
mod tests {
    use crate::testing::{TestApp, SECRET};
    use khoa_core::client::SecretChoice;

    const PATH: &str = "/oauth2/revoke";

    async fn app() -> TestApp {
        let app = TestApp::new().await;
        app.client("web", |r| r.secret = SecretChoice::Given(SECRET.into())).await;
        app.client("other", |r| r.secret = SecretChoice::Given(SECRET.into())).await;
        app
    }

    #[tokio::test]
    async fn unknown_tokens_get_200() {
        let app = app().await;
        let answer = app.post_form(PATH, &[("token", "never-issued")], Some(("web", SECRET))).await;
        assert_eq!(answer.status.as_u16(), 200);
        assert_eq!(answer.headers[axum::http::header::CACHE_CONTROL], "no-store");
    }

    #[tokio::test]
    async fn another_clients_token_is_refused_and_stays_valid() {
        let app = app().await;
        let tokens = app.tokens_of_web(SECRET, "c1").await;
        let at = tokens["access_token"].as_str().unwrap();
        let answer = app.post_form(PATH, &[("token", at)], Some(("other", SECRET))).await;
        assert_eq!(answer.error(), (400, "unauthorized_client", "the token was issued to another client"));
        let live = app.post_form("/oauth2/introspect", &[("token", at)], Some(("web", SECRET))).await;
        assert_eq!(live.body["active"], true, "still valid");
    }

    #[tokio::test]
    async fn only_access_and_refresh_tokens_are_revoked() {
        let app = app().await;
        let form = [("token", "x"), ("token_type_hint", "id_token")];
        assert_eq!(
            app.post_form(PATH, &form, Some(("web", SECRET))).await.error(),
            (400, "unsupported_token_type", "only access_token and refresh_token can be revoked")
        );
        assert_eq!(
            app.post_form(PATH, &[], Some(("web", SECRET))).await.error(),
            (400, "invalid_request", "token is required")
        );
    }

    #[tokio::test]
    async fn a_revoked_access_token_is_inactive() {
        let app = app().await;
        let tokens = app.tokens_of_web(SECRET, "c1").await;
        let at = tokens["access_token"].as_str().unwrap();
        assert_eq!(app.post_form(PATH, &[("token", at)], Some(("web", SECRET))).await.status.as_u16(), 200);
        let gone = app.post_form("/oauth2/introspect", &[("token", at)], Some(("web", SECRET))).await;
        assert_eq!(gone.body, serde_json::json!({"active": false}));
    }

    #[tokio::test]
    async fn the_caller_must_authenticate() {
        // RFC 7009 §2.1.
        let app = app().await;
        let tokens = app.tokens_of_web(SECRET, "c1").await;
        let at = tokens["access_token"].as_str().unwrap();
        let answer = app.post_form(PATH, &[("token", at)], None).await;
        assert_eq!(answer.error(), (401, "invalid_client", "client authentication is required"));
        let live = app.post_form("/oauth2/introspect", &[("token", at)], Some(("web", SECRET))).await;
        assert_eq!(live.body["active"], true, "still valid");
    }

    #[tokio::test]
    async fn a_wrong_hint_does_not_hide_the_token_and_a_second_revocation_is_200() {
        // RFC 7009 §2.1: the server extends its search beyond the hinted type.
        let app = app().await;
        let tokens = app.tokens_of_web(SECRET, "c1").await;
        let at = tokens["access_token"].as_str().unwrap();
        let form = [("token", at), ("token_type_hint", "refresh_token")];
        assert_eq!(app.post_form(PATH, &form, Some(("web", SECRET))).await.status.as_u16(), 200);
        let gone = app.post_form("/oauth2/introspect", &[("token", at)], Some(("web", SECRET))).await;
        assert_eq!(gone.body, serde_json::json!({"active": false}));
        assert_eq!(app.post_form(PATH, &form, Some(("web", SECRET))).await.status.as_u16(), 200);
    }
}
