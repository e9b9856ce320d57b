#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error("database URL must start with sqlite:// or postgres://")]
    UnsupportedUrl,
    #[error("database URL: {0}")]
    InvalidUrl(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("the database writer has stopped")]
    WriterStopped,
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// Text with a NUL character: PostgreSQL can neither store nor compare it, so
    /// neither backend takes it (it is bad input, never in the database).
    #[error("text with a NUL character")]
    NulInText,
}

impl StoreError {
    /// The database cannot be reached (or its writer is gone, or another process holds
    /// its lock too long): worth retrying later, so 503. Everything else (corrupt or
    /// conflicting data, a failed statement) is a fault of ours or of the data, so 500.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unavailable(_) | Self::WriterStopped => true,
            Self::Database(e) => matches!(
                e,
                sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed
            ),
            Self::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::CannotOpen
            ),
            _ => false,
        }
    }

    /// A unique or primary-key constraint refused the statement.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            Self::Database(sqlx::Error::Database(db)) => db.is_unique_violation(),
            Self::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.extended_code,
                rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            ),
            _ => false,
        }
    }

    /// Maps a unique-constraint violation to `Conflict(what)`.
    pub(crate) fn conflict_as(what: &'static str) -> impl FnOnce(StoreError) -> StoreError {
        move |e| if e.is_unique_violation() { StoreError::Conflict(what) } else { e }
    }
}
