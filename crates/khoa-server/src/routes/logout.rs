//! `GET, POST /oauth2/sessions/logout` (OpenID Connect RP-Initiated Logout 1.0) and
//! `POST /oauth2/sessions/logout/confirm`.
//!
//! A valid `id_token_hint` that names this browser's own session (its cookie) ends it
//! at once; any other request is confirmed by the user first (CSRF-protected), and
//! the confirmation ends only this browser's session. An ID token alone never ends a
//! session: a leaked one, even an expired one, in a cross-site image would otherwise
//! log its user out (RP-Initiated Logout 1.0 §2, §3). A `post_logout_redirect_uri` is followed only
//! when it exactly matches one registered for the client; anything doubtful shows an
//! error page and never redirects.

use crate::app::state::AppState;
use crate::http::cookies;
use crate::http::error::ApiError;
use crate::http::forms::{form_pairs, query_pairs};
use crate::http::i18n::Locale;
use crate::http::pages::{self, LoggedOutPage, LogoutPage};
use crate::service::flow::current_session;
use crate::service::interaction::tokens_match;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use khoa_core::authorize::redirect_with;
use khoa_core::jose::jwt;
use khoa_core::tokens::IdTokenClaims;
use std::collections::HashMap;

const CSRF_COOKIE: &str = "khoa_logout_csrf";
/// How long the logged-out page lets front-channel iframes load before redirecting.
const FRONTCHANNEL_WAIT_SECONDS: u32 = 2;

struct LogoutRequest {
    params: HashMap<String, String>,
}

impl LogoutRequest {
    fn get(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }
}

fn locale(headers: &HeaderMap, r: &LogoutRequest) -> Locale {
    let ui: Vec<String> = r.get("ui_locales").unwrap_or("").split(' ').map(str::to_string).collect();
    Locale::negotiate(&ui, headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()))
}

/// The ID token an `id_token_hint` carries: ours (signature, issuer), expired or not.
fn verify_hint(state: &AppState, hint: &str) -> Option<IdTokenClaims> {
    let keys = state.keys.snapshot();
    let (_, claims): (_, IdTokenClaims) = jwt::decode(hint, |kid| keys.key(kid)).ok()?;
    (claims.iss == state.settings.issuer).then_some(claims)
}

/// What checking the parameters established.
struct Checked {
    hint: Option<IdTokenClaims>,
    /// The post-logout redirect with `state`, when it is registered for the client.
    redirect: Option<String>,
}

/// RP-Initiated Logout §2, §3: `Err` means an error page and no redirect.
async fn check(state: &AppState, r: &LogoutRequest) -> Result<Result<Checked, ()>, ApiError> {
    let hint = match r.get("id_token_hint") {
        Some(h) => match verify_hint(state, h) {
            Some(claims) => Some(claims),
            None => return Ok(Err(())),
        },
        None => None,
    };
    let client_id = match (r.get("client_id"), &hint) {
        (Some(id), Some(h)) if id != h.aud => return Ok(Err(())),
        (Some(id), _) => Some(id.to_string()),
        (None, Some(h)) => Some(h.aud.clone()),
        (None, None) => None,
    };
    let redirect = match r.get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => {
            let Some(client_id) = &client_id else { return Ok(Err(())) };
            let Some(client) = state.clients.get(state.store.as_ref(), client_id).await? else { return Ok(Err(())) };
            // Exact string match with a registered URI.
            if !client.post_logout_redirect_uris.iter().any(|registered| registered == uri) {
                return Ok(Err(()));
            }
            let mut params = vec![];
            if let Some(s) = r.get("state") {
                params.push(("state", s));
            }
            Some(redirect_with(uri, &params))
        }
    };
    Ok(Ok(Checked { hint, redirect }))
}

pub(crate) async fn get(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Result<Response, ApiError> {
    start(&state, &headers, LogoutRequest { params: query_pairs(&uri).into_iter().collect() }).await
}

pub(crate) async fn post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    start(&state, &headers, LogoutRequest { params: form_pairs(&body).into_iter().collect() }).await
}

async fn start(state: &AppState, headers: &HeaderMap, r: LogoutRequest) -> Result<Response, ApiError> {
    let locale = locale(headers, &r);
    let Ok(checked) = check(state, &r).await? else {
        return Ok(pages::error_page(
            &state.settings.branding,
            locale,
            StatusCode::BAD_REQUEST,
            locale.texts().logout_invalid,
        ));
    };
    let now = state.now();
    let session = current_session(state, headers, now).await?;
    let Some(hint) = checked.hint else {
        return Ok(confirmation_page(state, headers, locale, &r));
    };
    match session {
        // Nothing to end in this browser: only the redirect.
        None => Ok(logged_out(state, locale, vec![], checked.redirect)),
        // The hint names this browser's session (its expiry does not matter).
        Some(session) if hint_names(&hint, &session) => {
            let asked_by = r.get("client_id").or(Some(hint.aud.as_str()));
            let reason = crate::service::logout::LogoutReason::RpInitiated;
            let frames = crate::service::logout::end_session(state, &session, reason, asked_by, None).await?;
            Ok(logged_out(state, locale, frames, checked.redirect))
        }
        // Another session than this browser's: the user decides.
        Some(_) => Ok(confirmation_page(state, headers, locale, &r)),
    }
}

/// Whether an ID token was issued in `session`: its `sid`, or (an ID token without
/// one) its subject.
fn hint_names(hint: &IdTokenClaims, session: &khoa_core::session::Session) -> bool {
    match &hint.sid {
        Some(sid) => *sid == session.sid,
        None => hint.sub == session.user_id.to_string(),
    }
}

fn confirmation_page(state: &AppState, headers: &HeaderMap, locale: Locale, r: &LogoutRequest) -> Response {
    let t = locale.texts();
    // One token per browser, so several confirmation pages (tabs) all stay valid.
    let csrf = cookies::get(headers, CSRF_COOKIE)
        .filter(|c| c.len() == 43 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .unwrap_or_else(khoa_core::session::new_handle);
    let html = match pages::render(&LogoutPage {
        brand: &state.settings.branding,
        lang: locale.tag(),
        title: t.logout_title,
        t,
        csrf_token: &csrf,
        post_logout_redirect_uri: r.get("post_logout_redirect_uri"),
        state: r.get("state"),
        client_id: r.get("client_id"),
        ui_locales: r.get("ui_locales"),
    }) {
        Ok(h) => h,
        Err(e) => return e.into_response(),
    };
    let cookie = cookies::set(CSRF_COOKIE, &csrf, "/oauth2/sessions/logout", 1800, state.settings.secure_cookies());
    // The confirmation may end in a 303 to the (checked) post-logout redirect URI, and
    // browsers apply form-action to redirects after a submission.
    let target = r.get("post_logout_redirect_uri").and_then(pages::origin_of);
    pages::page(StatusCode::OK, html, target.as_deref(), vec![(header::SET_COOKIE, cookie)])
}

/// The user confirmed: end the browser's session.
pub(crate) async fn confirm(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let r = LogoutRequest { params: form_pairs(&body).into_iter().collect() };
    let locale = locale(&headers, &r);
    let cookie = cookies::get(&headers, CSRF_COOKIE);
    let form = r.get("csrf_token").unwrap_or("");
    if !cookie.is_some_and(|c| tokens_match(&c, form)) {
        return Ok(pages::error_page(
            &state.settings.branding,
            locale,
            StatusCode::BAD_REQUEST,
            locale.texts().expired,
        ));
    }
    // The hint never travels through the confirmation form; the rest is checked again.
    let Ok(checked) = check(&state, &r).await? else {
        return Ok(pages::error_page(
            &state.settings.branding,
            locale,
            StatusCode::BAD_REQUEST,
            locale.texts().logout_invalid,
        ));
    };
    let mut frames = vec![];
    if let Some(session) = current_session(&state, &headers, state.now()).await? {
        let reason = crate::service::logout::LogoutReason::Confirmed;
        frames = crate::service::logout::end_session(&state, &session, reason, r.get("client_id"), None).await?;
    }
    Ok(logged_out(&state, locale, frames, checked.redirect))
}

/// The logged-out page (front-channel iframes, then the redirect), or a plain 303 when
/// there is nothing to load; the session cookie is cleared either way.
fn logged_out(state: &AppState, locale: Locale, frames: Vec<String>, redirect: Option<String>) -> Response {
    let clear = cookies::set(cookies::SESSION_COOKIE, "", "/", 0, state.settings.secure_cookies());
    if frames.is_empty() {
        if let Some(next) = &redirect {
            let mut res = Redirect::to(next).into_response();
            if let Ok(v) = clear.parse() {
                res.headers_mut().append(header::SET_COOKIE, v);
            }
            return res;
        }
    }
    let t = locale.texts();
    let html = match pages::render(&LoggedOutPage {
        brand: &state.settings.branding,
        lang: locale.tag(),
        t,
        frames: &frames,
        redirect: redirect.as_deref(),
        wait_seconds: if frames.is_empty() { 0 } else { FRONTCHANNEL_WAIT_SECONDS },
    }) {
        Ok(h) => h,
        Err(e) => return e.into_response(),
    };
    // The CSP allows exactly these frames (a source is the URL without its query).
    let sources: Vec<String> = frames.iter().map(|f| f.split('?').next().unwrap_or(f).to_string()).collect();
    pages::page_with_frames(StatusCode::OK, html, None, &sources, vec![(header::SET_COOKIE, clear)])
}

/// RP-Initiated Logout refusals, in-process: an error page, never a redirect, and the
/// session stays.
#[cfg(test)]
mod tests {
    use crate::testing::{Answer, TestApp, CALLBACK, SECRET};
    use axum::http::header;
    use khoa_core::client::SecretChoice;
    use khoa_core::jose::{jwt, SigningAlgorithm, SigningKey};

    const BYE: &str = "https://app.example/bye";
    const LIBRARY_BYE: &str = "https://library.example/bye";
    const INVALID: &str = "This sign-out request is not valid";

    /// `web` (post-logout URI [`BYE`], a back-channel URI) and `library` (post-logout
    /// URI [`LIBRARY_BYE`]), each with an
    /// ID token of the session `sid-1`.
    async fn signed_in() -> (TestApp, String, String) {
        let app = TestApp::new().await;
        for id in ["web", "library"] {
            app.client(id, |r| {
                r.secret = SecretChoice::Given(SECRET.into());
                if id == "web" {
                    r.post_logout_redirect_uris = vec![BYE.into()];
                    r.backchannel_logout_uri = Some("https://app.example/bc".into());
                } else {
                    r.post_logout_redirect_uris = vec![LIBRARY_BYE.into()];
                }
            })
            .await;
        }
        let web = app.tokens_of_web(SECRET, "code-web").await;
        app.stored_code_with("code-library", |c| c.client_id = "library".into()).await;
        let form = [("grant_type", "authorization_code"), ("code", "code-library"), ("redirect_uri", CALLBACK)];
        let library = app.post_form("/oauth2/token", &form, Some(("library", SECRET))).await.body;
        let id_token = |v: &serde_json::Value| v["id_token"].as_str().expect("an ID token").to_string();
        (app, id_token(&web), id_token(&library))
    }

    async fn logout(app: &TestApp, params: &[(&str, &str)]) -> Answer {
        let query = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        let req = axum::http::Request::get(format!("/oauth2/sessions/logout?{query}"))
            .header(header::COOKIE, TestApp::session_cookie())
            .header(header::ACCEPT_LANGUAGE, "en")
            .body(axum::body::Body::empty())
            .unwrap();
        app.send(req).await
    }

    async fn session_is_active(app: &TestApp) -> bool {
        let session = app.state.store.session_by_sid("sid-1").await.unwrap().expect("the session");
        session.is_active(app.state.now())
    }

    #[tokio::test]
    async fn refusals_never_redirect_nor_end_the_session() {
        let (app, hint, library) = signed_in().await;
        let b64 = |v: serde_json::Value| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let payload = hint.split('.').nth(1).unwrap().to_string();
        let kid = hint.split('.').next().map(|h| {
            use base64::Engine;
            let h = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(h).unwrap();
            serde_json::from_slice::<serde_json::Value>(&h).unwrap()["kid"].clone()
        });
        let unsigned = format!("{}.{payload}.", b64(serde_json::json!({"alg": "none", "typ": "JWT"})));
        let unsigned_kid = format!("{}.{payload}.AAAA", b64(serde_json::json!({"alg": "none", "kid": kid})));
        let foreign = {
            use base64::Engine;
            let key = SigningKey::generate(SigningAlgorithm::RS256).unwrap();
            let claims: serde_json::Value =
                serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&payload).unwrap())
                    .unwrap();
            jwt::encode(&key, Some("JWT"), &claims).unwrap()
        };
        let cases: Vec<Vec<(&str, &str)>> = vec![
            vec![("id_token_hint", &unsigned), ("post_logout_redirect_uri", BYE)],
            vec![("id_token_hint", &unsigned_kid), ("post_logout_redirect_uri", BYE)],
            vec![("id_token_hint", &foreign), ("post_logout_redirect_uri", BYE)],
            vec![("id_token_hint", "garbage"), ("post_logout_redirect_uri", BYE)],
            // §2: client_id must be the hint's audience.
            vec![("id_token_hint", &hint), ("client_id", "library"), ("post_logout_redirect_uri", LIBRARY_BYE)],
            // §3: the URI must be registered for the hint's client, exactly.
            vec![("id_token_hint", &library), ("post_logout_redirect_uri", BYE)],
            vec![("id_token_hint", &hint), ("post_logout_redirect_uri", "https://app.example/bye/extra")],
            vec![("id_token_hint", &hint), ("post_logout_redirect_uri", "https://app.example/bye?x=1")],
            vec![("id_token_hint", &hint), ("post_logout_redirect_uri", "https://evil.example/")],
            vec![("post_logout_redirect_uri", BYE)],
            vec![("client_id", "ghost"), ("post_logout_redirect_uri", BYE)],
        ];
        for params in cases {
            let a = logout(&app, &params).await;
            assert_eq!((a.status.as_u16(), a.location()), (400, ""), "{params:?}");
            assert!(a.text.contains(INVALID), "{params:?}: {}", a.text);
            assert!(!a.text.contains("http-equiv=\"refresh\""), "{params:?}");
            assert!(session_is_active(&app).await, "a refused logout must not end the session: {params:?}");
        }
        assert_eq!(app.rows("logout_deliveries").await, 0, "no notice for a refused logout");
    }

    #[tokio::test]
    async fn a_valid_hint_ends_the_session_and_goes_back_with_state() {
        let (app, hint, _) = signed_in().await;
        let a = logout(&app, &[("id_token_hint", &hint), ("post_logout_redirect_uri", BYE), ("state", "x y")]).await;
        assert_eq!((a.status.as_u16(), a.location()), (303, "https://app.example/bye?state=x+y"), "{}", a.text);
        assert!(a.cookies().contains(&format!("{}=", crate::http::cookies::SESSION_COOKIE)), "the cookie is cleared");
        assert!(!session_is_active(&app).await);
        assert_eq!(app.rows("logout_deliveries").await, 1, "a back-channel notice for web");
    }

    #[tokio::test]
    async fn without_a_hint_the_user_confirms_with_the_pages_token() {
        let (app, _, _) = signed_in().await;
        let page = logout(&app, &[("client_id", "web"), ("post_logout_redirect_uri", BYE)]).await;
        assert_eq!(page.status, 200, "{}", page.text);
        assert!(session_is_active(&app).await, "nothing ends before the user confirms");
        let csrf = crate::testing::input(&page.text, "csrf_token").expect("the form's token");
        let confirm = |cookie: String, token: String| {
            let body = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs([("csrf_token", token.as_str()), ("client_id", "web"), ("post_logout_redirect_uri", BYE)])
                .finish();
            let req = axum::http::Request::post("/oauth2/sessions/logout/confirm")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::COOKIE, cookie)
                .body(axum::body::Body::from(body))
                .unwrap();
            app.send(req)
        };
        // A forged confirmation (no cookie of the page, or another token) ends nothing.
        let cookie_of_page = page.cookies().into_iter().find(|c| c.starts_with("khoa_logout_csrf=")).unwrap();
        let forged = confirm(TestApp::session_cookie(), csrf.clone()).await;
        assert_eq!(forged.status, 400);
        let wrong = confirm(format!("{}; {cookie_of_page}", TestApp::session_cookie()), "x".repeat(43)).await;
        assert_eq!(wrong.status, 400);
        assert!(session_is_active(&app).await);
        let done = confirm(format!("{}; {cookie_of_page}", TestApp::session_cookie()), csrf).await;
        assert_eq!((done.status.as_u16(), done.location()), (303, BYE), "{}", done.text);
        assert!(!session_is_active(&app).await);
    }
}
