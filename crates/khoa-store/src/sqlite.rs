use crate::{Backend, StoreError};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::str::FromStr;
use std::time::Duration;

/// The embedded default: one SQLite file in WAL mode.
///
/// SQLite lets one connection write at a time. Writes therefore go through a pool of
/// exactly one connection, where they queue in order inside the process instead of
/// contending for the file lock (whose busy handler sleeps up to 100 ms between tries);
/// reads use a pool of their own and run beside the writer (WAL).
///
/// Durability (`synchronous`, chosen by the URL parameter `synchronous=normal|full`):
/// - `normal`, the default: a commit is written to the WAL before it is acknowledged,
///   and the WAL is fsynced at each checkpoint. Every acknowledged commit (an issued
///   token, a consumed code, a rotation) survives a crash of the process (SIGKILL, a
///   panic, the OOM killer): the operating system holds the write. A crash of the
///   operating system or a power loss may roll back the last commits before the
///   previous checkpoint's fsync.
/// - `full`: the WAL is also fsynced at every commit, so acknowledged commits survive
///   a power loss too, at the cost of one fsync per write (see docs/benchmarks.md).
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    pub(crate) writer: SqlitePool,
}

impl SqliteStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let (url, synchronous) = take_synchronous(url)?;
        let options = SqliteConnectOptions::from_str(&url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let in_memory = is_in_memory(options.get_filename());
        create_private_file(options.get_filename())?;
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await?;
        // An in-memory database exists once per connection: it must be the writer's.
        let pool = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await?
        };
        Ok(Self { pool, writer })
    }

    pub(crate) const BACKEND: Backend = Backend::Sqlite;

    pub(crate) async fn run_migrations(&self) -> Result<(), StoreError> {
        sqlx::migrate!("migrations/sqlite").run(&self.writer).await?;
        Ok(())
    }
}

/// Takes `synchronous=normal|full` out of the URL's query (sqlx does not know it).
fn take_synchronous(url: &str) -> Result<(String, SqliteSynchronous), StoreError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), SqliteSynchronous::Normal));
    };
    let mut synchronous = SqliteSynchronous::Normal;
    let mut rest = vec![];
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("synchronous", v)) => {
                synchronous = match v.to_ascii_lowercase().as_str() {
                    "normal" => SqliteSynchronous::Normal,
                    "full" => SqliteSynchronous::Full,
                    _ => return Err(StoreError::InvalidUrl(format!("synchronous must be normal or full, not {v:?}"))),
                }
            }
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() { base.to_string() } else { format!("{base}?{}", rest.join("&")) };
    Ok((url, synchronous))
}

fn is_in_memory(path: &std::path::Path) -> bool {
    path.as_os_str().is_empty() || path.as_os_str() == ":memory:"
}

/// The database holds password hashes and sealed keys: create it readable by its owner
/// only (later WAL and SHM files inherit this mode from SQLite).
fn create_private_file(path: &std::path::Path) -> Result<(), StoreError> {
    if is_in_memory(path) || path.exists() {
        return Ok(());
    }
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    match open.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Database(sqlx::Error::Io(e))),
    }
}

crate::sql::sql_store!(SqliteStore);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synchronous_comes_from_the_url() {
        let (url, s) = take_synchronous("sqlite://khoa.db").unwrap();
        assert_eq!((url.as_str(), format!("{s:?}")), ("sqlite://khoa.db", "Normal".to_string()));
        let (url, s) = take_synchronous("sqlite://khoa.db?mode=rwc&synchronous=FULL").unwrap();
        assert_eq!((url.as_str(), format!("{s:?}")), ("sqlite://khoa.db?mode=rwc", "Full".to_string()));
        assert!(take_synchronous("sqlite://khoa.db?synchronous=off").is_err(), "OFF would lose commits on a crash");
    }
}
