//! The seed dialects end to end, on SQLite and on PostgreSQL: HUTECH's JSON code
//! exchanges and numbered errors, OneAccess's paths and token form, and TCONNECT's
//! encrypted partner API (with a padding-oracle test and the documentation's Python and
//! Node examples run against the server).

use khoa_core::tconnect::PartnerKey;
use khoa_testkit::browser::Browser;
use khoa_testkit::flow::{sign_in, Khoa, CALLBACK, CHALLENGE, PASSWORD, VERIFIER};
use khoa_testkit::{both_backends, run_cli, stdout_json, test_database, Backend, TestDatabase};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_khoa");
const MOBILE: &str = "/api/authen/sso/mobile/exchange-access-token";
const WEB: &str = "/api/authen/sso/web/exchange-access-token";

async fn post_json(khoa: &Khoa, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
    let mut req =
        reqwest::Client::new().post(khoa.url(path)).header("content-type", "application/json").body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Both HUTECH exchanges through the real binary. Every error, one rule a test, is
/// in-process (khoa-server `dialects::hutech::tests`).
async fn hutech_exchanges(db: TestDatabase) {
    let khoa = Khoa::new(BIN, db);
    let b = Browser::new();
    khoa.client("hutech-mobile", &["--public", "--skip-consent"]);
    let web_secret =
        khoa.client("hutech-web", &["--skip-consent", "--token-endpoint-auth-method", "client_secret_post"]).unwrap();
    let pkce = [("code_challenge", CHALLENGE), ("code_challenge_method", "S256")];
    let mobile =
        |code: &str, verifier: &str| json!({"authorization_code": code, "code_verifier": verifier}).to_string();
    let app = |key: &'static str| [("app-key", key)];

    // Mobile success: the seed's envelope, filled from the user as far as the scope
    // grants (the_hutech_exchange_releases_only_granted_claims in security.rs: nothing
    // more).
    let granted = [pkce[0], pkce[1], ("scope", "openid profile email")];
    let code = khoa.code(&b, "hutech-mobile", &granted).await;
    let (status, body) = post_json(&khoa, MOBILE, &app("hutech-mobile"), &mobile(&code, VERIFIER)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], "1.0.0");
    let d = &body["data"];
    assert_eq!((d["username"].as_str(), d["data"]["ho_ten"].as_str()), (Some("sv01"), Some("Nguyễn Văn A")));
    assert_eq!(
        (d["data"]["email"].as_str(), d["data"]["avatar"].as_str(), d["data"]["so_dien_thoai"].as_str()),
        (Some("sv01@hutech.edu.vn"), Some(""), Some(""))
    );
    let (status, info, _) = {
        let r = khoa.userinfo(d["token"].as_str().unwrap()).await;
        (r.0, r.2, ())
    };
    assert_eq!(status, 200);
    assert_eq!(d["contact_id"], info["sub"], "contact_id is the user's stable id");

    // Web success.
    let code = khoa.code(&b, "hutech-web", &[]).await;
    let web = |code: &str, id: &str, secret: &str| {
        json!({"authorization_code": code, "client_id": id, "client_secret": secret}).to_string()
    };
    let (status, body) = post_json(&khoa, WEB, &app("hutech-web"), &web(&code, "hutech-web", &web_secret)).await;
    assert_eq!((status, body["data"]["username"].as_str()), (200, Some("sv01")), "{body}");
}

async fn oneaccess_paths_and_token_form(db: TestDatabase) {
    let khoa = Khoa::new(BIN, db);
    let with_refresh = khoa
        .client(
            "oa",
            &["--skip-consent", "--refresh-token-lifetime", "1h", "--token-endpoint-auth-method", "client_secret_post"],
        )
        .unwrap();
    let without =
        khoa.client("oa-plain", &["--skip-consent", "--token-endpoint-auth-method", "client_secret_post"]).unwrap();
    let b = Browser::new();
    let authorize = |client: &str| {
        let mut url = url::Url::parse(&khoa.url("/api/v1/oauth2/authorize")).unwrap();
        url.query_pairs_mut().extend_pairs([
            ("client_id", client),
            ("redirect_uri", CALLBACK),
            ("response_type", "code"),
            ("scope", "openid profile"),
            ("state", "s"),
        ]);
        url.to_string()
    };
    let token = |form: Vec<(&'static str, String)>| {
        let url = khoa.url("/api/v1/oauth2/token");
        async move {
            let res = reqwest::Client::new().post(url).form(&form).send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let code_form = |code: &str, id: &str, secret: &str| {
        vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code.to_string()),
            ("client_id", id.to_string()),
            ("client_secret", secret.to_string()),
            ("redirect_uri", CALLBACK.to_string()),
        ]
    };
    let callback = sign_in(&b, &khoa, &authorize("oa"), "sv01", PASSWORD).await;
    let code = khoa_testkit::browser::query(&callback)["code"].clone();
    let (status, body) = token(code_form(&code, "oa", &with_refresh)).await;
    assert_eq!(status, 200, "{body}");
    for field in ["access_token", "token_type", "expires_in", "scope", "id_token", "refresh_token"] {
        assert!(body.get(field).is_some(), "{field}: {body}");
    }
    assert_eq!(body["token_type"], "Bearer");
    // Userinfo under the dialect's path.
    let info = reqwest::Client::new()
        .get(khoa.url("/api/v1/oauth2/userinfo"))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), 200);
    assert_eq!(info.json::<Value>().await.unwrap()["preferred_username"], "sv01");
    // The refresh grant rotates.
    let rt = body["refresh_token"].as_str().unwrap().to_string();
    let refresh = vec![
        ("grant_type", "refresh_token".to_string()),
        ("refresh_token", rt),
        ("client_id", "oa".to_string()),
        ("client_secret", with_refresh.clone()),
    ];
    let (status, body) = token(refresh).await;
    assert_eq!((status, body["refresh_token"].is_string()), (200, true), "{body}");

    // No refresh lifetime configured: no refresh token.
    let callback = sign_in(&b, &khoa, &authorize("oa-plain"), "sv01", PASSWORD).await;
    let code = khoa_testkit::browser::query(&callback)["code"].clone();
    let (status, body) = token(code_form(&code, "oa-plain", &without)).await;
    assert_eq!((status, body.get("refresh_token").is_none()), (200, true), "{body}");

    // Errors: always 400 {error, error_description}.
    let (status, body) = token(code_form("bogus", "oa-plain", &without)).await;
    assert_eq!(
        (status, body),
        (400, json!({"error": "invalid_grant", "error_description": "Invalid authorization code"}))
    );
    let mut missing = code_form("bogus", "oa-plain", &without);
    missing.retain(|(k, _)| *k != "redirect_uri");
    let (status, body) = token(missing).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")));
    let (status, body) = token(code_form("bogus", "oa-plain", "wrong-secret-0123456789abcdef0123")).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_client")));
    let (status, body) = token(vec![("grant_type", "password".to_string())]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("unsupported_grant_type")));
}

/// A partner `ACME` bound to the confidential client `acme-app`; returns its key.
fn partner(khoa: &Khoa) -> (String, String) {
    let secret =
        khoa.client("acme-app", &["--skip-consent", "--token-endpoint-auth-method", "client_secret_post"]).unwrap();
    let out =
        stdout_json(&run_cli(BIN, &khoa.db, &["partner", "create", "--code", "ACME", "--client-id", "acme-app"], None));
    let key = out["key_hex"].as_str().unwrap().to_string();
    assert_eq!(key.len(), 64);
    let listed = stdout_json(&run_cli(BIN, &khoa.db, &["partner", "list", "--json"], None));
    assert!(!listed.to_string().contains(&key), "the key is shown once only");
    (key, secret)
}

async fn tconnect_call(khoa: &Khoa, path: &str, code: Option<&str>, body: &str) -> (u16, String) {
    let mut req =
        reqwest::Client::new().post(khoa.url(path)).header("content-type", "application/json").body(body.to_string());
    if let Some(c) = code {
        req = req.header("partner-code", c);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

fn sealed(key: &str, payload: Value) -> String {
    json!({"data": PartnerKey::from_hex(key).unwrap().encrypt(payload.to_string().as_bytes())}).to_string()
}

async fn tconnect_login_two_refreshes_and_reuse(db: TestDatabase) {
    let khoa = Khoa::embedded(BIN, db, |_| {}).await;
    let (key, secret) = partner(&khoa);
    let login = |password: &str, client_secret: &str| json!({"username": "sv01", "password": password, "client_id": "acme-app", "client_secret": client_secret});
    let (status, body) =
        tconnect_call(&khoa, "/openapi/v1/auth/login", Some("ACME"), &sealed(&key, login(PASSWORD, &secret))).await;
    assert_eq!(status, 200, "{body}");
    let first: Value = serde_json::from_str(&body).unwrap();
    for field in ["access_token", "expires_in", "refresh_token", "refresh_expires_in"] {
        assert!(first.get(field).is_some(), "{field}");
    }
    assert_eq!(first["token_type"], "Bearer");
    assert_eq!(first["refresh_token"].as_str().unwrap().split('.').count(), 3, "the refresh token is a JWT");
    assert_eq!(khoa.userinfo(first["access_token"].as_str().unwrap()).await.0, 200);

    let refresh = |rt: &str| sealed(&key, json!({"refresh_token": rt}));
    let (s1, b1) = tconnect_call(
        &khoa,
        "/openapi/v1/auth/refresh",
        Some("ACME"),
        &refresh(first["refresh_token"].as_str().unwrap()),
    )
    .await;
    assert_eq!(s1, 200, "{b1}");
    let second: Value = serde_json::from_str(&b1).unwrap();
    let (s2, b2) = tconnect_call(
        &khoa,
        "/openapi/v1/auth/refresh",
        Some("ACME"),
        &refresh(second["refresh_token"].as_str().unwrap()),
    )
    .await;
    assert_eq!(s2, 200, "{b2}");
    let third: Value = serde_json::from_str(&b2).unwrap();
    assert_ne!(second["refresh_token"], third["refresh_token"]);
    // Reuse (outside the 5 s grace): refused, and the family is revoked.
    khoa.clock().advance(6);
    let (s, body) = tconnect_call(
        &khoa,
        "/openapi/v1/auth/refresh",
        Some("ACME"),
        &refresh(first["refresh_token"].as_str().unwrap()),
    )
    .await;
    assert_eq!((s, serde_json::from_str::<Value>(&body).unwrap()["error"].as_str()), (400, Some("invalid_grant")));
    let (s, _) = tconnect_call(
        &khoa,
        "/openapi/v1/auth/refresh",
        Some("ACME"),
        &refresh(third["refresh_token"].as_str().unwrap()),
    )
    .await;
    assert_eq!(s, 400, "the newest refresh token died with its family");

    // Partners: unknown or absent → 404.
    assert_eq!(
        tconnect_call(&khoa, "/openapi/v1/auth/login", Some("NOPE"), &sealed(&key, login(PASSWORD, &secret))).await.0,
        404
    );
    assert_eq!(
        tconnect_call(&khoa, "/openapi/v1/auth/login", None, &sealed(&key, login(PASSWORD, &secret))).await.0,
        404
    );
    // Wrong password, wrong client secret: RFC 6749 errors.
    let (s, body) =
        tconnect_call(&khoa, "/openapi/v1/auth/login", Some("ACME"), &sealed(&key, login("wrong password", &secret)))
            .await;
    assert_eq!((s, serde_json::from_str::<Value>(&body).unwrap()["error"].as_str()), (400, Some("invalid_grant")));
    let (s, body) = tconnect_call(
        &khoa,
        "/openapi/v1/auth/login",
        Some("ACME"),
        &sealed(&key, login(PASSWORD, "wrong-secret-0123456789abcdef0123")),
    )
    .await;
    assert_eq!((s, serde_json::from_str::<Value>(&body).unwrap()["error"].as_str()), (401, Some("invalid_client")));
}

both_backends!(hutech_exchanges, oneaccess_paths_and_token_form, tconnect_login_two_refreshes_and_reuse);

fn code_block(doc: &str, lang: &str) -> String {
    let start = doc.find(&format!("```{lang}\n")).unwrap() + lang.len() + 4;
    let end = doc[start..].find("```").unwrap() + start;
    doc[start..end].to_string()
}

/// The Python and Node examples of docs/dialects.md, run as written against the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tconnect_documentation_examples_work() {
    let khoa = Khoa::new(BIN, test_database(Backend::Sqlite).await);
    let (key, secret) = partner(&khoa);
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/dialects.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (lang, file, program) in [("python", "tconnect.py", "python3"), ("js", "tconnect.mjs", "node")] {
        let path = dir.path().join(file);
        std::fs::write(&path, code_block(&doc, lang)).unwrap();
        let base = khoa.issuer();
        let args = [path.to_str().unwrap(), &base, "ACME", &key, "sv01", PASSWORD, "acme-app", &secret];
        let out = tokio::task::spawn_blocking({
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            let program = program.to_string();
            move || std::process::Command::new(program).args(args).output().unwrap()
        })
        .await
        .unwrap();
        assert!(out.status.success(), "{program}: {}", String::from_utf8_lossy(&out.stderr));
        let tokens: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{program}: {}", String::from_utf8_lossy(&out.stdout)));
        assert!(tokens["access_token"].is_string() && tokens["refresh_token"].is_string(), "{program}: {tokens}");
    }
}

/// The partner login is throttled like the login page: 429 with Retry-After, without
/// checking the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tconnect_login_is_throttled() {
    let env = [("KHOA_LOGIN_FREE_FAILURES", "1"), ("KHOA_LOGIN_BASE_DELAY", "60s")];
    let khoa = Khoa::with_env(BIN, test_database(Backend::Sqlite).await, &env);
    let (key, secret) = partner(&khoa);
    let login = |password: &str| {
        sealed(
            &key,
            json!({"username": "sv01", "password": password, "client_id": "acme-app", "client_secret": secret}),
        )
    };
    assert_eq!(tconnect_call(&khoa, "/openapi/v1/auth/login", Some("ACME"), &login("wrong password")).await.0, 400);
    let res = reqwest::Client::new()
        .post(khoa.url("/openapi/v1/auth/login"))
        .header("partner-code", "ACME")
        .header("content-type", "application/json")
        .body(login(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429, "blocked even with the right password");
    let retry: i64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
}
