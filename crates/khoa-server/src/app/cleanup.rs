//! Deletes expired codes, tokens, sessions, interactions, throttling entries and audit
//! events past their retention in
//! bounded batches (short statements by primary key, never a long transaction). A
//! lease in the database makes one process at a time run it; the others wait for
//! their next turn.

use crate::app::state::AppState;
use khoa_store::Expiring;
use tokio::sync::watch;

const LEASE: &str = "cleanup";
/// Batches one kind of row may take per run, so one run stays short.
const MAX_BATCHES: u32 = 100;

pub(crate) fn spawn(state: AppState, mut stop: watch::Receiver<bool>) {
    let holder = khoa_core::random::random_token::<12>();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(state.settings.cleanup_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            if let Err(e) = run_once(&state, &holder).await {
                state.metrics.cleanup_errors.inc();
                tracing::warn!(error = %e, "cleanup failed; will retry");
            }
        }
    });
}

/// When each kind of row may go (expiry columns are Unix seconds).
fn cutoff(state: &AppState, kind: Expiring, now: i64) -> i64 {
    match kind {
        Expiring::LoginThrottle => {
            let l = &state.settings.login_throttle;
            let longest = [l.account_at_address, l.address, l.account, state.settings.client_auth_throttle]
                .iter()
                .map(|p| p.window.max(p.max_delay))
                .max()
                .unwrap_or(0);
            now - longest
        }
        _ => now,
    }
}

pub(crate) async fn run_once(state: &AppState, holder: &str) -> Result<bool, khoa_store::StoreError> {
    let now = state.now();
    let lease_for = (state.settings.cleanup_interval.as_secs() as i64 * 2).max(10);
    if !state.store.acquire_lease(LEASE, holder, now, now + lease_for).await? {
        return Ok(false);
    }
    let started = std::time::Instant::now();
    let mut lag = 0;
    let batch = state.settings.cleanup_batch;
    for kind in Expiring::ALL {
        let before = cutoff(state, kind, now);
        in_batches(state, kind.table(), || state.store.delete_expired(kind, before, batch)).await?;
        if let Some(oldest) = state.store.oldest_expired(kind, before).await? {
            lag = lag.max(before - oldest);
        }
    }
    // A rotated token's sealed successor is needed only within the grace window.
    let before = now - state.settings.refresh_grace;
    in_batches(state, "sealed_successors", || state.store.clear_sealed_successors(before, batch)).await?;
    // The audit trail is kept for `audit.retention`.
    let before = now - state.settings.audit_retention;
    let audit_batch = u32::try_from(batch).unwrap_or(u32::MAX);
    in_batches(state, "audit_events", || state.store.delete_audit_events_before(before, audit_batch)).await?;
    state.metrics.cleanup_lag.set(lag);
    state.metrics.cleanup_runs.inc();
    state.metrics.cleanup_duration.observe(started.elapsed().as_secs_f64());
    Ok(true)
}

/// Runs `step` (one bounded statement) until it does less than a whole batch, at most
/// [`MAX_BATCHES`] times, counting its rows under `label`.
async fn in_batches<F, Fut>(state: &AppState, label: &str, step: F) -> Result<(), khoa_store::StoreError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<u64, khoa_store::StoreError>>,
{
    let counter =
        state.metrics.cleanup_deleted.get_or_create(&crate::app::metrics::TableLabels { table: label.into() }).clone();
    for _ in 0..MAX_BATCHES {
        let n = step().await?;
        counter.inc_by(n);
        if (n as i64) < state.settings.cleanup_batch {
            break;
        }
    }
    Ok(())
}
