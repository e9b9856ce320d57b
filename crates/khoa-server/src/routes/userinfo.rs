//! `GET, POST /userinfo` (OIDC Core §5.3) with a Bearer access token (RFC 6750 §2.1 in
//! the header, §2.2 in a form body).

use crate::app::state::AppState;
use crate::http::cors::Verdict;
use crate::http::forms::form_pairs;
use crate::service::tokens::Found;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use khoa_core::scope::ScopeSet;
use khoa_core::tokens::userinfo_claims;

/// RFC 6750 §3 errors.
enum BearerError {
    /// No token at all: 401 with a bare challenge (§3.1: no error code).
    Missing,
    InvalidRequest(&'static str),
    InvalidToken(&'static str),
    Store(khoa_store::StoreError),
}

impl IntoResponse for BearerError {
    fn into_response(self) -> Response {
        let (status, challenge, body) = match self {
            Self::Missing => (StatusCode::UNAUTHORIZED, "Bearer realm=\"khoa\"".to_string(), None),
            Self::InvalidRequest(d) => (
                StatusCode::BAD_REQUEST,
                format!("Bearer realm=\"khoa\", error=\"invalid_request\", error_description=\"{d}\""),
                Some(("invalid_request", d)),
            ),
            Self::InvalidToken(d) => (
                StatusCode::UNAUTHORIZED,
                format!("Bearer realm=\"khoa\", error=\"invalid_token\", error_description=\"{d}\""),
                Some(("invalid_token", d)),
            ),
            Self::Store(e) => return crate::http::error::ApiError::from(e).into_response(),
        };
        let mut res = match body {
            Some((error, description)) => {
                (status, Json(serde_json::json!({"error": error, "error_description": description}))).into_response()
            }
            None => status.into_response(),
        };
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

fn bearer_token(method: &Method, headers: &HeaderMap, body: &[u8]) -> Result<String, BearerError> {
    let from_header = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(v) => {
            let v = v.to_str().map_err(|_| BearerError::InvalidRequest("malformed Authorization header"))?;
            match v.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
                    Some(token.trim().to_string())
                }
                _ => return Err(BearerError::InvalidRequest("the Authorization header must be Bearer")),
            }
        }
    };
    let form_post = *method == Method::POST
        && headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let from_body =
        if form_post { form_pairs(body).into_iter().find(|(k, _)| k == "access_token").map(|(_, v)| v) } else { None };
    match (from_header, from_body) {
        (Some(_), Some(_)) => Err(BearerError::InvalidRequest("send the access token once, not in two places")),
        (Some(t), None) | (None, Some(t)) => Ok(t),
        (None, None) => Err(BearerError::Missing),
    }
}

pub(crate) async fn userinfo(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut verdict = Verdict::of(&headers, None);
    let result = answer(&state, &method, &headers, &body, &mut verdict).await;
    // The app may read the Bearer challenge of an error.
    verdict.respond(&state, result, Some("WWW-Authenticate")).await
}

/// A CORS preflight (browser apps).
pub(crate) async fn preflight(State(state): State<AppState>, headers: HeaderMap) -> Response {
    crate::http::cors::preflight(&state, &headers, "GET, POST").await
}

async fn answer(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
    verdict: &mut Verdict,
) -> Result<Response, BearerError> {
    let token = bearer_token(method, headers, body)?;
    // A JWT is checked against its signature and then the database, the authority on
    // revocation; an opaque token is found in the database by its hash.
    let found = crate::service::tokens::access_token(state, &token).await.map_err(BearerError::Store)?;
    let Some(Found::Access(claims, record)) = found else {
        return Err(BearerError::InvalidToken("the access token is invalid or has been revoked"));
    };
    // Judged by the client the token was issued to (`cors.rs`).
    if *verdict != Verdict::NoOrigin {
        let client = state.clients.get(state.store.as_ref(), &record.client_id).await.map_err(BearerError::Store)?;
        *verdict = Verdict::of(headers, client.as_deref());
        if verdict.refused() {
            return Err(BearerError::InvalidRequest("the request's Origin is not allowed for this token's client"));
        }
    }
    let now = state.now();
    if now >= claims.exp {
        return Err(BearerError::InvalidToken("the access token has expired"));
    }
    if !crate::service::tokens::access_token_is_live(&claims, &record, now) {
        return Err(BearerError::InvalidToken("the access token has been revoked"));
    }
    // A client_credentials token speaks for a client, not a user.
    let Some(user_id) = record.user_id.filter(|id| id.to_string() == claims.sub) else {
        return Err(BearerError::InvalidToken("the access token has no user"));
    };
    let user = state
        .users
        .get(state.store.as_ref(), user_id)
        .await
        .map_err(BearerError::Store)?
        .ok_or(BearerError::InvalidToken("the user no longer exists"))?;
    let scope = ScopeSet::parse(&claims.scope).unwrap_or_default();
    let mut res = Json(userinfo_claims(&user, &scope, &state.settings.attribute_claims)).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// RFC 6750 refusals at userinfo, one rule a test, in-process on a manual clock.
#[cfg(test)]
mod tests {
    use crate::testing::{Answer, TestApp, CALLBACK, SECRET};
    use axum::body::Body;
    use axum::http::{header, Request};
    use khoa_core::client::{GrantType, SecretChoice};

    /// An app with the client `web` and an access token of `sv01` for it.
    async fn with_token() -> (TestApp, String) {
        let app = TestApp::new().await;
        app.client("web", |r| r.secret = SecretChoice::Given(SECRET.into())).await;
        app.stored_code("code").await;
        let form = [("grant_type", "authorization_code"), ("code", "code"), ("redirect_uri", CALLBACK)];
        let answer = app.post_form("/oauth2/token", &form, Some(("web", SECRET))).await;
        let token = answer.body["access_token"].as_str().expect("an access token").to_string();
        (app, token)
    }

    async fn userinfo(app: &TestApp, authorization: Option<&str>) -> Answer {
        let mut req = Request::get("/userinfo");
        if let Some(a) = authorization {
            req = req.header(header::AUTHORIZATION, a);
        }
        app.send(req.body(Body::empty()).unwrap()).await
    }

    fn challenge(a: &Answer) -> &str {
        a.headers.get(header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    #[tokio::test]
    async fn a_live_token_gets_the_claims_of_its_scope() {
        let (app, token) = with_token().await;
        let a = userinfo(&app, Some(&format!("Bearer {token}"))).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.body["preferred_username"], serde_json::Value::Null, "scope openid only: no profile claims");
        assert!(a.body["sub"].is_string());
    }

    /// An organisation's scope releases the attributes configured for it, and only to
    /// a token of that scope; discovery lists the scope and its claims.
    #[tokio::test]
    async fn attributes_are_released_under_their_scope() {
        let app = TestApp::with_settings(|s| {
            s.attribute_claims = khoa_core::tokens::AttributeClaims::new([(
                "student".to_string(),
                vec!["student_id".to_string(), "class".to_string()],
            )])
            .unwrap();
        })
        .await;
        app.client("web", |r| {
            r.secret = SecretChoice::Given(SECRET.into());
            r.scopes = Some("openid profile student".into());
        })
        .await;
        let attributes = [("student_id", "2180601234"), ("class", "20DTHA1"), ("locker", "17")]
            .map(|(k, v)| (k.to_string(), v.to_string()));
        let user = khoa_core::user::NewUser { attributes: attributes.into(), ..crate::testing::test_user() };
        app.state.store.insert_user(&user, &crate::testing::user_event()).await.unwrap();
        let mut tokens = vec![];
        for (handle, scope) in [("c1", "openid student"), ("c2", "openid profile")] {
            app.stored_code_with(handle, |c| c.scope = scope.into()).await;
            let form = [("grant_type", "authorization_code"), ("code", handle), ("redirect_uri", CALLBACK)];
            let answer = app.post_form("/oauth2/token", &form, Some(("web", SECRET))).await;
            tokens.push(answer.body["access_token"].as_str().expect("an access token").to_string());
        }
        let student = userinfo(&app, Some(&format!("Bearer {}", tokens[0]))).await;
        assert_eq!(student.status, 200);
        let sub = student.body["sub"].clone();
        assert_eq!(student.body, serde_json::json!({"sub": sub, "student_id": "2180601234", "class": "20DTHA1"}));
        let profile = userinfo(&app, Some(&format!("Bearer {}", tokens[1]))).await;
        assert!(profile.body.get("student_id").is_none() && profile.body.get("locker").is_none(), "{}", profile.body);
        let discovery = app.get("/.well-known/openid-configuration", &[]).await;
        assert!(discovery.body["scopes_supported"].as_array().unwrap().contains(&"student".into()));
        let claims = discovery.body["claims_supported"].as_array().unwrap();
        assert!(claims.contains(&"student_id".into()) && claims.contains(&"class".into()));
        assert!(!claims.contains(&"locker".into()));
    }

    #[tokio::test]
    async fn no_token_gets_a_bare_challenge() {
        let (app, _) = with_token().await;
        let a = userinfo(&app, None).await;
        assert_eq!((a.status.as_u16(), challenge(&a)), (401, "Bearer realm=\"khoa\""));
    }

    #[tokio::test]
    async fn a_token_expires_at_its_expiry_second() {
        let (app, token) = with_token().await;
        let bearer = format!("Bearer {token}");
        app.clock.advance(3599);
        assert_eq!(userinfo(&app, Some(&bearer)).await.status, 200);
        app.clock.advance(1);
        let a = userinfo(&app, Some(&bearer)).await;
        assert_eq!(a.error(), (401, "invalid_token", "the access token has expired"));
        assert_eq!(
            challenge(&a),
            "Bearer realm=\"khoa\", error=\"invalid_token\", error_description=\"the access token has expired\""
        );
    }

    #[tokio::test]
    async fn a_revoked_token_is_refused() {
        let (app, token) = with_token().await;
        let revoked = app.post_form("/oauth2/revoke", &[("token", &token)], Some(("web", SECRET))).await;
        assert_eq!(revoked.status, 200);
        let a = userinfo(&app, Some(&format!("Bearer {token}"))).await;
        assert_eq!(a.error(), (401, "invalid_token", "the access token has been revoked"));
    }

    #[tokio::test]
    async fn a_token_of_no_user_is_refused() {
        let app = TestApp::new().await;
        app.client("m2m", |r| {
            r.secret = SecretChoice::Given(SECRET.into());
            r.grant_types = Some(vec![GrantType::ClientCredentials]);
            r.redirect_uris = vec![];
            r.scopes = Some("api".into());
        })
        .await;
        let answer =
            app.post_form("/oauth2/token", &[("grant_type", "client_credentials")], Some(("m2m", SECRET))).await;
        let token = answer.body["access_token"].as_str().expect("a token").to_string();
        let a = userinfo(&app, Some(&format!("Bearer {token}"))).await;
        assert_eq!(a.error(), (401, "invalid_token", "the access token has no user"));
    }

    #[tokio::test]
    async fn what_is_not_our_token_is_invalid() {
        let (app, _) = with_token().await;
        for token in ["nope", "a.b.c", "eyJhbGciOiJub25lIn0.e30."] {
            let a = userinfo(&app, Some(&format!("Bearer {token}"))).await;
            assert_eq!(a.error(), (401, "invalid_token", "the access token is invalid or has been revoked"), "{token}");
        }
    }

    /// The token response of `web` for a code of the scope `scope`.
    async fn tokens(app: &TestApp, scope: &'static str) -> serde_json::Value {
        let handle = format!("code-{}", scope.replace(' ', "-"));
        app.stored_code_with(&handle, |c| c.scope = scope.into()).await;
        let form = [("grant_type", "authorization_code"), ("code", &handle), ("redirect_uri", CALLBACK)];
        app.post_form("/oauth2/token", &form, Some(("web", SECRET))).await.body
    }

    #[tokio::test]
    async fn the_email_scope_releases_the_email_claims_only() {
        let (app, _) = with_token().await;
        let token = tokens(&app, "openid email").await;
        let a = userinfo(&app, Some(&format!("Bearer {}", token["access_token"].as_str().unwrap()))).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.headers[header::CACHE_CONTROL], "no-store");
        let sub = a.body["sub"].clone();
        assert_eq!(
            a.body,
            serde_json::json!({"sub": sub, "email": "sv01@hutech.edu.vn", "email_verified": true}),
            "no profile claims without the profile scope"
        );
    }

    #[tokio::test]
    async fn the_token_comes_once_in_the_header_or_a_post_form() {
        // RFC 6750 §2.1 and §2.2.
        let (app, token) = with_token().await;
        let post = |authorization: Option<String>, form: Option<String>| {
            let mut req = Request::post("/userinfo");
            if let Some(a) = authorization {
                req = req.header(header::AUTHORIZATION, a);
            }
            if form.is_some() {
                req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            }
            app.send(req.body(Body::from(form.unwrap_or_default())).unwrap())
        };
        let bearer = format!("Bearer {token}");
        let in_form = format!("access_token={token}");
        assert_eq!(post(Some(bearer.clone()), None).await.status, 200);
        assert_eq!(post(None, Some(in_form.clone())).await.status, 200);
        assert_eq!(
            post(Some(bearer), Some(in_form)).await.error(),
            (400, "invalid_request", "send the access token once, not in two places")
        );
        assert_eq!(
            userinfo(&app, Some(&format!("Basic {token}"))).await.error(),
            (400, "invalid_request", "the Authorization header must be Bearer")
        );
    }

    #[tokio::test]
    async fn a_tampered_token_or_an_id_token_is_invalid() {
        use base64::Engine;
        let (app, _) = with_token().await;
        let body = tokens(&app, "openid profile").await;
        let at = body["access_token"].as_str().unwrap();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut parts: Vec<String> = at.split('.').map(str::to_string).collect();
        let mut claims: serde_json::Value = serde_json::from_slice(&b64.decode(&parts[1]).unwrap()).unwrap();
        claims["scope"] = "openid profile email phone".into();
        parts[1] = b64.encode(claims.to_string());
        let tampered = parts.join(".");
        for token in [tampered.as_str(), body["id_token"].as_str().unwrap()] {
            let a = userinfo(&app, Some(&format!("Bearer {token}"))).await;
            assert_eq!(a.error(), (401, "invalid_token", "the access token is invalid or has been revoked"));
        }
        assert_eq!(userinfo(&app, Some(&format!("Bearer {at}"))).await.status, 200, "the original still works");
    }
}
