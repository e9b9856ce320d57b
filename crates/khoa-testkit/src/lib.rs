//! Test harness shared by khoa's test suites.
//!
//! PostgreSQL tests need `KHOA_TEST_POSTGRES_URL`: a URL to a throwaway cluster on which
//! the test user may create databases. `./scripts/test.sh` starts such a cluster and
//! sets it; a PostgreSQL test without it fails (it never silently skips).

pub mod browser;
pub mod embedded;
pub mod flow;
pub mod openapi;
pub mod receiver;
mod server;

pub use khoa_store::Backend;
pub use server::{free_port, khoa_env, run_cli, run_cli_with, KhoaProcess, TEST_SECRET};

use sqlx::{Connection, Executor, PgConnection};
use tempfile::TempDir;

/// A fresh, empty database that lives as long as this value (SQLite: a temporary
/// folder; PostgreSQL: a new database in the throwaway test cluster).
pub struct TestDatabase {
    pub url: String,
    pub backend: Backend,
    pub dir: TempDir,
}

pub const POSTGRES_ENV: &str = "KHOA_TEST_POSTGRES_URL";

impl TestDatabase {
    /// Runs a statement on the database directly, beside any server using it.
    #[allow(clippy::expect_used)]
    pub async fn execute(&self, sql: &str) {
        match self.backend {
            Backend::Sqlite => {
                let conn = rusqlite::Connection::open(self.sqlite_path()).expect("open the test SQLite file");
                conn.busy_timeout(std::time::Duration::from_secs(10)).expect("busy timeout");
                conn.execute_batch(sql).expect("statement");
            }
            Backend::Postgres => {
                let mut conn = PgConnection::connect(&self.url).await.expect("connect to the test database");
                conn.execute(sql).await.expect("statement");
                let _ = conn.close().await;
            }
        }
    }

    /// The integer a query returns (its first row's first column).
    #[allow(clippy::expect_used)]
    pub async fn scalar(&self, sql: &str) -> i64 {
        match self.backend {
            Backend::Sqlite => {
                let conn = rusqlite::Connection::open(self.sqlite_path()).expect("open the test SQLite file");
                conn.busy_timeout(std::time::Duration::from_secs(10)).expect("busy timeout");
                conn.query_row(sql, [], |row| row.get(0)).expect("query")
            }
            Backend::Postgres => {
                let mut conn = PgConnection::connect(&self.url).await.expect("connect to the test database");
                let n = sqlx::query_scalar(sql).fetch_one(&mut conn).await.expect("query");
                let _ = conn.close().await;
                n
            }
        }
    }

    /// The SQLite file of a SQLite test database.
    pub fn sqlite_path(&self) -> std::path::PathBuf {
        self.dir.path().join("khoa.db")
    }
}

#[allow(clippy::expect_used)]
pub async fn test_database(backend: Backend) -> TestDatabase {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("khoa.db").display()),
        Backend::Postgres => {
            let admin = std::env::var(POSTGRES_ENV).unwrap_or_else(|_| {
                panic!("{POSTGRES_ENV} is not set: run the tests with ./scripts/test.sh, which starts a throwaway PostgreSQL")
            });
            let name =
                format!("khoa_t_{}", khoa_core::random::random_token::<9>().to_lowercase().replace(['-', '_'], "x"));
            let mut conn = PgConnection::connect(&admin).await.expect("connect to the test PostgreSQL");
            conn.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create test database");
            let _ = conn.close().await;
            let mut url = url::Url::parse(&admin).expect("valid test PostgreSQL URL");
            url.set_path(&name);
            url.to_string()
        }
    };
    TestDatabase { url, backend, dir }
}

/// The JSON a successful command printed; panics with its standard error otherwise.
#[allow(clippy::expect_used, clippy::panic)]
pub fn stdout_json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "khoa failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// The `kid`s a server publishes at `base_url`, in JWKS order.
#[allow(clippy::expect_used)]
pub async fn jwks_kids(base_url: &str) -> Vec<String> {
    let jwks: serde_json::Value = reqwest::get(format!("{base_url}/.well-known/jwks.json"))
        .await
        .expect("JWKS request")
        .json()
        .await
        .expect("JWKS is JSON");
    jwks["keys"].as_array().expect("keys array").iter().map(|k| k["kid"].as_str().expect("kid").to_string()).collect()
}

/// Runs `$body` (an async fn taking a [`TestDatabase`]) once per backend, as two tests.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::test_database($crate::Backend::Sqlite).await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::test_database($crate::Backend::Postgres).await).await
                }
            )*
        }
    };
}
