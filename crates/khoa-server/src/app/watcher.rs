//! Keeps this process's caches in step with the database: polls the change epoch every
//! `watch_interval` and reloads clients and keys when it moves, and reloads keys when a
//! pre-published key activates or a retired key's publication ends.

use crate::app::keys::load_snapshot;
use crate::app::state::AppState;
use tokio::sync::watch;

pub(crate) fn spawn(state: AppState, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut last_epoch = state.store.change_epoch().await.ok();
        let mut tick = tokio::time::interval(state.settings.watch_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let epoch = match state.store.change_epoch().await {
                Ok(e) => e,
                Err(e) => {
                    state.metrics.watch_errors.inc();
                    tracing::warn!(error = %e, "cannot read the change epoch");
                    continue;
                }
            };
            let now = state.now();
            let changed = last_epoch != Some(epoch);
            let keys_due = state.keys.snapshot().valid_until.is_some_and(|t| now >= t);
            if changed {
                state.clients.clear();
                state.users.clear();
                state.origins.clear();
            }
            if changed || keys_due {
                match load_snapshot(state.store.as_ref(), &state.master, &state.settings, now).await {
                    Ok(snapshot) => {
                        state.keys.replace(snapshot);
                        state.metrics.cache_reloads.inc();
                        last_epoch = Some(epoch);
                        tracing::debug!(epoch, "caches reloaded");
                    }
                    Err(e) => {
                        state.metrics.watch_errors.inc();
                        tracing::error!(error = %e, "cannot reload signing keys");
                    }
                }
            }
        }
    });
}
