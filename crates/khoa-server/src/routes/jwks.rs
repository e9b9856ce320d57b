//! `GET /.well-known/jwks.json` (RFC 7517 §5): public members only, one `kid` per key,
//! pending keys included (pre-publication), retired keys until their tokens expired.

use super::public_json;
use crate::app::state::AppState;
use axum::extract::State;
use axum::response::Response;

pub(crate) async fn jwks(State(state): State<AppState>) -> Response {
    let snapshot = state.keys.snapshot();
    public_json(snapshot.jwks_json.as_ref(), state.settings.metadata_max_age)
}
