//! Crash safety: `khoa serve` is killed with SIGKILL in the middle of sustained load
//! (code exchanges, refresh rotations, logouts), restarted on the same database, and
//! everything the clients were answered before the kill still holds:
//! - every access token received is still active, unless its session was logged out;
//! - the newest refresh token of every chain still works;
//! - no authorization code that was exchanged is accepted again;
//! - no rotated refresh token is accepted again (grace window 0);
//! - tokens of a session whose logout was answered stay revoked.
//!
//! On SQLite (group commit, `synchronous = NORMAL`) and on PostgreSQL.

use khoa_testkit::browser::{location, query, Browser};
use khoa_testkit::flow::{authorize_url_at, Khoa, CALLBACK};
use khoa_testkit::{test_database, Backend, KhoaProcess};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_khoa");
const WORKERS: usize = 6;

/// What the clients were answered before the kill.
#[derive(Default)]
struct Answered {
    /// Codes exchanged with a 200.
    codes: Vec<String>,
    /// Access tokens received, with whether their session's logout was answered
    /// (tokens of a session whose logout was in flight at the kill are not kept).
    access: Vec<(String, bool)>,
    /// Refresh tokens that were rotated with a 200 (the old ones).
    rotated: Vec<String>,
    /// The newest refresh token of each chain whose session is still live.
    newest: Vec<String>,
}

/// An authorization request of the client `app` for `scope`.
fn app_request(scope: &str) -> [(&str, &str); 4] {
    [("client_id", "app"), ("redirect_uri", CALLBACK), ("response_type", "code"), ("scope", scope)]
}

/// One request, without panicking when the server is gone: (status, JSON body).
async fn post(base: &str, path: &str, form: &[(&str, &str)], secret: &str) -> Option<(u16, Value)> {
    let res = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .basic_auth("app", Some(secret))
        .form(form)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    let status = res.status().as_u16();
    Some((status, res.json().await.unwrap_or(Value::Null)))
}

/// A code from a browser with a session: the authorization request answers 303 to the
/// client at once.
async fn code(base: &str, browser: &Browser) -> Option<String> {
    let url = authorize_url_at(base, &app_request("openid offline_access"));
    let res = browser.http.get(url).timeout(Duration::from_secs(10)).send().await.ok()?;
    if res.status() != 303 {
        return None;
    }
    query(&location(&res, base)).get("code").cloned()
}

/// Until the server stops answering: exchange a code, rotate the refresh token twice;
/// every third round, end the session with a logout (which revokes every token of
/// the session) and sign in again.
async fn worker(base: String, secret: String, mut browser: Browser, answered: Arc<Mutex<Answered>>) {
    // This session's access tokens, and the newest refresh token of each of its chains.
    let (mut access, mut newest) = (Vec::new(), Vec::new());
    let mut round = 0;
    loop {
        round += 1;
        let Some(code) = code(&base, &browser).await else { break };
        let form = [("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", CALLBACK)];
        let Some((200, tokens)) = post(&base, "/oauth2/token", &form, &secret).await else { break };
        let field = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
        let (mut refresh, id_token) = (field(&tokens, "refresh_token"), field(&tokens, "id_token"));
        access.push(field(&tokens, "access_token"));
        answered.lock().unwrap().codes.push(code);
        let mut rotated_all = true;
        for _ in 0..2 {
            let form = [("grant_type", "refresh_token"), ("refresh_token", refresh.as_str())];
            let Some((200, next)) = post(&base, "/oauth2/token", &form, &secret).await else {
                rotated_all = false;
                break;
            };
            answered.lock().unwrap().rotated.push(refresh);
            refresh = field(&next, "refresh_token");
            access.push(field(&next, "access_token"));
        }
        if !rotated_all {
            break; // the last rotation's outcome is unknown: its chain is not checked
        }
        newest.push(refresh);
        if round % 3 == 0 {
            let url = format!("{base}/oauth2/sessions/logout?id_token_hint={id_token}");
            let logged_out = browser.http.get(&url).timeout(Duration::from_secs(10)).send().await;
            if !logged_out.is_ok_and(|r| r.status() == 200) {
                // In flight at the kill: the session may or may not have ended.
                return;
            }
            answered.lock().unwrap().access.extend(access.drain(..).map(|t| (t, true)));
            newest.clear();
            // A new browser signs in again (the old session has ended).
            browser = Browser::new();
            if !sign_in(&base, &browser).await {
                return;
            }
        }
    }
    // The server is gone; this session was not logged out.
    let mut a = answered.lock().unwrap();
    a.access.extend(access.into_iter().map(|t| (t, false)));
    a.newest.extend(newest);
}

/// Signs `browser` in as sv01 through the login page; false when the server is gone.
async fn sign_in(base: &str, browser: &Browser) -> bool {
    let Ok(res) = browser.http.get(authorize_url_at(base, &app_request("openid"))).send().await else { return false };
    let Ok(html) = res.text().await else { return false };
    let f = khoa_testkit::browser::inputs(&html);
    let (Some(interaction), Some(csrf)) = (f.get("interaction"), f.get("csrf_token")) else { return false };
    let form = [
        ("interaction", interaction.as_str()),
        ("csrf_token", csrf.as_str()),
        ("username", "sv01"),
        ("password", khoa_testkit::flow::PASSWORD),
    ];
    matches!(browser.http.post(format!("{base}/oauth2/auth/login")).form(&form).send().await, Ok(r) if r.status() == 303)
}

async fn introspect(base: &str, token: &str, secret: &str) -> bool {
    let (status, body) = post(base, "/oauth2/introspect", &[("token", token)], secret).await.expect("introspect");
    assert_eq!(status, 200, "{body}");
    body["active"].as_bool().unwrap_or(false)
}

async fn crash_under_load(backend: Backend) {
    let env = [("KHOA_REFRESH_GRACE", "0s"), ("KHOA_LOG", "warn")];
    let mut khoa = Khoa::with_env(BIN, test_database(backend).await, &env);
    let secret = khoa.client("app", &["--skip-consent", "--always-issue-refresh-token"]).unwrap();
    let (base, issuer) = (khoa.url(""), khoa.issuer());
    let answered = Arc::new(Mutex::new(Answered::default()));
    let mut workers = vec![];
    for _ in 0..WORKERS {
        let browser = Browser::new();
        assert!(sign_in(&base, &browser).await, "signed in");
        workers.push(tokio::spawn(worker(base.clone(), secret.clone(), browser, answered.clone())));
    }
    // Load for a while, then SIGKILL: no chance to finish anything.
    let started = Instant::now();
    while answered.lock().unwrap().codes.len() < 60 && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = khoa.process().pid();
    assert!(std::process::Command::new("kill").arg("-KILL").arg(pid.to_string()).status().unwrap().success());
    for w in workers {
        w.await.unwrap();
    }
    // Restarted on the same database, as the same issuer (a new port behind it).
    let restarted = KhoaProcess::start(BIN, &khoa.db, &[env[0], env[1], ("KHOA_ISSUER", &issuer)]);
    drop(std::mem::replace(&mut khoa.server, khoa_testkit::flow::Server::Process(restarted)));
    let base = khoa.url("");
    let a = Arc::try_unwrap(answered).ok().unwrap().into_inner().unwrap();
    assert!(a.codes.len() >= 60 && !a.rotated.is_empty(), "load ran: {} codes", a.codes.len());
    assert!(a.access.iter().any(|(_, out)| *out), "some logouts were answered");

    // Access tokens: active, unless their session's logout was answered.
    let mut wrong = vec![];
    for (i, (token, logged_out)) in a.access.iter().enumerate() {
        if introspect(&base, token, &secret).await == *logged_out {
            wrong.push((i, *logged_out));
        }
    }
    assert!(
        wrong.is_empty(),
        "{backend:?}: {} of {} access tokens wrong: {wrong:?}\n{}",
        wrong.len(),
        a.access.len(),
        khoa.process().logs()
    );
    // The newest refresh token of each live chain still rotates.
    for refresh in &a.newest {
        let form = [("grant_type", "refresh_token"), ("refresh_token", refresh.as_str())];
        let (status, body) = post(&base, "/oauth2/token", &form, &secret).await.unwrap();
        assert_eq!(status, 200, "{backend:?}: {body}");
    }
    // No rotated refresh token is accepted again. The grace window counts whole
    // seconds (`now - rotated_at <= grace`), so with grace 0 a duplicate within the
    // second of its rotation still gets the successor: wait past that second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for refresh in &a.rotated {
        let form = [("grant_type", "refresh_token"), ("refresh_token", refresh.as_str())];
        let (status, body) = post(&base, "/oauth2/token", &form, &secret).await.unwrap();
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{backend:?}");
    }
    // No exchanged code is accepted again.
    for code in &a.codes {
        let form = [("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", CALLBACK)];
        let (status, body) = post(&base, "/oauth2/token", &form, &secret).await.unwrap();
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{backend:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_survives_sigkill_under_load() {
    crash_under_load(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_survives_sigkill_under_load() {
    crash_under_load(Backend::Postgres).await;
}
