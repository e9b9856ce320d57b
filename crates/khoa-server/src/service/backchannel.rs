//! Back-channel logout delivery (OIDC Back-Channel Logout 1.0 §2.5, §2.8): every
//! process drains the outbox; each notification is claimed by one worker at a time,
//! gets a freshly signed logout token per attempt, and is retried with exponential
//! backoff and jitter until delivered, refused with 400, or out of attempts or time.

use crate::app::state::AppState;
use khoa_core::jose::jwt;
use khoa_core::logout::{classify, AttemptResult, LogoutTokenClaims, LOGOUT_TOKEN_TYP};
use khoa_store::{AttemptRecord, Delivery};
use tokio::sync::watch;

/// Notifications one worker claims per poll.
const BATCH: i64 = 16;
/// A claim outlives the longest attempt, so a worker that dies loses nothing.
const CLAIM_SECONDS: i64 = 30;

pub(crate) fn spawn(state: AppState, mut stop: watch::Receiver<bool>) {
    let holder = khoa_core::random::random_token::<12>();
    let http = match reqwest_tls::Client::builder()
        .timeout(state.settings.backchannel_timeout)
        .redirect(reqwest_tls::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the back-channel HTTP client; back-channel logout disabled");
            return;
        }
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(state.settings.backchannel_poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let now = state.now();
            let claimed = match state.store.claim_deliveries(&holder, now, now + CLAIM_SECONDS, BATCH).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim back-channel notifications");
                    continue;
                }
            };
            // Concurrently: each attempt is bounded by the timeout, well inside the claim.
            let mut attempts = tokio::task::JoinSet::new();
            for d in claimed {
                let (state, http, holder) = (state.clone(), http.clone(), holder.clone());
                attempts.spawn(async move { deliver(&state, &http, &holder, d).await });
            }
            while attempts.join_next().await.is_some() {}
        }
    });
}

fn jitter() -> f64 {
    let b = khoa_core::random::random_bytes::<2>();
    f64::from(u16::from_le_bytes(b)) / 65536.0
}

async fn deliver(state: &AppState, http: &reqwest_tls::Client, holder: &str, d: Delivery) {
    let now = state.now();
    let (status, error) = match attempt(state, http, &d, now).await {
        Ok(status) => (Some(status), format!("HTTP {status}")),
        Err(e) => (None, e),
    };
    let attempts = d.attempts + 1;
    let record = match classify(status) {
        AttemptResult::Delivered => AttemptRecord::Delivered { status: i64::from(status.unwrap_or(200)) },
        AttemptResult::Permanent => AttemptRecord::Failed { status: status.map(i64::from), error },
        AttemptResult::Retry => match state.settings.backchannel.next_attempt(attempts, d.created_at, now, jitter()) {
            Some(next_attempt_at) => AttemptRecord::Retry { next_attempt_at, status: status.map(i64::from), error },
            None => AttemptRecord::Failed { status: status.map(i64::from), error: format!("gave up: {error}") },
        },
    };
    let outcome = match &record {
        AttemptRecord::Delivered { .. } => "delivered",
        AttemptRecord::Retry { .. } => "retry",
        AttemptRecord::Failed { .. } => "failed",
    };
    state
        .metrics
        .logout_deliveries
        .get_or_create(&crate::app::metrics::OutcomeLabels { outcome: outcome.into() })
        .inc();
    if outcome == "failed" {
        tracing::warn!(id = %d.notice.id, client_id = %d.notice.client_id, attempts, "back-channel logout notification failed for good");
    } else if outcome == "retry" {
        tracing::info!(id = %d.notice.id, client_id = %d.notice.client_id, attempts, "back-channel logout notification will be retried");
    }
    if let Err(e) = state.store.record_attempt(&d.notice.id, holder, now, &record).await {
        tracing::warn!(error = %e, id = %d.notice.id, "cannot record a back-channel attempt; it will be retried");
    }
}

/// One attempt: a fresh logout token, POSTed as a form (§2.5).
async fn attempt(state: &AppState, http: &reqwest_tls::Client, d: &Delivery, now: i64) -> Result<u16, String> {
    let client = state
        .clients
        .get(state.store.as_ref(), &d.notice.client_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the client no longer exists")?;
    let keys = state.keys.snapshot();
    let key = keys.signing_key(client.id_token_signed_response_alg, now).ok_or("no signing key")?;
    let claims = LogoutTokenClaims::new(&state.settings.issuer, &d.notice.sub, &d.notice.client_id, &d.notice.sid, now);
    let token = jwt::encode(&key, Some(LOGOUT_TOKEN_TYP), &claims).map_err(|e| e.to_string())?;
    let res = http.post(&d.notice.uri).form(&[("logout_token", token)]).send().await.map_err(|e| {
        if e.is_timeout() {
            "timed out".to_string()
        } else {
            format!("cannot reach the client: {e}")
        }
    })?;
    Ok(res.status().as_u16())
}
