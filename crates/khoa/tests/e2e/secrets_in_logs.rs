//! No secret and no token reaches the logs: a whole run of the server at the most
//! verbose level (`trace`), through login, consent, code exchange, refresh, userinfo,
//! introspection, revocation, client credentials, failed logins and logout, and then
//! every secret and token the run used is looked for in everything the server wrote.

use base64::Engine;
use khoa_testkit::browser::{inputs, location, query, Browser};
use khoa_testkit::flow::{Khoa, CALLBACK, CHALLENGE, PASSWORD, VERIFIER};
use khoa_testkit::{both_backends, Backend, TestDatabase, TEST_SECRET};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_khoa");

async fn form(url: &str, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(url).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn cookie_values(res: &reqwest::Response) -> Vec<String> {
    res.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next()?.split_once('=').map(|(_, v)| v.to_string()))
        .filter(|v| !v.is_empty())
        .collect()
}

async fn no_secret_or_token_is_logged(db: TestDatabase) {
    let backend = db.backend;
    let khoa = Khoa::with_env(BIN, db, &[("KHOA_LOG", "trace")]);
    let mut secrets: Vec<String> = vec![PASSWORD.into()];
    if backend == Backend::Postgres {
        secrets.push(TEST_SECRET.into());
    }
    let secret = khoa.client("app", &[]).unwrap();
    let m2m = khoa.client("m2m", &["--grant-types", "client_credentials", "--scopes", "api"]).unwrap();
    secrets.extend([secret.clone(), m2m.clone()]);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("app:{secret}"));
    secrets.push(basic);

    // Login and consent, by hand so that every cookie and form handle is collected.
    let browser = Browser::new();
    let params = [
        ("client_id", "app"),
        ("redirect_uri", CALLBACK),
        ("response_type", "code"),
        ("scope", "openid profile offline_access"),
        ("state", "state-value"),
        ("nonce", "nonce-value"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    let mut res = browser.get(&khoa.authorize_url(&params)).await;
    let mut callback = None;
    for _ in 0..8 {
        secrets.extend(cookie_values(&res));
        if res.status() == 303 {
            let next = location(&res, &khoa.issuer());
            if next.starts_with(CALLBACK) {
                callback = Some(next);
                break;
            }
            res = browser.get(&next).await;
            continue;
        }
        let html = res.text().await.unwrap();
        let f = inputs(&html);
        secrets.extend([f["interaction"].clone(), f["csrf_token"].clone()]);
        res = if html.contains("action=\"/oauth2/auth/login\"") {
            // A failed attempt first: its password must not be logged either.
            let wrong = [
                ("interaction", f["interaction"].as_str()),
                ("csrf_token", f["csrf_token"].as_str()),
                ("username", "sv01"),
                ("password", "a wrong password that is long"),
            ];
            secrets.push("a wrong password that is long".into());
            let again = browser.post_form(&khoa.url("/oauth2/auth/login"), &wrong).await;
            assert_eq!(again.status(), 200);
            let html = again.text().await.unwrap();
            let f = inputs(&html);
            let login = [
                ("interaction", f["interaction"].as_str()),
                ("csrf_token", f["csrf_token"].as_str()),
                ("username", "sv01"),
                ("password", PASSWORD),
            ];
            browser.post_form(&khoa.url("/oauth2/auth/login"), &login).await
        } else {
            let consent = [
                ("interaction", f["interaction"].as_str()),
                ("csrf_token", f["csrf_token"].as_str()),
                ("decision", "allow"),
            ];
            browser.post_form(&khoa.url("/oauth2/auth/consent"), &consent).await
        };
    }
    let callback = callback.expect("back at the client");
    let code = query(&callback)["code"].clone();
    secrets.extend([code.clone(), VERIFIER.into()]);

    // The code exchange, a refresh, userinfo, introspection, revocation.
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
        ("code_verifier", VERIFIER),
    ];
    let (status, tokens) = form(&khoa.url("/oauth2/token"), &exchange, Some(("app", &secret))).await;
    assert_eq!(status, 200, "{tokens}");
    let field = |v: &Value, k: &str| v[k].as_str().unwrap().to_string();
    let (access, refresh, id_token) =
        (field(&tokens, "access_token"), field(&tokens, "refresh_token"), field(&tokens, "id_token"));
    // A replay of the code, refused (and logged as a replay, without the code).
    let (status, replay) = form(&khoa.url("/oauth2/token"), &exchange, Some(("app", &secret))).await;
    assert_eq!((status, replay["error"].as_str()), (400, Some("invalid_grant")));
    // The replay revoked the first tokens; start again for the rest of the run.
    let code = khoa.code(&browser, "app", &[("scope", "openid profile offline_access")]).await;
    secrets.push(code.clone());
    let tokens = khoa.exchange(&code, ("app", &secret)).await;
    let (access2, refresh2, id_token2) =
        (field(&tokens, "access_token"), field(&tokens, "refresh_token"), field(&tokens, "id_token"));
    let (status, rotated) = form(
        &khoa.url("/oauth2/token"),
        &[("grant_type", "refresh_token"), ("refresh_token", refresh2.as_str())],
        Some(("app", &secret)),
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let (access3, refresh3) = (field(&rotated, "access_token"), field(&rotated, "refresh_token"));
    assert_eq!(khoa.userinfo(&access3).await.0, 200);
    assert_eq!(khoa.userinfo("bad.token.value-of-a-client").await.0, 401);
    secrets.push("bad.token.value-of-a-client".into());
    let (status, active) = form(&khoa.url("/oauth2/introspect"), &[("token", &access3)], Some(("app", &secret))).await;
    assert_eq!((status, active["active"].as_bool()), (200, Some(true)));
    assert_eq!(
        form(&khoa.url("/oauth2/token"), &[("grant_type", "client_credentials")], Some(("app", "wrong-secret-value")))
            .await
            .0,
        401
    );
    secrets.push("wrong-secret-value".into());
    let (status, cc) = form(
        &khoa.url("/oauth2/token"),
        &[("grant_type", "client_credentials"), ("scope", "api")],
        Some(("m2m", &m2m)),
    )
    .await;
    assert_eq!(status, 200, "{cc}");
    let cc_token = field(&cc, "access_token");
    assert_eq!(form(&khoa.url("/oauth2/revoke"), &[("token", &refresh3)], Some(("app", &secret))).await.0, 200);

    // RP-initiated logout with the ID token as hint.
    let logout = format!("{}?id_token_hint={id_token2}", khoa.url("/oauth2/sessions/logout"));
    let res = browser.get(&logout).await;
    assert!(res.status().is_success() || res.status().is_redirection(), "{}", res.status());

    secrets.extend([access, refresh, id_token, access2, refresh2, id_token2, access3, refresh3, cc_token]);

    // Let the last log lines be written: the access lines, and the watcher's debug line
    // for the clients created while it runs (it polls, so under load it can be late).
    let mut logs = String::new();
    for _ in 0..100 {
        logs = khoa.process().logs();
        if logs.contains("DEBUG") && logs.lines().filter(|l| l.contains("request method=")).count() >= 17 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Every request's access line is there, and the verbose levels are on.
    assert!(logs.lines().filter(|l| l.contains("request method=")).count() >= 17, "{logs}");
    assert!(logs.contains("DEBUG"), "{logs}");
    assert!(logs.contains("/oauth2/token"), "the requests are in the log");
    for s in &secrets {
        assert!(s.len() >= 8, "too short to be a meaningful probe: {s:?}");
        assert!(!logs.contains(s.as_str()), "found in the logs: {s}");
        // Also not in a form- or URL-encoded spelling.
        let encoded: String = url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
        assert!(!logs.contains(&encoded), "found (encoded) in the logs: {encoded}");
    }
}

both_backends!(no_secret_or_token_is_logged);
