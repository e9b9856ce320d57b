//! Operating khoa: changes from the command line reaching running servers, key
//! rotation over time, several processes on one PostgreSQL, readiness, logs, metrics.

use khoa_core::jose::SigningAlgorithm;
use khoa_core::sealing::MasterKey;
use khoa_server::clock::{Clock, SystemClock};
use khoa_server::keys::ensure_initial_keys;
use khoa_server::{AppState, RunningServer, Settings};
use khoa_testkit::{
    both_backends, jwks_kids, run_cli_with, stdout_json, test_database, Backend, KhoaProcess, TestDatabase, TEST_SECRET,
};
use serde_json::Value;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_khoa");

/// The master key the command line will also use for `db`: the shared secret on
/// PostgreSQL, a key file in the working directory on SQLite.
fn master_for(db: &TestDatabase) -> MasterKey {
    match db.backend {
        Backend::Postgres => MasterKey::from_secret(TEST_SECRET).unwrap(),
        Backend::Sqlite => {
            use std::os::unix::fs::PermissionsExt;
            let (key, text) = MasterKey::generate();
            let path = db.dir.path().join("khoa.key");
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            key
        }
    }
}

/// A server running in this process (so tests can look at its caches), on `db`.
async fn in_process(db: &TestDatabase, tune: impl FnOnce(&mut Settings)) -> RunningServer {
    let store = khoa_store::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    let master = master_for(db);
    let mut settings = Settings::new("http://127.0.0.1", "127.0.0.1:0".parse().unwrap());
    tune(&mut settings);
    ensure_initial_keys(store.as_ref(), &master, &settings.algorithms, SystemClock.now()).await.unwrap();
    khoa_server::start(AppState::new(settings, store, master).await.unwrap()).await.unwrap()
}

/// Polls `check` every 50 ms; panics if it is not true within `limit`.
async fn within<F: std::future::Future<Output = bool>>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> F,
) -> Duration {
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client created or deleted with the command line is seen by a running server
/// within 2 seconds (its client cache, negative answers included, is refreshed).
async fn client_changes_reach_a_running_server_within_two_seconds(db: TestDatabase) {
    let server = in_process(&db, |_| {}).await;
    let state = server.state.clone();
    let lookup = || {
        let state = state.clone();
        async move { state.clients.get(state.store.as_ref(), "late-app").await.unwrap() }
    };
    assert!(lookup().await.is_none(), "unknown before creation (and now cached as unknown)");
    let out = run_cli_with(
        BIN,
        &db,
        &[],
        &["client", "create", "--id", "late-app", "--redirect-uri", "https://late.example/cb"],
        None,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    within(Duration::from_secs(2), "created client visible", || async { lookup().await.is_some() }).await;
    assert!(run_cli_with(BIN, &db, &[], &["client", "delete", "late-app"], None).status.success());
    within(Duration::from_secs(2), "deleted client gone", || async { lookup().await.is_none() }).await;
    server.shutdown().await.unwrap();
}

/// A rotated key is published at once, signs only after the pre-publication delay, and
/// the key it replaced stays published until tokens it signed have expired.
async fn rotated_key_activates_after_the_delay_and_the_old_one_retires(db: TestDatabase) {
    let server = in_process(&db, |s| {
        s.lifetimes.access_token = 2;
        s.lifetimes.id_token = 2;
        s.clock_skew_leeway = 0;
        s.watch_interval = Duration::from_millis(100);
    })
    .await;
    let base = format!("http://{}", server.local_addr);
    let ring = server.state.clone();
    let signer =
        || ring.keys.snapshot().signing_key(SigningAlgorithm::RS256, SystemClock.now()).unwrap().kid().to_string();
    let old = signer();

    let out = run_cli_with(BIN, &db, &[("KHOA_KEY_PREPUBLICATION", "3s")], &["keys", "rotate", "--alg", "RS256"], None);
    let rotated = stdout_json(&out);
    let new = rotated[0]["kid"].as_str().unwrap().to_string();
    let activates_at = rotated[0]["activates_at"].as_i64().unwrap();

    within(Duration::from_secs(2), "new key published", || async { jwks_kids(&base).await.contains(&new) }).await;
    if SystemClock.now() < activates_at {
        assert_eq!(signer(), old, "the new key must not sign before the pre-publication delay");
    }
    within(Duration::from_secs(5), "new key signs after the delay", || async { signer() == new }).await;
    assert!(SystemClock.now() >= activates_at);
    assert!(jwks_kids(&base).await.contains(&old), "the retired key must stay published");
    // Its tokens (2 s lifetime) have expired 2 s after it stopped signing.
    within(Duration::from_secs(5), "retired key unpublished", || async { !jwks_kids(&base).await.contains(&old) })
        .await;
    assert!(SystemClock.now() >= activates_at + 2, "unpublished too early");
    assert!(jwks_kids(&base).await.contains(&new));
    server.shutdown().await.unwrap();
}

both_backends!(
    client_changes_reach_a_running_server_within_two_seconds,
    rotated_key_activates_after_the_delay_and_the_old_one_retires,
);

/// Two `khoa serve` processes started together on one fresh PostgreSQL database create
/// one key per algorithm between them, and both publish a rotation made elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_postgres_act_as_one_server() {
    let db = test_database(Backend::Postgres).await;
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| KhoaProcess::start(BIN, &db, &[]));
        let b = s.spawn(|| KhoaProcess::start(BIN, &db, &[]));
        (a.join().unwrap(), b.join().unwrap())
    });
    let (ka, kb) = (jwks_kids(&a.base_url).await, jwks_kids(&b.base_url).await);
    assert_eq!(ka.len(), 3, "one key per algorithm, not one per process: {ka:?}");
    assert_eq!(ka, kb);
    let out = run_cli_with(BIN, &db, &[], &["keys", "rotate", "--alg", "ES256"], None);
    let rotated = stdout_json(&out);
    let new = rotated[0]["kid"].as_str().unwrap().to_string();
    for p in [&a, &b] {
        within(Duration::from_secs(2), "rotation seen", || async { jwks_kids(&p.base_url).await.contains(&new) }).await;
    }
}

/// `/health/ready` answers 503 when the database goes away, while `/health/alive`
/// stays 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_database() {
    use sqlx::{Connection, Executor};
    let db = test_database(Backend::Postgres).await;
    let khoa = KhoaProcess::start(BIN, &db, &[]);
    let status = |path: &'static str| {
        let url = khoa.url(path);
        async move { reqwest::get(url).await.unwrap().status().as_u16() }
    };
    assert_eq!(status("/health/ready").await, 200);
    let admin = std::env::var(khoa_testkit::POSTGRES_ENV).unwrap();
    let name = url::Url::parse(&db.url).unwrap().path().trim_start_matches('/').to_string();
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    conn.execute(format!("DROP DATABASE {name} WITH (FORCE)").as_str()).await.unwrap();
    within(Duration::from_secs(10), "ready turns 503", || async { status("/health/ready").await == 503 }).await;
    assert_eq!(status("/health/alive").await, 200);
}

/// JSON log lines, Prometheus metrics by route and status, JSON errors for unknown
/// paths and methods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_metrics_and_errors() {
    let db = test_database(Backend::Sqlite).await;
    let khoa = KhoaProcess::start(BIN, &db, &[("KHOA_LOG_FORMAT", "json")]);
    let client = reqwest::Client::new();
    for _ in 0..3 {
        assert_eq!(client.get(khoa.url("/.well-known/jwks.json")).send().await.unwrap().status(), 200);
    }
    let res = client.get(khoa.url("/no/such/path?code=secret-looking")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    let res = client.post(khoa.url("/.well-known/openid-configuration")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert!(res.json::<Value>().await.unwrap()["error"].is_string());

    let res = client.get(khoa.url("/metrics")).send().await.unwrap();
    assert!(res.headers()["content-type"].to_str().unwrap().contains("openmetrics-text"));
    let text = res.text().await.unwrap();
    assert!(
        text.contains(r#"khoa_http_requests_total{method="GET",route="/.well-known/jwks.json",status="200"} 3"#),
        "{text}"
    );
    assert!(text.contains(r#"khoa_http_requests_total{method="GET",route="unmatched",status="404"} 1"#), "{text}");
    assert!(text.contains(r#"khoa_http_request_duration_seconds_bucket{le="#), "{text}");
    assert!(text.contains("khoa_published_signing_keys 3"), "{text}");

    let logs = {
        let path = khoa.stderr_path.clone();
        assert_eq!(khoa.terminate().code(), Some(0));
        std::fs::read_to_string(path).unwrap()
    };
    let lines: Vec<Value> = logs
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect();
    assert!(lines.iter().any(|l| l["route"] == "/.well-known/jwks.json" && l["status"] == 200 && l["level"] == "INFO"));
    assert!(lines.iter().any(|l| l["message"] == "ready"));
    assert!(!logs.contains("secret-looking"), "query strings must not be logged");
}

/// A database from before usernames were unique by key, with `alice` and `Alice`:
/// `khoa migrate` gives the key to the older account and names the other, and
/// `khoa serve` warns about it at start; both accounts keep signing in as typed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_username_collisions_are_reported_by_migrate_and_at_start() {
    use sqlx::Connection;
    let db = test_database(Backend::Postgres).await;
    let out = run_cli_with(
        BIN,
        &db,
        &[],
        &["user", "create", "--username", "alice", "--password-stdin"],
        Some("a long password"),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // What an older version allowed: `Alice` beside `alice`, neither with a key.
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql(
        "UPDATE users SET username_key = NULL; \
         INSERT INTO users (username, password_hash, email_verified, phone_number_verified, created_at, updated_at, \
         attributes) SELECT 'Alice', password_hash, FALSE, FALSE, created_at + 1, updated_at + 1, attributes \
         FROM users WHERE username = 'alice'",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let out = run_cli_with(BIN, &db, &[], &["migrate"], None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("username \"Alice\" differs from \"alice\" only in case or width"), "{stdout}");
    let server = KhoaProcess::start(BIN, &db, &[]);
    let logs = server.logs();
    assert!(logs.contains("two usernames differ only in case or width") && logs.contains("Alice"), "{logs}");
    drop(server);
    let users = stdout_json(&run_cli_with(BIN, &db, &[], &["user", "list", "--json"], None));
    assert_eq!(users.as_array().unwrap().len(), 2, "neither account was lost");
}

/// Safe upgrades: `khoa migrate --check` reports pending migrations without applying
/// them (exit 1), says when none are; and a database written by a newer khoa is
/// refused, with a clear message, by `--check`, `migrate` and `serve` alike.
#[tokio::test]
async fn migrate_check_reports_and_a_newer_schema_is_refused() {
    let db = khoa_testkit::test_database(khoa_testkit::Backend::Postgres).await;
    let text = |o: &std::process::Output| {
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    };
    let pending = khoa_testkit::run_cli(BIN, &db, &["migrate", "--check"], None);
    assert_eq!(pending.status.code(), Some(1), "{}", text(&pending));
    assert!(text(&pending).contains("pending: 0001 foundation") && text(&pending).contains("migration(s) pending"));
    let again = khoa_testkit::run_cli(BIN, &db, &["migrate", "--check"], None);
    assert_eq!(text(&again), text(&pending), "a check applies nothing");
    assert!(khoa_testkit::run_cli(BIN, &db, &["migrate"], None).status.success());
    let current = khoa_testkit::run_cli(BIN, &db, &["migrate", "--check"], None);
    assert!(current.status.success(), "{}", text(&current));
    assert!(text(&current).contains("up to date"), "{}", text(&current));
    // A newer khoa's migration.
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from a newer khoa', TRUE, '\\x00'::bytea, 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    for args in [&["migrate", "--check"][..], &["migrate"][..]] {
        let refused = khoa_testkit::run_cli(BIN, &db, args, None);
        assert!(!refused.status.success(), "{args:?}");
        assert!(
            text(&refused).contains("migration 9999") && text(&refused).contains("newer version"),
            "{}",
            text(&refused)
        );
    }
    // `khoa serve` stops at once with the same words (bounded: killed after 20 s).
    let mut serve = std::process::Command::new(BIN)
        .arg("serve")
        .current_dir(db.dir.path())
        .env_clear()
        .envs(khoa_testkit::khoa_env(&db))
        .env("KHOA_LISTEN", format!("127.0.0.1:{}", khoa_testkit::free_port()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = serve.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = serve.kill();
            let _ = serve.wait();
            panic!("khoa serve started on a newer schema");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let out = serve.wait_with_output().unwrap();
    assert!(!status.success());
    assert!(text(&out).contains("migration 9999") && text(&out).contains("newer version"), "{}", text(&out));
}
