//! `/admin/audit-events`: the audit trail, newest first.

use super::{decode_cursor, limit, page_of, query, Page};
use crate::app::state::AppState;
use crate::http::problem::{Problem, ProblemDocument};
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use khoa_store::{AuditFilter, AuditRecord};
use serde::Serialize;
use utoipa::ToSchema;

/// One event of the trail.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventDocument {
    pub id: i64,
    /// Seconds since the epoch.
    pub at: i64,
    /// `client.created`, `client.updated`, `client.deleted`, `client.secret_rotated`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// `admin_client:ID`, `command_line`, `user:ID`, `anonymous` or `system`.
    pub actor: String,
    pub client_id: Option<String>,
    pub user_id: Option<i64>,
    pub address: Option<String>,
    /// For a change: `changes`, each changed field with its value `before` and `after`.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

impl From<AuditRecord> for AuditEventDocument {
    fn from(r: AuditRecord) -> Self {
        Self {
            id: r.id,
            at: r.at,
            kind: r.kind,
            actor: r.actor,
            client_id: r.client_id,
            user_id: r.user_id,
            address: r.address,
            detail: r.detail,
        }
    }
}

#[utoipa::path(get, path = "/admin/audit-events", tag = "audit", operation_id = "audit.list",
    params(("type" = Option<String>, Query), ("client" = Option<String>, Query, description = "client_id"),
           ("user" = Option<i64>, Query, description = "user id"),
           ("since" = Option<i64>, Query, description = "seconds since the epoch"),
           ("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<AuditEventDocument>), (status = 400, body = ProblemDocument, content_type = "application/problem+json")),
    security(("admin" = ["khoa:admin.read"])))]
pub(crate) async fn list(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Result<Response, Problem> {
    let q = query(raw.as_deref(), &["type", "client", "user", "since", "limit", "cursor"])?;
    let number = |name: &str| -> Result<Option<i64>, Problem> {
        q.get(name)
            .map(|v| v.parse::<i64>().map_err(|_| Problem::invalid(name, format!("{name} must be a whole number"))))
            .transpose()
    };
    let before_id = match decode_cursor(&q)? {
        None => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| Problem::invalid("cursor", "cursor is not one this API gave"))?),
    };
    let limit = limit(&q)?;
    let filter = AuditFilter {
        kind: q.get("type").cloned(),
        client_id: q.get("client").cloned(),
        user_id: number("user")?,
        since: number("since")?,
        before_id,
        limit: limit + 1,
    };
    let events = state.store.audit_events(&filter).await?;
    let page = page_of(events, limit, |e| e.id.to_string(), AuditEventDocument::from);
    Ok(Json(page).into_response())
}
