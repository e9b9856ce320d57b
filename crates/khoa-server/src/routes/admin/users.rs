//! `/admin/users`: accounts, their sessions and consents.

use super::{
    decode_cursor, json_object, limit, merge, page_of, precondition, query, retrying, settings_of, typed, with_etag,
    Caller, Items, Page,
};
use crate::app::state::AppState;
use crate::http::problem::{Problem, ProblemDocument};
use crate::service::admin::users::{
    self as service, etag, ImportReport, ImportedUser, UserDocument, UserSettings, READ_ONLY,
};
use crate::service::admin::ChangeError;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use khoa_core::user::User;
use khoa_store::{EndedSessions, UserChange, UserQuery, UserRef};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// A new user: its settings and, optionally, a password (at least 8 characters; without
/// one the account cannot sign in with a password until one is set).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct NewUser {
    pub password: Option<String>,
    /// Mail a link that verifies `email` (in the language of `Accept-Language`,
    /// Vietnamese by default); needs SMTP settings, and an `email` not yet verified.
    pub send_verification: Option<bool>,
    #[serde(flatten)]
    pub settings: UserSettings,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewPassword {
    pub password: String,
}

/// What ending a user's sessions ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ended {
    pub sessions_ended: u64,
    pub tokens_revoked: u64,
    /// Back-channel logout notices queued for the clients of the ended sessions.
    pub backchannel_notices: u64,
}

impl From<EndedSessions> for Ended {
    fn from(e: EndedSessions) -> Self {
        Self { sessions_ended: e.sessions, tokens_revoked: e.tokens, backchannel_notices: e.notifications }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionDocument {
    /// The `sid` claim.
    pub sid: String,
    pub auth_time: i64,
    /// RFC 8176 methods.
    pub amr: Vec<String>,
    pub created_at: i64,
    pub expires_at: i64,
    /// The clients signed in to through this session.
    pub clients: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentDocument {
    pub client_id: String,
    pub scope: String,
    pub granted_at: i64,
}

fn document(user: &User, status: StatusCode) -> Response {
    with_etag((status, Json(UserDocument::of(user))).into_response(), &etag(user))
}

/// The id of a path: a user that cannot exist is simply not found.
fn user_id(raw: &str) -> Result<i64, Problem> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| Problem::not_found(format!("no user has id {raw:?}")))
}

async fn existing(state: &AppState, raw: &str) -> Result<User, Problem> {
    let id = user_id(raw)?;
    state.store.user_by_id(id).await?.ok_or_else(|| Problem::not_found(format!("no user has id {id}")))
}

fn changed(state: &AppState) {
    state.users.clear();
}

/// Mails verification links to `(id, username, email)`, in the language the admin
/// request accepts (Vietnamese by default).
async fn send_verifications(
    state: &AppState,
    headers: &HeaderMap,
    who: &crate::service::admin::Who,
    users: &[(i64, String, String)],
) -> Result<(), Problem> {
    let accept = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok());
    let locale = crate::http::i18n::Locale::negotiate(&[], accept);
    for (id, _, email) in users {
        crate::service::account::send_verification(state, *id, email, locale, who.actor.clone()).await?;
    }
    Ok(())
}

#[utoipa::path(get, path = "/admin/users", tag = "users", operation_id = "users.list",
    params(("limit" = Option<u32>, Query, description = "1 to 500 (default 100)"),
           ("cursor" = Option<String>, Query, description = "`next` of the previous page"),
           ("username" = Option<String>, Query, description = "usernames starting with this (ASCII case ignored)"),
           ("email" = Option<String>, Query, description = "emails starting with this (ASCII case ignored)")),
    responses((status = 200, body = Page<UserDocument>), (status = 400, body = ProblemDocument, content_type = "application/problem+json")),
    security(("admin" = ["khoa:admin.read"])))]
pub(crate) async fn list(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Result<Response, Problem> {
    let q = query(raw.as_deref(), &["limit", "cursor", "username", "email"])?;
    let limit = limit(&q)?;
    let after_id = match decode_cursor(&q)? {
        None => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| Problem::invalid("cursor", "cursor is not one this API gave"))?),
    };
    let query = UserQuery {
        after_id,
        username_prefix: q.get("username").cloned().filter(|s| !s.is_empty()),
        email_prefix: q.get("email").cloned().filter(|s| !s.is_empty()),
        email: None,
        limit: limit + 1,
    };
    let rows = state.store.users_page(&query).await?;
    let page = page_of(rows, limit, |u| u.id.to_string(), |u| UserDocument::of(&u));
    Ok(Json(page).into_response())
}

#[utoipa::path(post, path = "/admin/users", tag = "users", operation_id = "users.create", request_body = NewUser,
    responses((status = 201, body = UserDocument, headers(("Location" = String), ("ETag" = String))),
              (status = 400, body = ProblemDocument, content_type = "application/problem+json"), (status = 409, body = ProblemDocument, content_type = "application/problem+json")),
    security(("admin" = ["khoa:admin"])))]
pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let mut body = json_object(&headers, &body, false)?;
    let password = match body.remove("password") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) => Some(p),
        Some(_) => return Err(Problem::invalid("password", "password must be a string")),
    };
    let send_verification = match body.remove("send_verification") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(_) => return Err(Problem::invalid("send_verification", "send_verification must be a boolean")),
    };
    let profile = settings_of::<UserSettings>(body, READ_ONLY)?.profile()?;
    if send_verification {
        if state.outbox.is_none() {
            return Err(Problem::invalid(
                "send_verification",
                "no mail can be sent: smtp.url and smtp.from are not set",
            ));
        }
        if profile.email.is_none() || profile.email_verified {
            return Err(Problem::invalid("send_verification", "needs an email that is not verified yet"));
        }
    }
    let who = caller.who(&state);
    let user = service::create(state.store.as_ref(), &state.passwords, profile, password, &who).await?;
    changed(&state);
    if let (true, Some(email)) = (send_verification, user.email.as_deref()) {
        send_verifications(&state, &headers, &who, &[(user.id, user.username.clone(), email.to_string())]).await?;
    }
    let mut res = document(&user, StatusCode::CREATED);
    if let Ok(v) = HeaderValue::from_str(&format!("/admin/users/{}", user.id)) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

#[utoipa::path(get, path = "/admin/users/{id}", tag = "users", operation_id = "users.show", params(("id" = i64, Path)),
    responses((status = 400, body = ProblemDocument, content_type = "application/problem+json", description = "A parameter cannot be read (a NUL character, say)"), (status = 200, body = UserDocument, headers(("ETag" = String))), (status = 404, body = ProblemDocument, content_type = "application/problem+json")),
    security(("admin" = ["khoa:admin.read"])))]
pub(crate) async fn show(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, Problem> {
    Ok(document(&existing(&state, &id).await?, StatusCode::OK))
}

#[utoipa::path(patch, path = "/admin/users/{id}", tag = "users", operation_id = "users.patch",
    request_body(content = UserSettings, content_type = "application/merge-patch+json",
                 description = "RFC 7396: members given replace, null removes (attributes merge by name)"),
    params(("id" = i64, Path), ("If-Match" = Option<String>, Header, description = "the ETag read")),
    responses((status = 200, body = UserDocument, headers(("ETag" = String))), (status = 400, body = ProblemDocument, content_type = "application/problem+json"),
              (status = 404, body = ProblemDocument, content_type = "application/problem+json"), (status = 409, body = ProblemDocument, content_type = "application/problem+json"),
              (status = 412, body = ProblemDocument, content_type = "application/problem+json")),
    security(("admin" = ["khoa:admin"])))]
pub(crate) async fn patch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let mut patch = json_object(&headers, &body, true)?;
    if patch.get("password").is_some() {
        return Err(Problem::invalid("password", "a password is set by PUT /admin/users/{id}/password"));
    }
    for member in READ_ONLY {
        patch.remove(*member);
    }
    retrying("user", || async {
        let current = existing(&state, &id).await?;
        let (revision, conditional) = precondition(&headers, &etag(&current), current.revision)?;
        let mut doc = serde_json::to_value(UserSettings::of(&current)).unwrap_or(Value::Null);
        merge(&mut doc, &Value::Object(patch.clone()));
        let profile =
            settings_of::<UserSettings>(doc.as_object().cloned().unwrap_or_default(), READ_ONLY)?.profile()?;
        match service::update(state.store.as_ref(), &current, profile, revision, &caller.who(&state)).await {
            Ok(user) => {
                changed(&state);
                Ok(Ok(document(&user, StatusCode::OK)))
            }
            Err(ChangeError::Stale) => Ok(Err(conditional)),
            Err(e) => Err(e.into()),
        }
    })
    .await
}

#[utoipa::path(delete, path = "/admin/users/{id}", tag = "users", operation_id = "users.delete", params(("id" = i64, Path)),
    responses((status = 400, body = ProblemDocument, content_type = "application/problem+json", description = "A parameter cannot be read (a NUL character, say)"), (status = 204, description = "Deleted (sessions ended, tokens revoked), or there was no such user")),
    security(("admin" = ["khoa:admin"])))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let Ok(id) = user_id(&id) else { return Ok(StatusCode::NO_CONTENT.into_response()) };
    match service::end_sessions(
        state.store.as_ref(),
        &state.settings,
        UserRef::Id(id),
        UserChange::Delete,
        &caller.who(&state),
    )
    .await
    {
        Ok(_) | Err(ChangeError::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    changed(&state);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn ended(state: &AppState, caller: &Caller, id: &str, change: UserChange) -> Result<EndedSessions, Problem> {
    let user = existing(state, id).await?;
    let ended =
        service::end_sessions(state.store.as_ref(), &state.settings, UserRef::Id(user.id), change, &caller.who(state))
            .await?;
    changed(state);
    Ok(ended)
}

#[utoipa::path(post, path = "/admin/users/{id}/disable", tag = "users", operation_id = "users.disable", params(("id" = i64, Path)),
    responses((status = 400, body = ProblemDocument, content_type = "application/problem+json", description = "A parameter cannot be read (a NUL character, say)"), (status = 200, body = UserDocument, description = "Disabled; its sessions ended and tokens revoked"),
              (status = 404, body = ProblemDocument, content_type = "application/problem+json")),
    security(("admin" = ["khoa:admin"])))]
pub(crate) async fn disable(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    ended(&state, &caller, &id, UserChange::Disable).await?;
    Ok(document(&existing(&state, &id).await?, StatusCode::OK))
}

#[utoipa::path(post, path = "/admin/users/{id}/enable", tag = "users", operation_id = "users.enable", params(("id" = i64, Path)),
    responses((status = 400, body = ProblemDocument, content_type = "application/problem+json", description = "A parameter cannot be read (a NUL character, say)"), (status = 200, body = UserDocument), (status = 404, body = ProblemDocument, content_type = "application/problem+json")),
    security(("admin" = ["khoa:admin"])))]
pub(crate) async fn enable(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let user = existing(&state, &id).await?;
    let user = service::enable(state.store.as_ref(), user.id, &caller.who(&state)).await?;
    changed(&state);
    Ok(document(&user, StatusCode::OK))
}

#[utoipa::path(put, path = "/admin/users/{id}/password", tag = "users", operation_id = "users.set_password", request_body = NewPassword,
    params(("id" = i64, Path)),
    responses((status = 200, body = Ended, description = "Set; the user's sessions ended and tokens revoked"),
              (status = 400, body = ProblemDocument, content_type = "application/problem+json"), (status = 404, body = ProblemDocument, content_type = "application/problem+json")),
    security(("admin" = ["khoa:admin"])))]
pub(crate) async fn set_password(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    existing(&state, &id).await?;
    let NewPassword { password } = typed(Value::Object(json_object(&headers, &body, false)?))?;
    let hash = service::hash_new_password(&state.passwords, password).await?;
    let ended = ended(&state, &caller, &id, UserChange::Password { hash }).await?;
    Ok(Json(Ended::from(ended)).into_response())
}

#[utoipa::path(post, path = "/admin/users/{id}/revoke-sessions", tag = "users", operation_id = "users.revoke_sessions", params(("id" = i64, Path)),
    responses((status = 400, body = ProblemDocument, content_type = "application/problem+json", description = "A parameter cannot be read (a NUL character, say)"), (status = 200, body = Ended), (status = 404, body = ProblemDocument, content_type = "application/problem+json")),
    security(("admin" = ["khoa:admin"])))]
pub(crate) async fn revoke_sessions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let ended = ended(&state, &caller, &id, UserChange::None).await?;
    Ok(Json(Ended::from(ended)).into_response())
}

#[utoipa::path(get, path = "/admin/users/{id}/sessions", tag = "users", operation_id = "users.sessions", params(("id" = i64, Path)),
    responses((status = 400, body = ProblemDocument, content_type = "application/problem+json", description = "A parameter cannot be read (a NUL character, say)"), (status = 200, body = Items<SessionDocument>), (status = 404, body = ProblemDocument, content_type = "application/problem+json")),
    security(("admin" = ["khoa:admin.read"])))]
pub(crate) async fn sessions(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, Problem> {
    let user = existing(&state, &id).await?;
    let items = state
        .store
        .user_sessions(user.id, state.now())
        .await?
        .into_iter()
        .map(|a| SessionDocument {
            sid: a.session.sid,
            auth_time: a.session.auth_time,
            amr: a.session.amr,
            created_at: a.session.created_at,
            expires_at: a.session.expires_at,
            clients: a.clients,
        })
        .collect();
    Ok(Json(Items { items }).into_response())
}

#[utoipa::path(get, path = "/admin/users/{id}/consents", tag = "users", operation_id = "users.consents", params(("id" = i64, Path)),
    responses((status = 400, body = ProblemDocument, content_type = "application/problem+json", description = "A parameter cannot be read (a NUL character, say)"), (status = 200, body = Items<ConsentDocument>), (status = 404, body = ProblemDocument, content_type = "application/problem+json")),
    security(("admin" = ["khoa:admin.read"])))]
pub(crate) async fn consents(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, Problem> {
    let user = existing(&state, &id).await?;
    let items = state
        .store
        .user_consents(user.id)
        .await?
        .into_iter()
        .map(|c| ConsentDocument { client_id: c.client_id, scope: c.scope, granted_at: c.granted_at })
        .collect();
    Ok(Json(Items { items }).into_response())
}

#[utoipa::path(get, path = "/admin/users/{id}/methods", tag = "users", operation_id = "users.methods", params(("id" = i64, Path)),
    responses((status = 400, body = ProblemDocument, content_type = "application/problem+json", description = "A parameter cannot be read (a NUL character, say)"), (status = 200, body = Items<service::MethodDocument>, description = "Authenticator apps, passkeys and recovery codes: names, kinds and times, never secrets"), (status = 404, body = ProblemDocument, content_type = "application/problem+json")),
    security(("admin" = ["khoa:admin.read"])))]
pub(crate) async fn methods(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, Problem> {
    let user = existing(&state, &id).await?;
    let items = service::methods(state.store.as_ref(), user.id).await?;
    Ok(Json(Items { items }).into_response())
}

/// What a reset of second factors removed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Reset {
    pub removed: u64,
}

#[utoipa::path(post, path = "/admin/users/{id}/reset-mfa", tag = "users", operation_id = "users.reset_mfa", params(("id" = i64, Path)),
    responses((status = 400, body = ProblemDocument, content_type = "application/problem+json", description = "A parameter cannot be read (a NUL character, say)"), (status = 200, body = Reset, description = "Every authenticator app, passkey and recovery code removed (for a person who lost theirs)"), (status = 404, body = ProblemDocument, content_type = "application/problem+json")),
    security(("admin" = ["khoa:admin"])))]
pub(crate) async fn reset_mfa(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let user = existing(&state, &id).await?;
    let removed = service::reset_mfa(state.store.as_ref(), user.id, &caller.who(&state)).await?;
    Ok(Json(Reset { removed }).into_response())
}

/// The largest import one request takes (about 100,000 users).
pub const IMPORT_LIMIT: usize = 32 * 1024 * 1024;

#[utoipa::path(post, path = "/admin/users/import", tag = "users", operation_id = "users.import",
    params(("send_verification" = Option<bool>, Query, description = "mail a verification link to each created user whose email is not verified")),
    request_body(content = ImportedUser, content_type = "application/x-ndjson",
                 description = "JSON lines, one user each; at most 32 MiB"),
    responses((status = 200, body = ImportReport, description = "What was created, what existed, what failed (by line)"),
              (status = 400, body = ProblemDocument, content_type = "application/problem+json")),
    security(("admin" = ["khoa:admin"])))]
pub(crate) async fn import(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let media = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = media.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if !["application/x-ndjson", "application/jsonl", "application/json-lines"].contains(&media.as_str()) {
        return Err(Problem::unsupported_media_type("application/x-ndjson (JSON lines)"));
    }
    let text = std::str::from_utf8(&body).map_err(|_| Problem::malformed("the body is not UTF-8"))?;
    let send_verification = match crate::http::forms::query_pairs(&uri).iter().find(|(k, _)| k == "send_verification") {
        None => false,
        Some((_, v)) if v == "true" => true,
        Some((_, v)) if v == "false" => false,
        Some(_) => return Err(Problem::invalid("send_verification", "send_verification is true or false")),
    };
    if send_verification && state.outbox.is_none() {
        return Err(Problem::invalid("send_verification", "no mail can be sent: smtp.url and smtp.from are not set"));
    }
    let who = caller.who(&state);
    let report = service::import(state.store.as_ref(), text.lines(), &who).await?;
    changed(&state);
    if send_verification {
        send_verifications(&state, &headers, &who, &report.to_verify).await?;
    }
    Ok(Json(report).into_response())
}
