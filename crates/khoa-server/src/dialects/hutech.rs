//! HUTECH SSO (seed 002): the JSON code exchanges for mobile apps (PKCE) and web apps
//! (client secret), the `{"version","data"}` envelope, and the numbered Vietnamese
//! errors (HTTP 403; 400 for unreadable requests).
//!
//! | code | options.code | when |
//! | --- | --- | --- |
//! | [26] | -1 | mobile: the authorization code has expired |
//! | [27] | -2 | mobile: unknown code, a code of another app, an unknown or non-public app-key, or the user is gone |
//! | [28] | -3 | mobile: the code has no live challenge: already redeemed, or issued without PKCE |
//! | [29] | -4 | mobile: the code_verifier does not match |
//! | [30] | -5 | mobile: this app already redeemed a code with the same code_challenge |
//! | [31] | -6 | mobile: the login session of the code has ended |
//! | [32] | -7 | web: client_id unknown, not equal to app-key, or not a confidential client |
//! | [33] | -8 | web: wrong client_secret |
//! | [34] | -1 | web: the authorization code has expired |
//! | [35] | -2 | web: the code is unknown, another app's, already used, needs PKCE, or its session ended |
//! | [36] | -9 | either: unreadable request (no app-key, malformed JSON, missing field) — HTTP 400 |

use crate::app::state::AppState;
use crate::http::error::TokenError;
use crate::service::client_authn::authenticate_credentials;
use crate::service::grants::authorization_code::{
    exchange, CodeExchange, ExchangeError, Exchanged, RedirectUri, RefreshPolicy,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use khoa_core::client_auth::ClientCredentials;
use khoa_core::code::CodeError;
use khoa_core::session::handle_hash;
use serde_json::{json, Value};

pub const MOBILE_PATH: &str = "/api/authen/sso/mobile/exchange-access-token";
pub const WEB_PATH: &str = "/api/authen/sso/web/exchange-access-token";

/// An error of this dialect: number, `options.code`, Vietnamese message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HutechError(pub u8, pub i32, pub &'static str);

pub const CODE_EXPIRED: HutechError = HutechError(26, -1, "Authorization code đã hết hạn");
pub const NOT_FOUND: HutechError = HutechError(27, -2, "Không tìm thấy thông tin đăng nhập");
pub const CHALLENGE_EXPIRED: HutechError = HutechError(28, -3, "Code challenge đã hết hạn");
pub const WRONG_VERIFIER: HutechError = HutechError(29, -4, "Code verifier không chính xác");
pub const CHALLENGE_EXISTS: HutechError = HutechError(30, -5, "Code challenge đã tồn tại");
pub const NO_SESSION: HutechError = HutechError(31, -6, "Phiên đăng nhập chưa được khởi tạo");
pub const BAD_CLIENT: HutechError = HutechError(32, -7, "Client ID không hợp lệ");
pub const BAD_SECRET: HutechError = HutechError(33, -8, "Client secret không chính xác");
pub const WEB_CODE_EXPIRED: HutechError = HutechError(34, -1, "Authorization code đã hết hạn");
pub const WEB_BAD_CODE: HutechError = HutechError(35, -2, "Authorization code không hợp lệ");
pub const BAD_REQUEST: HutechError = HutechError(36, -9, "Dữ liệu yêu cầu không hợp lệ");

pub(crate) enum Failure {
    Dialect(HutechError, StatusCode, Option<String>),
    /// Too many wrong secrets for this client: the wrong-secret error with 429 and
    /// `Retry-After` (seconds).
    Throttled(i64),
    Engine(TokenError),
}

fn fail(e: HutechError) -> Failure {
    Failure::Dialect(e, StatusCode::FORBIDDEN, None)
}

fn bad_request(detail: &str) -> Failure {
    Failure::Dialect(BAD_REQUEST, StatusCode::BAD_REQUEST, Some(detail.to_string()))
}

/// The error envelope of seed 002.
fn error_response(
    state: &AppState,
    path: &str,
    e: HutechError,
    status: StatusCode,
    detail: Option<String>,
) -> Response {
    let message = match detail {
        Some(d) => format!("[{}] {}: {d}", e.0, e.2),
        None => format!("[{}] {}", e.0, e.2),
    };
    let body = json!({
        "statusCode": status.as_u16(),
        "timestamp": super::iso8601_millis(state.clock.now_millis()),
        "path": path,
        "errorMessage": format!("HTTP Exception: {} - {message}", status.as_u16()),
        "reasons": { "message": message, "options": { "code": e.1 } },
    });
    let mut res = (status, Json(body)).into_response();
    crate::service::grants::no_store(res.headers_mut());
    res
}

fn respond(state: &AppState, path: &str, result: Result<Exchanged, Failure>) -> Response {
    match result {
        Ok(x) => {
            // The same claim release as userinfo for the token's scope: a field the
            // scope does not grant is an empty string.
            let scope = khoa_core::scope::ScopeSet::parse(&x.response.scope).unwrap_or_default();
            let claims = khoa_core::tokens::userinfo_claims(&x.user, &scope, &state.settings.attribute_claims);
            let text = |claim: &str| claims.get(claim).and_then(Value::as_str).unwrap_or_default().to_string();
            let body = json!({
                "version": "1.0.0",
                "data": {
                    "token": x.response.access_token,
                    "contact_id": text("sub"),
                    "username": text("preferred_username"),
                    "data": {
                        "ho_ten": text("name"),
                        "email": text("email"),
                        "avatar": text("picture"),
                        "so_dien_thoai": text("phone_number"),
                    }
                }
            });
            let mut res = Json(body).into_response();
            crate::service::grants::no_store(res.headers_mut());
            res
        }
        Err(Failure::Dialect(e, status, detail)) => error_response(state, path, e, status, detail),
        Err(Failure::Throttled(retry_after)) => {
            let mut res = error_response(state, path, BAD_SECRET, StatusCode::TOO_MANY_REQUESTS, None);
            res.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(retry_after.max(1)));
            res
        }
        Err(Failure::Engine(e)) => e.into_response(),
    }
}

/// The `app-key` header and the JSON body's string fields.
pub(crate) fn read(headers: &HeaderMap, body: &[u8], fields: &[&str]) -> Result<(String, Vec<String>), Failure> {
    let app_key = headers
        .get("app-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| bad_request("thiếu header app-key"))?
        .to_string();
    let json: Value = serde_json::from_slice(body).map_err(|_| bad_request("nội dung không phải JSON hợp lệ"))?;
    let mut values = vec![];
    for f in fields {
        match json.get(*f).and_then(Value::as_str).filter(|v| !v.is_empty()) {
            Some(v) => values.push(v.to_string()),
            None => return Err(bad_request(&format!("thiếu trường {f}"))),
        }
    }
    Ok((app_key, values))
}

pub(crate) async fn mobile(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    respond(&state, MOBILE_PATH, mobile_exchange(&state, &headers, &body).await)
}

async fn mobile_exchange(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Exchanged, Failure> {
    let (app_key, v) = read(headers, body, &["authorization_code", "code_verifier"])?;
    let (code, verifier) = (&v[0], &v[1]);
    // The mobile exchange authenticates by PKCE alone: public clients only.
    let client = state.clients.get(state.store.as_ref(), &app_key).await.map_err(|e| Failure::Engine(e.into()))?;
    let client = client.filter(|c| c.is_public()).ok_or(fail(NOT_FOUND))?;
    let code_hash = handle_hash(code);
    let peeked = state.store.code(&code_hash).await.map_err(|e| Failure::Engine(e.into()))?;
    let peeked = peeked.filter(|c| c.client_id == client.client_id).ok_or(fail(NOT_FOUND))?;
    let Some(challenge) = &peeked.code_challenge else { return Err(fail(CHALLENGE_EXPIRED)) };
    if state
        .store
        .code_challenge_reused(&client.client_id, challenge, &code_hash)
        .await
        .map_err(|e| Failure::Engine(e.into()))?
    {
        return Err(fail(CHALLENGE_EXISTS));
    }
    let x = CodeExchange {
        code,
        redirect_uri: RedirectUri::NotCarried,
        code_verifier: Some(verifier),
        refresh: RefreshPolicy::Standard,
    };
    exchange(state, &client, x).await.map_err(|e| match e {
        ExchangeError::Code(CodeError::Expired) => fail(CODE_EXPIRED),
        ExchangeError::Code(CodeError::Replayed) => fail(CHALLENGE_EXPIRED),
        ExchangeError::Code(CodeError::WrongVerifier | CodeError::MissingVerifier | CodeError::UnexpectedVerifier) => {
            fail(WRONG_VERIFIER)
        }
        ExchangeError::Code(CodeError::Unknown | CodeError::OtherClient | CodeError::RedirectUri)
        | ExchangeError::UserGone => fail(NOT_FOUND),
        ExchangeError::SessionEnded => fail(NO_SESSION),
        ExchangeError::Other(t) => Failure::Engine(t),
    })
}

pub(crate) async fn web(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    respond(&state, WEB_PATH, web_exchange(&state, &headers, &body).await)
}

async fn web_exchange(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Exchanged, Failure> {
    let (app_key, v) = read(headers, body, &["authorization_code", "client_id", "client_secret"])?;
    let (code, client_id, secret) = (&v[0], &v[1], &v[2]);
    if *client_id != app_key {
        return Err(fail(BAD_CLIENT));
    }
    let client = state.clients.get(state.store.as_ref(), client_id).await.map_err(|e| Failure::Engine(e.into()))?;
    if client.is_none_or(|c| c.is_public()) {
        return Err(fail(BAD_CLIENT));
    }
    // The one client-authentication path: constant-time check, metric, throttle.
    let credentials = ClientCredentials::Post { client_id: client_id.clone(), secret: secret.clone() };
    let client = match authenticate_credentials(state, &credentials).await {
        Ok(client) => client,
        Err(TokenError::Throttled { retry_after }) => return Err(Failure::Throttled(retry_after)),
        Err(TokenError::Endpoint(_)) => return Err(fail(BAD_SECRET)),
        Err(e) => return Err(Failure::Engine(e)),
    };
    let x = CodeExchange {
        code,
        redirect_uri: RedirectUri::NotCarried,
        code_verifier: None,
        refresh: RefreshPolicy::Standard,
    };
    exchange(state, &client, x).await.map_err(|e| match e {
        ExchangeError::Code(CodeError::Expired) => fail(WEB_CODE_EXPIRED),
        ExchangeError::Other(t) => Failure::Engine(t),
        _ => fail(WEB_BAD_CODE),
    })
}

/// Every error of the dialect, one rule a test, in-process: the seed's envelope, its
/// number, `options.code` and status.
#[cfg(test)]
mod tests {
    use super::{MOBILE_PATH, WEB_PATH};
    use crate::testing::{Answer, TestApp, SECRET};
    use axum::body::Body;
    use axum::http::{header, Request};
    use khoa_core::client::{SecretChoice, SecretMethod};
    use khoa_core::pkce::CodeChallenge;
    use serde_json::json;

    fn verifier(n: u8) -> String {
        format!("{}{n}", "v".repeat(43))
    }

    async fn app() -> TestApp {
        let app = TestApp::new().await;
        app.client("hutech-mobile", |r| r.secret = SecretChoice::Public).await;
        app.client("hutech-web", |r| {
            r.secret = SecretChoice::Given(SECRET.into());
            r.secret_method = Some(SecretMethod::ClientSecretPost);
        })
        .await;
        app
    }

    /// A code of `client` for `openid profile`, with the challenge of `verifier(n)` when `n` is given.
    async fn code(app: &TestApp, handle: &str, client: &str, n: Option<u8>) {
        app.stored_code_with(handle, |c| {
            c.client_id = client.into();
            c.scope = "openid profile".into();
            c.code_challenge = n.map(|n| CodeChallenge::s256(&verifier(n)).as_str().to_string());
        })
        .await;
    }

    async fn call(app: &TestApp, path: &str, app_key: Option<&str>, body: String) -> Answer {
        let mut req = Request::post(path).header(header::CONTENT_TYPE, "application/json");
        if let Some(key) = app_key {
            req = req.header("app-key", key);
        }
        app.send(req.body(Body::from(body)).unwrap()).await
    }

    async fn mobile(app: &TestApp, app_key: &str, code: &str, verifier: &str) -> Answer {
        call(
            app,
            MOBILE_PATH,
            Some(app_key),
            json!({"authorization_code": code, "code_verifier": verifier}).to_string(),
        )
        .await
    }

    async fn web(app: &TestApp, app_key: &str, code: &str, client_id: &str, secret: &str) -> Answer {
        let body = json!({"authorization_code": code, "client_id": client_id, "client_secret": secret});
        call(app, WEB_PATH, Some(app_key), body.to_string()).await
    }

    /// `(status, number, options.code)`, the envelope checked around them.
    fn error(a: &Answer, path: &str) -> (u16, u8, i64) {
        let b = &a.body;
        let message = b["reasons"]["message"].as_str().unwrap_or_default();
        assert_eq!(b["statusCode"], a.status.as_u16(), "{b}");
        assert_eq!(b["path"], path);
        assert_eq!(b["timestamp"], "2027-01-15T08:00:00.000Z", "ISO 8601 in milliseconds, from the clock");
        assert_eq!(b["errorMessage"], format!("HTTP Exception: {} - {message}", a.status.as_u16()));
        assert_eq!(a.headers[header::CACHE_CONTROL], "no-store");
        (a.status.as_u16(), message[1..3].parse().unwrap_or(0), b["reasons"]["options"]["code"].as_i64().unwrap_or(0))
    }

    #[tokio::test]
    async fn a_mobile_exchange_gives_the_envelope_and_spends_the_challenge() {
        let app = app().await;
        code(&app, "m1", "hutech-mobile", Some(1)).await;
        let a = mobile(&app, "hutech-mobile", "m1", &verifier(1)).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!((a.body["version"].as_str(), a.body["data"]["username"].as_str()), (Some("1.0.0"), Some("sv01")));
        assert_eq!(a.body["data"]["data"]["ho_ten"], "Nguyễn Văn A");
        assert_eq!(a.body["data"]["data"]["email"], "", "no email scope, no email");
        // [28] the same code again; [30] another code with the redeemed challenge.
        assert_eq!(error(&mobile(&app, "hutech-mobile", "m1", &verifier(1)).await, MOBILE_PATH), (403, 28, -3));
        code(&app, "m2", "hutech-mobile", Some(1)).await;
        assert_eq!(error(&mobile(&app, "hutech-mobile", "m2", &verifier(1)).await, MOBILE_PATH), (403, 30, -5));
    }

    #[tokio::test]
    async fn mobile_27_unknown_code_or_app() {
        let app = app().await;
        code(&app, "m1", "hutech-mobile", Some(1)).await;
        for (key, handle) in [("hutech-mobile", "no-such-code"), ("nobody", "m1"), ("hutech-web", "m1")] {
            let a = mobile(&app, key, handle, &verifier(1)).await;
            assert_eq!(error(&a, MOBILE_PATH), (403, 27, -2), "{key} {handle}");
        }
        assert_eq!(mobile(&app, "hutech-mobile", "m1", &verifier(1)).await.status, 200, "the refusals spent nothing");
    }

    #[tokio::test]
    async fn mobile_28_a_code_without_pkce() {
        let app = app().await;
        code(&app, "m1", "hutech-mobile", None).await;
        assert_eq!(error(&mobile(&app, "hutech-mobile", "m1", &verifier(1)).await, MOBILE_PATH), (403, 28, -3));
    }

    #[tokio::test]
    async fn mobile_29_a_wrong_verifier() {
        let app = app().await;
        code(&app, "m1", "hutech-mobile", Some(1)).await;
        assert_eq!(error(&mobile(&app, "hutech-mobile", "m1", &verifier(9)).await, MOBILE_PATH), (403, 29, -4));
    }

    #[tokio::test]
    async fn mobile_26_an_expired_code() {
        let app = app().await;
        code(&app, "m1", "hutech-mobile", Some(1)).await;
        app.clock.advance(60);
        let a = mobile(&app, "hutech-mobile", "m1", &verifier(1)).await;
        assert_eq!(a.body["statusCode"], 403);
        assert_eq!(a.body["reasons"]["options"]["code"], -1);
        assert!(a.body["reasons"]["message"].as_str().unwrap().starts_with("[26] "), "{}", a.body);
    }

    #[tokio::test]
    async fn mobile_31_the_session_has_ended() {
        let app = app().await;
        code(&app, "m1", "hutech-mobile", Some(1)).await;
        let session = app.state.store.session_by_sid("sid-1").await.unwrap().unwrap();
        let reason = crate::service::logout::LogoutReason::RpInitiated;
        crate::service::logout::end_session(&app.state, &session, reason, None, None).await.unwrap();
        assert_eq!(error(&mobile(&app, "hutech-mobile", "m1", &verifier(1)).await, MOBILE_PATH), (403, 31, -6));
    }

    #[tokio::test]
    async fn web_32_and_33_the_client_and_its_secret() {
        let app = app().await;
        code(&app, "w1", "hutech-web", None).await;
        for (key, id, secret) in
            [("hutech-web", "hutech-mobile", SECRET), ("hutech-mobile", "hutech-mobile", "x"), ("ghost", "ghost", "x")]
        {
            assert_eq!(error(&web(&app, key, "w1", id, secret).await, WEB_PATH), (403, 32, -7), "{key} {id}");
        }
        let wrong = web(&app, "hutech-web", "w1", "hutech-web", "wrong-0123456789abcdef0123456789abcdef").await;
        assert_eq!(error(&wrong, WEB_PATH), (403, 33, -8));
        let a = web(&app, "hutech-web", "w1", "hutech-web", SECRET).await;
        assert_eq!((a.status.as_u16(), a.body["data"]["username"].as_str()), (200, Some("sv01")), "{}", a.body);
    }

    #[tokio::test]
    async fn web_34_and_35_the_code() {
        let app = app().await;
        let exchange = |handle: &'static str| web(&app, "hutech-web", handle, "hutech-web", SECRET);
        assert_eq!(error(&exchange("no-such-code").await, WEB_PATH), (403, 35, -2));
        code(&app, "w1", "hutech-web", None).await;
        assert_eq!(exchange("w1").await.status, 200);
        assert_eq!(error(&exchange("w1").await, WEB_PATH), (403, 35, -2), "a used code");
        code(&app, "w2", "hutech-mobile", Some(2)).await;
        assert_eq!(error(&exchange("w2").await, WEB_PATH), (403, 35, -2), "another app's code");
        code(&app, "w3", "hutech-web", None).await;
        app.clock.advance(60);
        let expired = exchange("w3").await;
        assert_eq!(expired.body["reasons"]["options"]["code"], -1);
        assert!(expired.body["reasons"]["message"].as_str().unwrap().starts_with("[34] "), "{}", expired.body);
    }

    #[tokio::test]
    async fn unreadable_requests_are_36_in_the_same_envelope() {
        let app = app().await;
        let cases = [
            (MOBILE_PATH, None, json!({"authorization_code": "c", "code_verifier": verifier(1)}).to_string()),
            (MOBILE_PATH, Some("hutech-mobile"), "{not json".to_string()),
            (MOBILE_PATH, Some("hutech-mobile"), json!({"authorization_code": "c"}).to_string()),
            (WEB_PATH, Some("hutech-web"), json!({"authorization_code": 5, "client_id": "x"}).to_string()),
            (WEB_PATH, Some("hutech-web"), String::from_utf8_lossy(b"\xff\xfe").to_string()),
        ];
        for (path, key, body) in cases {
            let a = call(&app, path, key, body.clone()).await;
            assert_eq!(error(&a, path), (400, 36, -9), "{body}");
        }
    }
}
