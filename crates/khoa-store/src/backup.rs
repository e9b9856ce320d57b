//! Backup and restore of a SQLite database (`khoa backup`, `khoa restore`).
//!
//! - A backup is SQLite's online backup of the whole database in one read
//!   transaction: a consistent copy while servers keep writing (WAL lets them).
//! - `khoa serve` holds a shared lock on `DATABASE.lock` for as long as it runs;
//!   a restore takes it exclusively, so it refuses a database a server is using. (A
//!   lock file beside the database, not the database file itself: SQLite's own POSIX
//!   locks in a process are lost when any descriptor of the file is closed.)
//! - A restore voids what must be used at most once and may have been used after the
//!   backup was taken: authorization codes and mailed links. Tokens, sessions, users
//!   and keys come back as they were.
//!
//! PostgreSQL is backed up with its own tools (pg_dump / pg_restore; docs/deployment.md).

use crate::migrations::{applied_sqlite, Schema};
use crate::sqlite::{create_private_file, Target};
use crate::StoreError;
use rusqlite::{Connection, OpenFlags};
use std::fs::File;
use std::path::{Path, PathBuf};

fn unavailable(message: impl Into<String>) -> StoreError {
    StoreError::Unavailable(message.into())
}

/// The file of a `sqlite://` URL; an in-memory database has none to back up.
fn database_file(url: &str) -> Result<PathBuf, StoreError> {
    if !url.starts_with("sqlite:") {
        return Err(unavailable(
            "khoa backup and khoa restore work on SQLite; back PostgreSQL up with pg_dump and pg_restore \
             (docs/deployment.md)",
        ));
    }
    Target::parse(url)?.path.ok_or_else(|| unavailable("an in-memory database has nothing to back up or restore"))
}

fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn open_lock(database: &Path) -> Result<File, StoreError> {
    let path = lock_path(database);
    let mut open = std::fs::OpenOptions::new();
    open.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    open.open(&path).map_err(|e| unavailable(format!("cannot open {}: {e}", path.display())))
}

/// Held by `khoa serve` while it uses a SQLite database (released when dropped or
/// when the process ends, however it ends).
#[derive(Debug)]
pub struct InUse {
    _lock: Option<File>,
}

/// Marks the database of `url` as in use by a server. Several servers may share it.
pub fn mark_in_use(url: &str) -> Result<InUse, StoreError> {
    let Ok(database) = database_file(url) else { return Ok(InUse { _lock: None }) };
    let lock = open_lock(&database)?;
    lock.lock_shared().map_err(|e| unavailable(format!("cannot lock {}: {e}", lock_path(&database).display())))?;
    Ok(InUse { _lock: Some(lock) })
}

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Migrations applied.
    pub migrations: usize,
    pub users: i64,
    pub clients: i64,
    pub bytes: u64,
}

fn summary(conn: &Connection, file: &Path) -> Result<Summary, StoreError> {
    let count = |table: &str| -> Result<i64, StoreError> {
        Ok(conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?)
    };
    let migrations = applied_sqlite(conn)?.len();
    let bytes = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    Ok(Summary { migrations, users: count("users")?, clients: count("clients")?, bytes })
}

/// Copies the database of `url` to the new file `to` while servers keep using it.
pub fn backup(url: &str, to: &Path) -> Result<Summary, StoreError> {
    let database = database_file(url)?;
    if !database.exists() {
        return Err(unavailable(format!("there is no database at {}", database.display())));
    }
    if to.exists() {
        return Err(unavailable(format!("{} exists: a backup never overwrites a file", to.display())));
    }
    let source = Connection::open_with_flags(&database, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    source.busy_timeout(std::time::Duration::from_secs(10))?;
    // Written beside the target and renamed into place: a backup interrupted half-way
    // leaves no file that looks whole. The copy holds password hashes and sealed keys:
    // readable by its owner only.
    let mut partial = to.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let _ = std::fs::remove_file(&partial);
    create_private_file(&partial)?;
    let copied = (|| -> Result<(), StoreError> {
        let mut target = Connection::open(&partial)?;
        {
            let backup = rusqlite::backup::Backup::new(&source, &mut target)?;
            // Every page in one step: one read transaction, one consistent snapshot.
            backup.step(-1)?;
        }
        target.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))?;
        let check: String = target.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if check != "ok" {
            return Err(unavailable(format!("the copy does not check out: {check}")));
        }
        Ok(())
    })();
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, to).map_err(|e| unavailable(format!("cannot write {}: {e}", to.display())))?;
    let target = Connection::open_with_flags(to, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    summary(&target, to)
}

/// Replaces the database of `url` with the backup `from`. Refuses a backup that is
/// not a khoa database or was written by a newer khoa, and a database a server uses.
pub fn restore(from: &Path, url: &str) -> Result<Summary, StoreError> {
    let database = database_file(url)?;
    let source = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| unavailable(format!("cannot open {}: {e}", from.display())))?;
    let not_khoa = || unavailable(format!("{} is not a khoa database", from.display()));
    let check: String = source.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(|_| not_khoa())?;
    if check != "ok" {
        return Err(unavailable(format!("{} is damaged: {check}", from.display())));
    }
    let versions = applied_sqlite(&source).map_err(|_| not_khoa())?;
    if versions.is_empty() {
        return Err(not_khoa());
    }
    if let Some(refusal) = Schema::of(&versions).refusal() {
        return Err(refusal);
    }
    let lock = open_lock(&database)?;
    if lock.try_lock().is_err() {
        return Err(unavailable(format!(
            "{} is in use by a running khoa serve: stop every server using it, then restore",
            database.display()
        )));
    }
    create_private_file(&database)?;
    let mut target = Connection::open(&database)?;
    target.busy_timeout(std::time::Duration::from_secs(10))?;
    {
        let backup = rusqlite::backup::Backup::new(&source, &mut target)?;
        backup.step(-1)?;
    }
    // The database is WAL, as khoa runs it; then what may have been used after the
    // backup was taken is voided.
    target.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    let tx = target.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for table in ["authorization_codes", "account_tokens"] {
        let exists: i64 =
            tx.query_row("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1", [table], |r| {
                r.get(0)
            })?;
        if exists > 0 {
            tx.execute(&format!("DELETE FROM {table}"), [])?;
        }
    }
    tx.execute("UPDATE change_epoch SET epoch = epoch + 1", [])?;
    tx.commit()?;
    let restored = summary(&target, &database)?;
    drop(target);
    drop(lock);
    Ok(restored)
}
