use crate::group_commit::JobFuture;
use crate::{Backend, StoreError};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Postgres};
use std::str::FromStr;
use std::time::Duration;

/// The production store: several khoa processes on one database act as one server.
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?;
        // One direct connection first: a pool hides the cause of a failure behind
        // "pool timed out"; this surfaces "connection refused", a bad password, etc.
        match tokio::time::timeout(Duration::from_secs(10), options.connect()).await {
            Ok(conn) => conn?.close().await?,
            Err(_) => return Err(StoreError::Database(sqlx::Error::PoolTimedOut)),
        }
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    pub(crate) const BACKEND: Backend = Backend::Postgres;

    /// A connection to read with.
    pub(crate) async fn read(&self) -> Result<PoolConnection<Postgres>, StoreError> {
        Ok(self.pool.acquire().await?)
    }

    /// Runs `job` in a transaction of its own: PostgreSQL runs concurrent writers itself.
    pub(crate) async fn write<A, T, F>(&self, args: A, job: F) -> Result<T, StoreError>
    where
        A: Send + Sync + 'static,
        T: Send + 'static,
        F: for<'c> Fn(&'c mut PgConnection, &'c A) -> JobFuture<'c, T> + Send + 'static,
    {
        let mut tx = crate::sql::begin(&self.pool).await?;
        let out = job(&mut tx, &args).await?;
        tx.commit().await?;
        Ok(out)
    }

    pub(crate) async fn run_migrations(&self) -> Result<(), StoreError> {
        // sqlx holds a PostgreSQL advisory lock while migrating, so processes starting
        // together apply each migration once.
        sqlx::migrate!("migrations/postgres").run(&self.pool).await?;
        Ok(())
    }
}

crate::sql::sql_store!(PostgresStore);
