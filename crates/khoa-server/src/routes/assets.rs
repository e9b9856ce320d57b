//! `GET /assets/khoa.css`: the pages' stylesheet, compiled into the binary.

use axum::http::header;
use axum::response::IntoResponse;

const CSS: &str = include_str!("../../assets/khoa.css");

pub(crate) async fn css() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=86400")], CSS)
}

/// `GET /assets/theme.css`: the configured primary colour (branding without a rebuild).
pub(crate) async fn theme(
    axum::extract::State(state): axum::extract::State<crate::app::state::AppState>,
) -> impl IntoResponse {
    let css = format!(":root {{ --primary: {}; }}\n", state.settings.branding.primary_color);
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=300")], css)
}
