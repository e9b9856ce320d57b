//! `/admin/keys`: the signing keys' timelines, and rotation.

use super::{json_object, typed, Caller, Items};
use crate::app::keys::{load_snapshot, rotate, KeysError};
use crate::app::state::AppState;
use crate::http::problem::{Problem, ProblemDocument};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use khoa_core::audit::Actor;
use khoa_core::jose::SigningAlgorithm;
use khoa_core::keyring::KeyTimeline;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A signing key (its public half is in the JWKS; the private half never leaves).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyDocument {
    pub kid: String,
    /// RS256, ES256 or EdDSA.
    pub alg: String,
    /// 1 for the first key of its algorithm, one more at each rotation.
    pub generation: i64,
    /// `pending` (published, not signing yet), `active` (signing), `retired`
    /// (still published for the tokens it signed) or `expired` (no longer published).
    pub state: String,
    pub created_at: i64,
    /// When it signs from.
    pub activates_at: i64,
}

/// A rotation: a new generation of each algorithm named (all configured ones when
/// absent), published at once and signing after the pre-publication delay, or at
/// once with `immediately`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct KeyRotation {
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    #[serde(default)]
    pub immediately: bool,
}

fn document(t: &KeyTimeline, state: &str) -> KeyDocument {
    KeyDocument {
        kid: t.kid.clone(),
        alg: t.alg.as_str().to_string(),
        generation: t.generation,
        state: state.to_string(),
        created_at: t.created_at,
        activates_at: t.activates_at,
    }
}

#[utoipa::path(get, path = "/admin/keys", tag = "keys", operation_id = "keys.list",
    responses((status = 200, body = Items<KeyDocument>)),
    security(("admin" = ["khoa:admin.read"])))]
pub(crate) async fn list(State(state): State<AppState>) -> Result<Response, Problem> {
    let now = state.now();
    // Read from the database, not this process's ring: a rotation elsewhere shows at once.
    let snapshot =
        load_snapshot(state.store.as_ref(), &state.master, &state.settings, now).await.map_err(keys_problem)?;
    let items = snapshot.timelines.iter().map(|t| document(t, snapshot.state_of(t, now).as_str())).collect();
    Ok(Json(Items { items }).into_response())
}

#[utoipa::path(post, path = "/admin/keys/rotate", tag = "keys", operation_id = "keys.rotate_keys", request_body = KeyRotation,
    responses((status = 201, body = Items<KeyDocument>, description = "The keys created"), (status = 400, body = ProblemDocument, content_type = "application/problem+json"),
              (status = 409, body = ProblemDocument, content_type = "application/problem+json")),
    security(("admin" = ["khoa:admin"])))]
pub(crate) async fn rotate_keys(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let rotation: KeyRotation = if body.is_empty() {
        KeyRotation::default()
    } else {
        typed(serde_json::Value::Object(json_object(&headers, &body, false)?))?
    };
    let configured = &state.settings.algorithms;
    let algorithms: Vec<SigningAlgorithm> = match rotation.algorithms {
        None => configured.clone(),
        Some(names) => names
            .iter()
            .map(|n| {
                n.parse::<SigningAlgorithm>().ok().filter(|a| configured.contains(a)).ok_or_else(|| {
                    Problem::invalid("algorithms", format!("{n:?} is not among the configured algorithms"))
                })
            })
            .collect::<Result<_, _>>()?,
    };
    if algorithms.is_empty() {
        return Err(Problem::invalid("algorithms", "name at least one algorithm"));
    }
    let now = state.now();
    let activates_at = if rotation.immediately { now } else { now + state.settings.key_prepublication };
    let by = (Actor::AdminClient(caller.client_id.clone()), caller.address.clone());
    let created = rotate(state.store.as_ref(), &state.master, &algorithms, (now, activates_at), by)
        .await
        .map_err(keys_problem)?;
    // This process signs with the new keys at once; the others within a watch interval.
    let snapshot =
        load_snapshot(state.store.as_ref(), &state.master, &state.settings, now).await.map_err(keys_problem)?;
    let items = created.iter().map(|t| document(t, snapshot.state_of(t, now).as_str())).collect();
    state.keys.replace(snapshot);
    Ok((StatusCode::CREATED, Json(Items { items })).into_response())
}

fn keys_problem(e: KeysError) -> Problem {
    match e {
        KeysError::Store(e) => Problem::from(e),
        KeysError::RotationRace(alg) => {
            Problem::conflict(format!("another process rotated the {alg} key at the same moment; try again"))
        }
        other => {
            tracing::error!(error = %other, "signing keys");
            Problem::internal()
        }
    }
}
