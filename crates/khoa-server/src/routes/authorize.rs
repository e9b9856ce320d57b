//! `GET, POST /oauth2/auth` (RFC 6749 §4.1.1, OIDC Core §3.1.2) and
//! `GET /oauth2/auth/continue` (after the login form).

use crate::app::state::AppState;
use crate::http::error::ApiError;
use crate::http::forms::{form_pairs, query_pairs};
use crate::http::i18n::Locale;
use crate::http::pages;
use crate::routes::views;
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
    if let Some(client) = &client {
        tracing::Span::current().record("client_id", client.client_id.as_str());
    }
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
    let next = flow::proceed(state, &flow, session, None, false).await?;
    views::render(state, &flow, None, next).await
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
        Err(locale) => return Ok(views::expired(&state, locale)),
    };
    let session = current_session(&state, &headers, state.now()).await?;
    // The login of this interaction is the session of this browser.
    let logged_in_now = matches!((&session, &interaction.sid), (Some(s), Some(sid)) if &s.sid == sid);
    let current = Some((q.interaction.as_str(), &interaction));
    let next = flow::proceed(&state, &flow, session, current, logged_in_now).await?;
    views::render(&state, &flow, current, next).await
}

/// The authorization endpoint's refusals as the browser and the client see them,
/// in-process. (Which request is refused for what is tabled in khoa-core's
/// `authorize` tests; these check how each kind of refusal is answered.)
#[cfg(test)]
mod tests {
    use crate::testing::{Answer, TestApp, CALLBACK, CHALLENGE};
    use axum::body::Body;
    use axum::http::{header, Request};
    use khoa_core::client::SecretChoice;

    const LOOPBACK: &str = "http://127.0.0.1/callback";
    const STATE: &str = "s&t=ä";

    async fn app() -> TestApp {
        let app = TestApp::new().await;
        app.client("web", |r| {
            r.secret = SecretChoice::Given("0123456789abcdef0123456789abcdef".into());
            r.redirect_uris = vec![CALLBACK.into(), LOOPBACK.into()];
        })
        .await;
        app.client("spa", |r| r.secret = SecretChoice::Public).await;
        app
    }

    /// A well-formed request of `web` with `changes` (an empty value removes the parameter).
    fn url(changes: &[(&str, &str)]) -> String {
        let mut params =
            vec![("client_id", "web"), ("redirect_uri", CALLBACK), ("response_type", "code"), ("scope", "openid")];
        params.push(("state", STATE));
        params.retain(|(k, _)| !changes.iter().any(|(c, _)| c == k));
        params.extend(changes.iter().filter(|(_, v)| !v.is_empty()));
        let query = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        format!("/oauth2/auth?{query}")
    }

    /// The error a 303 back to the client carries, with `state` and `iss` checked.
    fn redirected_error(a: &Answer) -> (String, String) {
        assert_eq!(a.status, 303, "{}", a.text);
        assert!(a.location().starts_with(&format!("{CALLBACK}?")), "{}", a.location());
        let q = a.redirect_query();
        assert_eq!(q.get("state").map(String::as_str), Some(STATE), "state comes back exactly");
        assert_eq!(q.get("iss").map(String::as_str), Some("https://sso.example.vn"), "RFC 9207");
        (q["error"].clone(), q["error_description"].clone())
    }

    #[tokio::test]
    async fn an_untrusted_client_or_redirect_uri_gets_a_page_never_a_redirect() {
        // RFC 6749 §4.1.2.1.
        let app = app().await;
        let cases = [
            (vec![("client_id", "nobody")], "unknown client."),
            (vec![("client_id", "")], "the request has no client_id."),
            (
                vec![("redirect_uri", "https://app.example/cb/extra")],
                "the redirect_uri is not registered for this client.",
            ),
            (
                vec![("redirect_uri", "https://app.example/cb?x=1")],
                "the redirect_uri is not registered for this client.",
            ),
            (vec![("redirect_uri", "https://evil.example/cb")], "the redirect_uri is not registered for this client."),
            (vec![("redirect_uri", "")], "the request has no redirect_uri and the client registered several."),
        ];
        let in_english = |uri: String| {
            let req = Request::get(uri).header(header::ACCEPT_LANGUAGE, "en").body(Body::empty()).unwrap();
            app.send(req)
        };
        for (changes, message) in cases {
            let a = in_english(url(&changes)).await;
            assert_eq!(a.status, 400, "{changes:?}");
            assert_eq!(a.location(), "", "{changes:?}");
            assert!(a.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
            assert!(a.text.contains(message), "{changes:?}: {}", a.text);
        }
        let twice = format!("{}&client_id=spa", url(&[]));
        assert!(in_english(twice).await.text.contains("the parameter client_id appears more than once."));
    }

    #[tokio::test]
    async fn the_page_is_in_vietnamese_unless_the_browser_asks_for_english() {
        let app = app().await;
        let a = app.get(&url(&[("client_id", "nobody")]), &[]).await;
        assert_eq!(a.status, 400);
        assert!(a.text.contains("Ứng dụng không tồn tại."), "{}", a.text);
    }

    #[tokio::test]
    async fn a_loopback_redirect_uri_may_use_any_port() {
        // RFC 8252 §7.3.
        let app = app().await;
        let a = app.get(&url(&[("redirect_uri", "http://127.0.0.1:5555/callback")]), &[]).await;
        assert_eq!(a.status, 200, "the login page: {}", a.text);
        let a = app.get(&url(&[("redirect_uri", "http://127.0.0.1:5555/other")]), &[]).await;
        assert_eq!(a.status, 400);
    }

    #[tokio::test]
    async fn other_refusals_go_back_to_the_client() {
        let app = app().await;
        let cases = [
            (vec![("response_type", "")], "invalid_request", "response_type is required"),
            (vec![("response_type", "token")], "unsupported_response_type", "only response_type=code is supported"),
            (
                vec![("response_type", "code id_token")],
                "unsupported_response_type",
                "only response_type=code is supported",
            ),
            (
                vec![("code_challenge", CHALLENGE), ("code_challenge_method", "plain")],
                "invalid_request",
                "code_challenge_method must be S256",
            ),
            (
                vec![("code_challenge", "short"), ("code_challenge_method", "S256")],
                "invalid_request",
                "code_challenge must be 43 base64url characters",
            ),
            (vec![("client_id", "spa")], "invalid_request", "public clients must send a PKCE code_challenge (S256)"),
            (vec![("prompt", "none login")], "invalid_request", "prompt=none cannot be combined with other values"),
            (vec![("prompt", "always")], "invalid_request", "unknown prompt value"),
            (vec![("max_age", "-5")], "invalid_request", "max_age must be a non-negative integer"),
            (
                vec![("request", "eyJhbGciOiJub25lIn0.e30.")],
                "request_not_supported",
                "request objects are not supported",
            ),
            (vec![("request_uri", "https://x.example/r")], "request_uri_not_supported", "request_uri is not supported"),
            (vec![("scope", "openid admin")], "invalid_scope", "the client may not request one of the scopes"),
            (
                vec![("id_token_hint", "not.a.jwt")],
                "invalid_request",
                "id_token_hint is not an ID token issued by this server",
            ),
            (vec![("prompt", "none")], "login_required", "the user is not logged in"),
        ];
        for (changes, error, description) in cases {
            let a = app.get(&url(&changes), &[]).await;
            assert_eq!(redirected_error(&a), (error.to_string(), description.to_string()), "{changes:?}");
        }
    }

    #[tokio::test]
    async fn form_post_answers_with_an_auto_submitting_form() {
        // OAuth 2.0 Form Post Response Mode §2.
        let app = app().await;
        let a = app.get(&url(&[("response_mode", "form_post"), ("prompt", "none")]), &[]).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.location(), "");
        assert!(a.text.contains(&format!("action=\"{CALLBACK}\"")), "{}", a.text);
        assert!(a.text.contains("name=\"error\" value=\"login_required\""), "{}", a.text);
    }

    #[tokio::test]
    async fn optional_and_unknown_parameters_are_accepted_by_get_and_post() {
        let app = app().await;
        let accepted = [
            ("scope", "profile openid"),
            ("display", "page"),
            ("claims_locales", "vi"),
            ("acr_values", "1"),
            ("foo", "bar"),
        ];
        let get = app.get(&url(&accepted), &[]).await;
        assert_eq!(get.status, 200, "{}", get.text);
        assert!(get.text.contains("action=\"/oauth2/auth/login\""));
        let query = url(&accepted);
        let form = url::form_urlencoded::parse(query.split_once('?').unwrap().1.as_bytes()).into_owned();
        let form: Vec<(String, String)> = form.collect();
        let refs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let post = app.post_form("/oauth2/auth", &refs, None).await;
        assert_eq!(post.status, 200, "{}", post.text);
        assert!(post.text.contains("action=\"/oauth2/auth/login\""));
    }
}
