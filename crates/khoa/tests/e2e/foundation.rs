//! End-to-end tests of the foundation: the real `khoa` binary, on a random loopback
//! port, on SQLite and on PostgreSQL.

use khoa_testkit::{both_backends, jwks_kids, run_cli, stdout_json, test_database, Backend, KhoaProcess, TestDatabase};
use serde_json::Value;
use std::collections::HashSet;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_khoa");

async fn get_json(url: &str) -> (reqwest::StatusCode, reqwest::header::HeaderMap, Value) {
    let res = reqwest::get(url).await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    (status, headers, res.json().await.unwrap())
}

/// Discovery names the exact issuer and only what exists; JWKS carries one public key
/// per configured algorithm with distinct kids and cache headers.
async fn discovery_and_jwks(db: TestDatabase) {
    let khoa = KhoaProcess::start(BIN, &db, &[]);
    let (status, headers, meta) = get_json(&khoa.url("/.well-known/openid-configuration")).await;
    assert_eq!(status, 200);
    assert_eq!(meta["issuer"], khoa.base_url.as_str());
    assert_eq!(meta["jwks_uri"], khoa.url("/.well-known/jwks.json"));
    assert_eq!(meta["id_token_signing_alg_values_supported"], serde_json::json!(["RS256", "ES256", "EdDSA"]));
    assert_eq!(meta["subject_types_supported"], serde_json::json!(["public"]));
    for (field, path) in [
        ("authorization_endpoint", "/oauth2/auth"),
        ("token_endpoint", "/oauth2/token"),
        ("userinfo_endpoint", "/userinfo"),
        ("revocation_endpoint", "/oauth2/revoke"),
        ("introspection_endpoint", "/oauth2/introspect"),
    ] {
        assert_eq!(meta[field], khoa.url(path), "{field}");
    }
    assert_eq!(meta["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(meta["code_challenge_methods_supported"], serde_json::json!(["S256"]));
    // RFC 9700 §2.6: public documents may be fetched cross-origin; the authorization
    // endpoint answers no CORS request.
    assert_eq!(headers["access-control-allow-origin"], "*");
    let cross_origin = reqwest::Client::new()
        .get(khoa.url("/oauth2/auth?client_id=x"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(cross_origin.headers().get("access-control-allow-origin").is_none());
    assert_eq!(
        meta["grant_types_supported"],
        serde_json::json!(["authorization_code", "refresh_token", "client_credentials"])
    );
    assert_eq!(
        meta["token_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic", "client_secret_post", "none"])
    );
    assert_eq!(meta["authorization_response_iss_parameter_supported"], true);
    assert_eq!(meta["request_uri_parameter_supported"], false);
    assert_eq!(meta["end_session_endpoint"], khoa.url("/oauth2/sessions/logout"));
    for flag in [
        "frontchannel_logout_supported",
        "frontchannel_logout_session_supported",
        "backchannel_logout_supported",
        "backchannel_logout_session_supported",
    ] {
        assert_eq!(meta[flag], true, "{flag}");
    }
    assert!(headers["cache-control"].to_str().unwrap().contains("max-age"));

    let (status, headers, jwks) = get_json(&khoa.url("/.well-known/jwks.json")).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    assert!(headers["cache-control"].to_str().unwrap().starts_with("public, max-age="));
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3);
    let algs: Vec<&str> = keys.iter().map(|k| k["alg"].as_str().unwrap()).collect();
    assert_eq!(algs, ["RS256", "ES256", "EdDSA"]);
    let before = jwks_kids(&khoa.base_url).await;
    assert_eq!(before.iter().collect::<HashSet<_>>().len(), 3, "kids are not distinct");
    for key in keys {
        assert_eq!(key["use"], "sig");
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(key.get(private).is_none(), "private member {private} published");
        }
    }
    // Restarting keeps the same keys (they are stored, sealed).
    assert_eq!(khoa.terminate().code(), Some(0), "graceful stop on SIGTERM");
    let again = KhoaProcess::start(BIN, &db, &[]);
    assert_eq!(jwks_kids(&again.base_url).await, before);
}

/// `khoa keys rotate` while the server runs: the new key is published within 2 s;
/// the old key stays published; `keys list` shows which one signs.
async fn rotation_is_published_within_two_seconds(db: TestDatabase) {
    let khoa = KhoaProcess::start(BIN, &db, &[]);
    let before = jwks_kids(&khoa.base_url).await;
    let out = run_cli(BIN, &db, &["keys", "rotate", "--alg", "RS256"], None);
    let rotated = stdout_json(&out);
    let new_kid = rotated[0]["kid"].as_str().unwrap().to_string();
    assert_eq!(rotated[0]["generation"], 2);
    let changed = Instant::now();
    loop {
        let now = jwks_kids(&khoa.base_url).await;
        if now.contains(&new_kid) {
            assert!(before.iter().all(|k| now.contains(k)), "an old key disappeared: {before:?} -> {now:?}");
            break;
        }
        assert!(changed.elapsed() < Duration::from_secs(2), "rotated key not published within 2 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let list = stdout_json(&run_cli(BIN, &db, &["keys", "list", "--json"], None));
    let state_of = |kid: &str| list.as_array().unwrap().iter().find(|k| k["kid"] == kid).unwrap()["state"].clone();
    assert_eq!(state_of(&new_kid), "pending", "default pre-publication delay is one hour");
    assert_eq!(state_of(&before[0]), "active");
}

/// Clients and users from the command line, as a user sees them.
async fn client_and_user_commands(db: TestDatabase) {
    let out = run_cli(
        BIN,
        &db,
        &[
            "client",
            "create",
            "--id",
            "portal",
            "--redirect-uri",
            "https://portal.example.vn/cb",
            "--redirect-uri",
            "http://127.0.0.1:8765/cb",
            "--post-logout-redirect-uri",
            "https://portal.example.vn/bye",
            "--frontchannel-logout-uri",
            "https://portal.example.vn/fc",
            "--backchannel-logout-uri",
            "https://portal.example.vn/bc",
            "--grant-types",
            "authorization_code,refresh_token,client_credentials",
            "--scopes",
            "openid profile email",
            "--skip-consent",
            "--name",
            "Cổng thông tin",
            "--logo-uri",
            "https://portal.example.vn/logo.png",
            "--owner",
            "Phòng CNTT",
            "--contact",
            "it@example.vn",
            "--metadata",
            "{\"khoa\":\"cntt\"}",
            "--id-token-alg",
            "ES256",
            "--access-token-lifetime",
            "15m",
        ],
        None,
    );
    let created = stdout_json(&out);
    let secret = created["client_secret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 43, "256-bit secret, base64url");
    assert_eq!(created["client_id"], "portal");
    assert_eq!(created["client_type"], "confidential");
    assert_eq!(created["id_token_signed_response_alg"], "ES256");
    assert_eq!(created["lifetimes"]["access_token"], 900);
    assert!(created.get("client_secret_hash").is_none());

    let shown = stdout_json(&run_cli(BIN, &db, &["client", "show", "portal"], None));
    assert!(shown.get("client_secret").is_none(), "the secret is shown once only");
    assert_eq!(shown["client_name"], "Cổng thông tin");
    assert_eq!(shown["metadata"]["khoa"], "cntt");
    assert_eq!(shown["redirect_uris"][1], "http://127.0.0.1:8765/cb");

    // Only a hash is stored. (The raw files are scanned before this process opens the
    // database: closing a descriptor of a SQLite file drops the process's locks on it.)
    if db.backend == Backend::Sqlite {
        for file in ["khoa.db", "khoa.db-wal"] {
            let bytes = std::fs::read(db.dir.path().join(file)).unwrap_or_default();
            assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "plaintext secret in {file}");
        }
    }
    let store = khoa_store::connect(&db.url).await.unwrap();
    let stored = store.client("portal").await.unwrap().unwrap();
    let hash = stored.client_secret_hash.unwrap();
    assert!(!hash.contains(&secret));
    assert!(khoa_core::secret::verify_client_secret(&secret, &hash));

    let public = stdout_json(&run_cli(
        BIN,
        &db,
        &["client", "create", "--id", "mobile", "--public", "--redirect-uri", "vn.example.app:/cb"],
        None,
    ));
    assert!(public.get("client_secret").is_none());
    let given = stdout_json(&run_cli(
        BIN,
        &db,
        &[
            "client",
            "create",
            "--id",
            "given",
            "--secret",
            "a:b%c-0123456789-0123456789-0123456789",
            "--redirect-uri",
            "https://g.example/cb",
        ],
        None,
    ));
    assert_eq!(given["client_secret"], "a:b%c-0123456789-0123456789-0123456789");

    let list = stdout_json(&run_cli(BIN, &db, &["client", "list", "--json"], None));
    assert_eq!(list.as_array().unwrap().len(), 3);
    assert!(run_cli(BIN, &db, &["client", "delete", "given"], None).status.success());
    assert!(!run_cli(BIN, &db, &["client", "delete", "given"], None).status.success());

    let user = stdout_json(&run_cli(
        BIN,
        &db,
        &[
            "user",
            "create",
            "--username",
            "2280600348",
            "--password-stdin",
            "--email",
            "sv@hutech.edu.vn",
            "--email-verified",
            "--name",
            "Nguyễn Văn A",
            "--phone",
            "+84976535298",
        ],
        Some("mật khẩu đủ dài\n"),
    ));
    assert_eq!(user["username"], "2280600348");
    assert!(user["id"].as_i64().unwrap() > 0);
    assert!(user.get("password_hash").is_none());
    let stored = store.user_by_username("2280600348").await.unwrap().unwrap();
    let hash = stored.password_hash.unwrap_or_default();
    assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    assert!(khoa_core::password::verify_password("mật khẩu đủ dài", &hash));
    assert!(run_cli(
        BIN,
        &db,
        &["user", "set-password", "2280600348", "--password-stdin"],
        Some("another long password\n")
    )
    .status
    .success());
    let stored = store.user_by_username("2280600348").await.unwrap().unwrap();
    assert!(khoa_core::password::verify_password("another long password", &stored.password_hash.unwrap_or_default()));
    let users = stdout_json(&run_cli(BIN, &db, &["user", "list", "--json"], None));
    assert_eq!(users[0]["email_verified"], true);
    assert!(run_cli(BIN, &db, &["user", "delete", "2280600348"], None).status.success());
    assert!(store.user_by_username("2280600348").await.unwrap().is_none());
}

/// Every kind of bad input is a clear message and a non-zero exit, never a panic.
async fn bad_input_fails_clearly(db: TestDatabase) {
    let fails = |args: &[&str], stdin: Option<&str>, expect: &str| {
        let out = run_cli(BIN, &db, args, stdin);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(expect), "{args:?}: expected {expect:?} in {err}");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    };
    fails(&["client", "create", "--id", "x", "--redirect-uri", "https://x.example/cb#frag"], None, "fragment");
    fails(&["client", "create", "--id", "x", "--redirect-uri", "/relative"], None, "not an absolute URI");
    fails(&["client", "create", "--id", "x", "--redirect-uri", "http://x.example/cb"], None, "loopback");
    fails(
        &["client", "create", "--id", "x", "--redirect-uri", "https://x.example/cb", "--secret", "short"],
        None,
        "at least 32",
    );
    fails(
        &["client", "create", "--id", "x", "--redirect-uri", "https://x.example/cb", "--grant-types", "password"],
        None,
        "unknown grant type",
    );
    fails(
        &["client", "create", "--id", "x", "--redirect-uri", "https://x.example/cb", "--metadata", "{"],
        None,
        "not valid JSON",
    );
    fails(&["client", "show", "ghost"], None, "no client");
    fails(&["client", "delete", "ghost"], None, "no client");
    fails(&["user", "create", "--username", "u1", "--password-stdin"], Some(""), "no password");
    fails(&["user", "create", "--username", "u1", "--password-stdin"], Some("short\n"), "at least 8");
    fails(
        &["user", "create", "--username", "u1", "--password-stdin", "--email", "nope"],
        Some("long enough\n"),
        "not an email",
    );
    assert!(run_cli(BIN, &db, &["user", "create", "--username", "u1", "--password-stdin"], Some("long enough\n"))
        .status
        .success());
    fails(&["user", "create", "--username", "u1", "--password-stdin"], Some("long enough\n"), "taken");
    fails(&["user", "delete", "ghost"], None, "no user");
    fails(&["user", "set-password", "ghost", "--password-stdin"], Some("long enough\n"), "no user");
    fails(&["keys", "rotate", "--alg", "HS256"], None, "unknown signing algorithm");
}

both_backends!(
    discovery_and_jwks,
    rotation_is_published_within_two_seconds,
    client_and_user_commands,
    bad_input_fails_clearly
);

/// `khoa serve` with no configuration at all: khoa.db and a 0600 khoa.key in the
/// working directory, issuer http://localhost:8080.
#[tokio::test]
async fn zero_configuration_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let khoa = KhoaProcess::start_in(BIN, dir.path(), vec![], &[("KHOA_ISSUER", "http://localhost:8080")]);
    let (_, _, meta) = get_json(&khoa.url("/.well-known/openid-configuration")).await;
    assert_eq!(meta["issuer"], "http://localhost:8080");
    let key_mode = std::fs::metadata(dir.path().join("khoa.key")).unwrap().permissions().mode() & 0o777;
    assert_eq!(key_mode, 0o600);
    let db_mode = std::fs::metadata(dir.path().join("khoa.db")).unwrap().permissions().mode() & 0o777;
    assert_eq!(db_mode, 0o600);
    assert_eq!(get_json(&khoa.url("/.well-known/jwks.json")).await.2["keys"].as_array().unwrap().len(), 3);
}

/// A configuration file with an unknown key, a bad value, an unreachable database, a
/// master key that cannot open the stored keys: each a clear error, non-zero exit.
#[tokio::test]
async fn bad_configuration_fails_at_start() {
    let db = test_database(Backend::Sqlite).await;
    let serve = |env: &[(&str, &str)], config: Option<&str>| {
        let mut cmd = std::process::Command::new(BIN);
        if let Some(text) = config {
            let path = db.dir.path().join("khoa.toml");
            std::fs::write(&path, text).unwrap();
            cmd.arg("--config").arg(path);
        }
        cmd.arg("serve")
            .current_dir(db.dir.path())
            .env_clear()
            .env("KHOA_DATABASE_URL", &db.url)
            .env("KHOA_LISTEN", "127.0.0.1:0")
            .env("KHOA_ADMIN_LISTEN", "127.0.0.1:0");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!err.contains("panicked"), "{err}");
        err
    };
    let typo = serve(&[], Some("isuer = \"https://x.example\"\n"));
    assert!(typo.contains("unknown setting `isuer` (line 1); did you mean `issuer`?"), "{typo}");
    assert!(serve(&[], Some("[tokens]\naccess_token = \"soon\"\n")).contains("tokens.access_token:"));
    assert!(serve(&[("KHOA_LISTEN", "nowhere")], None).contains("KHOA_LISTEN:"));
    assert!(serve(&[("KHOA_LOG_FORMAT", "yaml")], None).contains("KHOA_LOG_FORMAT:"));
    let err = serve(
        &[("KHOA_DATABASE_URL", "postgres://khoa@127.0.0.1:1/none"), ("KHOA_SECRET", khoa_testkit::TEST_SECRET)],
        None,
    );
    assert!(err.contains("cannot open the database") && err.to_lowercase().contains("refused"), "{err}");
    let err = serve(&[("KHOA_DATABASE_URL", "postgres://khoa@127.0.0.1:1/none")], None);
    assert!(err.contains("KHOA_SECRET"), "{err}");

    // Keys created under one master key cannot be opened with another.
    assert!(run_cli(BIN, &db, &["keys", "rotate", "--immediately"], None).status.success());
    let err = serve(&[("KHOA_SECRET", "a-completely-different-master-secret-0000")], None);
    assert!(err.contains("cannot be opened") && err.contains("KHOA_SECRET"), "{err}");
    // A key file others can read is refused.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(db.dir.path().join("khoa.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(serve(&[], None).contains("chmod 600"));
}

#[test]
fn serve_help_documents_the_environment() {
    let out = std::process::Command::new(BIN).args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for var in
        ["KHOA_ISSUER", "KHOA_LISTEN", "KHOA_DATABASE_URL", "KHOA_SECRET", "KHOA_LOG", "KHOA_LOG_FORMAT", "--config"]
    {
        assert!(help.contains(var), "serve --help does not mention {var}");
    }
}
