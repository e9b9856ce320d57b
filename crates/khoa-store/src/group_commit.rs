//! Group commit for SQLite: one writer thread runs the write transactions of many
//! concurrent requests inside one SQLite transaction.
//!
//! SQLite has one writer at a time, and each commit appends its pages to the WAL. With a
//! transaction per request, the writer spends its time on hand-offs (BEGIN, each
//! statement, COMMIT: a round trip each between the request's task and SQLite's
//! thread) and on writing the same index pages again for every commit. Here a request
//! queues its transaction as a job and waits; the writer takes every job waiting (up to
//! [`MAX_GROUP`]), runs them one after another between one BEGIN and one COMMIT, and
//! answers each only once the COMMIT has succeeded, so an answer still means durable
//! (see `SqliteStore` on `synchronous`).
//!
//! Jobs run in order on one connection, so each sees the writes of the jobs before it,
//! exactly as if it had run in a transaction of its own after theirs: the rules that
//! make a code single use or let one rotation win hold unchanged. If a job fails, or
//! the COMMIT does, the group is rolled back and each of its jobs runs again alone, in
//! a transaction of its own: one failing request never takes the others down with it.
//! This is why a job is `Fn` over arguments it owns, not `FnOnce`.

use crate::connections::Connections;
use crate::StoreError;
use sqlx::sqlite::SqliteConnection;
use sqlx::Connection;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// The most jobs one transaction takes: bounds the latency a group adds to its first job.
pub(crate) const MAX_GROUP: usize = 64;

/// What a job's closure returns: a future borrowing the connection and the job's arguments.
pub(crate) type JobFuture<'c, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'c>>;

/// A queued job, its type erased.
trait Job: Send {
    /// Runs the job inside the open transaction; `false` when it failed, in which case
    /// the transaction must not commit.
    fn run<'c>(&'c mut self, conn: &'c mut SqliteConnection) -> Pin<Box<dyn Future<Output = bool> + Send + 'c>>;
    /// Answers the waiting request with the outcome of the last run.
    fn answer(self: Box<Self>);
    /// Answers the waiting request with an error, the job's writes not committed.
    fn fail(self: Box<Self>, error: StoreError);
}

struct Queued<A, T, F> {
    args: A,
    job: F,
    outcome: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<A, T, F> Job for Queued<A, T, F>
where
    A: Send + Sync + 'static,
    T: Send + 'static,
    F: for<'c> Fn(&'c mut SqliteConnection, &'c A) -> JobFuture<'c, T> + Send + 'static,
{
    fn run<'c>(&'c mut self, conn: &'c mut SqliteConnection) -> Pin<Box<dyn Future<Output = bool> + Send + 'c>> {
        Box::pin(async move {
            let outcome = (self.job)(conn, &self.args).await;
            let ok = outcome.is_ok();
            self.outcome = Some(outcome);
            ok
        })
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

/// The handle requests queue their write transactions on. Dropping the last handle
/// stops the writer thread once it has answered every queued job.
pub(crate) struct GroupWriter {
    jobs: mpsc::UnboundedSender<Box<dyn Job>>,
    /// Transactions the writer has begun (a group, or one job alone); read by the tests
    /// (the process-wide count is `khoa_sql_transactions_total`).
    #[cfg_attr(not(test), allow(dead_code))]
    transactions: Arc<AtomicU64>,
}

impl GroupWriter {
    /// Starts the writer thread on `writer` (the one connection that writes), and opens
    /// that connection from it; fails as the connection does (a bad path, no permission).
    pub(crate) async fn start(writer: Arc<Connections>) -> Result<Self, StoreError> {
        let (jobs, queue) = mpsc::unbounded_channel();
        let transactions = Arc::new(AtomicU64::new(0));
        let counted = transactions.clone();
        let (opened, open_result) = oneshot::channel();
        // A thread of its own: the writer is woken at once when SQLite answers, instead
        // of queueing behind HTTP work on the request executor.
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(io_error)?;
        std::thread::Builder::new()
            .name("khoa-sqlite-writer".into())
            .spawn(move || {
                affinity::share_one_core();
                runtime.block_on(async move {
                    // Opened here, so that SQLite's thread for this connection is started
                    // by (and shares the core of) this one.
                    let first = writer.acquire().await.map(drop);
                    let ok = first.is_ok();
                    if opened.send(first).is_err() || !ok {
                        return;
                    }
                    write_groups(writer, queue, counted).await
                })
            })
            .map_err(io_error)?;
        open_result.await.map_err(|_| StoreError::WriterStopped)??;
        Ok(Self { jobs, transactions })
    }

    /// Runs `job(conn, &args)` in a write transaction (shared with other requests' jobs)
    /// and returns its outcome once committed.
    pub(crate) async fn write<A, T, F>(&self, args: A, job: F) -> Result<T, StoreError>
    where
        A: Send + Sync + 'static,
        T: Send + 'static,
        F: for<'c> Fn(&'c mut SqliteConnection, &'c A) -> JobFuture<'c, T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let queued = Box::new(Queued { args, job, outcome: None, reply });
        self.jobs.send(queued).map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// Transactions begun so far.
    #[cfg(test)]
    fn transactions(&self) -> u64 {
        self.transactions.load(Ordering::Relaxed)
    }
}

/// Keeping the writer and SQLite's thread on one core.
///
/// Every statement the writer runs is a hand-off to the connection's own thread (sqlx
/// runs SQLite there) and back: two wake-ups, one after the other, on the path every
/// write waits on. Between two cores a wake-up is an inter-processor interrupt, and on
/// a virtual machine an idle core must first be woken by the hypervisor: tens of
/// microseconds each, during which requests queue behind the writer while the cores
/// idle. On one core a hand-off is a plain context switch. Measured with the sso and
/// refresh scenarios on 2 vCPUs: 15–25 % more round trips/s (docs/benchmarks.md).
///
/// The writer is one serial thread, so confining it to one core costs it nothing; other
/// threads are free to use that core and are moved off it by the scheduler as usual.
mod affinity {
    /// Confines the calling thread (and the threads it starts later) to the last core
    /// it may run on. Nothing to do with one core; where the system refuses, the
    /// writer runs unconfined (only slower).
    #[cfg(target_os = "linux")]
    pub(super) fn share_one_core() {
        use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
        use nix::unistd::Pid;
        let this_thread = Pid::from_raw(0);
        let Ok(allowed) = sched_getaffinity(this_thread) else {
            return;
        };
        let cores: Vec<usize> = (0..CpuSet::count()).filter(|&i| allowed.is_set(i).unwrap_or(false)).collect();
        let [_, .., last] = cores[..] else {
            return;
        };
        let mut one = CpuSet::new();
        if one.set(last).is_ok() {
            if let Err(e) = sched_setaffinity(this_thread, &one) {
                tracing::debug!(error = %e, "SQLite writer not confined to one core");
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn share_one_core() {}
}

fn count(transactions: &AtomicU64) {
    transactions.fetch_add(1, Ordering::Relaxed);
    crate::sql::count_transaction();
}

fn io_error(e: std::io::Error) -> StoreError {
    StoreError::Database(sqlx::Error::Io(e))
}

/// The writer's loop: waits for a job, takes every other job waiting, commits them as
/// one group, answers them; until every handle is dropped.
async fn write_groups(
    writer: Arc<Connections>,
    mut queue: mpsc::UnboundedReceiver<Box<dyn Job>>,
    transactions: Arc<AtomicU64>,
) {
    let mut group: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = queue.recv().await {
        group.push(first);
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        commit_group(&writer, &mut group, &transactions).await;
    }
}

async fn commit_group(writer: &Connections, group: &mut Vec<Box<dyn Job>>, transactions: &AtomicU64) {
    let mut conn = match writer.acquire().await {
        Ok(conn) => conn,
        Err(e) => {
            let message = e.to_string();
            for job in group.drain(..) {
                job.fail(StoreError::Unavailable(message.clone()));
            }
            return;
        }
    };
    if group.len() > 1 && run_together(&mut conn, group, transactions).await {
        for job in group.drain(..) {
            job.answer();
        }
        return;
    }
    // Alone (a single job, or a group that failed and was rolled back).
    for mut job in group.drain(..) {
        count(transactions);
        match conn.begin().await {
            Ok(mut tx) => {
                if job.run(&mut tx).await {
                    if let Err(e) = tx.commit().await {
                        job.fail(e.into());
                        continue;
                    }
                }
                // A failed job's transaction rolls back as it is dropped.
                job.answer();
            }
            Err(e) => job.fail(e.into()),
        }
    }
}

/// Runs every job of the group in one transaction; `true` once it has committed.
async fn run_together(conn: &mut SqliteConnection, group: &mut [Box<dyn Job>], transactions: &AtomicU64) -> bool {
    count(transactions);
    let Ok(mut tx) = conn.begin().await else {
        return false;
    };
    for job in group.iter_mut() {
        if !job.run(&mut tx).await {
            // Rolled back as `tx` is dropped; the caller runs each job alone.
            return false;
        }
    }
    tx.commit().await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
    use std::str::FromStr;
    use std::time::Duration;

    /// A writer on a fresh database with `t (id TEXT PRIMARY KEY, used INTEGER)`, and a
    /// separate reader pool.
    async fn writer() -> (GroupWriter, SqlitePool, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/w.db?mode=rwc", dir.path().display());
        let options = SqliteConnectOptions::from_str(&url).unwrap().journal_mode(SqliteJournalMode::Wal);
        let writer = Arc::new(Connections::new(options, 1));
        sqlx::query("CREATE TABLE t (id TEXT PRIMARY KEY, used INTEGER NOT NULL DEFAULT 0)")
            .execute(&mut *writer.acquire().await.unwrap())
            .await
            .unwrap();
        let readers = SqlitePoolOptions::new().max_connections(2).connect(&url).await.unwrap();
        (GroupWriter::start(writer).await.unwrap(), readers, dir)
    }

    fn insert<'c>(conn: &'c mut SqliteConnection, id: &'c String) -> JobFuture<'c, ()> {
        Box::pin(async move {
            sqlx::query("INSERT INTO t (id) VALUES ($1)").bind(id).execute(&mut *conn).await?;
            Ok(())
        })
    }

    /// Holds the writer for a moment, so that the jobs sent meanwhile queue up.
    async fn hold(w: &Arc<GroupWriter>) -> tokio::task::JoinHandle<Result<(), StoreError>> {
        let w = w.clone();
        let held = tokio::spawn(async move {
            w.write((), |_, _| {
                Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Ok(())
                })
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        held
    }

    async fn ids(readers: &SqlitePool) -> Vec<String> {
        sqlx::query_scalar("SELECT id FROM t ORDER BY id").fetch_all(readers).await.unwrap()
    }

    #[tokio::test]
    async fn jobs_queued_together_commit_in_one_transaction() {
        let (w, readers, _dir) = writer().await;
        let w = Arc::new(w);
        let held = hold(&w).await;
        let jobs: Vec<_> = (0..20)
            .map(|i| {
                let w = w.clone();
                tokio::spawn(async move { w.write(format!("r{i:02}"), insert).await })
            })
            .collect();
        for j in jobs {
            j.await.unwrap().unwrap();
        }
        held.await.unwrap().unwrap();
        assert_eq!(ids(&readers).await.len(), 20, "every answered write is committed");
        // The holder alone, then the 20 queued jobs as one group (MAX_GROUP is 64).
        assert_eq!(w.transactions(), 2);
    }

    #[tokio::test]
    async fn a_failing_job_is_rolled_back_alone() {
        let (w, readers, _dir) = writer().await;
        let w = Arc::new(w);
        w.write("dup".to_string(), insert).await.unwrap();
        let held = hold(&w).await;
        let mut jobs = vec![];
        for i in 0..10 {
            let ok = w.clone();
            jobs.push(tokio::spawn(async move { ok.write(format!("ok{i}"), insert).await }));
            if i == 4 {
                // Writes a row of its own, then fails on a duplicate key: neither stays.
                let w = w.clone();
                jobs.push(tokio::spawn(async move {
                    w.write((), |conn, _| {
                        Box::pin(async move {
                            sqlx::query("INSERT INTO t (id) VALUES ('partial')").execute(&mut *conn).await?;
                            sqlx::query("INSERT INTO t (id) VALUES ('dup')").execute(&mut *conn).await?;
                            Ok(())
                        })
                    })
                    .await
                }));
            }
        }
        let outcomes: Vec<_> = futures::future::join_all(jobs).await.into_iter().map(|j| j.unwrap()).collect();
        held.await.unwrap().unwrap();
        assert!(matches!(&outcomes[5], Err(StoreError::Database(sqlx::Error::Database(e))) if e.is_unique_violation()));
        assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 10, "the others succeed");
        let mut expected: Vec<String> = (0..10).map(|i| format!("ok{i}")).collect();
        expected.push("dup".into());
        expected.sort();
        assert_eq!(ids(&readers).await, expected, "no trace of the failed job");
        // The first insert, the holder, the group (rolled back), then 11 jobs alone.
        assert_eq!(w.transactions(), 3 + 11);
    }

    #[tokio::test]
    async fn a_job_sees_the_writes_of_the_jobs_before_it_in_its_group() {
        let (w, _readers, _dir) = writer().await;
        let w = Arc::new(w);
        w.write("once".to_string(), insert).await.unwrap();
        let held = hold(&w).await;
        // Ten consumers of one row in one group: exactly one consumes it.
        let jobs: Vec<_> = (0..10)
            .map(|_| {
                let w = w.clone();
                tokio::spawn(async move {
                    w.write((), |conn, _| {
                        Box::pin(async move {
                            let n = sqlx::query("UPDATE t SET used = 1 WHERE id = 'once' AND used = 0")
                                .execute(&mut *conn)
                                .await?
                                .rows_affected();
                            Ok(n)
                        })
                    })
                    .await
                })
            })
            .collect();
        let won: u64 = futures::future::join_all(jobs).await.into_iter().map(|j| j.unwrap().unwrap()).sum();
        held.await.unwrap().unwrap();
        assert_eq!(won, 1);
        assert_eq!(w.transactions(), 3, "the ten ran as one group");
    }
}
