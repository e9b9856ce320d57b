//! The admin API (`admin.listen`): JSON resources under `/admin`, authenticated by
//! access tokens khoa issued by client_credentials with `khoa:admin` (everything) or
//! `khoa:admin.read` (reads). Errors are RFC 9457 problem documents; the OpenAPI
//! document is generated from these handlers (`/admin/openapi.json`).

mod audit;
mod clients;
mod deliveries;
mod keys;
pub(crate) mod openapi;
mod partners;
pub(crate) mod users;

use crate::app::state::AppState;
use crate::http::problem::Problem;
use crate::service::admin::{ChangeError, Who};
use crate::service::tokens::{self, Found};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use khoa_core::admin::{permit, Access, Denial, Presented};
use khoa_core::audit::Actor;
use khoa_core::scope::{ScopeSet, ADMIN, ADMIN_READ};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

/// Largest page of a listing.
pub const MAX_LIMIT: u32 = 500;
/// A listing's page when `limit` is not given.
pub const DEFAULT_LIMIT: u32 = 100;

/// The admin listener's application: `/admin/*` (authenticated), the OpenAPI document,
/// health and metrics.
pub(crate) fn router(state: AppState) -> Router {
    let resources = Router::new()
        .route("/admin/clients", get(clients::list).post(clients::create))
        .route(
            "/admin/clients/{client_id}",
            get(clients::show).put(clients::replace).patch(clients::patch).delete(clients::delete),
        )
        .route("/admin/clients/{client_id}/secret", axum::routing::post(clients::rotate_secret))
        .route("/admin/users", get(users::list).post(users::create))
        .route("/admin/users/{id}", get(users::show).patch(users::patch).delete(users::delete))
        .route("/admin/users/{id}/disable", axum::routing::post(users::disable))
        .route("/admin/users/{id}/enable", axum::routing::post(users::enable))
        .route("/admin/users/{id}/password", axum::routing::put(users::set_password))
        .route("/admin/users/{id}/revoke-sessions", axum::routing::post(users::revoke_sessions))
        .route("/admin/users/{id}/sessions", get(users::sessions))
        .route("/admin/users/{id}/consents", get(users::consents))
        .route("/admin/users/{id}/methods", get(users::methods))
        .route("/admin/users/{id}/reset-mfa", axum::routing::post(users::reset_mfa))
        .route("/admin/keys", get(keys::list))
        .route("/admin/keys/rotate", axum::routing::post(keys::rotate_keys))
        .route("/admin/partners", get(partners::list).post(partners::create))
        .route("/admin/partners/{code}", get(partners::show).delete(partners::delete))
        .route("/admin/backchannel-deliveries", get(deliveries::list))
        .route("/admin/backchannel-deliveries/{id}/retry", axum::routing::post(deliveries::retry))
        .route("/admin/audit-events", get(audit::list))
        .layer(RequestBodyLimitLayer::new(state.settings.body_limit))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    // An import's body is large: a limit of its own.
    let import = Router::new()
        .route("/admin/users/import", axum::routing::post(users::import))
        .layer(RequestBodyLimitLayer::new(users::IMPORT_LIMIT))
        // axum's own limit for a `Bytes` body (2 MB) is lifted to the import's.
        .layer(axum::extract::DefaultBodyLimit::max(users::IMPORT_LIMIT))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    // The document is the same for the process's life: made once.
    let document = openapi::response(&state.settings.issuer);
    Router::new()
        .merge(resources)
        .merge(import)
        .route("/admin/openapi.json", get(move || std::future::ready(document.clone())))
        .route("/metrics", get(super::metrics::metrics))
        .route("/health/alive", get(super::health::alive))
        .route("/health/ready", get(super::health::ready))
        .fallback(|| async { Problem::no_such_endpoint() })
        .method_not_allowed_fallback(|| async { Problem::method_not_allowed() })
        // Admin answers are never cached: they may carry a secret, and they change.
        .layer(SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store")))
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, state.settings.request_timeout))
        .with_state(state)
}

/// Every refusal of the admin listener is a problem document, those of the shared
/// limits (413, 414, 408) included.
pub(crate) async fn problems_only(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let problem = res.headers().get(header::CONTENT_TYPE).is_some_and(|v| v == crate::http::problem::CONTENT_TYPE);
    if res.status().as_u16() >= 400 && !problem {
        let mut replaced = Problem::of_status(res.status()).into_response();
        if let Some(close) = res.headers().get(header::CONNECTION) {
            replaced.headers_mut().insert(header::CONNECTION, close.clone());
        }
        return replaced;
    }
    res
}

/// The authenticated caller of an admin request.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub client_id: String,
    pub address: Option<String>,
}

impl Caller {
    pub fn who(&self, state: &AppState) -> Who {
        Who { actor: Actor::AdminClient(self.client_id.clone()), address: self.address.clone(), now: state.now() }
    }
}

/// RFC 6750 §2.1: `Authorization: Bearer TOKEN` (the scheme is case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// Every `/admin` resource: the token decides (`khoa_core::admin::permit`), then the
/// handler runs with its [`Caller`].
async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let access = Access::of_method(req.method().as_str());
    let found = match bearer(req.headers()) {
        None => None,
        Some(token) => match tokens::access_token(&state, token).await {
            Ok(found) => Some(found),
            Err(e) => return Problem::from(e).into_response(),
        },
    };
    let now = state.now();
    let (mut scope, mut client_scopes, mut live, mut client_id) = (ScopeSet::default(), None, false, None);
    if let Some(Some(Found::Access(claims, record))) = &found {
        live = crate::service::tokens::access_token_is_live(claims, record, now) && record.user_id.is_none();
        scope = ScopeSet::parse(&record.scope).unwrap_or_default();
        // The client as stored now, not as cached: a withdrawn scope ends at once.
        client_scopes = match state.store.client(&record.client_id).await {
            Ok(client) => client.map(|c| c.scopes),
            Err(e) => return Problem::from(e).into_response(),
        };
        client_id = Some(record.client_id.clone());
    }
    let presented = found.as_ref().map(|_| Presented {
        live_client_token: live,
        scope: &scope,
        client_scopes: client_scopes.as_deref(),
    });
    match permit(presented, access) {
        Ok(()) => {}
        Err(denial) => return refusal(denial, access).into_response(),
    }
    let address = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| crate::http::client_address(&state.settings, c.0.ip(), req.headers()).to_string());
    req.extensions_mut().insert(Caller { client_id: client_id.unwrap_or_default(), address });
    next.run(req).await
}

fn refusal(denial: Denial, access: Access) -> Problem {
    match denial {
        Denial::NoToken => {
            Problem::unauthorized(None, "a Bearer access token with scope khoa:admin or khoa:admin.read is required")
        }
        Denial::InvalidToken => Problem::unauthorized(
            Some("invalid_token"),
            "the access token is unknown, expired or revoked, or its client no longer holds the admin scope",
        ),
        Denial::InsufficientScope => match access {
            Access::Read => Problem::insufficient_scope(
                &format!("{ADMIN_READ} {ADMIN}"),
                "reading needs khoa:admin.read or khoa:admin",
            ),
            Access::Write => Problem::insufficient_scope(ADMIN, "changes need khoa:admin"),
        },
    }
}

impl From<ChangeError> for Problem {
    fn from(e: ChangeError) -> Self {
        match e {
            ChangeError::Invalid { field, detail } => Problem::invalid(&field, detail),
            ChangeError::NotFound => Problem::not_found("no such resource"),
            ChangeError::Exists(detail) => Problem::conflict(detail),
            ChangeError::Stale => Problem::precondition_failed(
                "the resource changed since the ETag given in If-Match; read it again and retry",
            ),
            ChangeError::Store(e) => Problem::from(e),
        }
    }
}

/// A JSON object from a request body. `merge_patch`: RFC 7396's media type is taken too.
pub(crate) fn json_object(
    headers: &HeaderMap,
    body: &Bytes,
    merge_patch: bool,
) -> Result<serde_json::Map<String, serde_json::Value>, Problem> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default();
    let accepted = media == "application/json" || (merge_patch && media == "application/merge-patch+json");
    if !accepted {
        return Err(Problem::unsupported_media_type(if merge_patch {
            "application/merge-patch+json or application/json"
        } else {
            "application/json"
        }));
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(Problem::malformed("the body must be a JSON object")),
        Err(e) => Err(Problem::malformed(format!("the body is not JSON: {e}"))),
    }
}

/// Reads `T` from a JSON value (`service::admin::read_json`), as a problem.
pub(crate) fn typed<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, Problem> {
    crate::service::admin::read_json(value).map_err(Problem::from)
}

/// The query's parameters; any other than `allowed` is refused by name, and each may
/// appear once.
pub(crate) fn query(raw: Option<&str>, allowed: &[&str]) -> Result<BTreeMap<String, String>, Problem> {
    let mut out = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if !allowed.contains(&k.as_ref()) {
            return Err(Problem::invalid(&k, format!("unknown query parameter {k:?} (known: {})", allowed.join(", "))));
        }
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(Problem::invalid(&k, format!("{k} is given twice")));
        }
    }
    Ok(out)
}

/// `limit`: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when not given.
pub(crate) fn limit(q: &BTreeMap<String, String>) -> Result<u32, Problem> {
    match q.get("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| Problem::invalid("limit", format!("limit must be a whole number from 1 to {MAX_LIMIT}"))),
    }
}

/// A page of a listing: its items and, when there is more, the cursor of the next page.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Page<T: utoipa::ToSchema> {
    pub items: Vec<T>,
    /// The `cursor` of the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A whole (short) collection.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Items<T: utoipa::ToSchema> {
    pub items: Vec<T>,
}

/// The page of `rows` read with one more than `limit` asked for: when the extra one
/// came back there is a next page, starting after the last item kept (`position`).
pub(crate) fn page_of<R, T: utoipa::ToSchema>(
    mut rows: Vec<R>,
    limit: u32,
    position: impl Fn(&R) -> String,
    document: impl Fn(R) -> T,
) -> Page<T> {
    let next = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|r| encode_cursor(&position(r)))
    } else {
        None
    };
    Page { items: rows.into_iter().map(document).collect(), next }
}

/// A cursor: where the next page starts, opaque to callers.
pub(crate) fn encode_cursor(position: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(position)
}

pub(crate) fn decode_cursor(q: &BTreeMap<String, String>) -> Result<Option<String>, Problem> {
    let Some(c) = q.get("cursor") else { return Ok(None) };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|s| !s.is_empty())
        .map(Some)
        .ok_or_else(|| Problem::invalid("cursor", "cursor is not one this API gave (take it from a listing's next)"))
}

/// RFC 9110 §13.1.1 If-Match against the current ETag: `None` when absent; `Some(true)`
/// when it matches (strong comparison, or `*`).
pub(crate) fn if_match(headers: &HeaderMap, current: &str) -> Option<bool> {
    let values: Vec<&str> = headers.get_all(header::IF_MATCH).iter().filter_map(|v| v.to_str().ok()).collect();
    if values.is_empty() {
        return None;
    }
    Some(values.iter().flat_map(|v| v.split(',')).map(str::trim).any(|tag| tag == "*" || tag == current))
}

/// The answer with its ETag header.
pub(crate) fn with_etag(mut res: Response, etag: &str) -> Response {
    if let Ok(v) = header::HeaderValue::from_str(etag) {
        res.headers_mut().insert(header::ETAG, v);
    }
    res
}

/// The ETag an update must find (RFC 9110 §13.1.1): the revision the caller's
/// If-Match names (412 when it names another than `etag`, the current one), else the
/// one just read; and whether If-Match was given.
pub(crate) fn precondition(headers: &HeaderMap, etag: &str, revision: i64) -> Result<(Option<i64>, bool), Problem> {
    match if_match(headers, etag) {
        Some(false) => Err(Problem::precondition_failed(format!(
            "If-Match does not name the current ETag {etag}; read it again and retry"
        ))),
        Some(true) => Ok((Some(revision), true)),
        None => Ok((Some(revision), false)),
    }
}

/// Runs a read-modify-write (`attempt`, given nothing, reads and writes once) until it
/// is not refused as stale, at most three times. With If-Match a stale write is the
/// caller's lost update (412 at once); without, the change is read again.
pub(crate) async fn retrying<T, F, Fut>(what: &str, mut attempt: F) -> Result<T, Problem>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Result<T, bool>, Problem>>,
{
    for _ in 0..3 {
        match attempt().await? {
            Ok(done) => return Ok(done),
            Err(true) => return Err(ChangeError::Stale.into()),
            Err(false) => continue,
        }
    }
    Err(Problem::precondition_failed(format!("the {what} kept changing while this update was made; retry")))
}

/// RFC 7396 §2: JSON merge patch.
pub(crate) fn merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
    let serde_json::Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = serde_json::Value::Object(serde_json::Map::new());
    }
    if let serde_json::Value::Object(t) = target {
        for (k, v) in patch {
            if v.is_null() {
                t.remove(k);
            } else {
                merge(t.entry(k.clone()).or_insert(serde_json::Value::Null), v);
            }
        }
    }
}

/// The settings a document sent back describes, its read-only members left out.
pub(crate) fn settings_of<T: serde::de::DeserializeOwned>(
    mut body: serde_json::Map<String, serde_json::Value>,
    read_only: &[&str],
) -> Result<T, Problem> {
    for member in read_only {
        body.remove(*member);
    }
    typed(serde_json::Value::Object(body))
}

#[cfg(test)]
mod tests;
