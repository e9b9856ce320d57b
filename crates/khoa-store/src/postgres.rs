use crate::{Backend, StoreError};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};
use std::str::FromStr;
use std::time::Duration;

/// The production store: several khoa processes on one database act as one server.
pub struct PostgresStore {
    pub(crate) pool: PgPool,
    /// The same pool: PostgreSQL runs concurrent writers itself.
    pub(crate) writer: PgPool,
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
        Ok(Self { writer: pool.clone(), pool })
    }

    pub(crate) const BACKEND: Backend = Backend::Postgres;

    pub(crate) async fn run_migrations(&self) -> Result<(), StoreError> {
        // sqlx holds a PostgreSQL advisory lock while migrating, so processes starting
        // together apply each migration once.
        sqlx::migrate!("migrations/postgres").run(&self.pool).await?;
        Ok(())
    }
}

crate::sql::sql_store!(PostgresStore);
