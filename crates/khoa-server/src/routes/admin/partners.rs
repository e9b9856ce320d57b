//! `/admin/partners`: TCONNECT partners (the key is shown once, at creation).

use super::{json_object, typed, Caller, Items};
use crate::app::state::AppState;
use crate::http::problem::{Problem, ProblemDocument};
use crate::service::admin::partners::{self as service, NewPartner};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use khoa_store::Partner;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct PartnerDocument {
    /// The Partner-Code header's value.
    pub code: String,
    /// The confidential client whose tokens the partner's logins get.
    pub client_id: String,
    /// Login payloads must carry a fresh `timestamp` and an unused `nonce`.
    pub require_nonce: bool,
    pub created_at: i64,
    /// The AES-256 key in hexadecimal: present once, when it was generated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_hex: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PartnerInput {
    /// 1 to 64 characters of A-Z a-z 0-9 - _ .
    pub code: String,
    pub client_id: String,
    /// 64 hexadecimal characters; absent: generated and shown once.
    #[serde(default)]
    pub key_hex: Option<String>,
    #[serde(default)]
    pub require_nonce: bool,
}

fn document(p: &Partner, key_hex: Option<String>) -> PartnerDocument {
    PartnerDocument {
        code: p.code.clone(),
        client_id: p.client_id.clone(),
        require_nonce: p.require_nonce,
        created_at: p.created_at,
        key_hex,
    }
}

#[utoipa::path(get, path = "/admin/partners", tag = "partners", operation_id = "partners.list",
    responses((status = 200, body = Items<PartnerDocument>)),
    security(("admin" = ["khoa:admin.read"])))]
pub(crate) async fn list(State(state): State<AppState>) -> Result<Response, Problem> {
    let items = state.store.partners().await?.iter().map(|p| document(p, None)).collect();
    Ok(Json(Items { items }).into_response())
}

#[utoipa::path(post, path = "/admin/partners", tag = "partners", operation_id = "partners.create", request_body = PartnerInput,
    responses((status = 201, body = PartnerDocument, headers(("Location" = String))), (status = 400, body = ProblemDocument, content_type = "application/problem+json"),
              (status = 409, body = ProblemDocument, content_type = "application/problem+json")),
    security(("admin" = ["khoa:admin"])))]
pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let input: PartnerInput = typed(serde_json::Value::Object(json_object(&headers, &body, false)?))?;
    let new = NewPartner {
        code: input.code,
        client_id: input.client_id,
        key_hex: input.key_hex,
        require_nonce: input.require_nonce,
    };
    let (partner, key_hex) = service::create(state.store.as_ref(), &state.master, new, &caller.who(&state)).await?;
    let mut res = (StatusCode::CREATED, Json(document(&partner, key_hex))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/admin/partners/{}", partner.code)) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

#[utoipa::path(get, path = "/admin/partners/{code}", tag = "partners", operation_id = "partners.show", params(("code" = String, Path)),
    responses((status = 400, body = ProblemDocument, content_type = "application/problem+json", description = "A parameter cannot be read (a NUL character, say)"), (status = 200, body = PartnerDocument), (status = 404, body = ProblemDocument, content_type = "application/problem+json")),
    security(("admin" = ["khoa:admin.read"])))]
pub(crate) async fn show(State(state): State<AppState>, Path(code): Path<String>) -> Result<Response, Problem> {
    let partner =
        state.store.partner(&code).await?.ok_or_else(|| Problem::not_found(format!("no partner has code {code:?}")))?;
    Ok(Json(document(&partner, None)).into_response())
}

#[utoipa::path(delete, path = "/admin/partners/{code}", tag = "partners", operation_id = "partners.delete", params(("code" = String, Path)),
    responses((status = 400, body = ProblemDocument, content_type = "application/problem+json", description = "A parameter cannot be read (a NUL character, say)"), (status = 204, description = "Deleted, or there was no such partner")),
    security(("admin" = ["khoa:admin"])))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(code): Path<String>,
) -> Result<Response, Problem> {
    service::delete(state.store.as_ref(), &code, &caller.who(&state)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
