//! Two `khoa serve` processes on one PostgreSQL, with no load balancer: the test sends
//! each step to one or the other, and they behave as one server.

use khoa_testkit::browser::{location, query, Browser};
use khoa_testkit::flow::{authorize_url_at, jwt_header, Khoa, CALLBACK};
use khoa_testkit::{run_cli_with, test_database, Backend, KhoaProcess};
use serde_json::Value;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_khoa");

async fn post(base: &str, path: &str, form: &[(&str, &str)], secret: &str) -> (u16, Value) {
    let res =
        reqwest::Client::new().post(format!("{base}{path}")).basic_auth("app", Some(secret)).form(form).send().await;
    let res = res.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// A code from `base` for a browser that has a session (SSO: 303 to the client).
async fn sso_code(base: &str, issuer: &str, browser: &Browser) -> Option<String> {
    let params = [
        ("client_id", "app"),
        ("redirect_uri", CALLBACK),
        ("response_type", "code"),
        ("scope", "openid offline_access"),
    ];
    let res = browser.get(&authorize_url_at(base, &params)).await;
    (res.status() == 303).then(|| query(&location(&res, issuer)).get("code").cloned()).flatten()
}

async fn exchange(base: &str, code: &str, secret: &str) -> Value {
    let form = [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", CALLBACK)];
    let (status, body) = post(base, "/oauth2/token", &form, secret).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn metric(base: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    text.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_postgres_act_as_one_server() {
    // Codes live 2 s: a code expires at its expiry second, so a 1 s code fetched late in
    // one second would be expired at the next.
    let env =
        [("KHOA_REFRESH_GRACE", "1s"), ("KHOA_CLEANUP_INTERVAL", "1s"), ("KHOA_AUTHORIZATION_CODE_LIFETIME", "2s")];
    let khoa = Khoa::with_env(BIN, test_database(Backend::Postgres).await, &env);
    let issuer = khoa.issuer();
    let b = KhoaProcess::start(BIN, &khoa.db, &[env[0], env[1], env[2], ("KHOA_ISSUER", &issuer)]);
    let (a_url, b_url) = (khoa.url(""), b.base_url.clone());
    let secret = khoa.client("app", &["--skip-consent"]).unwrap();

    // Log in on A, exchange on B; userinfo on both.
    let browser = Browser::new();
    let code = khoa.code(&browser, "app", &[("scope", "openid offline_access")]).await;
    let tokens = exchange(&b_url, &code, &secret).await;
    let access = tokens["access_token"].as_str().unwrap();
    for base in [&a_url, &b_url] {
        let res = reqwest::Client::new().get(format!("{base}/userinfo")).bearer_auth(access).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
    // The session made on A gives SSO on B (one cookie for the issuer's host).
    let code = sso_code(&b_url, &issuer, &browser).await.expect("SSO on B");
    let second = exchange(&a_url, &code, &secret).await;

    // A refresh token presented to both at once, ten times each: exactly one rotation
    // wins; the duplicates (within the 1 s grace window, which counts whole seconds)
    // get its successor, so one refresh token value comes back, one live descendant.
    let refresh = second["refresh_token"].as_str().unwrap().to_string();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let base = if i % 2 == 0 { a_url.clone() } else { b_url.clone() };
            let (refresh, secret) = (refresh.clone(), secret.clone());
            tokio::spawn(async move {
                post(&base, "/oauth2/token", &[("grant_type", "refresh_token"), ("refresh_token", &refresh)], &secret)
                    .await
            })
        })
        .collect();
    let mut successors = std::collections::BTreeSet::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
        successors.insert(body["refresh_token"].as_str().unwrap().to_string());
    }
    assert_eq!(successors.len(), 1, "one successor for all: {successors:?}");
    let successor = successors.pop_first().unwrap();
    // After the window the rotated token is reuse (the family is revoked, on both).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, _) =
        post(&b_url, "/oauth2/token", &[("grant_type", "refresh_token"), ("refresh_token", &refresh)], &secret).await;
    assert_eq!(status, 400);
    let (status, _) =
        post(&a_url, "/oauth2/token", &[("grant_type", "refresh_token"), ("refresh_token", &successor)], &secret).await;
    assert_eq!(status, 400, "the family was revoked by the reuse on B");

    // Logout on A is honoured on B: the session's tokens and the SSO session are gone.
    let hint = second["id_token"].as_str().unwrap();
    let res = browser.get(&format!("{a_url}/oauth2/sessions/logout?id_token_hint={hint}")).await;
    assert_eq!(res.status(), 200);
    let res = reqwest::Client::new().get(format!("{b_url}/userinfo")).bearer_auth(access).send().await.unwrap();
    assert_eq!(res.status(), 401, "the session's access token is revoked on B too");
    assert_eq!(sso_code(&b_url, &issuer, &browser).await, None, "no SSO on B after logout on A");

    // A key rotated through the command line signs on both after the delay.
    let old_kid = jwt_header(tokens["id_token"].as_str().unwrap())["kid"].as_str().unwrap().to_string();
    let out =
        run_cli_with(BIN, &khoa.db, &[("KHOA_KEY_PREPUBLICATION", "3s")], &["keys", "rotate", "--alg", "RS256"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let browser = Browser::new();
    khoa.code(&browser, "app", &[]).await; // a new session, for the codes below
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut kids = vec![];
    loop {
        kids.clear();
        for base in [&a_url, &b_url] {
            let code = sso_code(base, &issuer, &browser).await.expect("SSO");
            let t = exchange(base, &code, &secret).await;
            kids.push(jwt_header(t["id_token"].as_str().unwrap())["kid"].as_str().unwrap().to_string());
        }
        if kids.iter().all(|k| *k != old_kid) {
            break;
        }
        assert!(Instant::now() < deadline, "both nodes still sign with the old key: {kids:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(kids[0], kids[1], "one new key for both");

    // Cleanup runs on both without conflicts: the expired codes above go, no errors.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let runs = metric(&a_url, "khoa_cleanup_runs_total").await + metric(&b_url, "khoa_cleanup_runs_total").await;
    assert!(runs >= 2.0, "cleanup ran: {runs}");
    for base in [&a_url, &b_url] {
        assert_eq!(metric(base, "khoa_cleanup_errors_total").await, 0.0, "{base}");
    }
    let codes = "khoa_cleanup_deleted_rows_total{table=\"authorization_codes\"}";
    let deleted = metric(&a_url, codes).await + metric(&b_url, codes).await;
    assert!(deleted >= 1.0, "the expired codes were deleted: {deleted}");
}
