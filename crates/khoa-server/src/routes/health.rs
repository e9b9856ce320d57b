//! `GET /health/alive` (the process serves) and `GET /health/ready` (and its database
//! answers within two seconds).

use crate::app::state::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::time::Duration;

pub(crate) async fn alive() -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Json(serde_json::json!({"status": "ok"}))).into_response()
}

pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    let (status, body) = match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, serde_json::json!({"status": "ok"})),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"status": "unavailable", "reason": "database unreachable"}),
            )
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "unavailable", "reason": "database timeout"}),
        ),
    };
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}
