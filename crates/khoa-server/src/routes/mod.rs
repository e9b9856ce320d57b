//! One file per endpoint; this module wires them and the middleware.

pub(crate) mod account;
pub(crate) mod admin;
mod assets;
mod authorize;
mod consent;
mod discovery;
mod health;
mod introspect;
mod jwks;
mod login;
mod logout;
mod metrics;
mod revoke;
mod token;
mod userinfo;
pub(crate) mod views;

use crate::app::metrics::{RequestLabels, RouteLabels};
use crate::app::state::AppState;
use crate::dialects::{hutech, oneaccess, tconnect};
use crate::http::error::ApiError;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use khoa_core::discovery::paths;
use std::time::Instant;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

pub(crate) fn router(state: AppState) -> Router {
    let body_limit = state.settings.body_limit;
    let timeout = state.settings.request_timeout;
    let mut app = Router::new();
    // With `metrics.listen` set, /metrics is served there only.
    if state.settings.metrics_listen.is_none() {
        app = app.route("/metrics", get(metrics::metrics));
    }
    app.route(paths::DISCOVERY, get(discovery::openid_configuration))
        .route(paths::JWKS, get(jwks::jwks))
        .route("/health/alive", get(health::alive))
        .route("/health/ready", get(health::ready))
        .route(paths::AUTHORIZATION, get(authorize::get).post(authorize::post))
        .route("/oauth2/auth/login", post(login::post))
        .route("/oauth2/auth/login/factor", post(login::factor))
        .route("/oauth2/auth/login/enrol", post(login::enrol))
        .route("/oauth2/auth/login/passkey", post(login::passkey))
        .route("/oauth2/auth/continue", get(authorize::resume_after_login))
        .route("/oauth2/auth/consent", post(consent::post))
        .route(paths::TOKEN, post(token::post).options(token::preflight))
        .route(paths::REVOCATION, post(revoke::post).options(revoke::preflight))
        .route(paths::INTROSPECTION, post(introspect::post))
        .route(paths::USERINFO, get(userinfo::userinfo).post(userinfo::userinfo).options(userinfo::preflight))
        .route(paths::END_SESSION, get(logout::get).post(logout::post))
        .route("/oauth2/sessions/logout/confirm", post(logout::confirm))
        // The account page and what it mails (routes/account).
        .route("/", get(account::home::get))
        .route(account::home::CALLBACK_PATH, get(account::home::callback))
        .route("/account/profile", post(account::home::profile))
        .route("/account/password", post(account::home::password))
        .route("/account/reauthenticate", get(account::home::reauthenticate_get))
        .route("/account/totp/start", post(account::security::totp_start))
        .route("/account/totp", post(account::security::totp_confirm))
        .route("/account/factors/remove", post(account::security::remove))
        .route("/account/recovery-codes", post(account::security::recovery_codes))
        .route("/account/passkeys/start", post(account::security::passkey_start))
        .route("/account/passkeys", post(account::security::passkey_add))
        .route("/account/passkeys/rename", post(account::security::passkey_rename))
        .route("/account/sessions/end", post(account::home::end_session))
        .route("/account/sessions/end-all", post(account::home::end_all))
        .route("/account/consents/revoke", post(account::home::revoke_consent))
        .route("/account/password/forgot", get(account::password::forgot_get).post(account::password::forgot_post))
        .route("/account/password/reset", get(account::password::reset_get).post(account::password::reset_post))
        .route("/account/email/verify", get(account::verify::get).post(account::verify::post))
        .route("/account/email/report", get(account::verify::report_get).post(account::verify::report_post))
        .route("/account/register", get(account::register::get).post(account::register::post))
        .route(
            "/account/register/complete",
            get(account::register::complete_get).post(account::register::complete_post),
        )
        .route("/assets/khoa.css", get(assets::css))
        .route("/assets/theme.css", get(assets::theme))
        // Seed dialects: adapters over the same engine.
        .route(hutech::MOBILE_PATH, post(hutech::mobile))
        .route(hutech::WEB_PATH, post(hutech::web))
        .route(oneaccess::AUTHORIZE_PATH, get(authorize::get))
        .route(oneaccess::TOKEN_PATH, post(oneaccess::token))
        .route(oneaccess::USERINFO_PATH, get(userinfo::userinfo))
        .route(tconnect::LOGIN_PATH, post(tconnect::login))
        .route(tconnect::REFRESH_PATH, post(tconnect::refresh))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(middleware::from_fn_with_state(body_limit, refuse_oversized_bodies))
        .layer(middleware::from_fn(limit_uri))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// The listener of `admin.listen`: the admin API, health and metrics.
pub(crate) fn admin_router(state: AppState) -> Router {
    // The import's limit; every other admin route has the usual one of its own.
    let body_limit = admin::users::IMPORT_LIMIT.max(state.settings.body_limit);
    admin::router(state.clone())
        .layer(middleware::from_fn_with_state(body_limit, refuse_oversized_bodies))
        .layer(middleware::from_fn(limit_uri))
        .layer(middleware::from_fn(admin::problems_only))
        .layer(middleware::from_fn_with_state(state, observe))
}

/// The listener of `metrics.listen`: `/metrics` and the health checks, nothing else.
pub(crate) fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics::metrics))
        .route("/health/alive", get(health::alive))
        .route("/health/ready", get(health::ready))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(RequestBodyLimitLayer::new(1024))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, state.settings.request_timeout))
        .with_state(state)
}

/// `tls.redirect_listen`: every request, whatever its method, path or Host, is sent to
/// the same path and query at the issuer's https origin (308 keeps the method). The
/// origin is the configured one, never the request's Host, so the redirect cannot be
/// pointed elsewhere.
pub(crate) fn redirect_router(issuer: &str) -> Router {
    let origin =
        url::Url::parse(issuer).map(|u| u.origin().ascii_serialization()).unwrap_or_else(|_| issuer.to_string());
    Router::new()
        .fallback(move |uri: axum::http::Uri| {
            let to = format!("{origin}{}", uri.path_and_query().map_or("/", |p| p.as_str()));
            async move { (StatusCode::PERMANENT_REDIRECT, [(axum::http::header::LOCATION, to)], "") }
        })
        .layer(RequestBodyLimitLayer::new(1024))
}

/// The method as a metric label: the methods khoa serves, and `other` for anything
/// else, so invented methods cannot grow the label set (and /metrics) without bound.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Longest request URI (path and query), in bytes: far above any authorization request
/// a client sends, and far below what would cost memory.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// The most of an oversized body read (and dropped) before answering 413.
const MAX_DRAINED_BYTES: u64 = 1024 * 1024;

/// 413 for a body whose announced length is over the limit. Up to
/// [`MAX_DRAINED_BYTES`] of it is read first and dropped, so that the client has sent
/// it all when the connection closes (closing with unread bytes resets the connection,
/// and the client may lose the 413); larger bodies are not read at all.
async fn refuse_oversized_bodies(State(limit): State<usize>, req: Request, next: Next) -> Response {
    let announced =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let Some(length) = announced.filter(|n| *n > limit as u64) else {
        return next.run(req).await;
    };
    if length <= MAX_DRAINED_BYTES {
        let _ = axum::body::to_bytes(req.into_body(), MAX_DRAINED_BYTES as usize).await;
    }
    let body = serde_json::json!({
        "error": "invalid_request",
        "error_description": format!("the request body is larger than {limit} bytes"),
    });
    (StatusCode::PAYLOAD_TOO_LARGE, axum::Json(body)).into_response()
}

/// 414 for a URI longer than [`MAX_URI_BYTES`], before any handler parses it.
async fn limit_uri(req: Request, next: Next) -> Response {
    let uri = req.uri();
    let len = uri.path().len() + uri.query().map_or(0, |q| q.len() + 1);
    if len > MAX_URI_BYTES {
        return ApiError::UriTooLong(MAX_URI_BYTES).into_response();
    }
    next.run(req).await
}

/// Metrics, an access log line and baseline security headers for every response.
/// The log names the route pattern, never the query string (it can carry codes).
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    // Every label has a bounded set of values: known methods, route patterns (or
    // "unmatched"), and status codes.
    let method = method_label(req.method()).to_owned();
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".to_owned());
    // With otlp.endpoint, the request's span (exported as an OpenTelemetry span): the
    // route pattern, never the path or query; the client once known; the outcome.
    // Nothing a request carries as a secret is recorded. Without it, no span at all.
    let span = if !state.settings.trace_requests {
        tracing::Span::none()
    } else {
        tracing::info_span!(
            target: "khoa::http",
            "request",
            otel.name = %format_args!("{method} {route}"),
            otel.kind = "server",
            http.request.method = %method,
            http.route = %route,
            http.response.status_code = tracing::field::Empty,
            client_id = tracing::field::Empty,
            outcome = tracing::field::Empty,
        )
    };
    let mut res = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    let elapsed = started.elapsed();
    let status = res.status().as_u16();
    span.record("http.response.status_code", status);
    span.record(
        "outcome",
        match status {
            ..=399 => "ok",
            429 => "throttled",
            400..=499 => "refused",
            _ => "error",
        },
    );
    state.metrics.requests.get_or_create(&RequestLabels { method: method.clone(), route: route.clone(), status }).inc();
    state.metrics.latency.get_or_create(&RouteLabels { route: route.clone() }).observe(elapsed.as_secs_f64());
    tracing::info!(target: "khoa::http", %method, %route, status, latency_ms = elapsed.as_secs_f64() * 1000.0, "request");
    let h = res.headers_mut();
    // After these the request's body may be unread, so the connection cannot carry
    // another request: say so, or a keep-alive client sends its next request into a
    // connection the server is closing.
    if matches!(status, 408 | 413 | 414 | 431) {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if state.settings.secure_cookies() {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    }
    res
}

/// A JSON body with a public cache lifetime and open CORS: relying parties, including
/// single-page apps, fetch discovery and JWKS from other origins.
pub(crate) fn public_json(body: impl Into<String>, max_age: u32) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_str(&format!("public, max-age={max_age}"))
                    .unwrap_or(HeaderValue::from_static("no-cache")),
            ),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*")),
        ],
        body.into(),
    )
        .into_response()
}
