//! Passkeys in-process, with `webauthn-authenticator-rs`'s SoftPasskey as the
//! authenticator: added on the account page, then used alone (passwordless) and after
//! a password; added during a sign-in a `phr` request asks for. Refused: another
//! person's passkey, an answer replayed, a counter that goes backwards, a passwordless
//! answer without (or with another's) user handle; and no passkeys at all on an
//! IP-address issuer.

use crate::testing::{input, Answer, Browser, TestApp, SECRET};
use base64::Engine;
use khoa_core::client::SecretChoice;
use serde_json::Value;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};

const PASSWORD: &str = "correct horse battery staple";
const ORIGIN: &str = "https://sso.example.vn";

async fn app() -> TestApp {
    let app = TestApp::new().await;
    app.client("web", |r| r.secret = SecretChoice::Given(SECRET.into())).await;
    app.user_with_password(PASSWORD).await;
    app
}

async fn second_user(app: &TestApp, username: &str) {
    let hash = khoa_core::password::hash_password(PASSWORD, Default::default()).unwrap();
    let user =
        khoa_core::user::Profile { username: username.into(), ..Default::default() }.into_new_user(Some(hash), 0);
    app.state.store.insert_user(&user, &crate::testing::user_event()).await.unwrap();
}

/// The ceremony's options a page carries.
fn options(page: &Answer) -> String {
    let start = page.text.find("id=\"webauthn-options\">").expect("a passkey ceremony") + 22;
    let end = start + page.text[start..].find("</script>").unwrap();
    page.text[start..end].to_string()
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The authenticator's answer to the page's request (allowing `cred_id` when given, as
/// a discoverable authenticator would find it, and with the user handle it keeps).
fn assert_with(key: &mut SoftPasskey, page: &Answer, cred_id: Option<&str>, handle: Option<[u8; 16]>) -> String {
    let mut request: Value = serde_json::from_str(&options(page)).unwrap();
    if let Some(id) = cred_id {
        request["publicKey"]["allowCredentials"] = serde_json::json!([{ "type": "public-key", "id": id }]);
    }
    let request: RequestChallengeResponse = serde_json::from_value(request).unwrap();
    let mut answer = key.do_authentication(Url::parse(ORIGIN).unwrap(), request).expect("an assertion");
    if let Some(handle) = handle {
        answer.response.user_handle = Some(handle.to_vec().into());
    }
    serde_json::to_string(&answer).unwrap()
}

fn register_with(key: &mut SoftPasskey, page: &Answer) -> (String, String) {
    let request: CreationChallengeResponse = serde_json::from_str(&options(page)).unwrap();
    let answer = key.do_registration(Url::parse(ORIGIN).unwrap(), request).expect("a registration");
    (serde_json::to_string(&answer).unwrap(), b64url(answer.raw_id.as_ref()))
}

/// Signs in to the account page with the password and adds a passkey named `name`;
/// its credential id.
async fn add_passkey(app: &TestApp, key: &mut SoftPasskey, username: &str, name: &str) -> String {
    let mut b = Browser::new(app);
    let first = b.get("/").await;
    let login = b.follow(first).await;
    let posted = b.log_in(&login, username, PASSWORD).await;
    let page = b.follow(posted).await;
    assert!(page.text.contains("Add a passkey"), "{}", page.text);
    let csrf = input(&page.text, "csrf_token").unwrap();
    let start = b.post("/account/passkeys/start", &[("csrf_token", &csrf), ("lang", "en")]).await;
    assert_eq!(start.status, 200, "{}", start.text);
    let csp = start.headers["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains(crate::http::pages::webauthn_js_hash()), "{csp}");
    let (credential, cred_id) = register_with(key, &start);
    let enrolment = input(&start.text, "enrolment").unwrap();
    let fields = [
        ("csrf_token", csrf.as_str()),
        ("lang", "en"),
        ("enrolment", &enrolment),
        ("credential", &credential),
        ("name", name),
    ];
    let added = b.post("/account/passkeys", &fields).await;
    assert_eq!(added.status, 303, "{}", added.text);
    let page = b.get("/?lang=en&done=passkey_added").await;
    assert!(page.text.contains(name) && page.text.contains("Passkey added."), "{}", page.text);
    cred_id
}

async fn post_passkey(b: &mut Browser<'_>, page: &Answer, credential: &str, name: Option<&str>) -> Answer {
    let mut fields = vec![
        ("interaction".to_string(), input(&page.text, "interaction").unwrap()),
        ("csrf_token".to_string(), input(&page.text, "csrf_token").unwrap()),
        ("credential".to_string(), credential.to_string()),
    ];
    if let Some(name) = name {
        fields.push(("name".into(), name.into()));
    }
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    b.post("/oauth2/auth/login/passkey", &pairs).await
}

fn handle(app: &TestApp, user_id: i64) -> [u8; 16] {
    *crate::service::passkeys::user_handle(&app.state, user_id).as_bytes()
}

#[tokio::test]
async fn a_passkey_signs_in_without_a_password_and_after_one() {
    let app = app().await;
    let mut key = SoftPasskey::new(true);
    let cred_id = add_passkey(&app, &mut key, "sv01", "YubiKey").await;
    let added = khoa_store::AuditFilter { kind: Some("user.credential_added".into()), limit: 5, ..Default::default() };
    assert_eq!(app.state.store.audit_events(&added).await.unwrap()[0].detail["method"], "passkey");
    // Passwordless: the login page's own ceremony.
    let mut b = Browser::new(&app);
    let login = b.authorize("web", &[]).await;
    assert!(login.text.contains("Sign in with a passkey"), "{}", login.text);
    let csp = login.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'sha256-") && !csp.contains("unsafe-inline"), "{csp}");
    let answer = assert_with(&mut key, &login, Some(&cred_id), Some(handle(&app, 1)));
    let done = post_passkey(&mut b, &login, &answer, None).await;
    assert_eq!(done.status, 303, "{}", done.text);
    let c = b.id_token_claims(done, "web").await;
    assert_eq!(c["acr"], "phr");
    assert_eq!(c["amr"], serde_json::json!(["hwk", "mfa", "user"]));
    // After a password, the person's passkey is asked for (they have one).
    let mut b = Browser::new(&app);
    let login = b.authorize("web", &[]).await;
    let step = b.log_in(&login, "sv01", PASSWORD).await;
    assert!(step.text.contains("Use your passkey"), "{}", step.text);
    let answer = assert_with(&mut key, &step, None, None);
    let done = post_passkey(&mut b, &step, &answer, None).await;
    assert_eq!(done.status, 303, "{}", done.text);
    let c = b.id_token_claims(done, "web").await;
    assert_eq!((c["acr"].as_str(), c["amr"].clone()), (Some("phr"), serde_json::json!(["hwk", "mfa", "pwd", "user"])));
    let stored = app.state.store.credentials(1).await.unwrap();
    let passkey = stored.iter().find(|c| c.method.as_str() == "passkey").unwrap();
    assert_eq!((passkey.counter, passkey.last_used_at.is_some()), (2, true));
}

/// An answer is used once; another person's passkey, a passwordless answer without the
/// user handle or with another person's, and a counter that goes backwards are refused.
#[tokio::test]
async fn passkey_answers_that_must_not_sign_in() {
    let app = app().await;
    second_user(&app, "sv02").await;
    let mut mine = SoftPasskey::new(true);
    let mut theirs = SoftPasskey::new(true);
    let my_id = add_passkey(&app, &mut mine, "sv01", "Mine").await;
    let their_id = add_passkey(&app, &mut theirs, "sv02", "Theirs").await;
    let sv02 = app.state.store.user_by_username("sv02").await.unwrap().unwrap().id;
    // Replayed: the same answer, with the same state, twice.
    let mut b = Browser::new(&app);
    let login = b.authorize("web", &[]).await;
    let answer = assert_with(&mut mine, &login, Some(&my_id), Some(handle(&app, 1)));
    let jar = b.cookies.clone();
    assert_eq!(post_passkey(&mut b, &login, &answer, None).await.status, 303);
    let mut replay = Browser::new(&app);
    replay.cookies = jar;
    let again = post_passkey(&mut replay, &login, &answer, None).await;
    assert!(again.text.contains("That passkey is not right."), "{}", again.text);
    // Passwordless without a user handle, or claiming another person.
    for claimed in [None, Some(handle(&app, sv02))] {
        let mut b = Browser::new(&app);
        let login = b.authorize("web", &[]).await;
        let answer = assert_with(&mut mine, &login, Some(&my_id), claimed);
        let refused = post_passkey(&mut b, &login, &answer, None).await;
        assert_eq!(refused.status, 200, "{}", refused.text);
        assert!(refused.text.contains("That passkey is not right."));
    }
    // sv01's second step answered with sv02's passkey.
    let mut b = Browser::new(&app);
    let login = b.authorize("web", &[]).await;
    let step = b.log_in(&login, "sv01", PASSWORD).await;
    let foreign = assert_with(&mut theirs, &step, Some(&their_id), None);
    let refused = post_passkey(&mut b, &step, &foreign, None).await;
    assert!(refused.text.contains("That passkey is not right.") && refused.text.contains("Use your passkey"));
    // A counter that goes backwards: the stored one is ahead of the authenticator's.
    let stored =
        app.state.store.credential_by_lookup(khoa_core::authn::Method::Passkey, &my_id).await.unwrap().unwrap();
    let mut data: Value = serde_json::from_str(&stored.data).unwrap();
    data["cred"]["counter"] = 100.into();
    assert!(app.state.store.swap_data(stored.id, stored.counter, 100, &data.to_string(), 0).await.unwrap());
    let cloned = assert_with(&mut mine, &refused, None, None);
    let refused = post_passkey(&mut b, &refused, &cloned, None).await;
    assert!(refused.text.contains("That passkey is not right."), "{}", refused.text);
    let filter = khoa_store::AuditFilter { kind: Some("login.failed".into()), limit: 20, ..Default::default() };
    let reasons: Vec<String> = app
        .state
        .store
        .audit_events(&filter)
        .await
        .unwrap()
        .iter()
        .map(|e| e.detail["reason"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(reasons.iter().filter(|r| *r == "counter_went_backwards").count(), 1, "{reasons:?}");
    assert_eq!(app.rows("sessions").await, 3, "two account-page sign-ins and the one good passwordless one");
}

/// A request for `phr` by a person without a passkey: they add one right after their
/// password, before any code is issued.
#[tokio::test]
async fn phr_has_a_person_add_a_passkey_first() {
    let app = app().await;
    let mut key = SoftPasskey::new(true);
    let mut b = Browser::new(&app);
    let login = b.authorize("web", &[("acr_values", "phr")]).await;
    let enrol = b.log_in(&login, "sv01", PASSWORD).await;
    assert!(enrol.text.contains("This application requires a passkey"), "{}", enrol.text);
    assert_eq!(app.rows("authorization_codes").await, 0);
    let (credential, _) = register_with(&mut key, &enrol);
    let done = post_passkey(&mut b, &enrol, &credential, Some("Laptop")).await;
    assert_eq!(done.status, 303, "{}", done.text);
    let c = b.id_token_claims(done, "web").await;
    assert_eq!(c["acr"], "phr");
    let passkeys = app.state.store.credentials(1).await.unwrap().into_iter();
    let names: Vec<Option<String>> =
        passkeys.filter(|c| c.method == khoa_core::authn::Method::Passkey).map(|c| c.name).collect();
    assert_eq!(names, [Some("Laptop".to_string())]);
}

/// Browsers refuse WebAuthn on an IP address: no passkeys, no script, no `phr`.
#[tokio::test]
async fn an_ip_address_issuer_offers_no_passkeys() {
    let app = TestApp::with_settings(|s| s.issuer = "http://127.0.0.1:8080".into()).await;
    app.client("web", |r| r.secret = SecretChoice::Given(SECRET.into())).await;
    app.user_with_password(PASSWORD).await;
    let mut b = Browser::new(&app);
    let login = b.authorize("web", &[]).await;
    assert_eq!(login.status, 200);
    assert!(!login.text.contains("webauthn") && !login.text.contains("<script"), "{}", login.text);
    assert!(!login.headers["content-security-policy"].to_str().unwrap().contains("script-src"));
    let discovery = app.get("/.well-known/openid-configuration", &[]).await;
    assert!(!discovery.body["acr_values_supported"].as_array().unwrap().iter().any(|v| v == "phr"));
}
