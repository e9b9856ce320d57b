//! khoa's pages in a real browser: Debian's Chromium, headless, driven through
//! ChromeDriver (WebDriver), with two demo relying parties (`examples/demo-rp`).
//! Wrong password, login, consent, back to the app with the user's name; single sign-on
//! into the second app; logout whose front-channel iframes end both apps' sessions;
//! Vietnamese and English; accessibility. Screenshots of every page go to
//! target/screenshots (and to docs/img with KHOA_UPDATE_SCREENSHOTS=1).

use fantoccini::{Client, ClientBuilder, Locator};
use khoa_testkit::flow::{Khoa, PASSWORD};
use khoa_testkit::{free_port, test_database, Backend};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_khoa");
const TAB: &str = "\u{E004}";
const ENTER: &str = "\u{E007}";

pub(crate) struct Browser {
    pub(crate) client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A fresh headless Chromium whose Accept-Language is `lang`.
    pub(crate) async fn start(lang: &str) -> Self {
        // Two rustls crypto providers are compiled into this test binary; pick one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver)");
        let profile = tempfile::tempdir().unwrap();
        let caps = serde_json::json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    format!("--user-data-dir={}", profile.path().display()), format!("--lang={lang}"),
                    "--window-size=1024,900",
                ],
                "prefs": { "intl.accept_languages": lang },
            }
        });
        let caps = caps.as_object().unwrap().clone().into_iter().collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            match ClientBuilder::rustls()
                .unwrap()
                .capabilities(caps_clone(&caps))
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("cannot start Chromium: {e}"),
            }
        };
        Self { client, driver, _profile: profile }
    }

    pub(crate) async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), &png).unwrap();
        if std::env::var("KHOA_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
            let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/img");
            std::fs::create_dir_all(&docs).unwrap();
            std::fs::write(docs.join(format!("{name}.png")), &png).unwrap();
        }
    }

    pub(crate) async fn js(&self, script: &str) -> serde_json::Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    pub(crate) async fn text(&self, css: &str) -> String {
        self.client.find(Locator::Css(css)).await.unwrap().text().await.unwrap()
    }

    pub(crate) async fn click(&self, css: &str) {
        self.mark().await;
        self.client.find(Locator::Css(css)).await.unwrap().click().await.unwrap();
    }

    /// Marks the current document, so that [`Self::wait_for`] only accepts a new one.
    pub(crate) async fn mark(&self) {
        let _ = self.client.execute("window.__khoaOld = true", vec![]).await;
    }

    pub(crate) async fn has(&self, css: &str) -> bool {
        self.client.find(Locator::Css(css)).await.is_ok()
    }

    /// Waits until a document other than the one marked before the last click has `css`.
    pub(crate) async fn wait_for(&self, css: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let fresh = self
                .client
                .execute("return window.__khoaOld !== true && document.readyState === 'complete'", vec![])
                .await;
            if fresh.is_ok_and(|v| v == true) && self.has(css).await {
                break;
            }
            assert!(Instant::now() < deadline, "{css} did not appear; at {}", self.client.current_url().await.unwrap());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn caps_clone(caps: &serde_json::Map<String, serde_json::Value>) -> serde_json::Map<String, serde_json::Value> {
    caps.clone()
}

/// A demo relying party registered with khoa (front-channel logout included).
async fn relying_party(khoa: &Khoa, id: &str, name: &str, extra: &[&str]) -> (khoa_demo_rp::RunningRp, String) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut args = vec![
        "client".to_string(),
        "create".into(),
        "--id".into(),
        id.into(),
        "--redirect-uri".into(),
        format!("{base}/callback"),
        "--post-logout-redirect-uri".into(),
        format!("{base}/"),
        "--frontchannel-logout-uri".into(),
        format!("{base}/frontchannel-logout"),
        "--name".into(),
        name.into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let created = khoa_testkit::stdout_json(&khoa_testkit::run_cli(&khoa.bin, &khoa.db, &refs, None));
    let secret = created["client_secret"].as_str().unwrap().to_string();
    let config = khoa_demo_rp::Config {
        issuer: khoa.issuer(),
        client_id: id.into(),
        client_secret: secret,
        listen: format!("127.0.0.1:{port}").parse().unwrap(),
        base_url: base.clone(),
        name: name.into(),
    };
    (khoa_demo_rp::start(config).await.unwrap(), base)
}

pub(crate) async fn log_in(b: &Browser, username: &str, password: &str) {
    b.client.find(Locator::Css("#username")).await.unwrap().clear().await.unwrap();
    b.client.find(Locator::Css("#username")).await.unwrap().send_keys(username).await.unwrap();
    let field = b.client.find(Locator::Css("#password")).await.unwrap();
    field.send_keys(password).await.unwrap();
    b.mark().await;
    field.send_keys(ENTER).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_single_sign_on_and_logout_in_chromium() {
    let khoa = Khoa::new(BIN, test_database(Backend::Sqlite).await);
    let (rp1, one) = relying_party(&khoa, "rp-one", "Cổng thông tin sinh viên", &[]).await;
    let (rp2, two) = relying_party(&khoa, "rp-two", "Thư viện", &["--skip-consent"]).await;
    let b = Browser::start("en-US").await;

    // The login page, in English (Accept-Language), from the first app.
    b.client.goto(&format!("{one}/")).await.unwrap();
    b.click("#login").await;
    b.wait_for("#username", 10).await;
    assert_eq!(b.js("return document.documentElement.lang").await, "en");
    assert!(b.client.source().await.unwrap().contains("Cổng thông tin sinh viên"), "the client's name is shown");
    b.shot("login-en").await;

    // Accessibility: every input has a bound label; keyboard alone reaches and submits.
    let unlabeled = b.js("return [...document.querySelectorAll('input:not([type=hidden])')].filter(i => !document.querySelector(`label[for=\"${i.id}\"]`)).length").await;
    assert_eq!(unlabeled, 0, "inputs without a bound label");
    let focused = b.js("return document.activeElement.id").await;
    assert_eq!(focused, "username", "the username field has focus on load");
    let outline = b.js("return getComputedStyle(document.activeElement).outlineStyle").await;
    assert_ne!(outline, "none", "focus is visible");

    // A wrong password and an unknown user: the same message, no account enumeration.
    log_in(&b, "sv01", "wrong password").await;
    b.wait_for(".error", 10).await;
    let wrong = b.text(".error").await;
    log_in(&b, "nobody", "wrong password").await;
    b.wait_for(".error", 10).await;
    assert_eq!(wrong, b.text(".error").await);
    assert_eq!(wrong, "Incorrect username or password.");

    // Keyboard only: type into the focused username, Tab to the password, Enter submits.
    let user = b.client.find(Locator::Css("#username")).await.unwrap();
    user.clear().await.unwrap();
    user.click().await.unwrap();
    let active = b.client.active_element().await.unwrap();
    active.send_keys("sv01").await.unwrap();
    active.send_keys(TAB).await.unwrap();
    assert_eq!(b.js("return document.activeElement.id").await, "password", "Tab moves to the password");
    let active = b.client.active_element().await.unwrap();
    active.send_keys(PASSWORD).await.unwrap();
    b.mark().await;
    active.send_keys(ENTER).await.unwrap();

    // Consent, then back at the app with the user's name.
    b.wait_for("button[value=allow]", 10).await;
    b.shot("consent-en").await;
    assert!(b.client.source().await.unwrap().contains("Your name, picture and username"));
    b.click("button[value=allow]").await;
    b.wait_for("#user", 10).await;
    assert!(b.text("#user").await.contains("Nguyễn Văn A"), "{}", b.text("#user").await);

    // Single sign-on: the second app signs in without a login page.
    b.client.goto(&format!("{two}/")).await.unwrap();
    b.click("#login").await;
    b.wait_for("#user", 10).await;
    assert!(b.text("#user").await.contains("Nguyễn Văn A"));

    // Logout from the first app: the logged-out page runs both apps' front-channel
    // iframes, then follows the redirect back.
    b.client.goto(&format!("{one}/")).await.unwrap();
    b.click("#logout").await;
    b.wait_for("iframe.frontchannel", 10).await;
    assert_eq!(b.js("return document.querySelectorAll('iframe.frontchannel').length").await, 2);
    b.shot("logged-out-en").await;
    b.wait_for("#anonymous", 10).await;
    assert!(b.client.current_url().await.unwrap().as_str().starts_with(&one));
    b.client.goto(&format!("{two}/")).await.unwrap();
    assert!(b.has("#anonymous").await, "the second app's session ended through its front-channel iframe");

    // The logout confirmation (no hint), in English.
    b.client.goto(&khoa.url("/oauth2/sessions/logout")).await.unwrap();
    b.wait_for("button[value=logout]", 10).await;
    b.shot("logout-confirm-en").await;

    // Readable at 320 px: nothing wider than the screen.
    b.client.goto(&format!("{one}/")).await.unwrap();
    b.click("#login").await;
    b.wait_for("#username", 10).await;
    b.client.set_window_size(320, 640).await.unwrap();
    let width = b.js("return document.documentElement.scrollWidth").await.as_i64().unwrap();
    assert!(width <= 320, "the login page scrolls sideways at 320 px: {width}");
    b.shot("login-320").await;
    // ui_locales=vi in an English browser gives the Vietnamese page.
    let auth = format!(
        "{}?client_id=rp-one&redirect_uri={one}/callback&response_type=code&scope=openid&ui_locales=vi",
        khoa.url("/oauth2/auth")
    );
    b.client.goto(&auth).await.unwrap();
    b.wait_for("#username", 10).await;
    assert_eq!(b.js("return document.documentElement.lang").await, "vi");
    b.close().await;

    // Vietnamese, by Accept-Language: login, consent, logout confirmation, logged out.
    let vi = Browser::start("vi").await;
    vi.client.goto(&format!("{one}/")).await.unwrap();
    vi.click("#login").await;
    vi.wait_for("#username", 10).await;
    assert_eq!(vi.js("return document.documentElement.lang").await, "vi");
    assert!(vi.client.source().await.unwrap().contains("Đăng nhập"));
    vi.shot("login-vi").await;
    // Consent was given in the English session: this login goes straight back to the
    // app (a 303 to another origin right after the form, which CSP form-action must allow).
    log_in(&vi, "sv01", PASSWORD).await;
    vi.wait_for("#user", 10).await;
    assert!(vi.text("#user").await.contains("Nguyễn Văn A"));
    // prompt=consent shows the consent page again, in Vietnamese.
    let consent = format!(
        "{}?client_id=rp-one&redirect_uri={one}/callback&response_type=code&scope=openid%20profile&prompt=consent",
        khoa.url("/oauth2/auth")
    );
    vi.client.goto(&consent).await.unwrap();
    vi.wait_for("button[value=allow]", 10).await;
    assert!(vi.client.source().await.unwrap().contains("Họ tên, ảnh đại diện"));
    vi.shot("consent-vi").await;
    vi.client.goto(&khoa.url("/oauth2/sessions/logout")).await.unwrap();
    vi.wait_for("button[value=logout]", 10).await;
    assert!(vi.client.source().await.unwrap().contains("Bạn có muốn đăng xuất"));
    vi.shot("logout-confirm-vi").await;
    vi.click("button[value=logout]").await;
    vi.wait_for("iframe.frontchannel", 10).await;
    assert!(vi.client.source().await.unwrap().contains("Đã đăng xuất"));
    vi.shot("logged-out-vi").await;
    // ui_locales wins over Accept-Language.
    let auth = format!(
        "{}?client_id=rp-one&redirect_uri={one}/callback&response_type=code&scope=openid&ui_locales=en",
        khoa.url("/oauth2/auth")
    );
    vi.client.goto(&auth).await.unwrap();
    vi.wait_for("#username", 10).await;
    assert_eq!(vi.js("return document.documentElement.lang").await, "en");
    vi.close().await;
    rp1.shutdown();
    rp2.shutdown();
}

/// Serves the single-page app of `examples/spa` (with the oidc-client-ts browser build
/// from `tests/js/node_modules`) on its own loopback origin, configured for `issuer`
/// and `client_id`; also `/hold.html`, a callback that keeps its code, and
/// `/blank.html`. Returns the server and its origin.
async fn spa_server(issuer: &str, client_id: &str) -> (tokio::task::JoinHandle<()>, String) {
    use axum::extract::Path;
    use axum::http::header;
    use axum::response::IntoResponse;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let config = format!("window.KHOA_SPA = {};", serde_json::json!({"issuer": issuer, "client_id": client_id}));
    let file = move |name: String| {
        let (root, config) = (root.clone(), config.clone());
        async move {
            let (body, kind) = match name.as_str() {
                "config.js" => (config.into_bytes(), "text/javascript"),
                "hold.html" | "blank.html" => (b"<!doctype html><title>app</title><p>app</p>".to_vec(), "text/html"),
                "vendor/oidc-client-ts.min.js" => {
                    let path = root.join("tests/js/node_modules/oidc-client-ts/dist/browser/oidc-client-ts.min.js");
                    (std::fs::read(path).expect("npm ci in tests/js (the test command does it)"), "text/javascript")
                }
                other => {
                    let other = if other.is_empty() { "index.html" } else { other };
                    let Ok(body) = std::fs::read(root.join("examples/spa").join(other)) else {
                        return axum::http::StatusCode::NOT_FOUND.into_response();
                    };
                    let kind = match other.rsplit('.').next() {
                        Some("js") => "text/javascript",
                        Some("css") => "text/css",
                        _ => "text/html",
                    };
                    (body, kind)
                }
            };
            ([(header::CONTENT_TYPE, kind)], body).into_response()
        }
    };
    let index = file.clone();
    let app = axum::Router::new()
        .route("/", axum::routing::get(move || index(String::new())))
        .route("/{*name}", axum::routing::get(move |Path(name): Path<String>| file(name)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (task, origin)
}

/// Waits until the app (at the current page of its origin) has logged an event that
/// starts with `text`; returns every event.
async fn wait_event(b: &Browser, text: &str, secs: u64) -> Vec<String> {
    wait_events(b, text, 1, secs).await
}

/// [`wait_event`] for the `n`-th such event.
async fn wait_events(b: &Browser, text: &str, n: usize, secs: u64) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let events = b.client.execute("return sessionStorage.getItem('events') || '[]'", vec![]).await;
        let events: Vec<String> = events.ok().and_then(|v| serde_json::from_str(v.as_str()?).ok()).unwrap_or_default();
        if events.iter().filter(|e| e.starts_with(text)).count() >= n {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "no event {text:?} at {}; events: {events:?}",
            b.client.current_url().await.map(|u| u.to_string()).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn press(b: &Browser, id: &str) {
    b.client.find(Locator::Id(id)).await.unwrap().click().await.unwrap();
}

/// `fetch` from the page: "STATUS BODY", or "failed …" when the browser refused to
/// hand the answer to the page (CORS).
async fn page_fetch(b: &Browser, url: &str, form: &str) -> String {
    let script = "const done = arguments[arguments.length - 1];
        fetch(arguments[0], { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: arguments[1] })
          .then(r => r.text().then(t => done(r.status + ' ' + t)))
          .catch(e => done('failed ' + e));";
    let out = b.client.execute_async(script, vec![url.into(), form.into()]).await.unwrap();
    out.as_str().unwrap_or_default().to_string()
}

/// A single-page app written with oidc-client-ts 3, served from its own origin, as a
/// new user would write it: a public client with PKCE. Sign-in, userinfo, refresh
/// with rotation, revocation, sign-out with id_token_hint, then prompt=none answers
/// login_required. The same app at an origin the client does not allow is refused at
/// the token endpoint, and the code is still redeemable by the right origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_page_app_on_oidc_client_ts() {
    use khoa_testkit::flow::{CHALLENGE, VERIFIER};
    let khoa = Khoa::new(BIN, test_database(Backend::Sqlite).await);
    let (app, origin) = spa_server(&khoa.issuer(), "spa").await;
    let (foreign, foreign_origin) = spa_server(&khoa.issuer(), "spa").await;
    let callback = format!("{origin}/callback.html");
    let hold = format!("{origin}/hold.html");
    let args = [
        "client",
        "create",
        "--id",
        "spa",
        "--public",
        "--skip-consent",
        "--always-issue-refresh-token",
        "--name",
        "SPA",
        "--redirect-uri",
        &callback,
        "--redirect-uri",
        &format!("{origin}/silent.html"),
        "--redirect-uri",
        &hold,
        "--post-logout-redirect-uri",
        &format!("{origin}/?signed-out"),
    ];
    khoa_testkit::stdout_json(&khoa_testkit::run_cli(&khoa.bin, &khoa.db, &args, None));
    let b = Browser::start("en-US").await;

    b.client.goto(&format!("{origin}/")).await.unwrap();
    press(&b, "signin").await;
    b.wait_for("#username", 15).await;
    log_in(&b, "sv01", PASSWORD).await;
    wait_event(&b, "signed in Nguyễn Văn A", 15).await;
    b.wait_for("#userinfo", 10).await;
    press(&b, "userinfo").await;
    wait_event(&b, "userinfo 200", 10).await;
    press(&b, "refresh").await;
    wait_event(&b, "refreshed rotated", 10).await;
    b.shot("spa-en").await;
    press(&b, "revoke").await;
    wait_event(&b, "revoked, userinfo 401", 10).await;
    // Signed in again through the SSO session (no login page), then out.
    press(&b, "signin").await;
    wait_events(&b, "signed in Nguyễn Văn A", 2, 15).await;
    b.wait_for("#signout", 10).await;
    press(&b, "signout").await;
    wait_event(&b, "signed out", 15).await;
    b.wait_for("#silent", 10).await;
    press(&b, "silent").await;
    wait_event(&b, "silent login_required", 15).await;

    // A code for the app, kept at /hold.html.
    let url = khoa.authorize_url(&[
        ("client_id", "spa"),
        ("redirect_uri", &hold),
        ("response_type", "code"),
        ("scope", "openid"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]);
    b.client.goto(&url).await.unwrap();
    b.wait_for("#username", 15).await;
    log_in(&b, "sv01", PASSWORD).await;
    b.wait_for("p", 15).await;
    let at = b.client.current_url().await.unwrap();
    let code = at.query_pairs().find(|(k, _)| k == "code").map(|(_, v)| v.into_owned()).expect("a code");
    let form = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", hold.as_str()),
            ("client_id", "spa"),
            ("code_verifier", VERIFIER),
        ])
        .finish();
    let token_endpoint = khoa.url("/oauth2/token");
    // From an origin the client does not allow: the browser gets no answer it may read…
    b.client.goto(&format!("{foreign_origin}/blank.html")).await.unwrap();
    let refused = page_fetch(&b, &token_endpoint, &form).await;
    assert!(refused.starts_with("failed"), "{refused}");
    // …and the server spent nothing: the app's own origin redeems the same code.
    b.client.goto(&format!("{origin}/blank.html")).await.unwrap();
    let redeemed = page_fetch(&b, &token_endpoint, &form).await;
    assert!(redeemed.starts_with("200 ") && redeemed.contains("access_token"), "{redeemed}");
    b.close().await;
    app.abort();
    foreign.abort();
}
