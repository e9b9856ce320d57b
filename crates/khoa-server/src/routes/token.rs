//! `POST /oauth2/token` (RFC 6749 §3.2): client authentication, then the handler the
//! grant registry (`grants::REGISTRY`) holds for the grant type.

use crate::app::state::AppState;
use crate::http::cors::Verdict;
use crate::http::error::TokenError;
use crate::http::forms::read_form;
use crate::service::client_authn::{authenticate, check_origin};
use crate::service::grants::{self, field};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use khoa_core::token_error::TokenEndpointError;

pub(crate) async fn post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let mut verdict = Verdict::of(&headers, None);
    let result = grant(&state, &headers, &body, &mut verdict).await;
    verdict.respond(&state, result, None).await
}

/// A CORS preflight (browser apps).
pub(crate) async fn preflight(State(state): State<AppState>, headers: HeaderMap) -> Response {
    crate::http::cors::preflight(&state, &headers, "POST").await
}

async fn grant(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    verdict: &mut Verdict,
) -> Result<Response, TokenError> {
    let form = read_form(headers, body)?;
    // A foreign origin is refused before anything is spent (`cors.rs`).
    check_origin(state, headers, &form, verdict).await?;
    let client = authenticate(state, headers, &form).await?;
    let Some(name) = field(&form, "grant_type") else {
        return Err(TokenEndpointError::InvalidRequest("grant_type is required").into());
    };
    let Some(grant) = grants::find(name) else {
        return Err(TokenEndpointError::UnsupportedGrantType("the grant type is not supported").into());
    };
    // RFC 6749 §5.2 unauthorized_client: a grant type the client is not registered for.
    if !client.allows_grant(grant.grant_type) {
        return Err(TokenEndpointError::UnauthorizedClient("the client may not use this grant type").into());
    }
    Ok((grant.handle)(state, &client, &form).await?.into_response())
}

/// The token endpoint's refusals, one rule a test, in-process through the router.
#[cfg(test)]
mod tests {
    use crate::testing::{TestApp, CALLBACK, CHALLENGE, NOW, SECRET, VERIFIER};
    use axum::body::Body;
    use axum::http::{header, Request};
    use khoa_core::client::{SecretChoice, SecretMethod};

    const TOKEN: &str = "/oauth2/token";

    async fn app_with_web() -> TestApp {
        let app = TestApp::new().await;
        app.client("web", |r| r.secret = SecretChoice::Given(SECRET.into())).await;
        app
    }

    #[tokio::test]
    async fn grant_type_is_required() {
        let app = app_with_web().await;
        let answer = app.post_form(TOKEN, &[], Some(("web", SECRET))).await;
        assert_eq!(answer.error(), (400, "invalid_request", "grant_type is required"));
        assert_eq!(answer.headers[header::CACHE_CONTROL], "no-store");
    }

    #[tokio::test]
    async fn only_registered_grant_types_are_served() {
        let app = app_with_web().await;
        // RFC 9700 §2.4: no resource owner password grant.
        for grant in ["password", "implicit", "urn:ietf:params:oauth:grant-type:device_code"] {
            let answer = app.post_form(TOKEN, &[("grant_type", grant)], Some(("web", SECRET))).await;
            assert_eq!(answer.error(), (400, "unsupported_grant_type", "the grant type is not supported"), "{grant}");
        }
    }

    #[tokio::test]
    async fn a_client_uses_only_its_grant_types() {
        let app = app_with_web().await;
        let answer = app.post_form(TOKEN, &[("grant_type", "client_credentials")], Some(("web", SECRET))).await;
        assert_eq!(answer.error(), (400, "unauthorized_client", "the client may not use this grant type"));
    }

    #[tokio::test]
    async fn the_body_is_a_form_without_repeated_parameters() {
        let app = app_with_web().await;
        let json = Request::post(TOKEN)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"grant_type":"client_credentials"}"#))
            .unwrap();
        assert_eq!(
            app.send(json).await.error(),
            (400, "invalid_request", "the body must be application/x-www-form-urlencoded")
        );
        let twice = [("grant_type", "authorization_code"), ("grant_type", "refresh_token")];
        assert_eq!(
            app.post_form(TOKEN, &twice, Some(("web", SECRET))).await.error(),
            (400, "invalid_request", "a parameter appears more than once")
        );
    }

    #[tokio::test]
    async fn one_authentication_method_at_a_time() {
        let app = app_with_web().await;
        let form = [("grant_type", "authorization_code"), ("client_secret", SECRET)];
        assert_eq!(
            app.post_form(TOKEN, &form, Some(("web", SECRET))).await.error(),
            (400, "invalid_request", "use one client authentication method, not Basic and client_secret")
        );
    }

    #[tokio::test]
    async fn unknown_clients_and_wrong_secrets_fail_alike() {
        let app = app_with_web().await;
        for (id, secret) in [("ghost", SECRET), ("web", "wrong-0123456789abcdef0123456789abcdef")] {
            let answer = app.post_form(TOKEN, &[("grant_type", "authorization_code")], Some((id, secret))).await;
            assert_eq!(answer.error(), (401, "invalid_client", "client authentication failed"), "{id}");
            assert_eq!(answer.headers[header::WWW_AUTHENTICATE], "Basic realm=\"khoa\"");
        }
        let answer = app.post_form(TOKEN, &[("grant_type", "authorization_code")], None).await;
        assert_eq!(answer.error(), (401, "invalid_client", "client authentication is required"));
        assert!(answer.headers.get(header::WWW_AUTHENTICATE).is_none(), "no Basic attempted");
    }

    /// A client with a shared secret presents it in the header or in the body,
    /// whichever it registered (never both: RFC 6749 §2.3); a public client none.
    #[tokio::test]
    async fn a_shared_secret_in_the_header_or_the_body() {
        let app = app_with_web().await;
        app.client("by-body", |r| {
            r.secret = SecretChoice::Given(SECRET.into());
            r.secret_method = Some(SecretMethod::ClientSecretPost);
        })
        .await;
        let needs_code = (400, "invalid_request", "code is required");
        for id in ["web", "by-body"] {
            let in_body = [("grant_type", "authorization_code"), ("client_id", id), ("client_secret", SECRET)];
            assert_eq!(app.post_form(TOKEN, &in_body, None).await.error(), needs_code, "{id} in the body");
            let answer = app.post_form(TOKEN, &[("grant_type", "authorization_code")], Some((id, SECRET))).await;
            assert_eq!(answer.error(), needs_code, "{id} in the header");
            let both = [("grant_type", "authorization_code"), ("client_secret", SECRET)];
            assert_eq!(
                app.post_form(TOKEN, &both, Some((id, SECRET))).await.error(),
                (400, "invalid_request", "use one client authentication method, not Basic and client_secret"),
                "{id} both at once"
            );
            let without = [("grant_type", "authorization_code"), ("client_id", id)];
            assert_eq!(
                app.post_form(TOKEN, &without, None).await.error(),
                (
                    401,
                    "invalid_client",
                    "this client authenticates with its client_secret (the Authorization header, or client_id and \
                     client_secret in the body)"
                ),
                "{id} without its secret"
            );
        }
    }

    #[tokio::test]
    async fn codes_are_checked_at_redemption() {
        let app = app_with_web().await;
        let exchange = |code: &'static str, redirect_uri: &'static str| {
            [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirect_uri)]
        };
        let web = Some(("web", SECRET));
        assert_eq!(
            app.post_form(TOKEN, &[("grant_type", "authorization_code")], web).await.error(),
            (400, "invalid_request", "code is required")
        );
        assert_eq!(
            app.post_form(TOKEN, &exchange("no-such-code", CALLBACK), web).await.error(),
            (400, "invalid_grant", "the authorization code is invalid")
        );
        // Expired at its expiry second, on the server's clock.
        app.stored_code("code-1").await;
        app.clock.advance(60);
        assert_eq!(
            app.post_form(TOKEN, &exchange("code-1", CALLBACK), web).await.error(),
            (400, "invalid_grant", "the authorization code has expired")
        );
        // Spent by the refusal: presented again, it is a replay.
        app.clock.set(NOW);
        assert_eq!(
            app.post_form(TOKEN, &exchange("code-1", CALLBACK), web).await.error(),
            (400, "invalid_grant", "the authorization code was already used")
        );
        assert_eq!(app.rows("access_tokens").await, 0);
    }

    #[tokio::test]
    async fn a_wrong_redirect_uri_spends_the_code() {
        let app = app_with_web().await;
        app.stored_code("code-2").await;
        let web = Some(("web", SECRET));
        let form =
            [("grant_type", "authorization_code"), ("code", "code-2"), ("redirect_uri", "https://app.example/other")];
        assert_eq!(
            app.post_form(TOKEN, &form, web).await.error(),
            (400, "invalid_grant", "redirect_uri does not match the authorization request")
        );
        let form = [("grant_type", "authorization_code"), ("code", "code-2"), ("redirect_uri", CALLBACK)];
        assert_eq!(app.post_form(TOKEN, &form, web).await.error().2, "the authorization code was already used");
    }

    #[tokio::test]
    async fn a_redeemed_code_gives_tokens() {
        let app = app_with_web().await;
        app.stored_code("code-3").await;
        let form = [("grant_type", "authorization_code"), ("code", "code-3"), ("redirect_uri", CALLBACK)];
        let answer = app.post_form(TOKEN, &form, Some(("web", SECRET))).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(
            (answer.body["token_type"].as_str(), answer.body["expires_in"].as_i64()),
            (Some("Bearer"), Some(3600))
        );
        assert!(answer.body["id_token"].is_string() && answer.body["access_token"].is_string());
        assert_eq!(answer.headers[header::CACHE_CONTROL], "no-store");
    }

    #[tokio::test]
    async fn unknown_refresh_tokens_are_invalid() {
        let app = app_with_web().await;
        let form = [("grant_type", "refresh_token"), ("refresh_token", "nope")];
        assert_eq!(
            app.post_form(TOKEN, &form, Some(("web", SECRET))).await.error(),
            (400, "invalid_grant", "the refresh token is invalid")
        );
        assert_eq!(
            app.post_form(TOKEN, &[("grant_type", "refresh_token")], Some(("web", SECRET))).await.error(),
            (400, "invalid_request", "refresh_token is required")
        );
    }

    #[tokio::test]
    async fn the_endpoint_takes_only_post() {
        let app = app_with_web().await;
        assert_eq!(app.get(TOKEN, &[]).await.status, 405);
    }

    #[tokio::test]
    async fn another_clients_attempt_does_not_spend_the_code() {
        let app = app_with_web().await;
        app.client("other", |r| r.secret = SecretChoice::Given(SECRET.into())).await;
        app.stored_code("code-4").await;
        let form = [("grant_type", "authorization_code"), ("code", "code-4"), ("redirect_uri", CALLBACK)];
        assert_eq!(
            app.post_form(TOKEN, &form, Some(("other", SECRET))).await.error(),
            (400, "invalid_grant", "the authorization code was issued to another client")
        );
        assert_eq!(app.post_form(TOKEN, &form, Some(("web", SECRET))).await.status, 200);
    }

    #[tokio::test]
    async fn a_redirect_uri_sent_at_authorization_must_be_sent_again() {
        // RFC 6749 §4.1.3.
        let app = app_with_web().await;
        app.stored_code("code-5").await;
        let form = [("grant_type", "authorization_code"), ("code", "code-5")];
        assert_eq!(
            app.post_form(TOKEN, &form, Some(("web", SECRET))).await.error(),
            (400, "invalid_grant", "redirect_uri does not match the authorization request")
        );
    }

    #[tokio::test]
    async fn pkce_is_checked_both_ways() {
        // RFC 7636 §4.6, and RFC 9700 §4.8.2 against downgrade.
        let app = app_with_web().await;
        let web = Some(("web", SECRET));
        let cases = [
            (Some(CHALLENGE), None, Some("code_verifier is required")),
            (
                Some(CHALLENGE),
                Some("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXA"),
                Some("code_verifier does not match the code_challenge"),
            ),
            (None, Some(VERIFIER), Some("code_verifier was sent but the authorization request had no code_challenge")),
            (Some(CHALLENGE), Some(VERIFIER), None),
        ];
        for (n, (challenge, verifier, refusal)) in cases.into_iter().enumerate() {
            let handle = format!("pkce-{n}");
            app.stored_code_with(&handle, |c| c.code_challenge = challenge.map(str::to_string)).await;
            let mut form = vec![("grant_type", "authorization_code"), ("code", &handle), ("redirect_uri", CALLBACK)];
            form.extend(verifier.map(|v| ("code_verifier", v)));
            let answer = app.post_form(TOKEN, &form, web).await;
            match refusal {
                Some(description) => assert_eq!(answer.error(), (400, "invalid_grant", description), "{n}"),
                None => assert_eq!(answer.status, 200, "{}", answer.body),
            }
        }
    }

    #[tokio::test]
    async fn client_credentials_give_only_the_clients_own_scopes() {
        let app = app_with_web().await;
        app.client("m2m", |r| {
            r.secret = SecretChoice::Given(SECRET.into());
            r.grant_types = Some(vec![khoa_core::client::GrantType::ClientCredentials]);
            r.redirect_uris = vec![];
            r.scopes = Some("api:read api:write openid".into());
        })
        .await;
        let m2m = Some(("m2m", SECRET));
        let all = app.post_form(TOKEN, &[("grant_type", "client_credentials")], m2m).await;
        assert_eq!(all.body["scope"], "api:read api:write", "no OpenID scope without a user");
        assert!(all.body.get("refresh_token").is_none() && all.body.get("id_token").is_none());
        for scope in ["api:admin", "openid", "api:read offline_access"] {
            let form = [("grant_type", "client_credentials"), ("scope", scope)];
            assert_eq!(
                app.post_form(TOKEN, &form, m2m).await.error(),
                (400, "invalid_scope", "the client may not request one of the scopes"),
                "{scope}"
            );
        }
    }
}
