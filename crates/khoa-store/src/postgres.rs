//! The production store on sqlx: several khoa processes on one database act as one
//! server. PostgreSQL runs concurrent writers itself, so a write is a transaction of
//! its own; row locks order the writers that touch one row.

use crate::db::{count_statements, count_transaction, Cell, Conn, Row, Value};
use crate::engine::{Engine, JobFuture, SqlStore};
use crate::{Backend, StoreError};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Arguments, Column, ConnectOptions, Connection, Row as _, TypeInfo};
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

/// The PostgreSQL store.
pub type PostgresStore = SqlStore<PostgresEngine>;

pub struct PostgresEngine {
    pool: PgPool,
}

impl SqlStore<PostgresEngine> {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?
            // Statements are counted (`khoa_sql_statements_total`), not logged one by one.
            .log_statements(log::LevelFilter::Off);
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
        Ok(SqlStore { engine: PostgresEngine { pool } })
    }
}

impl Engine for PostgresEngine {
    type Conn = PgConnection;

    const BACKEND: Backend = Backend::Postgres;

    async fn read<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut PgConnection) -> JobFuture<'c, T> + Send + 'static,
    {
        let mut conn = self.pool.acquire().await?;
        job(&mut conn).await
    }

    async fn write<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut PgConnection) -> JobFuture<'c, T> + Send + 'static,
    {
        count_transaction();
        let mut tx = self.pool.begin().await?;
        let out = job(&mut tx).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        // sqlx holds a PostgreSQL advisory lock while migrating, so processes starting
        // together apply each migration once.
        sqlx::migrate!("./migrations").run(&self.pool).await?;
        Ok(())
    }
}

fn arguments(args: &[Value<'_>]) -> Result<PgArguments, StoreError> {
    crate::db::refuse_nul(args)?;
    let mut out = PgArguments::default();
    for arg in args {
        let added = match *arg {
            Value::Int(v) => out.add(v),
            Value::Bool(v) => out.add(v),
            Value::Text(v) => out.add(v),
            Value::Bytes(v) => out.add(v),
        };
        added.map_err(|e| StoreError::Corrupt(format!("an argument could not be encoded: {e}")))?;
    }
    Ok(out)
}

fn row(r: &PgRow) -> Result<Row, StoreError> {
    let mut cells = Vec::with_capacity(r.len());
    for (i, column) in r.columns().iter().enumerate() {
        let cell = match column.type_info().name() {
            "INT8" => r.try_get::<Option<i64>, _>(i)?.map(Cell::Int),
            "INT4" => r.try_get::<Option<i32>, _>(i)?.map(|v| Cell::Int(v.into())),
            "INT2" => r.try_get::<Option<i16>, _>(i)?.map(|v| Cell::Int(v.into())),
            "BOOL" => r.try_get::<Option<bool>, _>(i)?.map(|v| Cell::Int(v.into())),
            "TEXT" | "VARCHAR" | "NAME" => r.try_get::<Option<String>, _>(i)?.map(Cell::Text),
            "BYTEA" => r.try_get::<Option<Vec<u8>>, _>(i)?.map(Cell::Bytes),
            other => return Err(StoreError::Corrupt(format!("column {} has type {other}", column.name()))),
        };
        cells.push(cell.unwrap_or(Cell::Null));
    }
    Ok(Row::new(cells))
}

impl Conn for PgConnection {
    fn exec(&mut self, sql: &str, args: &[Value<'_>]) -> impl Future<Output = Result<u64, StoreError>> + Send {
        let args = arguments(args);
        async move {
            count_statements(1);
            let done = sqlx::query_with(sql, args?).execute(&mut *self).await?;
            Ok(done.rows_affected())
        }
    }

    fn rows(&mut self, sql: &str, args: &[Value<'_>]) -> impl Future<Output = Result<Vec<Row>, StoreError>> + Send {
        let args = arguments(args);
        async move {
            count_statements(1);
            let rows = sqlx::query_with(sql, args?).fetch_all(&mut *self).await?;
            rows.iter().map(row).collect()
        }
    }
}
