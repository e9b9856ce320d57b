//! `/admin/backchannel-deliveries`: the outbox of back-channel logout notices.

use super::{decode_cursor, limit, page_of, query, Caller, Page};
use crate::app::state::AppState;
use crate::http::problem::{Problem, ProblemDocument};
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use khoa_core::audit::kind;
use khoa_store::Delivery;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryDocument {
    pub id: String,
    pub client_id: String,
    /// The client's backchannel_logout_uri.
    pub uri: String,
    pub sid: String,
    pub sub: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i64,
    pub created_at: i64,
    pub next_attempt_at: i64,
    pub delivered_at: Option<i64>,
    /// The HTTP status of the last attempt.
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
}

fn document(d: Delivery) -> DeliveryDocument {
    DeliveryDocument {
        id: d.notice.id,
        client_id: d.notice.client_id,
        uri: d.notice.uri,
        sid: d.notice.sid,
        sub: d.notice.sub,
        status: d.status,
        attempts: d.attempts,
        created_at: d.created_at,
        next_attempt_at: d.next_attempt_at,
        delivered_at: d.delivered_at,
        last_status: d.last_status,
        last_error: d.last_error,
    }
}

#[utoipa::path(get, path = "/admin/backchannel-deliveries", tag = "backchannel", operation_id = "backchannel.list",
    params(("status" = Option<String>, Query, description = "pending, delivered or failed"),
           ("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<DeliveryDocument>), (status = 400, body = ProblemDocument, content_type = "application/problem+json")),
    security(("admin" = ["khoa:admin.read"])))]
pub(crate) async fn list(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Result<Response, Problem> {
    let q = query(raw.as_deref(), &["status", "limit", "cursor"])?;
    let status = q.get("status").map(String::as_str);
    if status.is_some_and(|s| !["pending", "delivered", "failed"].contains(&s)) {
        return Err(Problem::invalid("status", "status is pending, delivered or failed"));
    }
    let limit = limit(&q)?;
    let before = match decode_cursor(&q)? {
        None => None,
        Some(c) => {
            let parsed = c.split_once(':').and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.to_string())));
            Some(parsed.ok_or_else(|| Problem::invalid("cursor", "cursor is not one this API gave"))?)
        }
    };
    let rows = state.store.deliveries_page(status, before, limit + 1).await?;
    let page = page_of(rows, limit, |d| format!("{}:{}", d.created_at, d.notice.id), document);
    Ok(Json(page).into_response())
}

#[utoipa::path(post, path = "/admin/backchannel-deliveries/{id}/retry", tag = "backchannel", operation_id = "backchannel.retry", params(("id" = String, Path)),
    responses((status = 400, body = ProblemDocument, content_type = "application/problem+json", description = "A parameter cannot be read (a NUL character, say)"), (status = 202, description = "Due again: the next delivery round sends it"),
              (status = 404, body = ProblemDocument, content_type = "application/problem+json"), (status = 409, body = ProblemDocument, content_type = "application/problem+json", description = "Delivered already")),
    security(("admin" = ["khoa:admin"])))]
pub(crate) async fn retry(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let who = caller.who(&state);
    let event = who.event(kind::BACKCHANNEL_RETRIED).detail(serde_json::json!({ "delivery": id }));
    match state.store.retry_delivery(&id, who.now, &event).await? {
        None => Err(Problem::not_found(format!("no back-channel delivery has id {id:?}"))),
        Some(false) => Err(Problem::conflict("the notice was delivered already")),
        Some(true) => Ok(axum::http::StatusCode::ACCEPTED.into_response()),
    }
}
