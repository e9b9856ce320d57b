//! The schema, from one source: `migrations/*.sql`, written for PostgreSQL and applied
//! there by sqlx. SQLite runs the same files with three type names translated
//! ([`sqlite_dialect`]). Both record what they applied in `_sqlx_migrations`, in
//! sqlx's layout, so databases created by earlier versions carry on.

use crate::StoreError;
use rusqlite::Connection;

/// Every migration, in order: (version, description, SQL).
pub(crate) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "foundation", include_str!("../migrations/0001_foundation.sql")),
    (2, "code flow", include_str!("../migrations/0002_code_flow.sql")),
    (3, "token lifecycle", include_str!("../migrations/0003_token_lifecycle.sql")),
    (4, "logout", include_str!("../migrations/0004_logout.sql")),
    (5, "partners", include_str!("../migrations/0005_partners.sql")),
    (6, "session token indexes", include_str!("../migrations/0006_session_token_indexes.sql")),
    (7, "security review", include_str!("../migrations/0007_security_review.sql")),
    (8, "browser apps", include_str!("../migrations/0008_browser_apps.sql")),
    (9, "token endpoint auth method", include_str!("../migrations/0009_token_endpoint_auth_method.sql")),
    (10, "access token alg", include_str!("../migrations/0010_access_token_alg.sql")),
    (11, "admin api", include_str!("../migrations/0011_admin_api.sql")),
    (12, "accounts", include_str!("../migrations/0012_accounts.sql")),
    (13, "username keys", include_str!("../migrations/0013_username_keys.sql")),
    (14, "credentials", include_str!("../migrations/0014_credentials.sql")),
    (15, "require mfa", include_str!("../migrations/0015_require_mfa.sql")),
    (16, "password credentials", include_str!("../migrations/0016_password_credentials.sql")),
];

/// Where a database's schema stands against the migrations this khoa knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    /// Migrations applied that this khoa knows.
    pub applied: usize,
    /// Migrations this khoa knows that are not applied yet, in order.
    pub pending: Vec<(i64, &'static str)>,
    /// Migrations applied that this khoa does not know: a newer version wrote them.
    pub newer: Vec<i64>,
}

impl Schema {
    /// The schema of a database that applied `applied` (the versions it recorded).
    pub fn of(applied: &[i64]) -> Self {
        let known = |v: &i64| MIGRATIONS.iter().any(|m| m.0 == *v);
        Self {
            applied: applied.iter().filter(|v| known(v)).count(),
            pending: MIGRATIONS.iter().filter(|m| !applied.contains(&m.0)).map(|m| (m.0, m.1)).collect(),
            newer: applied.iter().copied().filter(|v| !known(v)).collect(),
        }
    }

    /// Why a server must not start on it: a schema newer than it knows.
    pub fn refusal(&self) -> Option<StoreError> {
        let newer = self.newer.iter().max()?;
        Some(StoreError::Unavailable(format!(
            "the database has migration {newer}, which this khoa does not know: it was written by a newer version \
             (this one knows migrations 1 to {}); run that version, or restore a backup made for this one",
            MIGRATIONS.len()
        )))
    }
}

/// PostgreSQL's column types as SQLite's: a 64-bit key SQLite assigns, bytes, and
/// integers (SQLite's INTEGER is 64-bit; only `INTEGER PRIMARY KEY` is a rowid).
pub(crate) fn sqlite_dialect(sql: &str) -> String {
    sql.replace("BIGSERIAL PRIMARY KEY", "INTEGER PRIMARY KEY AUTOINCREMENT")
        .replace("BYTEA", "BLOB")
        .replace("BIGINT", "INTEGER")
}

/// Applies the SQLite migrations not yet applied, inside the writer's transaction
/// (`BEGIN IMMEDIATE`), so two processes starting together apply each once.
pub(crate) fn apply_sqlite(conn: &mut Connection) -> Result<(), StoreError> {
    apply_sqlite_through(conn, i64::MAX)
}

/// The migrations a SQLite database recorded as applied, in order (none when it has
/// no migrations table: a new database, or a file that is not khoa's).
pub(crate) fn applied_sqlite(conn: &Connection) -> Result<Vec<i64>, StoreError> {
    let tables: i64 = conn.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        [],
        |r| r.get(0),
    )?;
    if tables == 0 {
        return Ok(vec![]);
    }
    let mut stmt = conn.prepare("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")?;
    let versions = stmt.query_map([], |r| r.get(0))?.collect::<Result<Vec<i64>, _>>()?;
    Ok(versions)
}

/// [`apply_sqlite`] up to and including migration `through`.
fn apply_sqlite_through(conn: &mut Connection, through: i64) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
         installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, \
         checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)",
    )?;
    let applied = applied_sqlite(conn)?;
    if let Some(refusal) = Schema::of(&applied).refusal() {
        return Err(refusal);
    }
    for (version, description, sql) in MIGRATIONS.iter().filter(|m| !applied.contains(&m.0) && m.0 <= through) {
        let started = std::time::Instant::now();
        conn.execute_batch(&sqlite_dialect(sql))
            .map_err(|e| StoreError::Unavailable(format!("migration {version} ({description}): {e}")))?;
        let checksum = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, sql.as_bytes());
        conn.execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (?1, ?2, TRUE, ?3, ?4)",
            rusqlite::params![version, description, checksum.as_ref(), started.elapsed().as_nanos() as i64],
        )?;
    }
    Ok(())
}

/// A database as an earlier khoa left it: the migrations up to and including
/// `through` applied and recorded exactly as that version would have (sqlx's table
/// and checksums on PostgreSQL), for the upgrade tests.
#[doc(hidden)]
pub async fn migrate_to(url: &str, through: i64) -> Result<(), StoreError> {
    if url.starts_with("sqlite:") {
        let path = crate::sqlite::Target::parse(url)?
            .path
            .ok_or_else(|| StoreError::Unavailable("an in-memory database does not outlive this call".into()))?;
        let mut conn = Connection::open(path)?;
        return apply_sqlite_through(&mut conn, through);
    }
    use sqlx::{Connection as _, Executor as _};
    let mut conn = sqlx::PgConnection::connect(url).await?;
    conn.execute(
        "CREATE TABLE IF NOT EXISTS _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
         installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), success BOOLEAN NOT NULL, checksum BYTEA NOT NULL, \
         execution_time BIGINT NOT NULL)",
    )
    .await?;
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations").fetch_all(&mut conn).await?;
    for (version, description, sql) in MIGRATIONS.iter().filter(|m| m.0 <= through && !applied.contains(&m.0)) {
        let mut tx = conn.begin().await?;
        tx.execute(sqlx::raw_sql(sql)).await?;
        let checksum = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, sql.as_bytes());
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES ($1, $2, TRUE, $3, 0)",
        )
        .bind(version)
        .bind(description)
        .bind(checksum.as_ref())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The list above is the folder sqlx reads for PostgreSQL, file for file.
    #[test]
    fn every_migration_file_is_listed_in_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        files.sort();
        assert_eq!(files.len(), MIGRATIONS.len());
        for (file, (version, description, sql)) in files.iter().zip(MIGRATIONS) {
            let (number, name) = file.trim_end_matches(".sql").split_once('_').unwrap();
            assert_eq!(number.parse::<i64>().unwrap(), *version, "{file}");
            assert_eq!(name.replace('_', " "), *description, "{file}");
            assert_eq!(std::fs::read_to_string(dir.join(file)).unwrap(), *sql, "{file}");
        }
    }

    /// The rolling-upgrade rule (docs/deployment.md): while old and new servers share a
    /// database, a migration may only add; what it replaces is removed by a later
    /// release. Migration 16 predates the rule (it moved passwords into credentials
    /// and blanked the old column): an upgrade across it stops every older server.
    #[test]
    fn migrations_only_add() {
        const BEFORE_THE_RULE: i64 = 16;
        let removing = ["DROP TABLE", "DROP COLUMN", "RENAME", "ALTER COLUMN", "DELETE FROM", "UPDATE "];
        for (version, description, sql) in MIGRATIONS.iter().filter(|m| m.0 > BEFORE_THE_RULE) {
            let code: String = sql.lines().map(|l| l.split("--").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
            let upper = code.to_ascii_uppercase();
            for word in removing {
                assert!(!upper.contains(word), "migration {version} ({description}) uses {word}: migrations only add");
            }
        }
    }

    #[test]
    fn a_schema_is_pending_current_or_newer() {
        let all: Vec<i64> = MIGRATIONS.iter().map(|m| m.0).collect();
        let fresh = Schema::of(&[]);
        assert_eq!((fresh.applied, fresh.pending.len(), fresh.newer.len()), (0, MIGRATIONS.len(), 0));
        assert!(fresh.refusal().is_none());
        let older = Schema::of(&all[..all.len() - 2]);
        assert_eq!(older.pending, MIGRATIONS[MIGRATIONS.len() - 2..].iter().map(|m| (m.0, m.1)).collect::<Vec<_>>());
        let current = Schema::of(&all);
        assert!(current.pending.is_empty() && current.refusal().is_none());
        let mut newer = all.clone();
        newer.push(999);
        let refusal = Schema::of(&newer).refusal().unwrap().to_string();
        assert!(refusal.contains("migration 999") && refusal.contains("newer version"), "{refusal}");
    }

    #[test]
    fn the_dialect_changes_type_names_only() {
        assert_eq!(
            sqlite_dialect("id BIGSERIAL PRIMARY KEY, n BIGINT NOT NULL, k BYTEA"),
            "id INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER NOT NULL, k BLOB"
        );
    }
}
