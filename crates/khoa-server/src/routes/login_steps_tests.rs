//! Sign-in in steps, in-process: a password then an app's code or a recovery code,
//! enrolment when a policy asks for a second factor, and step-up by `acr_values`,
//! with codes computed by the test on the manual clock. Every way of getting past the
//! second step without it is tried: skipping it, moving its state to another browser
//! or interaction, replaying a code, another person's code, guessing.

use crate::service::signin::{add_totp, new_recovery_codes, Added};
use crate::testing::{input, Answer, Browser, TestApp, SECRET};
use khoa_core::audit::Actor;
use khoa_core::authn::{ACR_MULTI_FACTOR, ACR_SINGLE_FACTOR};
use khoa_core::client::SecretChoice;
use khoa_core::throttle::ThrottlePolicy;

const PASSWORD: &str = "correct horse battery staple";
const MFA: &str = "Two-step verification";

async fn app() -> TestApp {
    let app = TestApp::with_settings(|s| {
        s.login_throttle.account_at_address =
            ThrottlePolicy { free_failures: 3, base_delay: 60, max_delay: 600, window: 3600 };
    })
    .await;
    app.client("web", |r| r.secret = SecretChoice::Given(SECRET.into())).await;
    app.client("strict", |r| {
        r.secret = SecretChoice::Given(SECRET.into());
        r.require_mfa = true;
    })
    .await;
    app.user_with_password(PASSWORD).await;
    app
}

/// Sets up an authenticator app for `sv01` (its code checked at the clock's time, and
/// the clock moved on a step so that the next code is new); its secret.
async fn with_app(app: &TestApp, username: &str) -> Vec<u8> {
    let user = app.state.store.user_by_username(username).await.unwrap().unwrap();
    let secret = khoa_core::totp::new_secret().to_vec();
    let code = khoa_core::totp::code_at(&secret, app.state.now()).unwrap();
    let added = add_totp(&app.state, &user, &secret, &code, Actor::System, app.state.now()).await.unwrap();
    assert!(matches!(added, Added::Added { codes: Some(_) }));
    app.clock.advance(30);
    app.state.users.clear();
    secret
}

fn code_now(app: &TestApp, secret: &[u8]) -> String {
    khoa_core::totp::code_at(secret, app.state.now()).unwrap()
}

/// The form fields of a page (its interaction and token) with `more`.
fn form<'a>(page: &Answer, more: &[(&'a str, &'a str)]) -> Vec<(String, String)> {
    let mut out = vec![
        ("interaction".to_string(), input(&page.text, "interaction").expect("an interaction")),
        ("csrf_token".to_string(), input(&page.text, "csrf_token").expect("a token")),
    ];
    out.extend(more.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    out
}

async fn post(b: &mut Browser<'_>, path: &str, fields: &[(String, String)]) -> Answer {
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    b.post(path, &pairs).await
}

async fn password(b: &mut Browser<'_>, page: &Answer, username: &str) -> Answer {
    post(b, "/oauth2/auth/login", &form(page, &[("username", username), ("password", PASSWORD)])).await
}

async fn app_code(b: &mut Browser<'_>, page: &Answer, code: &str) -> Answer {
    post(b, "/oauth2/auth/login/factor", &form(page, &[("method", "totp"), ("code", code)])).await
}

#[tokio::test]
async fn a_password_then_an_app_code() {
    let app = app().await;
    let secret = with_app(&app, "sv01").await;
    let mut b = Browser::new(&app);
    let login = b.authorize("web", &[]).await;
    let step = password(&mut b, &login, "sv01").await;
    // The password is right: the second step, and no session yet.
    assert_eq!(step.status, 200, "{}", step.text);
    assert!(step.text.contains(MFA) && step.text.contains("autocomplete=\"one-time-code\""), "{}", step.text);
    assert!(step.text.contains("Use a recovery code"));
    assert_eq!(app.rows("sessions").await, 0);
    assert!(!b.cookies.contains_key(crate::http::cookies::SESSION_COOKIE));
    // A wrong code shows the step again.
    let wrong = app_code(&mut b, &step, "000000").await;
    assert_eq!(wrong.status, 200);
    assert!(wrong.text.contains("That code is not right.") && wrong.text.contains(MFA), "{}", wrong.text);
    let done = app_code(&mut b, &wrong, &code_now(&app, &secret)).await;
    assert_eq!(done.status, 303, "{}", done.text);
    assert!(done.location().starts_with("/oauth2/auth/continue?interaction="));
    let claims = b.id_token_claims(done, "web").await;
    assert_eq!(claims["amr"], serde_json::json!(["mfa", "otp", "pwd"]));
    assert_eq!(claims["acr"], ACR_MULTI_FACTOR);
    assert_eq!(claims["auth_time"], app.state.now());
    // What was recorded: the step, the wrong code, the sign-in.
    let filter = khoa_store::AuditFilter { limit: 20, ..Default::default() };
    let kinds: Vec<String> = app
        .state
        .store
        .audit_events(&filter)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .filter(|k| k.starts_with("login."))
        .collect();
    assert_eq!(kinds, ["login.succeeded", "login.failed", "login.step"]);
}

/// RFC 6238 §5.2: a code is accepted once. The same code in a second sign-in, even in
/// the same time step, is refused; so is a code of another person's app.
#[tokio::test]
async fn a_code_is_used_once_and_only_by_its_owner() {
    let app = app().await;
    let secret = with_app(&app, "sv01").await;
    let code = code_now(&app, &secret);
    let mut first = Browser::new(&app);
    let login = first.authorize("web", &[]).await;
    let step = password(&mut first, &login, "sv01").await;
    assert_eq!(app_code(&mut first, &step, &code).await.status, 303);
    let mut second = Browser::new(&app);
    let login = second.authorize("web", &[]).await;
    let step = password(&mut second, &login, "sv01").await;
    let replayed = app_code(&mut second, &step, &code).await;
    assert!(replayed.text.contains("That code was just used."), "{}", replayed.text);
    // The previous step's code (still inside the window) is older than the last one
    // accepted: refused as well.
    let earlier = khoa_core::totp::code_at(&secret, app.state.now() - 30).unwrap();
    let older = app_code(&mut second, &replayed, &earlier).await;
    assert!(older.text.contains("That code was just used.") || older.text.contains("not right"), "{}", older.text);
    assert_eq!(older.status, 200);
    // Another person's app.
    let hash = khoa_core::password::hash_password(PASSWORD, Default::default()).unwrap();
    let other = khoa_core::user::Profile { username: "sv02".into(), ..Default::default() }.into_new_user(Some(hash), 0);
    app.state.store.insert_user(&other, &crate::testing::user_event()).await.unwrap();
    let theirs = with_app(&app, "sv02").await;
    let foreign = app_code(&mut second, &older, &code_now(&app, &theirs)).await;
    assert!(foreign.text.contains("That code is not right."), "{}", foreign.text);
    // Three wrong codes here: the owner waits out the delay, then the next code works.
    app.clock.advance(60);
    let done = app_code(&mut second, &foreign, &code_now(&app, &secret)).await;
    assert_eq!(done.status, 303, "{}", done.text);
}

/// The second step cannot be skipped (the continue link and the code need the
/// session that only the last step makes) nor done without this browser's state for
/// this interaction.
#[tokio::test]
async fn the_second_step_cannot_be_skipped_or_moved() {
    let app = app().await;
    let secret = with_app(&app, "sv01").await;
    let mut b = Browser::new(&app);
    let login = b.authorize("web", &[]).await;
    let step = password(&mut b, &login, "sv01").await;
    assert!(step.text.contains(MFA));
    // Straight to the continue link: no session, so the login page again, no code.
    let handle = input(&step.text, "interaction").unwrap();
    let skipped = b.get(&format!("/oauth2/auth/continue?interaction={handle}")).await;
    assert_eq!(skipped.status, 200);
    assert!(skipped.text.contains("name=\"password\""), "{}", skipped.text);
    assert_eq!(app.rows("authorization_codes").await, 0);
    // The step's form and cookies in another browser, without the sign-in's cookie.
    let mut other = Browser::new(&app);
    other.cookies = b.cookies.clone();
    other.cookies.remove(crate::service::signin::PENDING_COOKIE);
    let moved = app_code(&mut other, &step, &code_now(&app, &secret)).await;
    assert_eq!(moved.status, 400, "{}", moved.text);
    // The sign-in's cookie with another interaction of the same browser.
    let another = b.authorize("web", &[]).await;
    let crossed = app_code(&mut b, &another, &code_now(&app, &secret)).await;
    assert_eq!(crossed.status, 400, "{}", crossed.text);
    // A forged token.
    let mut forged = form(&step, &[("method", "totp"), ("code", "123456")]);
    forged[1].1 = "A".repeat(43);
    assert_eq!(post(&mut b, "/oauth2/auth/login/factor", &forged).await.status, 400);
    // A method that is not a second step.
    let password_again = form(&step, &[("method", "password"), ("code", PASSWORD)]);
    assert_eq!(post(&mut b, "/oauth2/auth/login/factor", &password_again).await.status, 400);
    // The step expires.
    app.clock.advance(khoa_core::authn::STEP_LIFETIME);
    let late = app_code(&mut b, &step, &code_now(&app, &secret)).await;
    assert_eq!(late.status, 400, "{}", late.text);
    assert_eq!(app.rows("sessions").await, 0);
}

#[tokio::test]
async fn wrong_codes_are_throttled_like_passwords() {
    let app = app().await;
    let secret = with_app(&app, "sv01").await;
    let mut b = Browser::new(&app);
    let login = b.authorize("web", &[]).await;
    let mut page = password(&mut b, &login, "sv01").await;
    for _ in 0..3 {
        page = app_code(&mut b, &page, "111111").await;
        assert_eq!(page.status, 200);
    }
    let blocked = app_code(&mut b, &page, &code_now(&app, &secret)).await;
    assert_eq!(blocked.status, 429, "{}", blocked.text);
    assert_eq!(blocked.headers["retry-after"], "60");
    assert_eq!(app.rows("sessions").await, 0);
}

#[tokio::test]
async fn a_recovery_code_works_once() {
    let app = app().await;
    with_app(&app, "sv01").await;
    let user = app.state.store.user_by_username("sv01").await.unwrap().unwrap();
    let codes = new_recovery_codes(&app.state, &user, Actor::System, app.state.now()).await.unwrap();
    // Typed in capitals, without dashes: the same code.
    let typed = codes[3].replace('-', "").to_uppercase();
    let done = use_recovery_code(&app, &typed).await;
    assert_eq!(done.status, 303, "{}", done.text);
    let again = use_recovery_code(&app, &codes[3]).await;
    assert!(again.text.contains("That code is not right."), "{}", again.text);
    let used =
        khoa_store::AuditFilter { kind: Some("login.recovery_code_used".into()), limit: 5, ..Default::default() };
    assert_eq!(app.state.store.audit_events(&used).await.unwrap().len(), 1);
}

async fn use_recovery_code(app: &TestApp, code: &str) -> Answer {
    let mut b = Browser::new(app);
    let login = b.authorize("web", &[]).await;
    let step = password(&mut b, &login, "sv01").await;
    let fields = form(&step, &[("method", "recovery_code"), ("code", code)]);
    post(&mut b, "/oauth2/auth/login/factor", &fields).await
}

/// A client that requires two factors: a person with a password only sets up an app
/// right after it, before any code is issued, and is shown recovery codes once.
#[tokio::test]
async fn a_client_that_requires_two_factors_has_people_enrol_first() {
    let app = app().await;
    let mut b = Browser::new(&app);
    let login = b.authorize("strict", &[]).await;
    let enrol = password(&mut b, &login, "sv01").await;
    assert_eq!(enrol.status, 200, "{}", enrol.text);
    assert!(enrol.text.contains("Set up an authenticator app") && enrol.text.contains("<svg"), "{}", enrol.text);
    let uri_at = enrol.text.find("otpauth://totp/").expect("the otpauth link");
    let uri = &enrol.text[uri_at..uri_at + enrol.text[uri_at..].find('"').unwrap()].replace("&amp;", "&");
    assert!(uri.starts_with("otpauth://totp/khoa:sv01?secret="), "{uri}");
    let secret_b32 = uri.split("secret=").nth(1).unwrap().split('&').next().unwrap();
    let secret = khoa_core::totp::from_base32(secret_b32).unwrap();
    // The secret is also shown as text, in groups of four.
    assert!(enrol.text.contains(&crate::http::pages::grouped(secret_b32)));
    assert_eq!(app.rows("authorization_codes").await, 0);
    // A wrong code: the same secret again.
    let fields = form(&enrol, &[("code", "000000")]);
    let wrong = post(&mut b, "/oauth2/auth/login/enrol", &fields).await;
    assert!(wrong.text.contains("That code is not right.") && wrong.text.contains(secret_b32), "{}", wrong.text);
    let code = code_now(&app, &secret);
    let fields = form(&wrong, &[("code", code.as_str())]);
    let codes = post(&mut b, "/oauth2/auth/login/enrol", &fields).await;
    assert_eq!(codes.status, 200, "{}", codes.text);
    assert!(codes.text.contains("Recovery codes"));
    assert_eq!(codes.text.matches("<li><code>").count(), 10);
    let next_at = codes.text.find("/oauth2/auth/continue?interaction=").unwrap();
    let next = codes.text[next_at..next_at + codes.text[next_at..].find('"').unwrap()].to_string();
    let done = b.get(&next).await;
    let claims = b.id_token_claims(done, "strict").await;
    assert_eq!(claims["acr"], ACR_MULTI_FACTOR);
    assert_eq!(claims["amr"], serde_json::json!(["mfa", "otp", "pwd"]));
    // The enrolment page cannot be used to add an app without being asked: a person
    // with one already is asked for its code.
    let mut again = Browser::new(&app);
    let login = again.authorize("strict", &[]).await;
    let step = password(&mut again, &login, "sv01").await;
    assert!(step.text.contains(MFA), "{}", step.text);
    let fields = form(&step, &[("code", code.as_str())]);
    assert_eq!(post(&mut again, "/oauth2/auth/login/enrol", &fields).await.status, 400);
}

/// `acr_values` asks a password session for the second factor only, raises the same
/// session (its sid and tokens stay), and the ID token says the level reached.
#[tokio::test]
async fn acr_values_step_up_a_password_session() {
    let app = app().await;
    let mut b = Browser::new(&app);
    let login = b.authorize("web", &[]).await;
    let done = password(&mut b, &login, "sv01").await;
    let claims = b.id_token_claims(done, "web").await;
    assert_eq!((claims["acr"].as_str(), claims["amr"].clone()), (Some(ACR_SINGLE_FACTOR), serde_json::json!(["pwd"])));
    let sid = claims["sid"].as_str().unwrap().to_string();
    let first_auth = claims["auth_time"].as_i64().unwrap();
    // Later, the person sets up an app; a client asks for two factors.
    let secret = with_app(&app, "sv01").await;
    app.clock.advance(600);
    // Without a browser to ask, prompt=none cannot step up.
    let none = b.authorize("web", &[("acr_values", ACR_MULTI_FACTOR), ("prompt", "none")]).await;
    assert_eq!(none.redirect_query()["error"], "login_required");
    let step = b.authorize("web", &[("acr_values", ACR_MULTI_FACTOR)]).await;
    assert_eq!(step.status, 200);
    assert!(step.text.contains(MFA) && !step.text.contains("name=\"password\""), "{}", step.text);
    let old_cookie = b.cookies[crate::http::cookies::SESSION_COOKIE].clone();
    let done = app_code(&mut b, &step, &code_now(&app, &secret)).await;
    assert_eq!(done.status, 303, "{}", done.text);
    assert_ne!(b.cookies[crate::http::cookies::SESSION_COOKIE], old_cookie, "the cookie rotates");
    let claims = b.id_token_claims(done, "web").await;
    assert_eq!(claims["acr"], ACR_MULTI_FACTOR);
    assert_eq!(claims["amr"], serde_json::json!(["mfa", "otp", "pwd"]));
    assert_eq!(claims["sid"], sid.as_str(), "the same session");
    assert!(claims["auth_time"].as_i64().unwrap() > first_auth, "the person authenticated again");
    assert_eq!(app.rows("sessions").await, 1);
    // The raised session is enough for the next such request: no step, and auth_time stays.
    app.clock.advance(60);
    let sso = b.authorize("web", &[("acr_values", ACR_MULTI_FACTOR)]).await;
    let again = b.id_token_claims(sso, "web").await;
    assert_eq!(again["auth_time"], claims["auth_time"]);
    // Unknown values are passed over.
    let sso = b.authorize("web", &[("acr_values", "urn:example:gold")]).await;
    assert_eq!(b.id_token_claims(sso, "web").await["acr"], ACR_MULTI_FACTOR);
    // phr: a passkey, which this person does not have yet: they add one.
    let phr = b.authorize("web", &[("acr_values", "urn:example:gold phr")]).await;
    assert!(phr.text.contains("This application requires a passkey"), "{}", phr.text);
}

/// `accounts.require_mfa`: everyone, for every client.
#[tokio::test]
async fn the_global_policy_asks_everyone() {
    let app = TestApp::with_settings(|s| s.require_mfa = true).await;
    app.client("web", |r| r.secret = SecretChoice::Given(SECRET.into())).await;
    app.user_with_password(PASSWORD).await;
    let mut b = Browser::new(&app);
    let login = b.authorize("web", &[]).await;
    let enrol = password(&mut b, &login, "sv01").await;
    assert!(enrol.text.contains("Set up an authenticator app"), "{}", enrol.text);
    let discovery = app.get("/.well-known/openid-configuration", &[]).await;
    assert_eq!(discovery.body["acr_values_supported"], serde_json::json!([ACR_SINGLE_FACTOR, ACR_MULTI_FACTOR, "phr"]));
    assert!(discovery.body["claims_supported"].as_array().unwrap().iter().any(|c| c == "amr"));
}
