//! The embedded default: one SQLite file in WAL mode, on rusqlite (bundled SQLite).
//!
//! SQLite lets one connection write at a time. Every write is therefore a job for the
//! one writer thread, which owns the writing connection: jobs queue in order inside the
//! process instead of contending for the file lock, and are group-committed: the writer
//! takes every job waiting (up to [`MAX_GROUP`]) and runs them one after another between
//! one BEGIN and one COMMIT, each in a savepoint of its own, and answers each only once
//! the COMMIT has succeeded, so an answer still means durable. A job that fails is
//! rolled back to its savepoint alone; the others commit. Jobs run in order on one
//! connection, so each sees the writes of the jobs before it, exactly as if it had run
//! in a transaction of its own after theirs: the rules that make a code single use or
//! let one rotation win hold unchanged.
//!
//! Reads run beside the writer (WAL) on the thread that asks, with a reader connection
//! taken from a pool for the duration of the job: no hand-off at all. A read is a few
//! indexed statements (microseconds) and never waits for the writer, so it may run on
//! an async worker; the pool holds as many connections as threads have read at once.
//!
//! Durability (`synchronous`, chosen by the URL parameter `synchronous=normal|full`):
//! - `normal`, the default: a commit is written to the WAL before it is acknowledged,
//!   and the WAL is fsynced at each checkpoint. Every acknowledged commit (an issued
//!   token, a consumed code, a rotation) survives a crash of the process (SIGKILL, a
//!   panic, the OOM killer): the operating system holds the write. A crash of the
//!   operating system or a power loss may roll back the last commits before the
//!   previous checkpoint's fsync.
//! - `full`: the WAL is also fsynced at every commit, so acknowledged commits survive
//!   a power loss too, at the cost of one fsync per write (see docs/benchmarks.md).

use crate::db::{count_statements, count_transaction, Cell, Conn, Row, Value};
use crate::engine::{Engine, JobFuture, SqlStore};
use crate::{migrations, Backend, StoreError};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::sync::oneshot;

/// The most jobs one transaction takes: bounds the latency a group adds to its first job.
pub(crate) const MAX_GROUP: usize = 64;

/// Idle reader connections kept for the next reads (more are opened when more threads
/// read at once, and closed when they come back to a full pool).
const IDLE_READERS: usize = 8;

/// How long a statement waits for a lock held by another process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the checkpointer copies the WAL's committed pages into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// The writer's page cache (KiB; SQLite's default is 2,000): the pages of the indexes
/// that every issued token adds to, which a smaller cache reads again and again.
const WRITER_CACHE_KIB: u32 = 8192;

/// The WAL size (pages) at which the writer checkpoints by itself: a backstop should
/// the checkpointer fall behind (SQLite's default is 1,000 pages).
const WRITER_CHECKPOINT_PAGES: u32 = 16_000;

/// The SQLite store.
pub type SqliteStore = SqlStore<SqliteEngine>;

pub struct SqliteEngine {
    writer: mpsc::Sender<Message>,
    /// Write transactions of this store (the process-wide count is `crate::statements`).
    #[cfg_attr(not(test), allow(dead_code))]
    transactions: Arc<AtomicU64>,
    /// `None` for an in-memory database, which exists once per connection: its reads
    /// go to the writer.
    readers: Option<ReaderPool>,
    /// Dropped with the store, which stops the checkpointer.
    _checkpointer: Option<mpsc::Sender<()>>,
}

impl SqlStore<SqliteEngine> {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let target = Target::parse(url)?;
        let opened = target.clone();
        // Opening creates the file and switches it to WAL; off the async threads.
        let writer = tokio::task::spawn_blocking(move || opened.open_writer())
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))??;
        let (jobs, queue) = mpsc::channel();
        let transactions = Arc::new(AtomicU64::new(0));
        let counted = transactions.clone();
        std::thread::Builder::new()
            .name("khoa-sqlite-writer".into())
            .spawn(move || write_groups(writer, queue, &counted))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the SQLite writer: {e}")))?;
        let (readers, checkpointer) = match &target.path {
            None => (None, None),
            Some(path) => (Some(ReaderPool::open(path)?), Some(start_checkpointer(path)?)),
        };
        Ok(SqlStore { engine: SqliteEngine { writer: jobs, transactions, readers, _checkpointer: checkpointer } })
    }
}

/// Where the database is and how it is opened, from `sqlite://PATH[?…]`,
/// `sqlite:PATH` or `sqlite::memory:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// `None`: in memory.
    pub(crate) path: Option<PathBuf>,
    create: bool,
    synchronous: Synchronous,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Synchronous {
    Normal,
    Full,
}

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Self, StoreError> {
        let rest =
            url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).ok_or(StoreError::UnsupportedUrl)?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut target = Target {
            path: (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path)),
            create: true,
            synchronous: Synchronous::Normal,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match (name, value.to_ascii_lowercase().as_str()) {
                ("synchronous", "normal") => target.synchronous = Synchronous::Normal,
                ("synchronous", "full") => target.synchronous = Synchronous::Full,
                ("synchronous", v) => {
                    return Err(StoreError::InvalidUrl(format!("synchronous must be normal or full, not {v:?}")))
                }
                ("mode", "rwc") => target.create = true,
                ("mode", "rw") => target.create = false,
                ("mode", "memory") => target.path = None,
                ("mode", v) => {
                    return Err(StoreError::InvalidUrl(format!("mode must be rwc, rw or memory, not {v:?}")))
                }
                (other, _) => return Err(StoreError::InvalidUrl(format!("unknown SQLite parameter {other:?}"))),
            }
        }
        Ok(target)
    }

    fn open_writer(&self) -> Result<Connection, StoreError> {
        let conn = match &self.path {
            None => Connection::open_in_memory()?,
            Some(path) => {
                if self.create {
                    create_private_file(path)?;
                }
                Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?
            }
        };
        let synchronous = match self.synchronous {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        };
        tune(&conn)?;
        let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if self.path.is_some() && !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unavailable(format!("SQLite refused WAL mode (journal mode {mode})")));
        }
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; \
             PRAGMA wal_autocheckpoint = {WRITER_CHECKPOINT_PAGES}; PRAGMA cache_size = -{WRITER_CACHE_KIB};"
        ))?;
        Ok(conn)
    }

    /// Another connection to the writer's (existing) file.
    fn open_beside(path: &Path) -> Result<Connection, StoreError> {
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        tune(&conn)?;
        Ok(conn)
    }

    fn open_reader(path: &Path) -> Result<Connection, StoreError> {
        let conn = Self::open_beside(path)?;
        // Reads only: a slip that writes here fails instead of bypassing the writer.
        conn.execute_batch("PRAGMA query_only = ON; PRAGMA foreign_keys = ON;")?;
        Ok(conn)
    }
}

/// What every connection gets: a wait for other processes' locks, and room for the
/// statements the aggregates prepare.
fn tune(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(())
}

/// The database holds password hashes and sealed keys: create it readable by its owner
/// only (later WAL and SHM files inherit this mode from SQLite).
pub(crate) fn create_private_file(path: &Path) -> Result<(), StoreError> {
    if path.exists() {
        return Ok(());
    }
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    match open.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Unavailable(format!("cannot create {}: {e}", path.display()))),
    }
}

impl Engine for SqliteEngine {
    type Conn = Connection;

    const BACKEND: Backend = Backend::Sqlite;

    async fn read<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Connection) -> JobFuture<'c, T> + Send + 'static,
    {
        if let Some(readers) = &self.readers {
            return readers.run(job);
        }
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn ReadJob> = Box::new(Queued { job: Some(job), outcome: None, reply });
        self.writer.send(Message::Read(job)).map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    async fn write<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Connection) -> JobFuture<'c, T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Queued { job: Some(job), outcome: None, reply });
        self.writer.send(Message::Write(job)).map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        self.write(|conn| Box::pin(std::future::ready(migrations::apply_sqlite(conn)))).await
    }
}

/// Runs a job's future, which completes at once: every statement it awaits runs
/// synchronously on this thread's connection.
fn run_now<T>(future: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(outcome) => outcome,
        Poll::Pending => Err(StoreError::Unavailable("a SQLite job waited for something other than SQLite".into())),
    }
}

enum Message {
    Write(Box<dyn WriteJob>),
    Read(Box<dyn ReadJob>),
}

struct Queued<T, F> {
    job: Option<F>,
    outcome: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

/// A queued write, its type erased.
trait WriteJob: Send {
    /// Runs the job in the open transaction; `false` when it failed.
    fn run(&mut self, conn: &mut Connection) -> bool;
    /// Answers the waiting request with the outcome of the run.
    fn answer(self: Box<Self>);
    /// Answers with an error: the job's writes did not commit.
    fn fail(self: Box<Self>, error: StoreError);
}

/// A queued read, its type erased: runs and answers.
trait ReadJob: Send {
    fn run(self: Box<Self>, conn: &mut Connection);
}

impl<T, F> WriteJob for Queued<T, F>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut Connection) -> JobFuture<'c, T> + Send + 'static,
{
    fn run(&mut self, conn: &mut Connection) -> bool {
        let outcome = match self.job.take() {
            Some(job) => run_now(job(conn)),
            None => Err(StoreError::WriterStopped),
        };
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn answer(self: Box<Self>) {
        let outcome = self.outcome.unwrap_or(Err(StoreError::WriterStopped));
        // The request may have gone away meanwhile; its writes stand.
        let _ = self.reply.send(outcome);
    }

    fn fail(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }
}

impl<T, F> ReadJob for Queued<T, F>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut Connection) -> JobFuture<'c, T> + Send + 'static,
{
    fn run(mut self: Box<Self>, conn: &mut Connection) {
        let outcome = match self.job.take() {
            Some(job) => run_now(job(conn)),
            None => Err(StoreError::WriterStopped),
        };
        let _ = self.reply.send(outcome);
    }
}

/// A thread that checkpoints the WAL a few times a second (PASSIVE: it waits for no
/// reader or writer), so that the writer does not. Between two checkpoints a page
/// written by many transactions is copied into the database once, and the database
/// file is synced a few times a second instead of at every 1,000 WAL pages.
fn start_checkpointer(path: &Path) -> Result<mpsc::Sender<()>, StoreError> {
    let conn = Target::open_beside(path)?;
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("khoa-sqlite-checkpoint".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "SQLite checkpoint failed; the writer checkpoints instead");
                }
            }
        })
        .map_err(|e| StoreError::Unavailable(format!("cannot start the SQLite checkpointer: {e}")))?;
    Ok(stop)
}

/// Reader connections (`query_only`), lent to one job at a time.
struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReaderPool {
    fn open(path: &Path) -> Result<Self, StoreError> {
        // One at once, so that a database that cannot be read fails at start.
        let first = Target::open_reader(path)?;
        Ok(Self { path: path.to_path_buf(), idle: Mutex::new(vec![first]) })
    }

    /// Runs `job` here, on a connection of the pool.
    fn run<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        F: for<'c> FnOnce(&'c mut Connection) -> JobFuture<'c, T>,
    {
        let lent = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
        let mut conn = match lent {
            Some(conn) => conn,
            None => Target::open_reader(&self.path)?,
        };
        let outcome = run_now(job(&mut conn));
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < IDLE_READERS {
            idle.push(conn);
        }
        outcome
    }
}

fn write_groups(mut conn: Connection, queue: mpsc::Receiver<Message>, transactions: &AtomicU64) {
    let mut group: Vec<Box<dyn WriteJob>> = Vec::with_capacity(MAX_GROUP);
    while let Ok(first) = queue.recv() {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Write(job) => group.push(job),
                Message::Read(job) => job.run(&mut conn),
            }
            if group.len() < MAX_GROUP {
                next = queue.try_recv().ok();
            }
        }
        if !group.is_empty() {
            transactions.fetch_add(1, Ordering::Relaxed);
        }
        commit_group(&mut conn, &mut group);
    }
}

/// Answers every job of the group with an error: none of their writes committed.
fn fail_all(group: &mut Vec<Box<dyn WriteJob>>, message: &str) {
    for job in group.drain(..) {
        job.fail(StoreError::Unavailable(message.to_string()));
    }
}

/// A statement of the group's own (a savepoint), prepared once.
fn batch(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    count_statements(1);
    conn.prepare_cached(sql)?.raw_execute()?;
    Ok(())
}

/// Runs a group in one transaction, each job of several in a savepoint of its own.
fn commit_group(conn: &mut Connection, group: &mut Vec<Box<dyn WriteJob>>) {
    if group.is_empty() {
        return;
    }
    count_transaction();
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        return fail_all(group, &e.to_string());
    }
    if group.len() == 1 {
        if !group[0].run(conn) {
            // Nothing of a failed job stays.
            let _ = conn.execute_batch("ROLLBACK");
            for job in group.drain(..) {
                job.answer();
            }
            return;
        }
    } else {
        for job in group.iter_mut() {
            let outcome = batch(conn, "SAVEPOINT job").map(|()| job.run(conn)).and_then(|ok| {
                if !ok {
                    batch(conn, "ROLLBACK TO job")?;
                }
                batch(conn, "RELEASE job")
            });
            if let Err(e) = outcome {
                // The connection itself failed: nothing of the group commits.
                let _ = conn.execute_batch("ROLLBACK");
                return fail_all(group, &e.to_string());
            }
        }
    }
    match conn.execute_batch("COMMIT") {
        Ok(()) => {
            for job in group.drain(..) {
                job.answer();
            }
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            fail_all(group, &format!("commit failed: {e}"));
        }
    }
}

/// `$n` placeholders (PostgreSQL's, in which the SQL is written) as SQLite's `?n`.
fn sqlite_placeholders(sql: &str) -> std::borrow::Cow<'_, str> {
    if !sql.contains('$') {
        return sql.into();
    }
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out.into()
}

fn prepare<'c>(
    conn: &'c Connection,
    sql: &str,
    args: &[Value<'_>],
) -> Result<rusqlite::CachedStatement<'c>, StoreError> {
    crate::db::refuse_nul(args)?;
    count_statements(1);
    let mut stmt = conn.prepare_cached(&sqlite_placeholders(sql))?;
    if stmt.parameter_count() != args.len() {
        return Err(StoreError::Corrupt(format!(
            "{} arguments for {} placeholders in {sql}",
            args.len(),
            stmt.parameter_count()
        )));
    }
    for (i, arg) in args.iter().enumerate() {
        let index = i + 1;
        match *arg {
            Value::Int(Some(v)) => stmt.raw_bind_parameter(index, v)?,
            Value::Bool(v) => stmt.raw_bind_parameter(index, v)?,
            Value::Text(Some(v)) => stmt.raw_bind_parameter(index, v)?,
            Value::Bytes(Some(v)) => stmt.raw_bind_parameter(index, v)?,
            Value::Int(None) | Value::Text(None) | Value::Bytes(None) => {
                stmt.raw_bind_parameter(index, rusqlite::types::Null)?
            }
        }
    }
    Ok(stmt)
}

fn cell(value: ValueRef<'_>) -> Result<Cell, StoreError> {
    Ok(match value {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(v) => Cell::Int(v),
        ValueRef::Text(t) => {
            Cell::Text(String::from_utf8(t.to_vec()).map_err(|_| StoreError::Corrupt("text that is not UTF-8".into()))?)
        }
        ValueRef::Blob(b) => Cell::Bytes(b.to_vec()),
        ValueRef::Real(_) => return Err(StoreError::Corrupt("a real number where none is stored".into())),
    })
}

impl Conn for Connection {
    fn exec(&mut self, sql: &str, args: &[Value<'_>]) -> impl Future<Output = Result<u64, StoreError>> + Send {
        let outcome = prepare(self, sql, args).and_then(|mut stmt| Ok(stmt.raw_execute()? as u64));
        std::future::ready(outcome)
    }

    fn rows(&mut self, sql: &str, args: &[Value<'_>]) -> impl Future<Output = Result<Vec<Row>, StoreError>> + Send {
        let outcome = prepare(self, sql, args).and_then(|mut stmt| {
            let columns = stmt.column_count();
            let mut rows = stmt.raw_query();
            let mut out = vec![];
            while let Some(row) = rows.next()? {
                let cells = (0..columns).map(|i| cell(row.get_ref(i)?)).collect::<Result<Vec<_>, StoreError>>()?;
                out.push(Row::new(cells));
            }
            Ok(out)
        });
        std::future::ready(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::args;

    #[test]
    fn the_url_names_the_file_and_its_durability() {
        let t = Target::parse("sqlite://khoa.db").unwrap();
        assert_eq!(
            (t.path.as_deref(), t.create, t.synchronous),
            (Some(Path::new("khoa.db")), true, Synchronous::Normal)
        );
        let t = Target::parse("sqlite://khoa.db?mode=rwc&synchronous=FULL").unwrap();
        assert_eq!(t.synchronous, Synchronous::Full);
        assert!(!Target::parse("sqlite:/var/lib/khoa.db?mode=rw").unwrap().create);
        assert_eq!(Target::parse("sqlite::memory:").unwrap().path, None);
        assert!(Target::parse("sqlite://khoa.db?synchronous=off").is_err(), "OFF would lose commits on a crash");
        assert_eq!(
            Target::parse("sqlite://khoa.db?cache=shared").unwrap_err().to_string(),
            "database URL: unknown SQLite parameter \"cache\""
        );
    }

    #[test]
    fn placeholders_become_sqlites() {
        assert_eq!(sqlite_placeholders("SELECT $1, $12 WHERE a = '$x'"), "SELECT ?1, ?12 WHERE a = '$x'");
    }

    async fn store() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::connect(&format!("sqlite://{}/w.db", dir.path().display())).await.unwrap();
        store
            .write(|c| {
                Box::pin(async move {
                    c.exec("CREATE TABLE t (id TEXT PRIMARY KEY, used BIGINT NOT NULL DEFAULT 0)", &[]).await
                })
            })
            .await
            .unwrap();
        (store, dir)
    }

    fn insert(id: String) -> impl for<'c> FnOnce(&'c mut Connection) -> JobFuture<'c, ()> + Send + 'static {
        move |c| {
            Box::pin(async move {
                c.exec("INSERT INTO t (id) VALUES ($1)", args![id]).await?;
                Ok(())
            })
        }
    }

    async fn ids(store: &SqliteStore) -> Vec<String> {
        store
            .read(|c| {
                Box::pin(async move {
                    Ok(c.fetch_all::<(String,)>("SELECT id FROM t ORDER BY id", &[])
                        .await?
                        .into_iter()
                        .map(|(id,)| id)
                        .collect())
                })
            })
            .await
            .unwrap()
    }

    /// Holds the writer for a moment, so that the jobs sent meanwhile queue up.
    async fn hold(store: &Arc<SqliteStore>) -> tokio::task::JoinHandle<Result<(), StoreError>> {
        let s = store.clone();
        let held = tokio::spawn(async move {
            s.write(|_| {
                std::thread::sleep(Duration::from_millis(200));
                Box::pin(std::future::ready(Ok(())))
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        held
    }

    #[tokio::test]
    async fn jobs_queued_together_commit_in_one_transaction() {
        let (store, _dir) = store().await;
        let store = Arc::new(store);
        let before = store.engine.transactions.load(Ordering::Relaxed);
        let held = hold(&store).await;
        let jobs: Vec<_> = (0..20)
            .map(|i| {
                let s = store.clone();
                tokio::spawn(async move { s.write(insert(format!("r{i:02}"))).await })
            })
            .collect();
        for j in jobs {
            j.await.unwrap().unwrap();
        }
        held.await.unwrap().unwrap();
        assert_eq!(ids(&store).await.len(), 20, "every answered write is committed");
        // The holder alone, then the 20 queued jobs as one group (MAX_GROUP is 64).
        assert_eq!(store.engine.transactions.load(Ordering::Relaxed) - before, 2);
    }

    #[tokio::test]
    async fn a_failing_job_is_rolled_back_alone() {
        let (store, _dir) = store().await;
        let store = Arc::new(store);
        let before = store.engine.transactions.load(Ordering::Relaxed);
        store.write(insert("dup".into())).await.unwrap();
        let held = hold(&store).await;
        let mut jobs = vec![];
        for i in 0..10 {
            let s = store.clone();
            jobs.push(tokio::spawn(async move { s.write(insert(format!("ok{i}"))).await }));
            if i == 4 {
                // Writes a row of its own, then fails on a duplicate key: neither stays.
                let s = store.clone();
                jobs.push(tokio::spawn(async move {
                    s.write(|c| {
                        Box::pin(async move {
                            c.exec("INSERT INTO t (id) VALUES ('partial')", &[]).await?;
                            c.exec("INSERT INTO t (id) VALUES ('dup')", &[]).await?;
                            Ok(())
                        })
                    })
                    .await
                }));
            }
        }
        let outcomes: Vec<_> = futures::future::join_all(jobs).await.into_iter().map(|j| j.unwrap()).collect();
        held.await.unwrap().unwrap();
        assert!(matches!(&outcomes[5], Err(e) if e.is_unique_violation()), "{:?}", outcomes[5]);
        assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 10, "the others succeed");
        let mut expected: Vec<String> = (0..10).map(|i| format!("ok{i}")).collect();
        expected.push("dup".into());
        expected.sort();
        assert_eq!(ids(&store).await, expected, "no trace of the failed job");
        // The first insert, the holder, then the eleven as one group: nothing ran again.
        assert_eq!(store.engine.transactions.load(Ordering::Relaxed) - before, 3);
    }

    #[tokio::test]
    async fn a_job_sees_the_writes_of_the_jobs_before_it_in_its_group() {
        let (store, _dir) = store().await;
        let store = Arc::new(store);
        store.write(insert("once".into())).await.unwrap();
        let held = hold(&store).await;
        // Ten consumers of one row in one group: exactly one consumes it.
        let jobs: Vec<_> = (0..10)
            .map(|_| {
                let s = store.clone();
                tokio::spawn(async move {
                    s.write(|c| {
                        Box::pin(
                            async move { c.exec("UPDATE t SET used = 1 WHERE id = 'once' AND used = 0", &[]).await },
                        )
                    })
                    .await
                })
            })
            .collect();
        let won: u64 = futures::future::join_all(jobs).await.into_iter().map(|j| j.unwrap().unwrap()).sum();
        held.await.unwrap().unwrap();
        assert_eq!(won, 1);
    }

    #[tokio::test]
    async fn readers_cannot_write() {
        let (store, _dir) = store().await;
        let refused =
            store.read(|c| Box::pin(async move { c.exec("INSERT INTO t (id) VALUES ('x')", &[]).await })).await;
        assert!(refused.is_err());
        assert!(ids(&store).await.is_empty());
    }

    #[tokio::test]
    async fn an_in_memory_database_reads_through_its_writer() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        store.write(insert_table()).await.unwrap();
        store.write(insert("m".into())).await.unwrap();
        assert_eq!(ids(&store).await, vec!["m".to_string()]);
    }

    fn insert_table() -> impl for<'c> FnOnce(&'c mut Connection) -> JobFuture<'c, u64> + Send + 'static {
        |c| {
            Box::pin(async move {
                c.exec("CREATE TABLE t (id TEXT PRIMARY KEY, used BIGINT NOT NULL DEFAULT 0)", &[]).await
            })
        }
    }

    /// Logout revokes a session's tokens through an index, not by scanning the tables.
    #[tokio::test]
    async fn logout_revocations_use_the_sid_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::connect(&format!("sqlite://{}/khoa.db", dir.path().display())).await.unwrap();
        store.engine.migrate().await.unwrap();
        for (table, index) in [("access_tokens", "access_tokens_sid"), ("refresh_tokens", "refresh_tokens_sid")] {
            let sql =
                format!("EXPLAIN QUERY PLAN UPDATE {table} SET revoked_at = 1 WHERE sid = 'x' AND revoked_at IS NULL");
            let plan: Vec<(i64, i64, i64, String)> =
                store.read(move |c| Box::pin(async move { c.fetch_all(&sql, &[]).await })).await.unwrap();
            assert!(plan.iter().any(|row| row.3.contains(index)), "{table}: {plan:?}");
        }
    }

    #[tokio::test]
    async fn a_path_that_cannot_be_opened_fails_at_connect() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/missing/folder/khoa.db?mode=rwc", dir.path().display());
        assert!(SqliteStore::connect(&url).await.is_err());
    }
}
