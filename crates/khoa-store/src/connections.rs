//! SQLite connections, lent out one request at a time.
//!
//! sqlx's general pool pings every connection as it comes back (a round trip to the
//! connection's thread) from a task it spawns for the purpose. Against a local file
//! that doubles the cost of a point read. These connections are handed back as the
//! lease is dropped, with nothing else to do: a connection's thread runs its commands
//! in order and resets each statement when it stops reading it (also when the request
//! went away), and reads never leave a transaction open (writes go through the
//! writer, which never abandons one).

use crate::StoreError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::ConnectOptions;
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};

/// How long a request waits for a connection before it gives up.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Up to `size` connections to one database, opened when first needed.
pub(crate) struct Connections {
    options: SqliteConnectOptions,
    idle: Mutex<Vec<SqliteConnection>>,
    permits: Semaphore,
}

impl Connections {
    pub(crate) fn new(options: SqliteConnectOptions, size: usize) -> Self {
        Self { options, idle: Mutex::new(Vec::with_capacity(size)), permits: Semaphore::new(size) }
    }

    /// A connection of its own until the lease is dropped.
    pub(crate) async fn acquire(&self) -> Result<Lease<'_>, StoreError> {
        let permit = match tokio::time::timeout(ACQUIRE_TIMEOUT, self.permits.acquire()).await {
            Ok(Ok(permit)) => permit,
            // The semaphore is never closed; a timeout means every connection stayed busy.
            _ => return Err(StoreError::Unavailable("no database connection became free within 10 s".into())),
        };
        let idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.options.connect().await?,
        };
        Ok(Lease { conn: Some(conn), home: self, _permit: permit })
    }
}

/// A lent connection; it goes back to its [`Connections`] when dropped.
pub(crate) struct Lease<'a> {
    conn: Option<SqliteConnection>,
    home: &'a Connections,
    _permit: SemaphorePermit<'a>,
}

impl Deref for Lease<'_> {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        // Some from construction until drop.
        self.conn.as_ref().expect("a lease holds its connection until dropped")
    }
}

impl DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.conn.as_mut().expect("a lease holds its connection until dropped")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.home.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(conn);
        }
    }
}
