//! Sign-in in steps end to end, in headless Chromium with its WebAuthn virtual
//! authenticator (the WebDriver extension commands of the WebAuthn specification):
//! a passkey registered on the account page, then passwordless sign-in and password +
//! passkey; an authenticator app set up and used with a code computed here; a recovery
//! code; a client that requires two factors and a request for `phr`, each stepping up
//! a password session. The issuer is `http://localhost:PORT`: browsers refuse WebAuthn
//! on an IP address. Screenshots of every new page, in English and Vietnamese.

use super::browser::{log_in, Browser};
use fantoccini::Locator;
use khoa_testkit::flow::{jwt_claims, Khoa, CALLBACK, PASSWORD};
use khoa_testkit::{run_cli, test_database, Backend};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_khoa");

/// `POST /session/{id}/webauthn/authenticator`: a platform authenticator that keeps
/// discoverable credentials and verifies its user (WebAuthn §11.3).
#[derive(Debug)]
struct AddVirtualAuthenticator;

impl fantoccini::wd::WebDriverCompatibleCommand for AddVirtualAuthenticator {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/webauthn/authenticator", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        let body = serde_json::json!({
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": true,
            "hasUserVerification": true,
            "isUserVerified": true,
        });
        (axum::http::Method::POST, Some(body.to_string()))
    }
}

/// `GET /session/{id}/webauthn/authenticator/{id}/credentials`.
#[derive(Debug)]
struct Credentials(String);

impl fantoccini::wd::WebDriverCompatibleCommand for Credentials {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/webauthn/authenticator/{}/credentials", session.unwrap_or_default(), self.0))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (axum::http::Method::GET, None)
    }
}

async fn fill(b: &Browser, css: &str, text: &str) {
    let field = b.client.find(Locator::Css(css)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

async fn submit(b: &Browser, css: &str) {
    b.mark().await;
    b.client.find(Locator::Css(css)).await.unwrap().click().await.unwrap();
}

/// Waits for the redirect to the client and returns its code.
async fn code_at_callback(b: &Browser) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let url = b.client.current_url().await.unwrap().to_string();
        if url.starts_with(CALLBACK) {
            let query: std::collections::HashMap<String, String> =
                url::Url::parse(&url).unwrap().query_pairs().into_owned().collect();
            return query.get("code").cloned().unwrap_or_else(|| panic!("no code: {url}"));
        }
        if Instant::now() >= deadline {
            let error =
                b.js("let e = document.querySelector('.error:not([hidden])'); return e ? e.textContent : ''").await;
            panic!("no redirect to the client; at {url}: {error}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn authorize(khoa: &Khoa, client: &str, extra: &[(&str, &str)]) -> String {
    let mut params = vec![
        ("client_id", client),
        ("redirect_uri", CALLBACK),
        ("response_type", "code"),
        ("scope", "openid profile"),
        ("state", "st"),
    ];
    params.extend_from_slice(extra);
    khoa.authorize_url(&params)
}

/// The ID token's claims for `code` of `client`.
async fn id_claims(khoa: &Khoa, client: &str, secret: &str, code: &str) -> serde_json::Value {
    let tokens = khoa.exchange(code, (client, secret)).await;
    jwt_claims(tokens["id_token"].as_str().unwrap_or_else(|| panic!("no ID token: {tokens}")))
}

/// A fresh browser session: no cookies of khoa's.
async fn sign_out(b: &Browser, khoa: &Khoa) {
    b.client.goto(&khoa.url("/health/live")).await.unwrap();
    b.client.delete_all_cookies().await.unwrap();
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passkeys_app_codes_recovery_codes_and_step_up_in_chromium() {
    let khoa = Khoa::with_env(BIN, test_database(Backend::Sqlite).await, &[("KHOA_ISSUER", "localhost")]);
    assert!(khoa.issuer().starts_with("http://localhost:"));
    let web = khoa.client("web", &["--skip-consent"]).unwrap();
    let strict = khoa.client("strict", &["--skip-consent", "--require-mfa"]).unwrap();
    khoa.user("sv02");
    let b = Browser::start("en-US").await;
    let authenticator = b.client.issue_cmd(AddVirtualAuthenticator).await.unwrap();
    // The command's value: the new authenticator's id.
    let authenticator = authenticator.as_str().unwrap_or_else(|| panic!("{authenticator}")).to_string();

    // The account page, with the password: add a passkey.
    b.client.goto(&khoa.url("/?lang=en")).await.unwrap();
    b.wait_for("#username", 10).await;
    assert!(b.has("#webauthn-start").await, "the login page offers a passkey");
    b.shot("login-passkey-en").await;
    log_in(&b, "sv01", PASSWORD).await;
    b.wait_for("#security", 10).await;
    submit(&b, "form[action='/account/passkeys/start'] button").await;
    b.wait_for("#webauthn-start", 10).await;
    fill(&b, "#passkey-name", "Laptop").await;
    b.shot("passkey-add-en").await;
    submit(&b, "#webauthn-start").await;
    b.wait_for("p.notice", 15).await;
    assert!(b.text("p.notice").await.contains("Passkey added"), "{}", b.text("p.notice").await);
    assert!(b.text("#security").await.contains("Laptop"));
    let stored = b.client.issue_cmd(Credentials(authenticator.clone())).await.unwrap();
    let stored = stored.as_array().unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["isResidentCredential"], true, "a discoverable credential: {stored:?}");

    // An authenticator app, with a code computed here; recovery codes shown once.
    submit(&b, "form[action='/account/totp/start'] button").await;
    b.wait_for("code.secret", 10).await;
    assert!(b.has(".qr svg").await);
    b.shot("totp-enrol-en").await;
    let secret = b.text("code.secret").await.replace(' ', "");
    let secret = khoa_core::totp::from_base32(&secret).unwrap();
    fill(&b, "#code", &khoa_core::totp::code_at(&secret, now()).unwrap()).await;
    submit(&b, "form[action='/account/totp'] button").await;
    b.wait_for("ol.codes", 10).await;
    b.shot("recovery-codes-en").await;
    let codes: Vec<String> = b.text("ol.codes").await.lines().map(|l| l.trim().to_string()).collect();
    assert_eq!(codes.len(), 10, "{codes:?}");
    submit(&b, "a.button").await;
    b.wait_for("#security", 10).await;
    b.js("document.getElementById('security').scrollIntoView(); return true").await;
    b.shot("account-security-en").await;

    // Passwordless: the passkey alone, with user verification.
    sign_out(&b, &khoa).await;
    b.client.goto(&authorize(&khoa, "web", &[])).await.unwrap();
    b.wait_for("#webauthn-start", 10).await;
    submit(&b, "#webauthn-start").await;
    let claims = id_claims(&khoa, "web", &web, &code_at_callback(&b).await).await;
    assert_eq!(claims["acr"], "phr");
    let amr: Vec<String> = serde_json::from_value(claims["amr"].clone()).unwrap();
    assert!(amr.contains(&"user".into()) && amr.contains(&"mfa".into()), "{amr:?}");

    // A password, then the passkey.
    sign_out(&b, &khoa).await;
    b.client.goto(&authorize(&khoa, "web", &[])).await.unwrap();
    b.wait_for("#username", 10).await;
    log_in(&b, "sv01", PASSWORD).await;
    b.wait_for("#code", 10).await;
    assert!(b.has("#webauthn-start").await && b.has("#recovery").await);
    b.shot("factor-en").await;
    submit(&b, "#webauthn-start").await;
    let claims = id_claims(&khoa, "web", &web, &code_at_callback(&b).await).await;
    let amr: Vec<String> = serde_json::from_value(claims["amr"].clone()).unwrap();
    assert!(amr.contains(&"pwd".into()) && amr.contains(&"mfa".into()), "{amr:?}");

    // A password, then the app's code (the next step's: the enrolment used this one's).
    sign_out(&b, &khoa).await;
    b.client.goto(&authorize(&khoa, "web", &[])).await.unwrap();
    b.wait_for("#username", 10).await;
    log_in(&b, "sv01", PASSWORD).await;
    b.wait_for("#code", 10).await;
    fill(&b, "#code", &khoa_core::totp::code_at(&secret, now() + 30).unwrap()).await;
    submit(&b, "form:has(#code) button").await;
    let claims = id_claims(&khoa, "web", &web, &code_at_callback(&b).await).await;
    assert_eq!(claims["amr"], serde_json::json!(["mfa", "otp", "pwd"]));

    // A password, then a recovery code, once.
    sign_out(&b, &khoa).await;
    b.client.goto(&authorize(&khoa, "web", &[])).await.unwrap();
    b.wait_for("#username", 10).await;
    log_in(&b, "sv01", PASSWORD).await;
    b.wait_for("#code", 10).await;
    b.client.find(Locator::Css("summary")).await.unwrap().click().await.unwrap();
    fill(&b, "#recovery", &codes[0]).await;
    submit(&b, "form:has(#recovery) button").await;
    id_claims(&khoa, "web", &web, &code_at_callback(&b).await).await;

    // sv02, with a password only, signs in to web; then a client that requires two
    // factors asks only for what is missing: an app, set up right away.
    sign_out(&b, &khoa).await;
    b.client.goto(&authorize(&khoa, "web", &[])).await.unwrap();
    b.wait_for("#username", 10).await;
    log_in(&b, "sv02", PASSWORD).await;
    let claims = id_claims(&khoa, "web", &web, &code_at_callback(&b).await).await;
    assert_eq!(claims["amr"], serde_json::json!(["pwd"]));
    b.client.goto(&authorize(&khoa, "strict", &[])).await.unwrap();
    b.wait_for("code.secret", 10).await;
    assert!(!b.has("#password").await, "no password again");
    let secret2 = b.text("code.secret").await.replace(' ', "");
    let secret2 = khoa_core::totp::from_base32(&secret2).unwrap();
    fill(&b, "#code", &khoa_core::totp::code_at(&secret2, now()).unwrap()).await;
    submit(&b, "form[action='/oauth2/auth/login/enrol'] button").await;
    b.wait_for("ol.codes", 10).await;
    submit(&b, "a.button").await;
    let claims = id_claims(&khoa, "strict", &strict, &code_at_callback(&b).await).await;
    assert_eq!(claims["acr"], "http://schemas.openid.net/pape/policies/2007/06/multi-factor");
    // And a request for phr: a passkey, added right away.
    b.client.goto(&authorize(&khoa, "web", &[("acr_values", "phr")])).await.unwrap();
    b.wait_for("#webauthn-start", 10).await;
    submit(&b, "#webauthn-start").await;
    let claims = id_claims(&khoa, "web", &web, &code_at_callback(&b).await).await;
    assert_eq!(claims["acr"], "phr");

    // The same pages in Vietnamese.
    sign_out(&b, &khoa).await;
    b.client.goto(&authorize(&khoa, "web", &[("ui_locales", "vi")])).await.unwrap();
    b.wait_for("#webauthn-start", 10).await;
    assert_eq!(b.js("return document.documentElement.lang").await, "vi");
    b.shot("login-passkey-vi").await;
    log_in(&b, "sv01", PASSWORD).await;
    b.wait_for("#code", 10).await;
    b.shot("factor-vi").await;
    // The app's code of this step was used already: the passkey instead.
    submit(&b, "#webauthn-start").await;
    code_at_callback(&b).await;
    b.client.goto(&khoa.url("/?lang=vi")).await.unwrap();
    b.wait_for("#security", 10).await;
    b.js("document.getElementById('security').scrollIntoView(); return true").await;
    b.shot("account-security-vi").await;
    submit(&b, "form[action='/account/passkeys/start'] button").await;
    b.wait_for("#webauthn-start", 10).await;
    b.shot("passkey-add-vi").await;
    b.client.goto(&khoa.url("/?lang=vi")).await.unwrap();
    b.wait_for("#security", 10).await;
    submit(&b, "form[action='/account/recovery-codes'] button").await;
    b.wait_for("ol.codes", 10).await;
    b.shot("recovery-codes-vi").await;
    // sv02 removes their app; then the app set-up page, in Vietnamese.
    sign_out(&b, &khoa).await;
    b.client.goto(&authorize(&khoa, "strict", &[("ui_locales", "vi")])).await.unwrap();
    b.wait_for("#username", 10).await;
    log_in(&b, "sv02", PASSWORD).await;
    b.wait_for("#webauthn-start", 10).await;
    submit(&b, "#webauthn-start").await;
    code_at_callback(&b).await;
    b.client.goto(&khoa.url("/?lang=vi")).await.unwrap();
    b.wait_for("#security", 10).await;
    submit(&b, "form[action='/account/factors/remove'] button").await;
    b.wait_for("form[action='/account/totp/start']", 10).await;
    submit(&b, "form[action='/account/totp/start'] button").await;
    b.wait_for("code.secret", 10).await;
    b.shot("totp-enrol-vi").await;

    // An administrator lists sv01's methods (never a secret) and resets them: sv01
    // signs in with the password alone again.
    let listed = run_cli(BIN, &khoa.db, &["user", "methods", "sv01"], None);
    assert!(listed.status.success(), "{listed:?}");
    let text = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(text.contains("totp") && text.contains("passkey") && text.contains("Laptop"), "{text}");
    assert_eq!(text.matches("recovery_code").count(), 10, "{text}");
    let reset = run_cli(BIN, &khoa.db, &["user", "reset-mfa", "sv01"], None);
    assert!(reset.status.success(), "{reset:?}");
    assert!(String::from_utf8_lossy(&reset.stdout).contains("12 second factor(s) and recovery code(s) of sv01 removed"));
    sign_out(&b, &khoa).await;
    b.client.goto(&authorize(&khoa, "web", &[])).await.unwrap();
    b.wait_for("#username", 10).await;
    log_in(&b, "sv01", PASSWORD).await;
    let claims = id_claims(&khoa, "web", &web, &code_at_callback(&b).await).await;
    assert_eq!(claims["amr"], serde_json::json!(["pwd"]));
    assert!(!run_cli(BIN, &khoa.db, &["user", "reset-mfa", "nobody"], None).status.success());
    b.close().await;
}

/// On an IP-address issuer, `khoa serve` says at start why it offers no passkeys, and
/// what to use instead; the login page has no passkey button.
#[tokio::test]
async fn an_ip_address_issuer_says_why_there_are_no_passkeys() {
    let khoa = Khoa::new(BIN, test_database(Backend::Sqlite).await);
    let port = khoa.issuer().rsplit(':').next().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    let logs = loop {
        let logs = khoa.process().logs();
        if logs.contains("passkeys are not offered") || Instant::now() > deadline {
            break logs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(logs.contains("passkeys are not offered"), "{logs}");
    assert!(logs.contains(&format!("http://localhost:{port}")), "{logs}");
    let discovery: serde_json::Value =
        reqwest::get(khoa.url("/.well-known/openid-configuration")).await.unwrap().json().await.unwrap();
    let acr = discovery["acr_values_supported"].as_array().unwrap();
    assert!(!acr.iter().any(|v| v == "phr"), "{acr:?}");
}
