//! `POST /oauth2/introspect` (RFC 7662), for authenticated confidential clients.

use crate::app::state::AppState;
use crate::http::error::TokenError;
use crate::http::forms::read_form;
use crate::service::client_authn::authenticate;
use crate::service::grants::{field, no_store};
use crate::service::tokens::{find, Found};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use khoa_core::token_error::TokenEndpointError;
use serde_json::{json, Value};

pub(crate) async fn post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, TokenError> {
    let form = read_form(&headers, &body)?;
    let client = authenticate(&state, &headers, &form).await?;
    // A client id alone proves nothing: introspection is for confidential clients.
    if client.is_public() {
        return Err(TokenEndpointError::invalid_client("introspection requires a confidential client", false).into());
    }
    let Some(token) = field(&form, "token") else {
        return Err(TokenEndpointError::InvalidRequest("token is required").into());
    };
    let now = state.now();
    let issuer = &state.settings.issuer;
    let username = |user_id: Option<i64>| {
        let state = state.clone();
        async move {
            match user_id {
                Some(id) => state.users.get(state.store.as_ref(), id).await.map(|u| u.map(|u| u.username.clone())),
                None => Ok(None),
            }
        }
    };
    let found = find(&state, token, field(&form, "token_type_hint")).await?;
    // §2.2, §4: a token that is not live, or not this client's to know about, is
    // exactly {"active": false}, whatever the reason.
    let found = found.filter(|f| f.is_live(now) && f.introspectable_by(&client));
    let body: Value = match found {
        Some(Found::Access(c, r)) => {
            let mut v = json!({
                "active": true, "scope": c.scope, "client_id": c.client_id, "token_type": "Bearer",
                "exp": c.exp, "iat": c.iat, "sub": c.sub, "aud": c.aud, "iss": issuer, "jti": c.jti,
            });
            if let Some(name) = username(r.user_id).await? {
                v["username"] = name.into();
            }
            v
        }
        Some(Found::Refresh(r)) => {
            let mut v = json!({
                "active": true, "scope": r.token.scope, "client_id": r.token.client_id, "token_type": "refresh_token",
                "exp": r.token.expires_at, "iat": r.token.issued_at, "sub": r.token.user_id.to_string(), "aud": r.token.client_id, "iss": issuer,
            });
            if let Some(name) = username(Some(r.token.user_id)).await? {
                v["username"] = name.into();
            }
            v
        }
        None => json!({"active": false}),
    };
    let mut res = Json(body).into_response();
    no_store(res.headers_mut());
    Ok(res)
}

/// RFC 7662 at the introspection endpoint, one rule a test, in-process.
#[cfg(test)]
mod tests {
    use crate::testing::{TestApp, SECRET};
    use khoa_core::client::SecretChoice;
    use serde_json::json;

    const PATH: &str = "/oauth2/introspect";

    async fn app() -> TestApp {
        let app = TestApp::new().await;
        app.client("web", |r| r.secret = SecretChoice::Given(SECRET.into())).await;
        app.client("other", |r| r.secret = SecretChoice::Given(SECRET.into())).await;
        app.client("spa", |r| r.secret = SecretChoice::Public).await;
        app
    }

    #[tokio::test]
    async fn a_client_learns_about_its_own_live_token() {
        let app = app().await;
        let tokens = app.tokens_of_web(SECRET, "c1").await;
        let at = tokens["access_token"].as_str().unwrap();
        let answer = app.post_form(PATH, &[("token", at)], Some(("web", SECRET))).await;
        assert_eq!((answer.body["active"].as_bool(), answer.body["client_id"].as_str()), (Some(true), Some("web")));
        assert_eq!(answer.body["username"], "sv01");
    }

    #[tokio::test]
    async fn another_clients_token_is_inactive() {
        let app = app().await;
        let tokens = app.tokens_of_web(SECRET, "c1").await;
        let at = tokens["access_token"].as_str().unwrap();
        let answer = app.post_form(PATH, &[("token", at)], Some(("other", SECRET))).await;
        assert_eq!((answer.status.as_u16(), answer.body.clone()), (200, json!({"active": false})));
    }

    #[tokio::test]
    async fn an_expired_token_is_inactive_from_its_expiry_second() {
        let app = app().await;
        let tokens = app.tokens_of_web(SECRET, "c1").await;
        let at = tokens["access_token"].as_str().unwrap();
        app.clock.advance(3599);
        assert_eq!(app.post_form(PATH, &[("token", at)], Some(("web", SECRET))).await.body["active"], true);
        app.clock.advance(1);
        assert_eq!(app.post_form(PATH, &[("token", at)], Some(("web", SECRET))).await.body, json!({"active": false}));
    }

    #[tokio::test]
    async fn public_clients_cannot_introspect() {
        let app = app().await;
        let answer = app.post_form(PATH, &[("token", "x"), ("client_id", "spa")], None).await;
        assert_eq!(answer.error(), (401, "invalid_client", "introspection requires a confidential client"));
    }

    #[tokio::test]
    async fn the_token_is_required() {
        let app = app().await;
        assert_eq!(
            app.post_form(PATH, &[], Some(("web", SECRET))).await.error(),
            (400, "invalid_request", "token is required")
        );
    }

    #[tokio::test]
    async fn the_caller_must_authenticate() {
        let app = app().await;
        let tokens = app.tokens_of_web(SECRET, "c1").await;
        let at = tokens["access_token"].as_str().unwrap();
        assert_eq!(
            app.post_form(PATH, &[("token", at)], None).await.error(),
            (401, "invalid_client", "client authentication is required")
        );
        assert_eq!(
            app.post_form(PATH, &[("token", at)], Some(("web", "wrong-0123456789abcdef0123456789abcdef")))
                .await
                .error(),
            (401, "invalid_client", "client authentication failed")
        );
    }

    #[tokio::test]
    async fn a_refresh_token_is_described_to_its_client_only() {
        // RFC 7662 §2.2, RFC 9700 §4.14.
        let app = app().await;
        app.stored_code_with("c-offline", |c| c.scope = "openid offline_access".into()).await;
        let form =
            [("grant_type", "authorization_code"), ("code", "c-offline"), ("redirect_uri", crate::testing::CALLBACK)];
        let tokens = app.post_form("/oauth2/token", &form, Some(("web", SECRET))).await.body;
        let rt = tokens["refresh_token"].as_str().expect("a refresh token");
        let own = app.post_form(PATH, &[("token", rt)], Some(("web", SECRET))).await.body;
        assert_eq!(
            (own["active"].as_bool(), own["token_type"].as_str(), own["scope"].as_str()),
            (Some(true), Some("refresh_token"), Some("offline_access openid"))
        );
        let other = app.post_form(PATH, &[("token", rt)], Some(("other", SECRET))).await.body;
        assert_eq!(other, json!({"active": false}));
    }

    #[tokio::test]
    async fn what_is_not_our_token_is_inactive() {
        let app = app().await;
        for token in ["unknown", "a.b.c", "eyJhbGciOiJub25lIn0.e30."] {
            let answer = app.post_form(PATH, &[("token", token)], Some(("web", SECRET))).await;
            assert_eq!((answer.status.as_u16(), answer.body), (200, json!({"active": false})), "{token}");
        }
    }
}
