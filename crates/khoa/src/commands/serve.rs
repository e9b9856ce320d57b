use crate::config::Config;
use crate::secret::master_key;
use anyhow::Context;
use khoa_server::clock::{Clock, SystemClock};
use khoa_server::keys::ensure_initial_keys;
use khoa_server::AppState;
use std::io::Write;
use tokio::signal::unix::{signal, SignalKind};

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    for (name, near) in crate::config::unknown_variables(std::env::vars().map(|(k, _)| k)) {
        tracing::warn!(variable = %name, did_you_mean = near.unwrap_or("-"), "a KHOA_ variable that is no setting is ignored (khoa config check)");
    }
    let master = master_key(&config)?;
    // Held until the process ends: `khoa restore` refuses a database in use.
    let _in_use = khoa_store::backup::mark_in_use(&config.database_url)?;
    let store = super::open_store(&config).await?;
    for (username, holder) in store.username_collisions().await? {
        tracing::warn!(%username, %holder, "two usernames differ only in case or width: rename one (khoa migrate lists them)");
    }
    let created = ensure_initial_keys(store.as_ref(), &master, &config.settings.algorithms, SystemClock.now())
        .await
        .context("cannot create the first signing keys")?;
    for k in &created {
        tracing::info!(kid = %k.kid, alg = %k.alg, "generated signing key");
    }
    // Signal handlers exist before readiness is announced, so a SIGTERM that follows
    // the announcement always gets a graceful stop.
    let mut terminate = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    let state = AppState::new(config.settings.clone(), store, master).await?;
    let server = khoa_server::start(state).await.context("cannot start the server")?;
    tracing::info!(ready_ms = started.elapsed().as_millis() as u64, "ready");
    // Machine-readable lines on standard output, for scripts and tests; the public
    // listener's comes last.
    if let Some(admin) = server.admin_addr {
        println!("khoa admin listening on {admin}");
    }
    println!("khoa listening on {}", server.local_addr);
    let _ = std::io::stdout().flush();

    let stop = server.stopper();
    let state = server.state.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = stop.send(true);
    });
    let served = server.wait().await;
    // Password work the drained requests left behind (their permits are the work's
    // own): waited for within the shutdown deadline, then abandoned, never run on.
    let abandoned = state.passwords.drain(state.settings.request_timeout).await;
    if abandoned > 0 {
        tracing::warn!(abandoned, "stopping with password verifications still running");
    }
    served.context("server failed")?;
    tracing::info!("stopped");
    Ok(())
}
