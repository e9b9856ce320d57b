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
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
         installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, \
         checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)",
    )?;
    let applied: Vec<i64> = {
        let mut stmt = conn.prepare("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")?;
        let rows = stmt.query_map([], |row| row.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    if let Some(newer) = applied.iter().find(|v| !MIGRATIONS.iter().any(|m| m.0 == **v)) {
        return Err(StoreError::Unavailable(format!(
            "the database has migration {newer}, which this khoa does not know: it was written by a newer version"
        )));
    }
    for (version, description, sql) in MIGRATIONS.iter().filter(|m| !applied.contains(&m.0)) {
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

    #[test]
    fn the_dialect_changes_type_names_only() {
        assert_eq!(
            sqlite_dialect("id BIGSERIAL PRIMARY KEY, n BIGINT NOT NULL, k BYTEA"),
            "id INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER NOT NULL, k BLOB"
        );
    }
}
