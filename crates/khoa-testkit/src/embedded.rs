//! khoa served from inside the test, on a [`ManualClock`]: the rules that depend on
//! time are tested by moving the clock, not by sleeping. The same database, master key
//! and command line as a `khoa serve` process; only the clock differs.

#![allow(clippy::expect_used)]

use crate::{Backend, TestDatabase, TEST_SECRET};
use khoa_core::clock::ManualClock;
use khoa_core::sealing::MasterKey;
use khoa_server::clock::{Clock, SystemClock};
use khoa_server::{AppState, RunningServer, Settings};
use std::net::SocketAddr;
use std::sync::Arc;

/// A server running in this process on `clock`.
pub struct Embedded {
    pub clock: Arc<ManualClock>,
    pub base_url: String,
    running: Option<RunningServer>,
}

impl Embedded {
    /// Serves `db` at a free loopback port, with `configure` applied to the settings.
    /// The clock starts at the wall clock's time.
    pub async fn start(db: &TestDatabase, configure: impl FnOnce(&mut Settings)) -> Self {
        let addr: SocketAddr = ([127, 0, 0, 1], crate::free_port()).into();
        let mut settings = Settings::new(format!("http://{addr}"), addr);
        configure(&mut settings);
        let store = khoa_store::connect(&db.url).await.expect("open the test database");
        store.migrate().await.expect("migrate");
        let master = master_key(db);
        let clock = Arc::new(ManualClock::new(SystemClock.now()));
        khoa_server::keys::ensure_initial_keys(store.as_ref(), &master, &settings.algorithms, clock.now())
            .await
            .expect("signing keys");
        let state = AppState::with_clock(settings, store, master, clock.clone()).await.expect("state");
        let running = khoa_server::start(state).await.expect("listen");
        let base_url = format!("http://{}", running.local_addr);
        Self { clock, base_url, running: Some(running) }
    }

    /// Stops the server, letting requests in flight finish.
    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.shutdown().await;
        }
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        if let Some(running) = &self.running {
            let _ = running.stopper().send(true);
        }
    }
}

/// The master key the command line uses on `db`: `KHOA_SECRET` on PostgreSQL (as
/// `khoa_env` sets it), the key file beside a SQLite database (created here when the
/// command line has not made one yet).
fn master_key(db: &TestDatabase) -> MasterKey {
    if db.backend == Backend::Postgres {
        return MasterKey::from_secret(TEST_SECRET).expect("test secret");
    }
    let path = db.dir.path().join("khoa.key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return MasterKey::from_key_file(&text).expect("key file");
    }
    let (key, text) = MasterKey::generate();
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    let mut file = open.open(&path).expect("create the key file");
    std::io::Write::write_all(&mut file, text.as_bytes()).expect("write the key file");
    key
}
