//! `GET /metrics`: Prometheus / OpenMetrics text.

use crate::app::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    state.metrics.published_keys.set(state.keys.snapshot().published_count as i64);
    if let Ok(counts) = state.store.delivery_counts().await {
        for (status, n) in counts {
            state.metrics.logout_outbox.get_or_create(&crate::app::metrics::StatusLabels { status }).set(n);
        }
    }
    (
        [
            (header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        state.metrics.encode(),
    )
        .into_response()
}
