//! The admin API over HTTP, on SQLite and PostgreSQL: the real binary's admin
//! listener, its first client made by `khoa admin bootstrap`, a second process on the
//! same database, and the OpenAPI document checked by an independent validator.

use khoa_testkit::flow::{Khoa, PASSWORD};
use khoa_testkit::{both_backends, run_cli, stdout_json, KhoaProcess, TestDatabase, TEST_SECRET};
use reqwest::header::{CONTENT_TYPE, ETAG, IF_MATCH};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_khoa");

/// A client_credentials token from `base`'s token endpoint.
async fn token(base: &str, id: &str, secret: &str, scope: Option<&str>) -> (u16, Value) {
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    let res = reqwest::Client::new()
        .post(format!("{base}/oauth2/token"))
        .basic_auth(id, Some(secret))
        .form(&form)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

/// An admin API caller; every answer it receives is checked against the server's
/// own OpenAPI document.
struct Admin {
    base: String,
    token: String,
    http: reqwest::Client,
    doc: Value,
}

impl Admin {
    async fn new(base: &str, token: &str) -> Self {
        let doc = reqwest::get(format!("{base}/admin/openapi.json")).await.unwrap().json().await.unwrap();
        Self { base: base.to_string(), token: token.to_string(), http: reqwest::Client::new(), doc }
    }

    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req =
            self.http.request(method.parse().unwrap(), format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.checked(method, path, req).await
    }

    async fn checked(
        &self,
        method: &str,
        path: &str,
        req: reqwest::RequestBuilder,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let res = req.send().await.unwrap();
        let (status, headers) = (res.status().as_u16(), res.headers().clone());
        let bytes = res.bytes().await.unwrap();
        let media = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        khoa_testkit::openapi::check_response(&self.doc, method, path, status, media, &bytes);
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null), headers)
    }
}

async fn the_admin_api_end_to_end(db: TestDatabase) {
    let backend = db.backend;
    let khoa = Khoa::with_env(BIN, db, &[("KHOA_LOG", "debug")]);
    let admin_base = khoa.process().admin_url.clone().expect("the admin API listens");
    assert!(admin_base.starts_with("http://127.0.0.1:"), "{admin_base}");
    // Nothing of the admin API is on the public listener.
    assert_eq!(reqwest::get(khoa.url("/admin/clients")).await.unwrap().status(), 404);

    // The first admin client, printed once; a second bootstrap is refused.
    let boot = stdout_json(&run_cli(BIN, &khoa.db, &["admin", "bootstrap"], None));
    let (admin_id, admin_secret) =
        (boot["client_id"].as_str().unwrap().to_string(), boot["client_secret"].as_str().unwrap().to_string());
    assert_eq!((admin_id.as_str(), boot["scope"].as_str()), ("khoa-admin", Some("khoa:admin")));
    let again = run_cli(BIN, &khoa.db, &["admin", "bootstrap"], None);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("exists"));
    let (status, issued) = token(&khoa.issuer(), &admin_id, &admin_secret, None).await;
    assert_eq!(status, 200, "{issued}");
    let a = Admin::new(&admin_base, issued["access_token"].as_str().unwrap()).await;
    let mut secrets = vec![admin_secret.clone(), a.token.clone(), PASSWORD.to_string(), TEST_SECRET.to_string()];

    // The document, by an independent validator (openapi-spec-validator, Python).
    let doc = reqwest::get(format!("{admin_base}/admin/openapi.json")).await.unwrap().text().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, &doc).unwrap();
    let check = "import json, sys\nfrom openapi_spec_validator import validate\nvalidate(json.load(open(sys.argv[1])))\nprint('valid')";
    let out = std::process::Command::new("python3").args(["-c", check]).arg(&path).output().unwrap();
    assert!(
        out.status.success(),
        "openapi-spec-validator (scripts/test.sh installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Authorization: none, a reader writing, a revoked token.
    let anonymous = reqwest::get(format!("{admin_base}/admin/users")).await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer realm=\"khoa-admin\"");
    assert_eq!(anonymous.headers()[CONTENT_TYPE], "application/problem+json");
    let reader = json!({"client_id": "auditor", "grant_types": ["client_credentials"], "scope": "khoa:admin.read"});
    let (status, created, _) = a.send("POST", "/admin/clients", Some(reader)).await;
    assert_eq!(status, 201, "{created}");
    let reader_secret = created["client_secret"].as_str().unwrap().to_string();
    let (_, read_token) = token(&khoa.issuer(), "auditor", &reader_secret, None).await;
    let r = Admin::new(&admin_base, read_token["access_token"].as_str().unwrap()).await;
    assert_eq!(r.send("GET", "/admin/clients", None).await.0, 200);
    let (status, body, _) =
        r.send("POST", "/admin/clients", Some(json!({"client_id": "x", "redirect_uris": []}))).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("insufficient_scope")));
    let revoke = a
        .http
        .post(khoa.url("/oauth2/revoke"))
        .basic_auth("auditor", Some(&reader_secret))
        .form(&[("token", &r.token)]);
    assert_eq!(revoke.send().await.unwrap().status(), 200);
    assert_eq!(r.send("GET", "/admin/clients", None).await.1["error"], "invalid_token");
    // The scope taken from a client ends its live token's power at once.
    let (_, again) = token(&khoa.issuer(), "auditor", &reader_secret, None).await;
    let r = Admin::new(&admin_base, again["access_token"].as_str().unwrap()).await;
    assert_eq!(r.send("GET", "/admin/clients", None).await.0, 200);
    let withdrawn = json!({"scope": "api:read"});
    assert_eq!(a.send("PATCH", "/admin/clients/auditor", Some(withdrawn)).await.0, 200);
    assert_eq!(r.send("GET", "/admin/clients", None).await.1["error"], "invalid_token");
    // A user's access token is no admin token.
    let app_secret = khoa.client("app", &["--skip-consent"]).unwrap();
    let code = khoa.code_as(&khoa_testkit::browser::Browser::new(), "app", "sv01", PASSWORD).await;
    let user_token = khoa.exchange(&code, ("app", &app_secret)).await["access_token"].as_str().unwrap().to_string();
    let u = Admin::new(&admin_base, &user_token).await;
    assert_eq!(u.send("GET", "/admin/clients", None).await.1["error"], "invalid_token");
    secrets.extend([app_secret, user_token, r.token.clone()]);
    // Admin scopes never come from the authorization endpoint.
    let asked = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let url = format!(
        "{}/oauth2/auth?client_id=khoa-admin&response_type=code&scope=khoa%3Aadmin&redirect_uri=https%3A%2F%2Fx.example%2Fcb",
        khoa.issuer()
    );
    assert_ne!(asked.get(url).send().await.unwrap().status(), 303);
    secrets.extend([reader_secret, r.token.clone()]);

    // A client made through node A's admin API works at node B within 2 s.
    let b = KhoaProcess::start(BIN, &khoa.db, &[("KHOA_ISSUER", &khoa.issuer())]);
    let m2m = json!({"client_id": "billing", "client_name": "Billing", "grant_types": ["client_credentials"], "scope": "api:read"});
    let (status, created, headers) = a.send("POST", "/admin/clients", Some(m2m)).await;
    assert_eq!((status, headers["location"].to_str().unwrap()), (201, "/admin/clients/billing"));
    let billing_secret = created["client_secret"].as_str().unwrap().to_string();
    let made = Instant::now();
    loop {
        let (status, _) = token(&b.base_url, "billing", &billing_secret, Some("api:read")).await;
        if status == 200 {
            break;
        }
        assert!(made.elapsed() < Duration::from_secs(2), "node B did not know the client within 2 s ({status})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    secrets.push(billing_secret);

    // A lost update is refused with 412; the right ETag passes.
    let (_, _, headers) = a.send("GET", "/admin/clients/billing", None).await;
    let tag = headers[ETAG].to_str().unwrap().to_string();
    let patch = |body: &str, tag: &str| {
        a.http
            .patch(format!("{admin_base}/admin/clients/billing"))
            .bearer_auth(&a.token)
            .header(CONTENT_TYPE, "application/merge-patch+json")
            .header(IF_MATCH, tag)
            .body(body.to_string())
    };
    let path = "/admin/clients/billing";
    assert_eq!(a.checked("PATCH", path, patch("{\"client_name\": \"Billing 2\"}", &tag)).await.0, 200);
    let (status, lost, _) = a.checked("PATCH", path, patch("{\"client_name\": \"Lost\"}", &tag)).await;
    assert_eq!((status, lost["type"].as_str()), (412, Some("urn:khoa:problem:precondition-failed")));
    assert_eq!(a.send("GET", "/admin/clients/billing", None).await.1["client_name"], "Billing 2");

    // 1,200 users, then every one of them, page by page.
    let tasks: Vec<_> = (0..1200)
        .map(|i| {
            let (base, token, http) = (admin_base.clone(), a.token.clone(), a.http.clone());
            tokio::spawn(async move {
                let body = json!({"username": format!("st{i:04}"), "email": format!("st{i:04}@hutech.edu.vn")});
                http.post(format!("{base}/admin/users")).bearer_auth(token).json(&body).send().await.unwrap().status()
            })
        })
        .collect();
    let mut statuses = vec![];
    for chunk in tasks {
        statuses.push(chunk.await.unwrap().as_u16());
    }
    assert!(statuses.iter().all(|s| *s == 201), "{:?}", statuses.iter().filter(|s| **s != 201).collect::<Vec<_>>());
    let mut seen = vec![];
    let mut path = "/admin/users?limit=500&username=st".to_string();
    loop {
        let (status, page, _) = a.send("GET", &path, None).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(page["items"].as_array().unwrap().iter().map(|u| u["id"].as_i64().unwrap()));
        match page["next"].as_str() {
            Some(next) => path = format!("/admin/users?limit=500&username=st&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 1200);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in id order, none twice");
    let (_, found, _) = a.send("GET", "/admin/users?email=ST0042%40", None).await;
    assert_eq!(found["items"][0]["username"], "st0042");

    // Bad input of every kind: a clear 4xx problem, never a 5xx.
    let bad: Vec<(&str, String, &str, Vec<u8>)> = vec![
        ("POST", "/admin/clients".into(), "application/json", b"{\"client_id\": ".to_vec()),
        ("POST", "/admin/clients".into(), "application/json", vec![0xff, 0xfe, 0x00]),
        ("POST", "/admin/clients".into(), "application/json", b"\"a string\"".to_vec()),
        ("POST", "/admin/clients".into(), "text/plain", b"{}".to_vec()),
        ("POST", "/admin/clients".into(), "application/json", b"{\"redirect_uris\": [1, 2]}".to_vec()),
        (
            "POST",
            "/admin/clients".into(),
            "application/json",
            format!("{{\"client_name\": \"{}\"}}", "x".repeat(100_000)).into_bytes(),
        ),
        ("POST", "/admin/users".into(), "application/json", b"{\"username\": \"a\", \"attributes\": []}".to_vec()),
        ("POST", "/admin/users".into(), "application/json", b"{\"username\": \"\\u0000\"}".to_vec()),
        ("PATCH", "/admin/users/1".into(), "application/merge-patch+json", b"[]".to_vec()),
        ("PATCH", "/admin/users/-5".into(), "application/merge-patch+json", b"{}".to_vec()),
        ("PUT", "/admin/users/1/password".into(), "application/json", b"{\"password\": null}".to_vec()),
        ("GET", "/admin/users?limit=99999999999999999999".into(), "", vec![]),
        ("GET", "/admin/users?cursor=%FF%FE".into(), "", vec![]),
        ("GET", format!("/admin/clients/{}", "a".repeat(5000)), "", vec![]),
        ("GET", "/admin/audit-events?since=yesterday".into(), "", vec![]),
        ("POST", "/admin/keys/rotate".into(), "application/json", b"{\"algorithms\": \"RS256\"}".to_vec()),
        ("POST", "/admin/partners".into(), "application/json", b"{\"code\": 1}".to_vec()),
        ("DELETE", "/admin/keys".into(), "", vec![]),
        ("POST", "/admin/backchannel-deliveries/%00/retry".into(), "", vec![]),
    ];
    for (method, path, media, body) in bad {
        let mut req = a.http.request(method.parse().unwrap(), format!("{admin_base}{path}")).bearer_auth(&a.token);
        if !media.is_empty() {
            req = req.header(CONTENT_TYPE, media);
        }
        let (status, _, headers) = a.checked(method, &path, req.body(body)).await;
        assert!((400..500).contains(&status), "{method} {}: {status}", &path[..path.len().min(80)]);
        let media = headers.get(CONTENT_TYPE).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        assert_eq!(media, "application/problem+json", "{method} {}", &path[..path.len().min(80)]);
    }

    // A NUL character cannot reach PostgreSQL, whichever listener it arrives at.
    let nul = a.http.post(khoa.url("/oauth2/token")).form(&[
        ("grant_type", "client_credentials"),
        ("client_id", "a\0b"),
        ("client_secret", "x"),
    ]);
    let status = nul.send().await.unwrap().status().as_u16();
    assert!((400..500).contains(&status), "token endpoint with a NUL: {status}");
    let (status, _, _) = a.send("GET", "/admin/users?username=a%00", None).await;
    assert_eq!(status, 400);

    // A user with a password, whose password is then changed through the API.
    let (status, user, _) =
        a.send("POST", "/admin/users", Some(json!({"username": "gv01", "password": "first password 123"}))).await;
    assert_eq!(status, 201, "{user}");
    let id = user["id"].as_i64().unwrap();
    let (status, _, _) =
        a.send("PUT", &format!("/admin/users/{id}/password"), Some(json!({"password": "second password 456"}))).await;
    assert_eq!(status, 200);
    secrets.extend(["first password 123".to_string(), "second password 456".to_string()]);
    // The command line's disable and enable, seen through the API.
    let user_path = format!("/admin/users/{id}");
    assert!(run_cli(BIN, &khoa.db, &["user", "disable", "gv01"], None).status.success());
    assert_eq!(a.send("GET", &user_path, None).await.1["disabled"], true);
    assert!(run_cli(BIN, &khoa.db, &["user", "enable", "gv01"], None).status.success());
    assert_eq!(a.send("GET", &user_path, None).await.1["disabled"], false);
    assert!(!run_cli(BIN, &khoa.db, &["user", "disable", "nobody"], None).status.success());

    // The trail: the command line's and the API's changes, by whom; no secret in it,
    // nor in the log (where every event is a JSON line too).
    let (_, trail, _) = a.send("GET", "/admin/audit-events?limit=500&client=billing", None).await;
    let kinds: Vec<&str> = trail["items"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["client.updated", "client.created"], "{trail}");
    assert_eq!(trail["items"][1]["actor"], "admin_client:khoa-admin");
    let cli = run_cli(
        BIN,
        &khoa.db,
        &["audit", "list", "--json", "--client", "khoa-admin", "--type", "client.created"],
        None,
    );
    let line: Value = serde_json::from_str(String::from_utf8_lossy(&cli.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(line["actor"], "command_line");
    let mut everything = String::new();
    let mut path = "/admin/audit-events?limit=500".to_string();
    loop {
        let (_, page, _) = a.send("GET", &path, None).await;
        everything.push_str(&page.to_string());
        match page["next"].as_str() {
            Some(next) => path = format!("/admin/audit-events?limit=500&cursor={next}"),
            None => break,
        }
    }
    assert!(everything.contains("user.password_changed") && everything.contains("client.created"));
    let logs = khoa.process().logs() + &b.logs();
    assert!(logs.contains("khoa::audit"), "events are logged");
    for secret in &secrets {
        assert!(!everything.contains(secret.as_str()), "{backend:?}: a secret in the audit trail");
        assert!(!logs.contains(secret.as_str()), "{backend:?}: a secret in the log");
    }
}

both_backends!(the_admin_api_end_to_end);

/// The admin listener's address taken: `serve` stops with a message naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_admin_address_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let db = khoa_testkit::test_database(khoa_testkit::Backend::Sqlite).await;
    let out = std::process::Command::new(BIN)
        .arg("serve")
        .current_dir(db.dir.path())
        .env_clear()
        .env("KHOA_DATABASE_URL", &db.url)
        .env("KHOA_LISTEN", "127.0.0.1:0")
        .env("KHOA_ADMIN_LISTEN", &addr)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("cannot listen on {addr} (admin.listen)")), "{err}");
}

/// `khoa user import`: a file from another system, its bad lines reported by number
/// without stopping, a second run creating nothing, and the imported users signing in
/// with the passwords they had there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_imported_from_a_file_and_sign_in_with_their_old_passwords() {
    let khoa = Khoa::new(BIN, khoa_testkit::test_database(khoa_testkit::Backend::Sqlite).await);
    khoa.client("app", &["--skip-consent"]).unwrap();
    let lines = [
        r#"{"username": "bcrypt-user", "password_hash": "$2y$05$CCCCCCCCCCCCCCCCCCCCC.VGOzA784oUp/Z0DY336zx7pLYAy0lwK", "email": "b@hutech.edu.vn"}"#,
        r#"{"username": "django-user", "password_hash": "pbkdf2_sha256$30000$seasalt2$a75qzbogeVhNFeMqhdgyyoqGKpIzYUo651sq57RERew=", "attributes": {"student_id": "2280600348"}}"#,
        r#"{"username": "broken", "password_hash": "md5:5f4dcc3b5aa765d61d8327deb882cf99"}"#,
        r#"not json"#,
        r#"{"username": "sv01", "password_hash": "$2y$05$CCCCCCCCCCCCCCCCCCCCC.VGOzA784oUp/Z0DY336zx7pLYAy0lwK"}"#,
    ];
    let file = khoa.db.dir.path().join("users.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let path = file.to_str().unwrap();
    let out = run_cli(BIN, &khoa.db, &["user", "import", path], None);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "a failed line makes the exit status 1");
    assert_eq!(
        serde_json::from_str::<Value>(stdout.trim()).unwrap(),
        json!({"created": 2, "existing": 1, "failed": 2})
    );
    assert!(stderr.contains("line 3: password_hash: not a password hash khoa can import"), "{stderr}");
    assert!(stderr.contains("line 4: not JSON"), "{stderr}");
    assert!(stderr.contains("line 5: sv01 exists, not imported again"), "{stderr}");
    let again = run_cli(BIN, &khoa.db, &["user", "import", path], None);
    let summary: Value = serde_json::from_str(String::from_utf8_lossy(&again.stdout).trim()).unwrap();
    assert_eq!(summary, json!({"created": 0, "existing": 3, "failed": 2}));

    // The old passwords sign in, through the login page, twice (the second time against
    // the argon2id hash the first one left).
    for (username, password) in [("bcrypt-user", "U*U*"), ("django-user", "lètmein")] {
        for _ in 0..2 {
            let browser = khoa_testkit::browser::Browser::new();
            let code = khoa.code_as(&browser, "app", username, password).await;
            assert!(!code.is_empty(), "{username}");
        }
    }
    let listed = run_cli(BIN, &khoa.db, &["audit", "list", "--json", "--type", "user.password_upgraded"], None);
    let events: Vec<Value> =
        String::from_utf8_lossy(&listed.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let froms: Vec<&str> = events.iter().map(|e| e["detail"]["from"].as_str().unwrap()).collect();
    assert_eq!(froms, ["django pbkdf2_sha256", "bcrypt"], "each upgraded once, newest first");
}
