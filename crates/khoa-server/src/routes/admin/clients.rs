//! `/admin/clients`: OAuth 2.0 clients in RFC 7591 metadata names.

use super::{
    decode_cursor, json_object, limit, merge, page_of, precondition, query, retrying, settings_of, typed, with_etag,
    Caller, Page,
};
use crate::app::state::AppState;
use crate::http::problem::{Problem, ProblemDocument};
use crate::service::admin::clients::{self as service, etag, kept_secret, ClientDocument, ClientSettings, READ_ONLY};
use crate::service::admin::ChangeError;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use khoa_core::client::{Client, SecretChoice};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// A new client: its settings, and optionally its id (generated when absent) and secret
/// (at least 32 characters; generated when absent and shown once). The schema of a
/// creation's body: the handler takes `client_id` and `client_secret` out, then reads
/// the rest as [`ClientSettings`].
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct NewClient {
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    #[serde(flatten)]
    pub settings: ClientSettings,
}

/// How a rotation treats the secret it replaces.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct SecretRotation {
    /// Seconds the old secret keeps working (0 or absent: it stops at once).
    #[serde(default)]
    pub keep_old_for: Option<i64>,
}

fn document(client: &Client, secret: Option<String>, status: StatusCode) -> Response {
    let res = (status, Json(ClientDocument::of(client).with_secret(secret))).into_response();
    with_etag(res, &etag(client))
}

async fn existing(state: &AppState, client_id: &str) -> Result<Client, Problem> {
    state
        .store
        .client(client_id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no client has client_id {client_id:?}")))
}

/// The caller's changes to this process's caches take effect here at once; other
/// processes see them within a watch interval.
fn changed(state: &AppState) {
    state.clients.clear();
    state.origins.clear();
}

#[utoipa::path(get, path = "/admin/clients", tag = "clients", operation_id = "clients.list",
    params(("limit" = Option<u32>, Query, description = "1 to 500 (default 100)"),
           ("cursor" = Option<String>, Query, description = "`next` of the previous page")),
    responses((status = 200, body = Page<ClientDocument>), (status = 400, body = ProblemDocument, content_type = "application/problem+json")),
    security(("admin" = ["khoa:admin.read"])))]
pub(crate) async fn list(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Result<Response, Problem> {
    let q = query(raw.as_deref(), &["limit", "cursor"])?;
    let limit = limit(&q)?;
    let after = decode_cursor(&q)?;
    // One more than asked tells whether a next page exists.
    let rows = state.store.clients_page(after.as_deref(), limit + 1).await?;
    let page = page_of(rows, limit, |c| c.client_id.clone(), |c| ClientDocument::of(&c));
    Ok(Json(page).into_response())
}

#[utoipa::path(post, path = "/admin/clients", tag = "clients", operation_id = "clients.create", request_body = NewClient,
    responses((status = 201, body = ClientDocument, description = "Created; `client_secret` shown once",
               headers(("Location" = String), ("ETag" = String))),
              (status = 400, body = ProblemDocument, content_type = "application/problem+json"), (status = 409, body = ProblemDocument, content_type = "application/problem+json")),
    security(("admin" = ["khoa:admin"])))]
pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let mut body = json_object(&headers, &body, false)?;
    let text = |body: &mut Map<String, Value>, member: &str| -> Result<Option<String>, Problem> {
        match body.remove(member) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(Problem::invalid(member, format!("{member} must be a string"))),
        }
    };
    let client_id = text(&mut body, "client_id")?.unwrap_or_else(generate_client_id);
    let secret = match text(&mut body, "client_secret")? {
        Some(s) => SecretChoice::Given(s),
        None => SecretChoice::Generate,
    };
    let given = matches!(secret, SecretChoice::Given(_));
    let reg = settings_of::<ClientSettings>(body, READ_ONLY)?.registration(client_id, secret)?;
    let (client, generated) = service::create(state.store.as_ref(), reg, &caller.who(&state)).await?;
    changed(&state);
    // An operator-chosen secret is not echoed back; a generated one is shown once.
    let shown = if given { None } else { generated };
    let mut res = document(&client, shown, StatusCode::CREATED);
    let location = format!("/admin/clients/{}", client.client_id);
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// RFC 7591 §3.2.1: a client_id the server chooses: random, never only digits.
fn generate_client_id() -> String {
    format!("c-{}", khoa_core::random::random_token::<12>())
}

#[utoipa::path(get, path = "/admin/clients/{client_id}", tag = "clients", operation_id = "clients.show",
    params(("client_id" = String, Path)),
    responses((status = 400, body = ProblemDocument, content_type = "application/problem+json", description = "A parameter cannot be read (a NUL character, say)"), (status = 200, body = ClientDocument, headers(("ETag" = String))), (status = 404, body = ProblemDocument, content_type = "application/problem+json")),
    security(("admin" = ["khoa:admin.read"])))]
pub(crate) async fn show(State(state): State<AppState>, Path(client_id): Path<String>) -> Result<Response, Problem> {
    let client = existing(&state, &client_id).await?;
    Ok(document(&client, None, StatusCode::OK))
}

/// The revision an update of `current` must find (`precondition`).
fn expected(headers: &HeaderMap, current: &Client) -> Result<(Option<i64>, bool), Problem> {
    precondition(headers, &etag(current), current.revision)
}

/// Runs an update from the client as read (`retrying`).
async fn updated<F>(
    state: &AppState,
    caller: &Caller,
    client_id: &str,
    headers: &HeaderMap,
    make: F,
) -> Result<Response, Problem>
where
    F: Fn(&Client) -> Result<ClientSettings, Problem>,
{
    retrying("client", || async {
        let current = existing(state, client_id).await?;
        let (revision, conditional) = expected(headers, &current)?;
        let reg = make(&current)?.registration(current.client_id.clone(), kept_secret(&current))?;
        match service::update(state.store.as_ref(), &current, reg, revision, &caller.who(state)).await {
            Ok((client, secret)) => {
                changed(state);
                Ok(Ok(document(&client, secret, StatusCode::OK)))
            }
            Err(ChangeError::Stale) => Ok(Err(conditional)),
            Err(e) => Err(e.into()),
        }
    })
    .await
}

fn no_secret_here(body: &Map<String, Value>) -> Result<(), Problem> {
    if body.get("client_secret").is_some_and(|v| !v.is_null()) {
        return Err(Problem::invalid(
            "client_secret",
            "a secret is set at creation, or by POST /admin/clients/{client_id}/secret",
        ));
    }
    Ok(())
}

fn same_id(body: &mut Map<String, Value>, client_id: &str) -> Result<(), Problem> {
    match body.remove("client_id") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(id)) if id == client_id => Ok(()),
        Some(_) => Err(Problem::invalid("client_id", "a client's id cannot change")),
    }
}

#[utoipa::path(put, path = "/admin/clients/{client_id}", tag = "clients", operation_id = "clients.replace", request_body = ClientSettings,
    params(("client_id" = String, Path), ("If-Match" = Option<String>, Header, description = "the ETag read")),
    responses((status = 200, body = ClientDocument, headers(("ETag" = String))), (status = 400, body = ProblemDocument, content_type = "application/problem+json"),
              (status = 404, body = ProblemDocument, content_type = "application/problem+json"), (status = 412, body = ProblemDocument, content_type = "application/problem+json")),
    security(("admin" = ["khoa:admin"])))]
pub(crate) async fn replace(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let mut body = json_object(&headers, &body, false)?;
    no_secret_here(&body)?;
    same_id(&mut body, &client_id)?;
    body.remove("client_secret");
    let replacement = settings_of::<ClientSettings>(body, READ_ONLY)?;
    updated(&state, &caller, &client_id, &headers, |_| Ok(replacement.clone())).await
}

#[utoipa::path(patch, path = "/admin/clients/{client_id}", tag = "clients", operation_id = "clients.patch",
    request_body(content = ClientSettings, content_type = "application/merge-patch+json",
                 description = "RFC 7396: members given replace, null removes (back to the default)"),
    params(("client_id" = String, Path), ("If-Match" = Option<String>, Header, description = "the ETag read")),
    responses((status = 200, body = ClientDocument, headers(("ETag" = String))), (status = 400, body = ProblemDocument, content_type = "application/problem+json"),
              (status = 404, body = ProblemDocument, content_type = "application/problem+json"), (status = 412, body = ProblemDocument, content_type = "application/problem+json")),
    security(("admin" = ["khoa:admin"])))]
pub(crate) async fn patch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let mut patch = json_object(&headers, &body, true)?;
    no_secret_here(&patch)?;
    same_id(&mut patch, &client_id)?;
    patch.remove("client_secret");
    for member in READ_ONLY {
        patch.remove(*member);
    }
    updated(&state, &caller, &client_id, &headers, |current| {
        let mut doc = serde_json::to_value(ClientSettings::of(current)).unwrap_or(Value::Null);
        merge(&mut doc, &Value::Object(patch.clone()));
        settings_of(doc.as_object().cloned().unwrap_or_default(), READ_ONLY)
    })
    .await
}

#[utoipa::path(delete, path = "/admin/clients/{client_id}", tag = "clients", operation_id = "clients.delete",
    params(("client_id" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 400, body = ProblemDocument, content_type = "application/problem+json", description = "A parameter cannot be read (a NUL character, say)"), (status = 204, description = "Deleted, or there was no such client"), (status = 412, body = ProblemDocument, content_type = "application/problem+json")),
    security(("admin" = ["khoa:admin"])))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    if headers.contains_key(header::IF_MATCH) {
        if let Some(current) = state.store.client(&client_id).await? {
            expected(&headers, &current)?;
        }
    }
    service::delete(state.store.as_ref(), &client_id, &caller.who(&state)).await?;
    changed(&state);
    // Idempotent (RFC 9110 §9.2.2): deleting what is gone succeeds.
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(post, path = "/admin/clients/{client_id}/secret", tag = "clients", operation_id = "clients.rotate_secret", request_body = SecretRotation,
    params(("client_id" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = ClientDocument, description = "The new `client_secret`, shown once"),
              (status = 400, body = ProblemDocument, content_type = "application/problem+json"), (status = 404, body = ProblemDocument, content_type = "application/problem+json"), (status = 412, body = ProblemDocument, content_type = "application/problem+json")),
    security(("admin" = ["khoa:admin"])))]
pub(crate) async fn rotate_secret(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let rotation: SecretRotation = if body.is_empty() {
        SecretRotation::default()
    } else {
        typed(Value::Object(json_object(&headers, &body, false)?))?
    };
    let keep = rotation.keep_old_for.unwrap_or(0);
    if !(0..=30 * 86_400).contains(&keep) {
        return Err(Problem::invalid("keep_old_for", "keep_old_for must be 0 to 2592000 seconds (30 days)"));
    }
    let current = existing(&state, &client_id).await?;
    let (revision, _) = expected(&headers, &current)?;
    let who = caller.who(&state);
    let keep_until = (keep > 0).then_some(who.now + keep);
    let (client, secret) = service::rotate_secret(state.store.as_ref(), &current, keep_until, revision, &who).await?;
    changed(&state);
    Ok(document(&client, Some(secret), StatusCode::OK))
}
