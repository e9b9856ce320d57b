use crate::connections::{Connections, Lease};
use crate::group_commit::{GroupWriter, JobFuture};
use crate::{Backend, StoreError};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::ConnectOptions;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// The embedded default: one SQLite file in WAL mode.
///
/// SQLite lets one connection write at a time. Every write is therefore a job for the
/// one writer connection, where jobs queue in order inside the process instead of
/// contending for the file lock (whose busy handler sleeps up to 100 ms between tries),
/// and are group-committed by [`GroupWriter`]: under load, many requests share one
/// SQLite transaction. Reads use connections of their own and run beside the writer (WAL).
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
    /// Connections for reads; for an in-memory database, the writer's one connection.
    readers: Arc<Connections>,
    /// The one connection that writes, lent to the group writer and to migrations.
    writer: Arc<Connections>,
    group: GroupWriter,
}

/// Read connections: reads run beside the writer (WAL), each on a connection of its own.
const READERS: usize = 8;

impl SqliteStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let (url, synchronous) = take_synchronous(url)?;
        let options = SqliteConnectOptions::from_str(&url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // Statements are counted (`khoa_sql_statements_total`), not logged one by one.
            .log_statements(log::LevelFilter::Off);
        let in_memory = is_in_memory(options.get_filename());
        create_private_file(options.get_filename())?;
        let writer = Arc::new(Connections::new(options.clone(), 1));
        // Opens the writer's connection now, so that a bad path or missing permission fails here.
        let group = GroupWriter::start(writer.clone()).await?;
        // An in-memory database exists once per connection: it must be the writer's.
        let readers = if in_memory { writer.clone() } else { Arc::new(Connections::new(options, READERS)) };
        Ok(Self { readers, writer, group })
    }

    pub(crate) const BACKEND: Backend = Backend::Sqlite;

    /// A connection to read with.
    pub(crate) async fn read(&self) -> Result<Lease<'_>, StoreError> {
        self.readers.acquire().await
    }

    /// Runs `job` in a write transaction, group-committed with other requests' jobs.
    pub(crate) async fn write<A, T, F>(&self, args: A, job: F) -> Result<T, StoreError>
    where
        A: Send + Sync + 'static,
        T: Send + 'static,
        F: for<'c> Fn(&'c mut SqliteConnection, &'c A) -> JobFuture<'c, T> + Send + 'static,
    {
        self.group.write(args, job).await
    }

    pub(crate) async fn run_migrations(&self) -> Result<(), StoreError> {
        let mut conn = self.writer.acquire().await?;
        sqlx::migrate!("migrations/sqlite").run_direct(&mut *conn).await?;
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

    /// Logout revokes a session's tokens through an index, not by scanning the tables.
    #[tokio::test]
    async fn logout_revocations_use_the_sid_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::connect(&format!("sqlite://{}/khoa.db", dir.path().display())).await.unwrap();
        store.run_migrations().await.unwrap();
        for (table, index) in [("access_tokens", "access_tokens_sid"), ("refresh_tokens", "refresh_tokens_sid")] {
            let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(&format!(
                "EXPLAIN QUERY PLAN UPDATE {table} SET revoked_at = 1 WHERE sid = 'x' AND revoked_at IS NULL"
            ))
            .fetch_all(&mut *store.read().await.unwrap())
            .await
            .unwrap();
            assert!(plan.iter().any(|row| row.3.contains(index)), "{table}: {plan:?}");
        }
    }

    #[tokio::test]
    async fn a_path_that_cannot_be_opened_fails_at_connect() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/missing/folder/khoa.db?mode=rwc", dir.path().display());
        assert!(SqliteStore::connect(&url).await.is_err());
    }

    /// The cores each of this process's threads may run on: (thread id, name, cores).
    #[cfg(target_os = "linux")]
    fn threads_and_cores() -> Vec<(String, String, String)> {
        let mut found = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            let cores = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap_or("").trim();
            let tid = task.file_name().to_string_lossy().into_owned();
            found.push((tid, name.trim().to_string(), cores.to_string()));
        }
        found
    }

    /// The writer and the SQLite thread of its connection share one core (hand-offs
    /// between them are then plain context switches).
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_writer_and_its_sqlite_thread_share_one_core() {
        let before = threads_and_cores();
        let all_cores = before.iter().find(|t| !t.1.starts_with("khoa-sqlite")).unwrap().2.clone();
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::connect(&format!("sqlite://{}/khoa.db", dir.path().display())).await.unwrap();
        let after = threads_and_cores();
        // Thread names are cut to 15 bytes ("khoa-sqlite-wri").
        let writer = after
            .iter()
            .find(|t| t.1.starts_with("khoa-sqlite-wri") && !before.iter().any(|b| b.0 == t.0))
            .unwrap_or_else(|| panic!("no writer thread in {after:?}"));
        if all_cores.contains(['-', ',']) {
            assert!(!writer.2.contains(['-', ',']), "writer confined to one core: {writer:?} (process: {all_cores})");
            // The writer's connection has a SQLite thread of its own on the writer's
            // core (other tests running meanwhile start theirs too).
            let new_sqlite: Vec<_> =
                after.iter().filter(|t| t.1.starts_with("sqlx-sqlite") && !before.iter().any(|b| b.0 == t.0)).collect();
            assert!(new_sqlite.iter().any(|t| t.2 == writer.2), "{new_sqlite:?} vs writer {writer:?}");
        }
        drop(store);
    }
}
