//! The token lifecycle end to end, on SQLite and on PostgreSQL: refresh rotation with
//! reuse detection and a grace window, client credentials, revocation (RFC 7009),
//! introspection (RFC 7662), and the cleanup job.

use khoa_testkit::browser::Browser;
use khoa_testkit::flow::{jwt_claims, Khoa};
use khoa_testkit::{both_backends, test_database, Backend, KhoaProcess, TestDatabase};
use serde_json::Value;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_khoa");

/// A confidential client `app` (refresh grant, skip consent), a second client `other`,
/// and the first token response of `app` for `openid profile offline_access`.
async fn setup(khoa: &Khoa) -> (String, String, Value) {
    let secret = khoa.client("app", &["--skip-consent"]).unwrap();
    let other = khoa.client("other", &["--skip-consent"]).unwrap();
    let code = khoa.code(&Browser::new(), "app", &[("scope", "openid profile offline_access"), ("nonce", "n1")]).await;
    let first = khoa.exchange(&code, ("app", &secret)).await;
    assert!(first["refresh_token"].is_string(), "offline_access gives a refresh token: {first}");
    (secret, other, first)
}

async fn post(
    khoa: &Khoa,
    path: &str,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = reqwest::Client::new().post(khoa.url(path)).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let res = req.send().await.unwrap();
    let (status, headers) = (res.status().as_u16(), res.headers().clone());
    let text = res.text().await.unwrap();
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn refresh(khoa: &Khoa, rt: &str, basic: (&str, &str), scope: Option<&str>) -> (u16, Value) {
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", rt)];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    let (status, _, body) = post(khoa, "/oauth2/token", &form, Some(basic)).await;
    (status, body)
}

async fn introspect(khoa: &Khoa, token: &str, basic: (&str, &str)) -> Value {
    let (status, headers, body) = post(khoa, "/oauth2/introspect", &[("token", token)], Some(basic)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    body
}

async fn rotation_scopes_and_id_tokens(db: TestDatabase) {
    let khoa = Khoa::new(BIN, db);
    let (secret, other, first) = setup(&khoa).await;
    let app = ("app", secret.as_str());
    let rt1 = first["refresh_token"].as_str().unwrap();
    let (status, second) = refresh(&khoa, rt1, app, None).await;
    assert_eq!(status, 200, "{second}");
    let rt2 = second["refresh_token"].as_str().unwrap();
    assert_ne!(rt1, rt2, "rotated on every use");
    assert_ne!(first["access_token"], second["access_token"]);
    // OIDC Core §12.2: same iss, sub, aud, azp, auth_time; a new iat; no nonce.
    let (a, b) = (jwt_claims(first["id_token"].as_str().unwrap()), jwt_claims(second["id_token"].as_str().unwrap()));
    for claim in ["iss", "sub", "aud", "azp", "auth_time"] {
        assert_eq!(a[claim], b[claim], "{claim}");
    }
    assert_eq!(a["nonce"], "n1");
    assert!(b.get("nonce").is_none(), "no nonce on refresh");
    assert!(b["iat"].as_i64() >= a["iat"].as_i64());
    assert_eq!(khoa.userinfo(second["access_token"].as_str().unwrap()).await.0, 200);

    // Narrowing works; widening is invalid_scope; another client's token is invalid_grant.
    let (status, narrowed) = refresh(&khoa, rt2, app, Some("openid")).await;
    assert_eq!((status, narrowed["scope"].as_str()), (200, Some("openid")));
    let rt3 = narrowed["refresh_token"].as_str().unwrap();
    let (status, body) = refresh(&khoa, rt3, app, Some("openid profile")).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_scope")));
    let (status, body) = refresh(&khoa, rt3, ("other", &other), None).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    // Neither refusal spent the token.
    assert_eq!(refresh(&khoa, rt3, app, None).await.0, 200);

    // No refresh token without offline_access (unless the client always gets one).
    let code = khoa.code(&Browser::new(), "app", &[("scope", "openid")]).await;
    assert!(khoa.exchange(&code, app).await.get("refresh_token").is_none());
    let always = khoa.client("always", &["--skip-consent", "--always-issue-refresh-token"]).unwrap();
    let code = khoa.code(&Browser::new(), "always", &[("scope", "openid")]).await;
    assert!(khoa.exchange(&code, ("always", &always)).await["refresh_token"].is_string());
}

async fn reuse_revokes_the_family_and_grace_forgives_duplicates(db: TestDatabase) {
    let khoa = Khoa::embedded(BIN, db, |s| s.refresh_grace = 1).await;
    let (secret, _, first) = setup(&khoa).await;
    let app = ("app", secret.as_str());
    let rt1 = first["refresh_token"].as_str().unwrap();
    // Two presentations at once (honest concurrency): both answered, same successor.
    let ((s1, a), (s2, b)) = futures::join!(refresh(&khoa, rt1, app, None), refresh(&khoa, rt1, app, None));
    assert_eq!((s1, s2), (200, 200), "{a} {b}");
    assert_eq!(a["refresh_token"], b["refresh_token"], "one successor");
    let rt2 = a["refresh_token"].as_str().unwrap().to_string();
    let at2 = a["access_token"].as_str().unwrap().to_string();
    // At the grace window's last second a duplicate still gets the same successor.
    khoa.clock().advance(1);
    let (status, c) = refresh(&khoa, rt1, app, None).await;
    assert_eq!((status, &c["refresh_token"]), (200, &a["refresh_token"]), "{c}");
    // Reuse after the grace window: refused, and the whole family dies.
    khoa.clock().advance(1);
    let (status, body) = refresh(&khoa, rt1, app, None).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    let (status, body) = refresh(&khoa, &rt2, app, None).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "the newest refresh token is revoked");
    assert_eq!(khoa.userinfo(&at2).await.0, 401, "access tokens of the family are revoked");
    assert_eq!(khoa.userinfo(first["access_token"].as_str().unwrap()).await.0, 401);
    assert_eq!(introspect(&khoa, &rt2, app).await, serde_json::json!({"active": false}));
    let metrics = reqwest::get(khoa.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("khoa_refresh_token_reuse_total 1"), "{metrics}");
}

/// 50 concurrent refreshes of one token: no 5xx, one rotation, one live descendant.
async fn fifty_concurrent_refreshes(db: TestDatabase) {
    let khoa = Khoa::new(BIN, db);
    let (secret, _, first) = setup(&khoa).await;
    let second = (khoa.db.backend == Backend::Postgres).then(|| KhoaProcess::start(BIN, &khoa.db, &[]));
    let rt = first["refresh_token"].as_str().unwrap();
    let http = reqwest::Client::new();
    let requests = (0..50).map(|i| {
        // On PostgreSQL, alternate between two server processes.
        let url = match (&second, i % 2) {
            (Some(p), 1) => p.url("/oauth2/token"),
            _ => khoa.url("/oauth2/token"),
        };
        let req = http
            .post(url)
            .basic_auth("app", Some(&secret))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", rt)]);
        async move {
            let res = req.send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    });
    let results = futures::future::join_all(requests).await;
    assert!(
        results.iter().all(|(s, _)| *s == 200),
        "{:?}",
        results.iter().filter(|(s, _)| *s != 200).collect::<Vec<_>>()
    );
    let descendants: std::collections::HashSet<&str> =
        results.iter().map(|(_, b)| b["refresh_token"].as_str().unwrap()).collect();
    assert_eq!(descendants.len(), 1, "exactly one live descendant");
    let next = descendants.into_iter().next().unwrap();
    assert_eq!(introspect(&khoa, next, ("app", &secret)).await["active"], true);
    assert_eq!(introspect(&khoa, rt, ("app", &secret)).await, serde_json::json!({"active": false}));
    assert_eq!(refresh(&khoa, next, ("app", &secret), None).await.0, 200);
}

async fn client_credentials(db: TestDatabase) {
    let khoa = Khoa::new(BIN, db);
    let args = ["--grant-types", "client_credentials", "--scopes", "api:read api:write openid"];
    let secret = khoa.client("m2m", &args).unwrap();
    let m2m = ("m2m", secret.as_str());
    let (status, headers, body) =
        post(&khoa, "/oauth2/token", &[("grant_type", "client_credentials")], Some(m2m)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["scope"], "api:read api:write");
    assert!(body.get("id_token").is_none() && body.get("refresh_token").is_none());
    let at = body["access_token"].as_str().unwrap();
    let claims = jwt_claims(at);
    assert_eq!((claims["sub"].as_str(), claims["client_id"].as_str()), (Some("m2m"), Some("m2m")));
    let (status, _, body) =
        post(&khoa, "/oauth2/token", &[("grant_type", "client_credentials"), ("scope", "api:read")], Some(m2m)).await;
    assert_eq!((status, body["scope"].as_str()), (200, Some("api:read")));
    assert_eq!(khoa.userinfo(at).await.0, 401, "no user behind a client_credentials token");
    assert_eq!(introspect(&khoa, at, m2m).await["active"], true);
}

async fn revocation(db: TestDatabase) {
    let khoa = Khoa::new(BIN, db);
    let (secret, _, first) = setup(&khoa).await;
    let app = ("app", secret.as_str());
    let revoke = |token: String, hint: Option<&'static str>, basic: Option<(String, String)>| {
        let khoa = &khoa;
        async move {
            let mut form = vec![("token", token.as_str())];
            if let Some(h) = hint {
                form.push(("token_type_hint", h));
            }
            let basic = basic.as_ref().map(|(a, b)| (a.as_str(), b.as_str()));
            let (status, headers, body) = post(khoa, "/oauth2/revoke", &form, basic).await;
            (status, headers, body)
        }
    };
    let creds = |id: &str, s: &str| Some((id.to_string(), s.to_string()));
    let at = first["access_token"].as_str().unwrap().to_string();
    let rt = first["refresh_token"].as_str().unwrap().to_string();
    // An access token (the refusals are in-process, beside the route).
    let (status, headers, _) = revoke(at.clone(), None, creds("app", &secret)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(khoa.userinfo(&at).await.0, 401);
    assert_eq!(introspect(&khoa, &at, app).await, serde_json::json!({"active": false}));
    // A refresh token: its family's access tokens die with it.
    let (_, second) = refresh(&khoa, &rt, app, None).await;
    let (rt2, at2) =
        (second["refresh_token"].as_str().unwrap().to_string(), second["access_token"].as_str().unwrap().to_string());
    assert_eq!(khoa.userinfo(&at2).await.0, 200);
    assert_eq!(revoke(rt2.clone(), Some("access_token"), creds("app", &secret)).await.0, 200);
    assert_eq!(refresh(&khoa, &rt2, app, None).await.1["error"], "invalid_grant");
    assert_eq!(khoa.userinfo(&at2).await.0, 401);
}

async fn introspection(db: TestDatabase) {
    let khoa = Khoa::new(BIN, db);
    let (secret, _, first) = setup(&khoa).await;
    let app = ("app", secret.as_str());
    let at = first["access_token"].as_str().unwrap();
    let rt = first["refresh_token"].as_str().unwrap();
    // What another client is told, and every refusal, are tested in-process.
    let a = introspect(&khoa, at, app).await;
    assert_eq!(a["active"], true);
    for field in ["scope", "client_id", "username", "token_type", "exp", "iat", "sub", "aud", "iss", "jti"] {
        assert!(a.get(field).is_some(), "access token introspection lacks {field}: {a}");
    }
    assert_eq!(
        (a["client_id"].as_str(), a["username"].as_str(), a["token_type"].as_str()),
        (Some("app"), Some("sv01"), Some("Bearer"))
    );
    assert_eq!(a["iss"], khoa.issuer());
    let r = introspect(&khoa, rt, app).await;
    assert_eq!((r["active"].as_bool(), r["token_type"].as_str()), (Some(true), Some("refresh_token")));
    assert_eq!(r["scope"], "offline_access openid profile");
}

/// `KHOA_ACCESS_TOKEN_FORMAT=opaque`: access tokens are random handles, found by their
/// hash at userinfo, introspection and revocation; the ID token's at_hash covers them.
async fn opaque_access_tokens(db: TestDatabase) {
    let khoa = Khoa::with_env(BIN, db, &[("KHOA_ACCESS_TOKEN_FORMAT", "opaque")]);
    let (secret, _other, first) = setup(&khoa).await;
    let app = ("app", secret.as_str());
    let at = first["access_token"].as_str().unwrap();
    assert!(!at.contains('.') && at.len() >= 43, "an opaque handle, not a JWT: {at}");
    let id_token = jwt_claims(first["id_token"].as_str().unwrap());
    assert_eq!(id_token["at_hash"], khoa_core::tokens::at_hash(khoa_core::jose::SigningAlgorithm::RS256, at));
    let (status, _, info) = khoa.userinfo(at).await;
    assert_eq!((status, &info["sub"]), (200, &id_token["sub"]));
    let a = introspect(&khoa, at, app).await;
    assert_eq!(
        (a["active"].as_bool(), a["sub"].as_str(), a["client_id"].as_str(), a["username"].as_str()),
        (Some(true), id_token["sub"].as_str(), Some("app"), Some("sv01"))
    );
    assert_eq!(a["token_type"], "Bearer");
    // A guessed or altered handle finds nothing.
    let mut altered = at.to_string();
    let last = if altered.ends_with('A') { "B" } else { "A" };
    altered.replace_range(altered.len() - 1.., last);
    assert_eq!(khoa.userinfo(&altered).await.0, 401);
    assert_eq!(introspect(&khoa, &altered, app).await, serde_json::json!({"active": false}));
    // Refresh gives another opaque token; revoking the first ends it alone.
    let (status, second) = refresh(&khoa, first["refresh_token"].as_str().unwrap(), app, None).await;
    assert_eq!(status, 200, "{second}");
    let at2 = second["access_token"].as_str().unwrap();
    assert!(!at2.contains('.') && at2 != at);
    let (status, _, _) = post(&khoa, "/oauth2/revoke", &[("token", at)], Some(app)).await;
    assert_eq!(status, 200);
    assert_eq!(khoa.userinfo(at).await.0, 401);
    assert_eq!(introspect(&khoa, at, app).await, serde_json::json!({"active": false}));
    assert_eq!(khoa.userinfo(at2).await.0, 200);
    // client_credentials: the token speaks for the client, not a user.
    let m2m = khoa.client("m2m", &["--grant-types", "client_credentials", "--scopes", "api"]).unwrap();
    let (status, _, body) =
        post(&khoa, "/oauth2/token", &[("grant_type", "client_credentials")], Some(("m2m", &m2m))).await;
    assert_eq!(status, 200, "{body}");
    let cc = body["access_token"].as_str().unwrap();
    assert!(!cc.contains('.'));
    let c = introspect(&khoa, cc, ("m2m", &m2m)).await;
    assert_eq!((c["active"].as_bool(), c["sub"].as_str(), c.get("username")), (Some(true), Some("m2m"), None));
    assert_eq!(khoa.userinfo(cc).await.0, 401, "no user behind a client_credentials token");
}

/// `KHOA_ACCESS_TOKEN_ALG=ES256`: JWT access tokens signed with the ES256 key.
async fn es256_access_tokens(db: TestDatabase) {
    let khoa = Khoa::with_env(BIN, db, &[("KHOA_ACCESS_TOKEN_ALG", "ES256")]);
    let (_secret, _other, first) = setup(&khoa).await;
    let at = first["access_token"].as_str().unwrap();
    let header = khoa_testkit::flow::jwt_header(at);
    assert_eq!((header["alg"].as_str(), header["typ"].as_str()), (Some("ES256"), Some("at+jwt")));
    assert_eq!(khoa_testkit::flow::jwt_header(first["id_token"].as_str().unwrap())["alg"], "RS256");
    assert_eq!(khoa.userinfo(at).await.0, 200);
}

/// Failed client authentications: after the free failures, further failures get 429
/// with Retry-After for a doubling period; the right secret is never refused (a
/// client_id is public, so failures must not lock its owner out); other clients and
/// unknown client_ids are not affected; counted in /metrics.
async fn client_authentication_failures_are_throttled(db: TestDatabase) {
    let khoa = Khoa::embedded(BIN, db, |s| {
        s.client_auth_throttle.free_failures = 3;
        s.client_auth_throttle.base_delay = 2;
    })
    .await;
    let m2m = ["--grant-types", "client_credentials", "--scopes", "api"];
    let secret = khoa.client("m2m", &m2m).unwrap();
    let other = khoa.client("m2m-2", &m2m).unwrap();
    let grant = [("grant_type", "client_credentials"), ("scope", "api")];
    let try_with = |id: &'static str, secret: String| {
        let khoa = &khoa;
        async move { post(khoa, "/oauth2/token", &grant, Some((id, &secret))).await }
    };
    // Three free failures (the third starts the waiting period): 401 each.
    for _ in 0..3 {
        assert_eq!(try_with("m2m", "wrong".into()).await.0, 401);
    }
    // Now 429 with Retry-After, at the token endpoint and at introspection alike.
    let (status, headers, body) = try_with("m2m", "wrong".into()).await;
    assert_eq!((status, body["error"].as_str()), (429, Some("invalid_client")), "{body}");
    assert_eq!(headers["retry-after"], "2");
    assert_eq!(headers["cache-control"], "no-store");
    let (status, _, _) = post(&khoa, "/oauth2/introspect", &[("token", "x")], Some(("m2m", "wrong"))).await;
    assert_eq!(status, 429);
    // The right secret still works, and another client is not affected.
    assert_eq!(try_with("m2m", secret.clone()).await.0, 200);
    assert_eq!(try_with("m2m-2", "wrong".into()).await.0, 401);
    assert_eq!(try_with("m2m-2", other).await.0, 200);
    // Unknown client_ids are refused as before, never throttled.
    for _ in 0..6 {
        assert_eq!(try_with("nobody", "wrong".into()).await.0, 401);
    }
    // A second before the period ends: still 429, and one second to wait.
    khoa.clock().advance(1);
    let (status, headers, _) = try_with("m2m", "wrong".into()).await;
    assert_eq!((status, headers["retry-after"].to_str().unwrap()), (429, "1"));
    // After the period, a failure is counted again (401), and doubles the next one.
    khoa.clock().advance(1);
    assert_eq!(try_with("m2m", "wrong".into()).await.0, 401);
    let (status, headers, _) = try_with("m2m", "wrong".into()).await;
    assert_eq!((status, headers["retry-after"].to_str().unwrap()), (429, "4"), "doubled");
    let metrics = reqwest::get(khoa.url("/metrics")).await.unwrap().text().await.unwrap();
    let count = |name: &str| {
        metrics.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    assert_eq!(count("khoa_client_auth_throttled_total"), Some(4.0), "{metrics}");
    assert_eq!(count("khoa_client_auth_failures_total"), Some(15.0), "{metrics}");
}

both_backends!(
    client_authentication_failures_are_throttled,
    opaque_access_tokens,
    es256_access_tokens,
    rotation_scopes_and_id_tokens,
    reuse_revokes_the_family_and_grace_forgives_duplicates,
    fifty_concurrent_refreshes,
    client_credentials,
    revocation,
    introspection,
);

/// The cleanup job deletes what expired, in every process that holds the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_deletes_expired_rows() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let db = test_database(backend).await;
        // Codes and access tokens of 1 s, a cleanup every 100 ms: nothing expires until
        // the test moves the server's clock.
        let khoa = Khoa::embedded(BIN, db, |s| {
            s.cleanup_interval = Duration::from_millis(100);
            s.lifetimes.authorization_code = 1;
            s.lifetimes.access_token = 1;
        })
        .await;
        let secret = khoa.client("app", &["--skip-consent"]).unwrap();
        let browser = Browser::new();
        for _ in 0..3 {
            let code = khoa.code(&browser, "app", &[]).await;
            khoa.exchange(&code, ("app", &secret)).await;
        }
        let _unused = khoa.code(&browser, "app", &[]).await;
        let store = khoa_store::connect(&khoa.db.url).await.unwrap();
        let rows = |table: &'static str| {
            let store = store.clone();
            async move { store.row_counts().await.unwrap().into_iter().find(|(t, _)| *t == table).unwrap().1 }
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(rows("authorization_codes").await, 4, "nothing expired yet ({backend:?})");
        assert_eq!(rows("access_tokens").await, 3);
        khoa.clock().advance(2);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while rows("authorization_codes").await + rows("access_tokens").await > 0 {
            assert!(std::time::Instant::now() < deadline, "expired rows not cleaned up ({backend:?})");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let metrics = reqwest::get(khoa.url("/metrics")).await.unwrap().text().await.unwrap();
        assert!(metrics.contains("khoa_cleanup_deleted_rows_total{table=\"authorization_codes\"} 4"), "{metrics}");
        assert!(metrics.contains("khoa_cleanup_lag_seconds"));
        assert_eq!(rows("sessions").await, 1, "the session has not expired");
    }
}
