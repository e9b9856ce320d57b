//! The security review's attacks, each tried against the real `khoa serve` and shown
//! refused (docs/security.md has a row for each): login throttling that is atomic and
//! locks no innocent account out, one client-authentication path, sessions that end
//! with a password change or a new login, introspection limited to the token's own
//! client or a resource server, claim release in the HUTECH dialect, logout hints,
//! sealed successors that do not outlive the grace window, TCONNECT replays, metric
//! labels, anonymous floods, the https issuer and store errors.

use khoa_core::tconnect::PartnerKey;
use khoa_server::clock::{Clock, SystemClock};
use khoa_testkit::browser::{inputs, location, query, Browser};
use khoa_testkit::flow::{Khoa, CALLBACK, PASSWORD};
use khoa_testkit::receiver::Receiver;
use khoa_testkit::{both_backends, run_cli, stdout_json, test_database, Backend, KhoaProcess, TestDatabase};
use serde_json::{json, Value};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_khoa");
/// The test's own process is the reverse proxy: its X-Forwarded-For names the client.
const PROXIED: (&str, &str) = ("KHOA_TRUSTED_PROXIES", "127.0.0.1");
/// A first wait far longer than a test takes: no attempt of the test comes after it
/// (the clock has whole seconds, so a 1 s wait may be over at once).
const LONG_DELAY: (&str, &str) = ("KHOA_LOGIN_BASE_DELAY", "5m");

fn authorize(khoa: &Khoa, client_id: &str, extra: &[(&str, &str)]) -> String {
    let mut params =
        vec![("client_id", client_id), ("redirect_uri", CALLBACK), ("response_type", "code"), ("scope", "openid")];
    params.extend_from_slice(extra);
    khoa.authorize_url(&params)
}

/// A login form of `browser`: its interaction handle and anti-forgery token.
async fn login_form(khoa: &Khoa, browser: &Browser) -> (String, String) {
    let res = browser.get(&authorize(khoa, "portal", &[("prompt", "login")])).await;
    assert_eq!(res.status(), 200);
    let f = inputs(&res.text().await.unwrap());
    (f["interaction"].clone(), f["csrf_token"].clone())
}

/// One login attempt from `address` (through the trusted proxy); the status and
/// Retry-After.
async fn attempt(
    khoa: &Khoa,
    browser: &Browser,
    form: &(String, String),
    address: &str,
    username: &str,
    password: &str,
) -> (u16, Option<i64>) {
    let body = [
        ("interaction", form.0.as_str()),
        ("csrf_token", form.1.as_str()),
        ("username", username),
        ("password", password),
    ];
    let res = browser
        .http
        .post(khoa.url("/oauth2/auth/login"))
        .header("x-forwarded-for", address)
        .form(&body)
        .send()
        .await
        .unwrap();
    let retry = res.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok());
    (res.status().as_u16(), retry)
}

async fn metric(base_url: &str, name: &str) -> i64 {
    let text = reqwest::get(format!("{base_url}/metrics")).await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix(&format!("{name} ")).and_then(|v| v.parse().ok())).unwrap_or(0)
}

/// 300 simultaneous wrong passwords for one account from one address: exactly the 5
/// free attempts are checked by argon2, the rest refused before; then the owner, from
/// another address, logs in with the right password.
async fn concurrent_attempts_check_at_most_the_free_failures(db: TestDatabase) {
    let khoa = Khoa::with_env(BIN, db, &[PROXIED, LONG_DELAY]);
    khoa.client("portal", &["--skip-consent"]);
    let attacker = Browser::new();
    let form = login_form(&khoa, &attacker).await;
    let tasks: Vec<_> = (0..300)
        .map(|_| {
            let (khoa, attacker, form) = (&khoa, &attacker, &form);
            async move { attempt(khoa, attacker, form, "198.51.100.7", "sv01", "wrong password").await.0 }
        })
        .collect();
    let statuses = futures::future::join_all(tasks).await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 5, "checked: {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 295);
    assert_eq!(metric(&khoa.issuer(), "khoa_login_failures_total").await, 5, "argon2 ran 5 times");
    let owner = Browser::new();
    let form = login_form(&khoa, &owner).await;
    assert_eq!(attempt(&khoa, &owner, &form, "203.0.113.20", "sv01", PASSWORD).await.0, 303);
}

/// The same burst split between two processes on one PostgreSQL: still 5 in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_attempts_across_two_processes() {
    let db = test_database(Backend::Postgres).await;
    let khoa = Khoa::with_env(BIN, db, &[PROXIED, LONG_DELAY]);
    khoa.client("portal", &["--skip-consent"]);
    let second = KhoaProcess::start(BIN, &khoa.db, &[PROXIED, LONG_DELAY]);
    let attacker = Browser::new();
    let form = login_form(&khoa, &attacker).await;
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let (khoa, second, attacker, form) = (&khoa, &second, &attacker, &form);
            async move {
                let body = [
                    ("interaction", form.0.as_str()),
                    ("csrf_token", form.1.as_str()),
                    ("username", "sv01"),
                    ("password", "wrong password"),
                ];
                let base = if i % 2 == 0 { khoa.issuer() } else { second.base_url.clone() };
                let req =
                    attacker.http.post(format!("{base}/oauth2/auth/login")).header("x-forwarded-for", "198.51.100.7");
                req.form(&body).send().await.unwrap().status().as_u16()
            }
        })
        .collect();
    let statuses = futures::future::join_all(tasks).await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 5, "{statuses:?}");
    let checked = metric(&khoa.issuer(), "khoa_login_failures_total").await
        + metric(&second.base_url, "khoa_login_failures_total").await;
    assert_eq!(checked, 5, "argon2 ran 5 times over both processes");
}

/// An attacker at one address locks only that account at that address: another
/// account logs in from the same address, and the owner from another.
async fn an_attacker_locks_out_nobody_else(db: TestDatabase) {
    let khoa = Khoa::with_env(BIN, db, &[PROXIED, LONG_DELAY]);
    khoa.client("portal", &["--skip-consent"]);
    khoa.user("bob");
    let attacker = Browser::new();
    let form = login_form(&khoa, &attacker).await;
    for _ in 0..5 {
        assert_eq!(attempt(&khoa, &attacker, &form, "198.51.100.7", "sv01", "guess").await.0, 200);
    }
    let (status, retry) = attempt(&khoa, &attacker, &form, "198.51.100.7", "sv01", PASSWORD).await;
    assert_eq!(status, 429, "the attacker's address is blocked for this account, right password or not");
    assert!(retry.is_some_and(|r| r >= 1));
    // Someone else behind the same address (a campus NAT): not affected.
    let colleague = Browser::new();
    let form = login_form(&khoa, &colleague).await;
    assert_eq!(attempt(&khoa, &colleague, &form, "198.51.100.7", "bob", PASSWORD).await.0, 303);
    // The owner at home: not affected.
    let owner = Browser::new();
    let form = login_form(&khoa, &owner).await;
    assert_eq!(attempt(&khoa, &owner, &form, "203.0.113.20", "sv01", PASSWORD).await.0, 303);
}

/// X-Forwarded-For from a peer that is not a trusted proxy is ignored: a client
/// cannot escape its limit by naming itself another address each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
    let khoa = Khoa::with_env(BIN, test_database(Backend::Sqlite).await, &[LONG_DELAY]);
    khoa.client("portal", &["--skip-consent"]);
    let attacker = Browser::new();
    let form = login_form(&khoa, &attacker).await;
    for i in 0..5 {
        let (status, _) = attempt(&khoa, &attacker, &form, &format!("198.51.100.{i}"), "sv01", "guess").await;
        assert_eq!(status, 200);
    }
    assert_eq!(attempt(&khoa, &attacker, &form, "198.51.100.99", "sv01", "guess").await.0, 429);
}

/// Spraying many accounts from one address is caught by the per-address limit, far
/// above the per-account one; other addresses are unaffected.
async fn spraying_from_one_address_is_caught(db: TestDatabase) {
    let env = [PROXIED, LONG_DELAY, ("KHOA_LOGIN_ADDRESS_FREE_FAILURES", "12")];
    let khoa = Khoa::with_env(BIN, db, &env);
    khoa.client("portal", &["--skip-consent"]);
    let sprayer = Browser::new();
    let form = login_form(&khoa, &sprayer).await;
    for i in 0..12 {
        let (status, _) = attempt(&khoa, &sprayer, &form, "198.51.100.7", &format!("user{i}"), "Password1").await;
        assert_eq!(status, 200, "attempt {i}");
    }
    assert_eq!(attempt(&khoa, &sprayer, &form, "198.51.100.7", "user99", "Password1").await.0, 429);
    let owner = Browser::new();
    let form = login_form(&khoa, &owner).await;
    assert_eq!(attempt(&khoa, &owner, &form, "203.0.113.20", "sv01", PASSWORD).await.0, 303);
}

/// An attack on one account from many addresses: the account is delayed (429 for at
/// most account_max_delay), never locked; the owner's known browser (its device
/// cookie) is not delayed at all; after the delay the right password logs in.
async fn a_distributed_attack_delays_but_never_locks_the_owner_out(db: TestDatabase) {
    // A first wait as long as the cap (KHOA_LOGIN_BASE_DELAY=8s,
    // KHOA_LOGIN_ACCOUNT_FREE_FAILURES=8, KHOA_LOGIN_ACCOUNT_MAX_DELAY=8s, behind a
    // trusted proxy), on a clock that only the test moves.
    let khoa = Khoa::embedded(BIN, db, |s| {
        s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        let t = &mut s.login_throttle;
        for policy in [&mut t.account_at_address, &mut t.address, &mut t.account] {
            policy.base_delay = 8;
        }
        t.account.free_failures = 8;
        t.account.max_delay = 8;
    })
    .await;
    khoa.client("portal", &["--skip-consent"]);
    // The owner's own laptop signed in before.
    let laptop = Browser::new();
    let form = login_form(&khoa, &laptop).await;
    assert_eq!(attempt(&khoa, &laptop, &form, "203.0.113.20", "sv01", PASSWORD).await.0, 303);

    let botnet = Browser::new();
    let form = login_form(&khoa, &botnet).await;
    let mut refused = 0;
    for i in 0..20 {
        let (status, retry) = attempt(&khoa, &botnet, &form, &format!("198.51.100.{i}"), "sv01", "guess").await;
        if status == 429 {
            refused += 1;
            assert_eq!(retry, Some(8), "delayed 8 s, the cap");
        }
    }
    assert!(refused > 0, "the account-wide limit engaged");
    // A new device of the owner is delayed, never for long.
    let phone = Browser::new();
    let form = login_form(&khoa, &phone).await;
    let (status, retry) = attempt(&khoa, &phone, &form, "192.0.2.50", "sv01", PASSWORD).await;
    let retry = if status == 429 { retry.unwrap() } else { 0 };
    assert!(status == 429 && retry <= 8, "{status} {retry}");
    // The known laptop is not delayed, from any address.
    let form = login_form(&khoa, &laptop).await;
    assert_eq!(attempt(&khoa, &laptop, &form, "192.0.2.51", "sv01", PASSWORD).await.0, 303);
    // A second before the delay has passed, still delayed; then the new device logs in.
    khoa.clock().advance(retry - 1);
    let form = login_form(&khoa, &phone).await;
    assert_eq!(attempt(&khoa, &phone, &form, "192.0.2.50", "sv01", PASSWORD).await, (429, Some(1)));
    khoa.clock().advance(1);
    let form = login_form(&khoa, &phone).await;
    assert_eq!(attempt(&khoa, &phone, &form, "192.0.2.50", "sv01", PASSWORD).await.0, 303);
}

/// A partner `ACME` bound to the confidential client `acme-app`; its key and secret.
fn partner(khoa: &Khoa, extra: &[&str]) -> (String, String) {
    let secret =
        khoa.client("acme-app", &["--skip-consent", "--token-endpoint-auth-method", "client_secret_post"]).unwrap();
    let mut args = vec!["partner", "create", "--code", "ACME", "--client-id", "acme-app"];
    args.extend_from_slice(extra);
    let out = stdout_json(&run_cli(BIN, &khoa.db, &args, None));
    (out["key_hex"].as_str().unwrap().to_string(), secret)
}

fn sealed(key: &str, payload: &Value) -> String {
    json!({"data": PartnerKey::from_hex(key).unwrap().encrypt(payload.to_string().as_bytes())}).to_string()
}

/// A JSON POST with one identifying header (the dialects' `Partner-Code`, `app-key`).
async fn post_json(khoa: &Khoa, path: &str, header: (&str, &str), body: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(khoa.url(path))
        .header(header.0, header.1)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

async fn tconnect_login(khoa: &Khoa, body: &str) -> (u16, Value) {
    let res = post_json(khoa, "/openapi/v1/auth/login", ("partner-code", "ACME"), body).await;
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

/// The TCONNECT login reserves its attempts like the login page.
async fn concurrent_partner_logins_check_at_most_the_free_failures(db: TestDatabase) {
    let khoa = Khoa::with_env(BIN, db, &[LONG_DELAY]);
    let (key, secret) = partner(&khoa, &[]);
    let wrong = json!({"username": "sv01", "password": "guess", "client_id": "acme-app", "client_secret": secret});
    let body = sealed(&key, &wrong);
    let tasks: Vec<_> = (0..300).map(|_| tconnect_login(&khoa, &body)).collect();
    let statuses: Vec<u16> = futures::future::join_all(tasks).await.into_iter().map(|(s, _)| s).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 400).count(), 5, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 295);
    assert_eq!(metric(&khoa.issuer(), "khoa_login_failures_total").await, 5);
}

/// Wrong client secrets at the HUTECH web exchange and the TCONNECT login are
/// throttled like those at the token endpoint (one path): 429 after the 10 free ones.
async fn every_client_authentication_is_throttled(db: TestDatabase) {
    let khoa = Khoa::with_env(BIN, db, &[("KHOA_CLIENT_AUTH_BASE_DELAY", "5m")]);
    let (key, _) = partner(&khoa, &[]);
    let web = "/api/authen/sso/web/exchange-access-token";
    let mut statuses = vec![];
    for _ in 0..15 {
        let body = json!({"authorization_code": "x", "client_id": "acme-app", "client_secret": "wrong secret"});
        let res = post_json(&khoa, web, ("app-key", "acme-app"), &body.to_string()).await;
        let status = res.status().as_u16();
        if status == 429 {
            assert!(res.headers().contains_key("retry-after"));
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["reasons"]["options"]["code"], -8, "HUTECH's own error shape: {body}");
        }
        statuses.push(status);
    }
    assert_eq!(&statuses[..10], &[403; 10], "{statuses:?}");
    assert!(statuses[10..].iter().all(|s| *s == 429), "{statuses:?}");
    // The same client at TCONNECT: its count is already past the limit.
    let wrong = json!({"username": "sv01", "password": PASSWORD, "client_id": "acme-app", "client_secret": "wrong"});
    let (status, body) = tconnect_login(&khoa, &sealed(&key, &wrong)).await;
    assert_eq!((status, body["error"].as_str()), (429, Some("invalid_client")), "{body}");
    assert_eq!(metric(&khoa.issuer(), "khoa_client_auth_failures_total").await, 16);
}

/// A client with back-channel logout, signed in through `browser`; its secret and the
/// token response (with a refresh token).
async fn signed_in(khoa: &Khoa, rp: &Receiver, browser: &Browser, client_id: &str) -> (String, Value) {
    signed_in_with(khoa, rp, browser, client_id, "openid offline_access").await
}

async fn signed_in_with(
    khoa: &Khoa,
    rp: &Receiver,
    browser: &Browser,
    client_id: &str,
    scope: &str,
) -> (String, Value) {
    let bc = rp.url("/bc");
    let args = ["--skip-consent", "--always-issue-refresh-token", "--backchannel-logout-uri", bc.as_str()];
    let secret = khoa.client(client_id, &args).unwrap();
    let code = khoa.code(browser, client_id, &[("scope", scope)]).await;
    (secret.clone(), khoa.exchange(&code, (client_id, &secret)).await)
}

async fn refresh(khoa: &Khoa, client: (&str, &str), token: &Value) -> u16 {
    let form = [("grant_type", "refresh_token"), ("refresh_token", token["refresh_token"].as_str().unwrap())];
    khoa.token(&form, Some(client)).await.0
}

/// prompt=none in `browser` for `client_id`: a code (still signed in) or the error.
async fn silent(khoa: &Khoa, browser: &Browser, client_id: &str) -> String {
    let res = browser.get(&authorize(khoa, client_id, &[("prompt", "none")])).await;
    let q = query(&location(&res, &khoa.issuer()));
    q.get("code").map(|_| "code".to_string()).or_else(|| q.get("error").cloned()).unwrap_or_default()
}

/// A password change, `khoa user revoke-sessions` and a deletion each end the user's
/// sessions and revoke their tokens (offline ones too), with back-channel notices.
async fn a_password_change_ends_every_session(db: TestDatabase) {
    let khoa = Khoa::with_env(BIN, db, &[("KHOA_BACKCHANNEL_BASE_DELAY", "1s")]);
    let rp = Receiver::start(0).await;
    let browser = Browser::new();
    let (secret, tokens) = signed_in(&khoa, &rp, &browser, "portal").await;
    assert_eq!(silent(&khoa, &browser, "portal").await, "code");

    let out =
        run_cli(BIN, &khoa.db, &["user", "set-password", "sv01", "--password-stdin"], Some("another long password"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 session(s) ended"));
    assert_eq!(refresh(&khoa, ("portal", &secret), &tokens).await, 400, "the old refresh token is dead");
    assert_eq!(khoa.userinfo(tokens["access_token"].as_str().unwrap()).await.0, 401);
    assert_eq!(silent(&khoa, &browser, "portal").await, "login_required", "the old browser session is gone");
    assert_eq!(rp.wait_for("/bc", 1, 10).await.len(), 1, "the client is told");

    // revoke-sessions: the same without a password change.
    let again = Browser::new();
    let code = khoa.code_as(&again, "portal", "sv01", "another long password").await;
    let tokens = khoa.exchange(&code, ("portal", &secret)).await;
    let out = run_cli(BIN, &khoa.db, &["user", "revoke-sessions", "sv01"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(refresh(&khoa, ("portal", &secret), &tokens).await, 400);
    assert_eq!(silent(&khoa, &again, "portal").await, "login_required");
    assert_eq!(rp.wait_for("/bc", 2, 10).await.len(), 2);

    // A deletion too.
    let code = khoa.code_as(&again, "portal", "sv01", "another long password").await;
    let tokens = khoa.exchange(&code, ("portal", &secret)).await;
    assert!(run_cli(BIN, &khoa.db, &["user", "delete", "sv01"], None).status.success());
    assert_eq!(refresh(&khoa, ("portal", &secret), &tokens).await, 400);
    assert_eq!(silent(&khoa, &again, "portal").await, "login_required");
    assert_eq!(rp.wait_for("/bc", 3, 10).await.len(), 3);
    let out = run_cli(BIN, &khoa.db, &["user", "revoke-sessions", "sv01"], None);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no user named"));
}

/// A new login in a browser that has a session logs that session out: its tokens are
/// revoked and its clients told, as by the logout endpoint.
async fn a_new_login_logs_the_old_session_out(db: TestDatabase) {
    let khoa = Khoa::with_env(BIN, db, &[("KHOA_BACKCHANNEL_BASE_DELAY", "1s")]);
    khoa.user("bob");
    let rp = Receiver::start(0).await;
    let browser = Browser::new();
    // Not offline_access: those refresh tokens outlive their session (OIDC Core §11).
    let (secret, tokens) = signed_in_with(&khoa, &rp, &browser, "portal", "openid profile").await;
    let old_sid = khoa_testkit::flow::jwt_claims(tokens["id_token"].as_str().unwrap())["sid"].clone();
    // Someone else signs in on the same (shared) computer.
    let url = authorize(&khoa, "portal", &[("prompt", "login")]);
    let callback = khoa_testkit::flow::sign_in(&browser, &khoa, &url, "bob", PASSWORD).await;
    assert!(query(&callback).contains_key("code"));
    assert_eq!(refresh(&khoa, ("portal", &secret), &tokens).await, 400, "sv01's refresh token is revoked");
    assert_eq!(khoa.userinfo(tokens["access_token"].as_str().unwrap()).await.0, 401);
    let notices = rp.wait_for("/bc", 1, 10).await;
    assert_eq!(khoa_testkit::flow::jwt_claims(&notices[0])["sid"], old_sid, "the old session's clients are told");
}

async fn introspect(khoa: &Khoa, client: (&str, &str), token: &str) -> Value {
    let (status, _, body) = khoa.introspect(client, token).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// RFC 7662 §2.2, §4: a client learns only about its own tokens; a resource server
/// about access tokens; a refresh token only its own client.
async fn introspection_answers_only_for_the_tokens_owner(db: TestDatabase) {
    let khoa = Khoa::new(BIN, db);
    let rp = Receiver::start(0).await;
    let browser = Browser::new();
    let (secret, tokens) = signed_in(&khoa, &rp, &browser, "portal").await;
    let other = khoa.client("other", &["--skip-consent"]).unwrap();
    let api = khoa.client("api", &["--grant-types", "client_credentials", "--resource-server"]).unwrap();
    let (at, rt) = (tokens["access_token"].as_str().unwrap(), tokens["refresh_token"].as_str().unwrap());
    for token in [at, rt] {
        assert_eq!(introspect(&khoa, ("other", &other), token).await, json!({"active": false}));
        let own = introspect(&khoa, ("portal", &secret), token).await;
        assert_eq!((own["active"].as_bool(), own["client_id"].as_str()), (Some(true), Some("portal")));
    }
    let by_api = introspect(&khoa, ("api", &api), at).await;
    assert_eq!((by_api["active"].as_bool(), by_api["sub"].is_string()), (Some(true), true), "{by_api}");
    assert_eq!(introspect(&khoa, ("api", &api), rt).await, json!({"active": false}), "never another's refresh token");
    let public = run_cli(BIN, &khoa.db, &["client", "create", "--id", "spa", "--public", "--resource-server"], None);
    assert!(!public.status.success(), "a public client cannot be a resource server");
}

/// The HUTECH exchange releases exactly what userinfo does for the token's scope.
async fn the_hutech_exchange_releases_only_granted_claims(db: TestDatabase) {
    let khoa = Khoa::new(BIN, db);
    let secret = khoa
        .client("mini", &["--skip-consent", "--scopes", "openid", "--token-endpoint-auth-method", "client_secret_post"])
        .unwrap();
    let browser = Browser::new();
    let code = khoa.code(&browser, "mini", &[("scope", "openid")]).await;
    let body = json!({"authorization_code": code, "client_id": "mini", "client_secret": secret});
    let res =
        post_json(&khoa, "/api/authen/sso/web/exchange-access-token", ("app-key", "mini"), &body.to_string()).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let data = &body["data"];
    assert_eq!(data["username"], "", "{body}");
    assert_eq!(data["data"], json!({"ho_ten": "", "email": "", "avatar": "", "so_dien_thoai": ""}));
    assert!(!data["contact_id"].as_str().unwrap().is_empty());
    let (status, _, info) = khoa.userinfo(data["token"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(info.as_object().unwrap().keys().collect::<Vec<_>>(), ["sub"], "{info}");
}

/// An ID token alone (a leaked one, expired even, in a cross-site image) ends no
/// session: only the browser whose session it names logs out without confirming.
async fn an_id_token_alone_logs_nobody_out(db: TestDatabase) {
    let khoa = Khoa::new(BIN, db);
    let rp = Receiver::start(0).await;
    let victim = Browser::new();
    let (_, tokens) = signed_in(&khoa, &rp, &victim, "portal").await;
    let hint = tokens["id_token"].as_str().unwrap();
    let mut url = url::Url::parse(&khoa.url("/oauth2/sessions/logout")).unwrap();
    url.query_pairs_mut().append_pair("id_token_hint", hint);
    // The attacker's browser, and a cookie-less image request.
    for attacker in [Browser::new(), Browser::new()] {
        let res = attacker.get(url.as_str()).await;
        assert_eq!(res.status(), 200);
        let _ = attacker.post_form(&khoa.url("/oauth2/sessions/logout"), &[("id_token_hint", hint)]).await;
        assert_eq!(silent(&khoa, &victim, "portal").await, "code", "the victim is still signed in");
    }
    // A browser with another session is asked first.
    let other = Browser::new();
    khoa.user("bob");
    let _ = khoa.code_as(&other, "portal", "bob", PASSWORD).await;
    let page = other.get(url.as_str()).await.text().await.unwrap();
    assert!(page.contains("/oauth2/sessions/logout/confirm"), "a confirmation page");
    assert_eq!(silent(&khoa, &other, "portal").await, "code");
    assert_eq!(silent(&khoa, &victim, "portal").await, "code");
    // The victim's own browser: logged out at once.
    let res = victim.get(url.as_str()).await;
    assert!(res.status().is_success() || res.status().is_redirection());
    assert_eq!(silent(&khoa, &victim, "portal").await, "login_required");
}

/// A scalar from the test database.
async fn scalar(db: &TestDatabase, sql: &str) -> i64 {
    db.scalar(sql).await
}

/// A rotated refresh token's sealed successor is cleared once the grace window ends.
async fn sealed_successors_do_not_outlive_the_grace_window(db: TestDatabase) {
    let khoa = Khoa::embedded(BIN, db, |s| {
        s.refresh_grace = 1;
        s.cleanup_interval = Duration::from_millis(100);
    })
    .await;
    let rp = Receiver::start(0).await;
    let browser = Browser::new();
    let (secret, mut tokens) = signed_in(&khoa, &rp, &browser, "portal").await;
    for _ in 0..3 {
        let form = [("grant_type", "refresh_token"), ("refresh_token", tokens["refresh_token"].as_str().unwrap())];
        let (status, _, next) = khoa.token(&form, Some(("portal", &secret))).await;
        assert_eq!(status, 200);
        tokens = next;
    }
    let sealed = "SELECT COUNT(*) FROM refresh_tokens WHERE successor_sealed IS NOT NULL";
    // The cleanup job runs every 100 ms; the window is decided by the server's clock.
    let settle = || tokio::time::sleep(Duration::from_millis(400));
    settle().await;
    assert!(scalar(&khoa.db, sealed).await > 0, "kept during the window");
    khoa.clock().advance(1);
    settle().await;
    assert!(scalar(&khoa.db, sealed).await > 0, "kept at the window's last second");
    khoa.clock().advance(1);
    let mut left = scalar(&khoa.db, sealed).await;
    for _ in 0..50 {
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = scalar(&khoa.db, sealed).await;
    }
    assert_eq!(left, 0, "cleared once the window is over");
}

/// TCONNECT: a payload with a timestamp and nonce is accepted once; stale ones are
/// refused; a partner can require them; the seed's format still works without.
async fn tconnect_payloads_cannot_be_replayed(db: TestDatabase) {
    let khoa = Khoa::new(BIN, db);
    let (key, secret) = partner(&khoa, &[]);
    let login = |extra: Value| {
        let mut p = json!({"username": "sv01", "password": PASSWORD, "client_id": "acme-app", "client_secret": secret});
        p.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        sealed(&key, &p)
    };
    let now = SystemClock.now();
    let fresh = login(json!({"timestamp": now, "nonce": "nonce-0123456789-a"}));
    assert_eq!(tconnect_login(&khoa, &fresh).await.0, 200);
    let (status, body) = tconnect_login(&khoa, &fresh).await;
    assert_eq!((status, body["error_description"].as_str()), (400, Some("the payload was used before")));
    let stale = login(json!({"timestamp": now - 600, "nonce": "nonce-0123456789-b"}));
    assert_eq!(tconnect_login(&khoa, &stale).await.0, 400);
    assert_eq!(tconnect_login(&khoa, &login(json!({"nonce": "nonce-0123456789-c"}))).await.0, 400);
    // The seed's own format: no replay protection, still served for this partner.
    assert_eq!(tconnect_login(&khoa, &login(json!({}))).await.0, 200);
    // A partner that requires it.
    assert!(run_cli(BIN, &khoa.db, &["partner", "delete", "ACME"], None).status.success());
    let out = run_cli(
        BIN,
        &khoa.db,
        &["partner", "create", "--code", "ACME", "--client-id", "acme-app", "--key-hex", &key, "--require-nonce"],
        None,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, body) = tconnect_login(&khoa, &login(json!({}))).await;
    assert_eq!(status, 400, "{body}");
    let fresh = login(json!({"timestamp": SystemClock.now(), "nonce": "nonce-0123456789-d"}));
    assert_eq!(tconnect_login(&khoa, &fresh).await.0, 200);
}

/// Anonymous authorization requests store nothing until a login form is submitted, and
/// every kept parameter is capped: 2,000 of them leave the database as it was.
async fn an_anonymous_flood_cannot_grow_the_database(db: TestDatabase) {
    let khoa = Khoa::new(BIN, db);
    khoa.client("portal", &["--skip-consent"]);
    let acr = "a".repeat(250);
    let url = authorize(&khoa, "portal", &[("acr_values", &acr), ("state", &"s".repeat(2000))]);
    let size = || async {
        match khoa.db.backend {
            // The database as SQLite sees it (its pages, wherever they are): the files'
            // sum would count a page twice once a checkpoint has copied it from the WAL.
            Backend::Sqlite => {
                scalar(&khoa.db, "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()").await
                    as u64
            }
            Backend::Postgres => scalar(&khoa.db, "SELECT pg_database_size(current_database())").await as u64,
        }
    };
    let before = size().await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for chunk in 0..20 {
        let tasks: Vec<_> = (0..100).map(|_| http.get(&url).send()).collect();
        for res in futures::future::join_all(tasks).await {
            assert_eq!(res.unwrap().status(), 200, "chunk {chunk}: a login page");
        }
    }
    assert_eq!(scalar(&khoa.db, "SELECT COUNT(*) FROM interactions").await, 0, "nothing stored");
    let after = size().await;
    println!("database size after 2,000 anonymous requests: {before} -> {after} bytes");
    assert!(after < before + 256 * 1024, "{before} -> {after} bytes");
    // Beyond a cap: invalid_request at the client's redirect URI.
    let res = http.get(authorize(&khoa, "portal", &[("acr_values", &"a".repeat(7600))])).send().await.unwrap();
    let q = query(&location(&res, &khoa.issuer()));
    assert_eq!((q["error"].as_str(), q["error_description"].as_str()), ("invalid_request", "acr_values is too long"));
    // The pending request still signs in (it travels sealed in the form).
    let browser = Browser::new();
    let callback = khoa_testkit::flow::sign_in(&browser, &khoa, &url, "sv01", PASSWORD).await;
    assert_eq!(query(&callback)["state"], "s".repeat(2000));
}

/// A corrupt row is a 500 (with the cause in the log), not "database unreachable".
async fn a_corrupt_row_is_a_server_error(db: TestDatabase) {
    let khoa = Khoa::new(BIN, db);
    khoa.client("portal", &["--skip-consent"]);
    let update = "UPDATE clients SET redirect_uris = 'not json' WHERE client_id = 'portal'";
    khoa.db.execute(update).await;
    let res = reqwest::get(authorize(&khoa, "portal", &[])).await.unwrap();
    assert_eq!(res.status(), 500);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "server_error");
    assert!(khoa.process().logs().contains("redirect_uris"), "the cause is logged");
}

both_backends!(
    concurrent_attempts_check_at_most_the_free_failures,
    an_attacker_locks_out_nobody_else,
    spraying_from_one_address_is_caught,
    a_distributed_attack_delays_but_never_locks_the_owner_out,
    concurrent_partner_logins_check_at_most_the_free_failures,
    every_client_authentication_is_throttled,
    a_password_change_ends_every_session,
    a_new_login_logs_the_old_session_out,
    introspection_answers_only_for_the_tokens_owner,
    the_hutech_exchange_releases_only_granted_claims,
    an_id_token_alone_logs_nobody_out,
    sealed_successors_do_not_outlive_the_grace_window,
    tconnect_payloads_cannot_be_replayed,
    an_anonymous_flood_cannot_grow_the_database,
    a_corrupt_row_is_a_server_error,
);

/// Invented HTTP methods cannot grow the metrics: they are all `other`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_labels_are_bounded() {
    let khoa = Khoa::new(BIN, test_database(Backend::Sqlite).await);
    let http = reqwest::Client::new();
    let _ = http.get(khoa.url("/health/alive")).send().await.unwrap();
    let before = reqwest::get(khoa.url("/metrics")).await.unwrap().text().await.unwrap().len();
    for i in 0..2000 {
        let method = reqwest::Method::from_bytes(format!("INVENTED{i}").as_bytes()).unwrap();
        let _ = http.request(method, khoa.url("/health/alive")).send().await.unwrap();
    }
    let text = reqwest::get(khoa.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(!text.contains("INVENTED"), "no invented method becomes a label");
    assert!(text.contains("method=\"other\""));
    assert!(text.len() < before + 4096, "{before} -> {} bytes", text.len());
}

/// `metrics.listen`: /metrics moves to its own listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_have_a_listener_of_their_own() {
    let port = khoa_testkit::free_port();
    let listen = format!("127.0.0.1:{port}");
    let khoa = Khoa::with_env(BIN, test_database(Backend::Sqlite).await, &[("KHOA_METRICS_LISTEN", &listen)]);
    assert_eq!(reqwest::get(khoa.url("/metrics")).await.unwrap().status(), 404, "not on the public listener");
    let res = reqwest::get(format!("http://{listen}/metrics")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("khoa_tokens_issued_total"));
    assert_eq!(reqwest::get(format!("http://{listen}/health/ready")).await.unwrap().status(), 200);
    assert_eq!(reqwest::get(format!("http://{listen}/oauth2/auth")).await.unwrap().status(), 404);
}

/// An issuer written `HTTPS://…` is https: Secure cookies and HSTS, and one spelling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upper_case_https_issuer_keeps_secure_cookies_and_hsts() {
    let khoa = Khoa::with_env(BIN, test_database(Backend::Sqlite).await, &[("KHOA_ISSUER", "HTTPS://SSO.Example.VN")]);
    khoa.client("portal", &["--skip-consent"]);
    let discovery: Value =
        reqwest::get(khoa.url("/.well-known/openid-configuration")).await.unwrap().json().await.unwrap();
    assert_eq!(discovery["issuer"], "https://sso.example.vn");
    let res = reqwest::get(khoa.url("/health/alive")).await.unwrap();
    assert_eq!(res.headers()["strict-transport-security"], "max-age=31536000");
    let res = Browser::new().get(&authorize(&khoa, "portal", &[])).await;
    let cookies: Vec<&str> = res.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    assert!(!cookies.is_empty() && cookies.iter().all(|c| c.ends_with("; Secure")), "{cookies:?}");
}

/// RUSTSEC-2023-0071 (the `rsa` crate's timing side channel) does not reach the khoa
/// binary: `rsa` comes only with the `openidconnect` client that tests and the demo
/// relying party use (docs/security.md, `.cargo/audit.toml`).
#[test]
fn rsa_reaches_the_khoa_binary_only_through_webauthn() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml");
    let tree = |args: &[&str]| {
        let out = std::process::Command::new(&cargo)
            .args(["tree", "--offline", "--manifest-path", manifest, "--prefix", "none"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let binary = tree(&["-p", "khoa", "-e", "normal,build"]);
    let packages: Vec<&str> = binary.lines().filter_map(|l| l.split(' ').next()).collect();
    assert!(packages.contains(&"aws-lc-rs") && packages.contains(&"khoa-server"), "{binary}");
    // Every path from khoa to rsa goes through webauthn-rs, which verifies passkeys'
    // RS256 signatures with public keys; khoa's own signing is aws-lc-rs.
    for line in binary.lines().filter(|l| l.starts_with("rsa ")) {
        let version = line.split(' ').nth(1).unwrap().trim_start_matches('v');
        let spec = format!("rsa@{version}");
        let paths = tree(&["-p", "khoa", "-e", "normal,build", "-i", &spec]);
        let parents: Vec<&str> = paths.lines().filter_map(|l| l.split(' ').next()).collect();
        for parent in ["khoa-server", "khoa-core", "khoa-store"] {
            if parents.contains(&parent) {
                let direct = tree(&["-p", parent, "-e", "normal", "--depth", "1"]);
                assert!(!direct.lines().any(|l| l.starts_with("rsa ")), "{parent} uses rsa itself:\n{direct}");
            }
        }
        assert!(
            parents.contains(&"webauthn-rs"),
            "rsa {version} reaches khoa other than through webauthn-rs:\n{paths}"
        );
    }
    let core = tree(&["-p", "khoa-core", "-e", "normal,build"]);
    assert!(!core.lines().any(|l| l.starts_with("rsa ")), "khoa-core signs: it must not depend on rsa");
}
