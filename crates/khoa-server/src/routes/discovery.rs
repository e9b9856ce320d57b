//! `GET /.well-known/openid-configuration` (OpenID Connect Discovery 1.0 §4).

use super::public_json;
use crate::app::state::AppState;
use axum::extract::State;
use axum::response::Response;

pub(crate) async fn openid_configuration(State(state): State<AppState>) -> Response {
    public_json(&state.discovery_json, state.settings.metadata_max_age)
}
