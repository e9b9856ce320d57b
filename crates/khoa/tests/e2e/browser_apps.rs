//! Browser apps against the real `khoa serve`: allowed origins per client (validated
//! at registration), CORS at the token, userinfo and revocation endpoints with a
//! foreign origin refused before anything is spent, `response_mode=form_post` (with
//! openid-client as the relying party), and clients updated in place, their secrets
//! rotated with an overlap. The single-page app on oidc-client-ts in Chromium is in
//! browser.rs.

use khoa_server::clock::{Clock, SystemClock};
use khoa_testkit::browser::{inputs, location, query, unescape, Browser};
use khoa_testkit::flow::{Khoa, CALLBACK, CHALLENGE, PASSWORD, VERIFIER};
use khoa_testkit::{both_backends, run_cli, stdout_json, test_database, Backend, TestDatabase};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_khoa");
/// The origin of the test callback (`http://127.0.0.1:9/callback`): allowed by default.
const APP: &str = "http://127.0.0.1:9";
const FOREIGN: &str = "https://evil.example";

async fn post(khoa: &Khoa, path: &str, origin: Option<&str>, form: &[(&str, &str)]) -> reqwest::Response {
    let mut req = reqwest::Client::new().post(khoa.url(path)).form(form);
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    req.send().await.unwrap()
}

fn header(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers().get(name).map(|v| v.to_str().unwrap().to_string())
}

/// Origins are exactly scheme://host[:port]: anything else is refused at registration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_origins_are_validated_at_registration() {
    let khoa = Khoa::new(BIN, test_database(Backend::Sqlite).await);
    for bad in [
        "https://spa.example/",
        "https://spa.example/app",
        "https://*.example",
        "http://spa.example",
        "spa.example",
        "https://Spa.Example",
        "https://spa.example:443",
    ] {
        let args = ["client", "create", "--id", "bad", "--public", "--redirect-uri", CALLBACK, "--allowed-origin", bad];
        let out = run_cli(BIN, &khoa.db, &args, None);
        assert!(!out.status.success(), "{bad} was accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("allowed origin"),
            "{bad}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    khoa.client(
        "spa",
        &["--public", "--allowed-origin", "https://spa.example", "--allowed-origin", "http://localhost:5173"],
    );
    let shown = stdout_json(&run_cli(BIN, &khoa.db, &["client", "show", "spa"], None));
    assert_eq!(shown["allowed_origins"], json!(["https://spa.example", "http://localhost:5173"]));
    assert_eq!(
        shown["origins"],
        json!([APP, "https://spa.example", "http://localhost:5173"]),
        "with the redirect URI's"
    );
    let list = run_cli(BIN, &khoa.db, &["client", "list"], None);
    assert!(String::from_utf8_lossy(&list.stdout).contains("https://spa.example"));
    let listed = stdout_json(&run_cli(BIN, &khoa.db, &["client", "list", "--json"], None));
    assert_eq!(listed[0]["origins"], shown["origins"]);
}

async fn preflight(khoa: &Khoa, path: &str, origin: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, khoa.url(path))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type")
        .send()
        .await
        .unwrap()
}

/// Preflights: 204 with this origin (never `*`) for an origin some client allows, 403
/// without CORS headers for any other; introspection answers no CORS; discovery and
/// JWKS keep `*`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflights_name_the_origin_or_refuse_it() {
    let khoa = Khoa::new(BIN, test_database(Backend::Sqlite).await);
    khoa.client("spa", &["--public", "--skip-consent"]);
    for (path, methods) in [("/oauth2/token", "POST"), ("/oauth2/revoke", "POST"), ("/userinfo", "GET, POST")] {
        let res = preflight(&khoa, path, APP).await;
        assert_eq!(res.status(), 204, "{path}");
        assert_eq!(header(&res, "access-control-allow-origin").as_deref(), Some(APP), "{path}");
        assert_eq!(header(&res, "access-control-allow-methods").as_deref(), Some(methods));
        assert_eq!(header(&res, "access-control-allow-headers").as_deref(), Some("authorization, content-type, dpop"));
        assert_eq!(header(&res, "access-control-max-age").as_deref(), Some("600"));
        assert_eq!(header(&res, "vary").as_deref(), Some("Origin"));
        let res = preflight(&khoa, path, FOREIGN).await;
        assert_eq!(res.status(), 403, "{path}");
        assert_eq!(header(&res, "access-control-allow-origin"), None, "{path}");
        let res = preflight(&khoa, path, "http://127.0.0.1:10").await;
        assert_eq!(res.status(), 403, "{path}: another port is another origin");
    }
    let res = preflight(&khoa, "/oauth2/introspect", APP).await;
    assert_eq!(res.status(), 405, "introspection is server to server");
    assert_eq!(header(&res, "access-control-allow-origin"), None);
    for path in ["/.well-known/openid-configuration", "/.well-known/jwks.json"] {
        let res = reqwest::Client::new().get(khoa.url(path)).header("origin", FOREIGN).send().await.unwrap();
        assert_eq!(header(&res, "access-control-allow-origin").as_deref(), Some("*"), "{path}");
    }
}

/// A token request from an origin its client does not allow is refused (400
/// invalid_request) before anything happens: the code stays redeemable by the right
/// origin, the refresh token unrotated, the token unrevoked. Allowed origins get CORS
/// headers on every answer, errors included; requests without Origin are untouched.
async fn a_foreign_origin_is_refused_before_anything_happens(db: TestDatabase) {
    let khoa = Khoa::new(BIN, db);
    khoa.client("spa", &["--public", "--skip-consent", "--always-issue-refresh-token"]);
    let browser = Browser::new();
    let pkce = [("code_challenge", CHALLENGE), ("code_challenge_method", "S256")];
    let code = khoa.code(&browser, "spa", &pkce).await;
    let grant = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
        ("client_id", "spa"),
        ("code_verifier", VERIFIER),
    ];
    let refused = post(&khoa, "/oauth2/token", Some(FOREIGN), &grant).await;
    assert_eq!(refused.status(), 400);
    assert_eq!(header(&refused, "access-control-allow-origin"), None);
    assert_eq!(header(&refused, "vary").as_deref(), Some("Origin"));
    assert_eq!(
        refused.json::<Value>().await.unwrap(),
        json!({"error": "invalid_request", "error_description": "the request's Origin is not allowed for this client"})
    );
    let res = post(&khoa, "/oauth2/token", Some(APP), &grant).await;
    assert_eq!(res.status(), 200, "the code was not spent");
    assert_eq!(header(&res, "access-control-allow-origin").as_deref(), Some(APP));
    assert_eq!(header(&res, "vary").as_deref(), Some("Origin"));
    let tokens: Value = res.json().await.unwrap();
    // An error answer carries CORS too, so the app can read it (an unknown code: a
    // replay would revoke what the code gave).
    let mut unknown = grant;
    unknown[1] = ("code", "an-unknown-code");
    let res = post(&khoa, "/oauth2/token", Some(APP), &unknown).await;
    assert_eq!((res.status().as_u16(), header(&res, "access-control-allow-origin").as_deref()), (400, Some(APP)));
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_grant");

    let rt = tokens["refresh_token"].as_str().unwrap();
    let refresh = [("grant_type", "refresh_token"), ("refresh_token", rt), ("client_id", "spa")];
    assert_eq!(post(&khoa, "/oauth2/token", Some(FOREIGN), &refresh).await.status(), 400);
    let res = post(&khoa, "/oauth2/token", Some(APP), &refresh).await;
    let status = res.status();
    let rotated: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "the refresh token was not rotated by the refused request: {rotated}");

    // Userinfo: judged by the token's client; the Bearer challenge is readable.
    let at = rotated["access_token"].as_str().unwrap();
    let url = khoa.url("/userinfo");
    let userinfo = |origin: &'static str, token: String| {
        let url = url.clone();
        async move { reqwest::Client::new().get(url).bearer_auth(token).header("origin", origin).send().await.unwrap() }
    };
    let res = userinfo(APP, at.to_string()).await;
    assert_eq!((res.status().as_u16(), header(&res, "access-control-allow-origin").as_deref()), (200, Some(APP)));
    let res = userinfo(APP, "not-a-token".into()).await;
    assert_eq!(res.status(), 401);
    assert_eq!(header(&res, "access-control-allow-origin").as_deref(), Some(APP));
    assert_eq!(header(&res, "access-control-expose-headers").as_deref(), Some("WWW-Authenticate"));
    let res = userinfo(FOREIGN, at.to_string()).await;
    assert_eq!((res.status().as_u16(), header(&res, "access-control-allow-origin")), (400, None));

    // Revocation from a foreign origin revokes nothing.
    let revoke = [("token", at), ("client_id", "spa")];
    assert_eq!(post(&khoa, "/oauth2/revoke", Some(FOREIGN), &revoke).await.status(), 400);
    assert_eq!(khoa.userinfo(at).await.0, 200, "still valid");
    let res = post(&khoa, "/oauth2/revoke", Some(APP), &revoke).await;
    assert_eq!((res.status().as_u16(), header(&res, "access-control-allow-origin").as_deref()), (200, Some(APP)));
    assert_eq!(khoa.userinfo(at).await.0, 401);
}

/// Waits (up to 2 s, the promise of the command line) until `check` holds.
async fn within_two_seconds<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(2);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not seen by the server within 2 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn client_credentials(khoa: &Khoa, secret: &str) -> u16 {
    khoa.token(&[("grant_type", "client_credentials")], Some(("svc", secret))).await.0
}

/// `client update` changes a client in place without touching its secret; running
/// servers see it within 2 s; every rule of registration holds for an update.
async fn clients_are_updated_in_place(db: TestDatabase) {
    let khoa = Khoa::new(BIN, db);
    let secret = khoa.client("svc", &["--grant-types", "client_credentials,authorization_code"]).unwrap();
    khoa.client("spa", &["--public", "--skip-consent"]);
    assert_eq!(preflight(&khoa, "/oauth2/token", "https://spa.example").await.status(), 403);
    let out = run_cli(
        BIN,
        &khoa.db,
        &["client", "update", "spa", "--allowed-origin", "https://spa.example", "--name", "Ứng dụng web"],
        None,
    );
    let updated = stdout_json(&out);
    assert_eq!(
        (updated["client_name"].as_str(), updated["allowed_origins"][0].as_str()),
        (Some("Ứng dụng web"), Some("https://spa.example"))
    );
    within_two_seconds("a new allowed origin", || async {
        preflight(&khoa, "/oauth2/token", "https://spa.example").await.status() == 204
    })
    .await;
    // Refused updates change nothing.
    for args in [
        vec!["client", "update", "spa", "--allowed-origin", "https://spa.example/path"],
        vec!["client", "update", "spa", "--redirect-uri", "http://spa.example/cb"],
        vec!["client", "update", "svc", "--grant-types", "authorization_code", "--redirect-uri", ""],
        vec!["client", "update", "nobody", "--name", "x"],
    ] {
        let out = run_cli(BIN, &khoa.db, &args, None);
        assert!(!out.status.success(), "{args:?}");
    }
    let shown = stdout_json(&run_cli(BIN, &khoa.db, &["client", "show", "spa"], None));
    assert_eq!(shown["allowed_origins"], json!(["https://spa.example"]));
    // The secret is untouched by an update; flags can be turned off again.
    stdout_json(&run_cli(BIN, &khoa.db, &["client", "update", "svc", "--skip-consent"], None));
    let shown =
        stdout_json(&run_cli(BIN, &khoa.db, &["client", "update", "svc", "--skip-consent=false", "--name", ""], None));
    assert_eq!((shown["skip_consent"].as_bool(), shown.get("client_name")), (Some(false), Some(&Value::Null)));
    assert_eq!(client_credentials(&khoa, &secret).await, 200);
}

/// `client rotate-secret` prints a new secret; with --keep-old-for both work during the
/// overlap, without it the old one stops at once (seen by the server within 2 s).
async fn secrets_rotate_with_an_overlap(db: TestDatabase) {
    let khoa = Khoa::new(BIN, db);
    let first = khoa.client("svc", &["--grant-types", "client_credentials"]).unwrap();
    let out = stdout_json(&run_cli(BIN, &khoa.db, &["client", "rotate-secret", "svc", "--keep-old-for", "1h"], None));
    let second = out["client_secret"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    assert!(out["previous_secret_expires_at"].as_i64().unwrap() > SystemClock.now() + 3500);
    within_two_seconds("the new secret", || async { client_credentials(&khoa, &second).await == 200 }).await;
    assert_eq!(client_credentials(&khoa, &first).await, 200, "the old one during the overlap");
    let out = stdout_json(&run_cli(BIN, &khoa.db, &["client", "rotate-secret", "svc"], None));
    let third = out["client_secret"].as_str().unwrap().to_string();
    within_two_seconds("the third secret", || async { client_credentials(&khoa, &third).await == 200 }).await;
    assert_eq!(client_credentials(&khoa, &second).await, 401, "no overlap asked: the old one stops");
    assert_eq!(client_credentials(&khoa, &first).await, 401);
    khoa.client("spa", &["--public"]);
    let out = run_cli(BIN, &khoa.db, &["client", "rotate-secret", "spa"], None);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("public client"));
}

both_backends!(
    a_foreign_origin_is_refused_before_anything_happens,
    clients_are_updated_in_place,
    secrets_rotate_with_an_overlap
);

/// A page: its status, headers and body.
struct Page {
    status: u16,
    headers: reqwest::header::HeaderMap,
    html: String,
}

async fn page(res: reqwest::Response) -> Page {
    Page { status: res.status().as_u16(), headers: res.headers().clone(), html: res.text().await.unwrap() }
}

/// Follows a browser from `url` through the login page to the page that answers the
/// client with a form (skip-consent).
async fn until_the_answer(khoa: &Khoa, browser: &Browser, url: &str) -> Page {
    let mut res = browser.get(url).await;
    for _ in 0..6 {
        if res.status() == 303 {
            let next = location(&res, &khoa.issuer());
            res = browser.get(&next).await;
            continue;
        }
        let p = page(res).await;
        if !p.html.contains("action=\"/oauth2/auth/login\"") {
            return p;
        }
        let html = p.html;
        let f = inputs(&html);
        let form = [
            ("interaction", f["interaction"].as_str()),
            ("csrf_token", f["csrf_token"].as_str()),
            ("username", "sv01"),
            ("password", PASSWORD),
        ];
        res = browser.post_form(&khoa.url("/oauth2/auth/login"), &form).await;
    }
    panic!("no answer for the client");
}

/// The fields of the form_post page's form, checked against the page's rules.
fn form_post_fields(p: Page) -> Vec<(String, String)> {
    assert_eq!(p.status, 200);
    let csp = p.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains(&format!("form-action {CALLBACK};")), "{csp}");
    assert!(csp.contains("script-src 'sha256-") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(p.headers["cache-control"], "no-store");
    let html = p.html;
    assert!(html.contains(&format!("<form method=\"post\" action=\"{CALLBACK}\">")), "{html}");
    assert!(html.contains("<noscript>") && html.contains("<button type=\"submit\">"), "a button without scripts");
    assert!(html.contains("<script>document.forms[0].submit();</script>"));
    html.split("<input type=\"hidden\"")
        .skip(1)
        .map(|tag| {
            let attr = |name: &str| {
                let start = tag.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                tag[start..start + tag[start..].find('"').unwrap()].to_string()
            };
            (attr("name"), unescape(&attr("value")))
        })
        .collect()
}

/// response_mode=form_post for success and errors, on the native and the OneAccess
/// authorization paths; query explicitly; anything else invalid_request (in the query).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_post_answers_success_and_errors_with_a_form() {
    let khoa = Khoa::new(BIN, test_database(Backend::Sqlite).await);
    khoa.client("web", &["--skip-consent"]);
    let discovery: Value =
        reqwest::get(khoa.url("/.well-known/openid-configuration")).await.unwrap().json().await.unwrap();
    assert_eq!(discovery["response_modes_supported"], json!(["query", "form_post"]));
    let params = |mode: &'static str, extra: &[(&'static str, &'static str)]| {
        let mut p = vec![
            ("client_id", "web"),
            ("redirect_uri", CALLBACK),
            ("response_type", "code"),
            ("scope", "openid"),
            ("state", "s&1"),
            ("response_mode", mode),
        ];
        p.extend_from_slice(extra);
        p
    };
    // An error before any login: login_required, posted.
    let browser = Browser::new();
    let res = browser.get(&khoa.authorize_url(&params("form_post", &[("prompt", "none")]))).await;
    let fields = form_post_fields(page(res).await);
    assert_eq!(
        fields,
        [
            ("error", "login_required"),
            ("error_description", "the user is not logged in"),
            ("state", "s&1"),
            ("iss", khoa.issuer().as_str())
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
    );
    // Success after the login, on the OneAccess path too.
    let answer = until_the_answer(&khoa, &browser, &khoa.authorize_url(&params("form_post", &[]))).await;
    let fields = form_post_fields(answer);
    let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["code", "state", "iss"]);
    let mut oneaccess = url::Url::parse(&khoa.url("/api/v1/oauth2/authorize")).unwrap();
    oneaccess.query_pairs_mut().extend_pairs(params("form_post", &[]));
    let res = browser.get(oneaccess.as_str()).await;
    assert_eq!(form_post_fields(page(res).await)[0].0, "code");
    // query explicitly; an unknown mode is an error in the query.
    let res = browser.get(&khoa.authorize_url(&params("query", &[]))).await;
    assert!(query(&location(&res, &khoa.issuer())).contains_key("code"));
    let res = browser.get(&khoa.authorize_url(&params("fragment", &[]))).await;
    assert_eq!(res.status(), 303);
    let q = query(&location(&res, &khoa.issuer()));
    assert_eq!(
        (q["error"].as_str(), q["error_description"].as_str()),
        ("invalid_request", "response_mode must be query or form_post")
    );
}

fn node(args: &[&str]) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/js/form_post.mjs");
    let out = std::process::Command::new("node")
        .arg(script)
        .args(args)
        .output()
        .expect("node (Debian or the machine's Node.js)");
    assert!(out.status.success(), "openid-client: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// openid-client 6, a certified relying party library, signs in with form_post: it
/// builds the request, and reads the posted answer (code, state, iss checked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openid_client_signs_in_with_form_post() {
    let khoa = Khoa::new(BIN, test_database(Backend::Sqlite).await);
    // openid-client 6 sends a string secret in the body (client_secret_post) unless
    // told otherwise: the client is registered for the method it uses.
    let secret = khoa.client("web", &["--skip-consent", "--token-endpoint-auth-method", "client_secret_post"]).unwrap();
    let issuer = khoa.issuer();
    let start = node(&["url", &issuer, "web", &secret, CALLBACK]);
    let browser = Browser::new();
    let answer = until_the_answer(&khoa, &browser, start["url"].as_str().unwrap()).await;
    let fields = form_post_fields(answer);
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
    let done = node(&[
        "callback",
        &issuer,
        "web",
        &secret,
        CALLBACK,
        &body,
        start["verifier"].as_str().unwrap(),
        start["state"].as_str().unwrap(),
    ]);
    assert_eq!(done["claims"]["iss"], issuer);
    assert_eq!(done["claims"]["aud"], "web");
    assert!(done["claims"]["sub"].is_string());
    assert_eq!(khoa.userinfo(done["access_token"].as_str().unwrap()).await.0, 200);
}
