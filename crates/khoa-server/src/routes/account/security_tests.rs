//! The Security section in-process: an authenticator app set up on the account page
//! and used at the next sign-in; every change needs a recent sign-in, is mailed and
//! audited; an enrolment belongs to its person; the last second factor stays while a
//! policy requires one; new recovery codes void the old; a password reset by mail
//! leaves second factors in place.

use crate::app::mail::SmtpSettings;
use crate::testing::{input, Answer, Browser, TestApp};
use axum::http::StatusCode;

const PASSWORD: &str = "correct horse battery staple";

async fn app(require_mfa: bool) -> TestApp {
    let app = TestApp::with_settings(|s| {
        s.smtp = Some(SmtpSettings { url: "smtp://127.0.0.1:2525".into(), from: "khoa <sso@example.vn>".into() });
        s.require_mfa = require_mfa;
    })
    .await;
    app.user_with_password(PASSWORD).await;
    app
}

/// Opens the account page, signing in with the password and, when asked, a code of
/// `secret`.
async fn sign_in(b: &mut Browser<'_>, secret: Option<&[u8]>) -> Answer {
    let first = b.get("/").await;
    let login = b.follow(first).await;
    let form = |page: &Answer, more: &[(&'static str, String)]| {
        let mut f = vec![
            ("interaction", input(&page.text, "interaction").unwrap()),
            ("csrf_token", input(&page.text, "csrf_token").unwrap()),
        ];
        f.extend(more.iter().cloned());
        f
    };
    let fields = form(&login, &[("username", "sv01".into()), ("password", PASSWORD.into())]);
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut answer = b.post("/oauth2/auth/login", &pairs).await;
    if let Some(secret) = secret {
        assert!(answer.text.contains("Two-step verification"), "{}", answer.text);
        let code = khoa_core::totp::code_at(secret, b.app.state.now()).unwrap();
        let fields = form(&answer, &[("method", "totp".into()), ("code", code)]);
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        answer = b.post("/oauth2/auth/login/factor", &pairs).await;
    }
    let page = b.follow(answer).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("id=\"security\""), "{}", page.text);
    page
}

async fn post(b: &mut Browser<'_>, page: &Answer, path: &str, more: &[(&str, &str)]) -> Answer {
    let csrf = input(&page.text, "csrf_token").unwrap();
    let mut fields = vec![("csrf_token", csrf.as_str()), ("lang", "en")];
    fields.extend_from_slice(more);
    b.post(path, &fields).await
}

/// Sets up an app on the account page; its secret and the recovery codes page.
async fn set_up_app(b: &mut Browser<'_>, page: &Answer) -> (Vec<u8>, Answer) {
    let enrol = post(b, page, "/account/totp/start", &[]).await;
    assert_eq!(enrol.status, 200, "{}", enrol.text);
    assert!(enrol.text.contains("<svg") && enrol.text.contains("otpauth://totp/"), "{}", enrol.text);
    let at = enrol.text.find("secret=").unwrap() + "secret=".len();
    let b32: String = enrol.text[at..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
    let secret = khoa_core::totp::from_base32(&b32).unwrap();
    let enrolment = input(&enrol.text, "enrolment").unwrap();
    let wrong = post(b, page, "/account/totp", &[("enrolment", &enrolment), ("code", "000000")]).await;
    assert_eq!(wrong.status, 400);
    assert!(wrong.text.contains("That code is not right."));
    let code = khoa_core::totp::code_at(&secret, b.app.state.now()).unwrap();
    let codes = post(b, page, "/account/totp", &[("enrolment", &enrolment), ("code", &code)]).await;
    assert_eq!(codes.status, 200, "{}", codes.text);
    (secret, codes)
}

#[tokio::test]
async fn an_app_set_up_on_the_account_page_is_asked_for_at_the_next_sign_in() {
    let app = app(false).await;
    let mut b = Browser::new(&app);
    let page = sign_in(&mut b, None).await;
    assert!(page.text.contains("Not set up."), "{}", page.text);
    let (secret, codes) = set_up_app(&mut b, &page).await;
    assert_eq!(codes.text.matches("<li><code>").count(), 10);
    let mail = crate::testing::mail_where(&app, |m| m.subject.starts_with("A sign-in method was added")).await;
    assert_eq!(mail.to, "sv01@hutech.edu.vn");
    assert!(mail.text.contains("sv01") && mail.text.contains("If this was not you"));
    let page = b.get("/?lang=en").await;
    assert!(page.text.contains("Codes left: 10") && !page.text.contains("Not set up."), "{}", page.text);
    // The next sign-in, in another browser, asks for a code.
    app.clock.advance(30);
    let mut other = Browser::new(&app);
    sign_in(&mut other, Some(&secret)).await;
    let added = khoa_store::AuditFilter { kind: Some("user.credential_added".into()), limit: 5, ..Default::default() };
    assert_eq!(app.state.store.audit_events(&added).await.unwrap().len(), 1);
}

/// Someone at an unlocked computer cannot add their app to the account: a change needs
/// a sign-in within five minutes, and the way back is a fresh sign-in.
#[tokio::test]
async fn changes_need_a_recent_sign_in() {
    let app = app(false).await;
    let mut b = Browser::new(&app);
    let page = sign_in(&mut b, None).await;
    app.clock.advance(khoa_core::authn::RECENT_AUTHENTICATION + 1);
    let refused = post(&mut b, &page, "/account/totp/start", &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.text.contains("please sign in again") && refused.text.contains("/account/reauthenticate"));
    let again = b.get("/account/reauthenticate?lang=en").await;
    assert!(again.location().contains("max_age=0"), "{}", again.location());
    let login = b.follow(again).await;
    assert!(login.text.contains("name=\"password\""), "a fresh sign-in: {}", login.text);
    let posted = b.log_in(&login, "sv01", PASSWORD).await;
    let page = b.follow(posted).await;
    let enrol = post(&mut b, &page, "/account/totp/start", &[]).await;
    assert_eq!(enrol.status, 200, "{}", enrol.text);
    // The removal and new codes are refused the same way when the sign-in is old.
    let (_, _) = set_up_app(&mut b, &page).await;
    app.clock.advance(khoa_core::authn::RECENT_AUTHENTICATION + 1);
    let page = b.get("/?lang=en").await;
    assert_eq!(post(&mut b, &page, "/account/recovery-codes", &[]).await.status, StatusCode::FORBIDDEN);
    let id = app.state.store.credentials(1).await.unwrap().iter().find(|c| c.method.as_str() == "totp").unwrap().id;
    let id = id.to_string();
    assert_eq!(post(&mut b, &page, "/account/factors/remove", &[("id", &id)]).await.status, StatusCode::FORBIDDEN);
    assert!(app.state.store.credentials(1).await.unwrap().iter().any(|c| c.method.as_str() == "totp"));
}

/// An enrolment shown to one person cannot be confirmed by another (nor after its
/// deadline).
#[tokio::test]
async fn an_enrolment_belongs_to_its_person() {
    let app = app(false).await;
    let hash = khoa_core::password::hash_password(PASSWORD, Default::default()).unwrap();
    let other = khoa_core::user::Profile { username: "sv02".into(), ..Default::default() }.into_new_user(Some(hash), 0);
    app.state.store.insert_user(&other, &crate::testing::user_event()).await.unwrap();
    let mut b = Browser::new(&app);
    let page = sign_in(&mut b, None).await;
    let enrol = post(&mut b, &page, "/account/totp/start", &[]).await;
    let enrolment = input(&enrol.text, "enrolment").unwrap();
    let at = enrol.text.find("secret=").unwrap() + "secret=".len();
    let b32: String = enrol.text[at..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
    let code = khoa_core::totp::code_at(&khoa_core::totp::from_base32(&b32).unwrap(), app.state.now()).unwrap();
    // sv02 signs in elsewhere and posts sv01's enrolment.
    let mut mallory = Browser::new(&app);
    let first = mallory.get("/").await;
    let login = mallory.follow(first).await;
    let posted = mallory.log_in(&login, "sv02", PASSWORD).await;
    let theirs = mallory.follow(posted).await;
    let stolen = post(&mut mallory, &theirs, "/account/totp", &[("enrolment", &enrolment), ("code", &code)]).await;
    assert_eq!(stolen.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.rows("credentials").await, 2, "the two passwords only");
    // Past its deadline, for its own person too.
    app.clock.advance(11 * 60);
    let late = post(&mut b, &page, "/account/totp", &[("enrolment", &enrolment), ("code", &code)]).await;
    assert!(late.status == StatusCode::BAD_REQUEST || late.status == StatusCode::FORBIDDEN, "{}", late.status);
    assert_eq!(app.rows("credentials").await, 2, "the two passwords only");
}

/// Under `accounts.require_mfa` the last second factor cannot be removed; without a
/// policy it can, and the recovery codes go with it.
#[tokio::test]
async fn the_last_second_factor_stays_under_policy() {
    for policy in [true, false] {
        let app = app(policy).await;
        let mut b = Browser::new(&app);
        let page = if policy {
            // Everyone must have two factors: the sign-in sets up the app first.
            let first = b.get("/").await;
            let login = b.follow(first).await;
            let enrol = b.log_in(&login, "sv01", PASSWORD).await;
            assert!(enrol.text.contains("Set up an authenticator app"), "{}", enrol.text);
            let at = enrol.text.find("secret=").unwrap() + "secret=".len();
            let b32: String = enrol.text[at..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
            let code = khoa_core::totp::code_at(&khoa_core::totp::from_base32(&b32).unwrap(), app.state.now()).unwrap();
            let fields = [
                ("interaction", input(&enrol.text, "interaction").unwrap()),
                ("csrf_token", input(&enrol.text, "csrf_token").unwrap()),
                ("code", code),
            ];
            let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let codes = b.post("/oauth2/auth/login/enrol", &pairs).await;
            assert!(codes.text.contains("Recovery codes"), "{}", codes.text);
            b.get("/").await;
            let page = b.get("/?lang=en").await;
            let page = b.follow(page).await;
            assert!(page.text.contains("id=\"security\""), "{}", page.text);
            page
        } else {
            let page = sign_in(&mut b, None).await;
            set_up_app(&mut b, &page).await;
            b.get("/?lang=en").await
        };
        let totp = app.state.store.credentials(1).await.unwrap();
        let id = totp.iter().find(|c| c.method.as_str() == "totp").unwrap().id.to_string();
        let removed = post(&mut b, &page, "/account/factors/remove", &[("id", &id)]).await;
        let left = app.state.store.credentials(1).await.unwrap();
        if policy {
            assert_eq!(removed.status, StatusCode::CONFLICT, "{}", removed.text);
            assert!(removed.text.contains("The last second factor cannot be removed"));
            assert_eq!(left.len(), 12, "the password, the app and ten codes");
        } else {
            assert_eq!(removed.status, StatusCode::SEE_OTHER, "{}", removed.text);
            let kinds: Vec<&str> = left.iter().map(|c| c.method.as_str()).collect();
            assert_eq!(kinds, ["password"], "the password stays");
            crate::testing::mail_where(&app, |m| m.subject.starts_with("A sign-in method was removed")).await;
        }
    }
}

#[tokio::test]
async fn new_recovery_codes_void_the_old_and_a_reset_keeps_factors() {
    let app = app(false).await;
    let mut b = Browser::new(&app);
    let page = sign_in(&mut b, None).await;
    let (secret, first) = set_up_app(&mut b, &page).await;
    let old: Vec<String> = first.text.split("<li><code>").skip(1).map(|s| s[..19].to_string()).collect();
    assert_eq!(old.len(), 10);
    let page = b.get("/?lang=en").await;
    let second = post(&mut b, &page, "/account/recovery-codes", &[]).await;
    let new: Vec<String> = second.text.split("<li><code>").skip(1).map(|s| s[..19].to_string()).collect();
    assert_eq!(new.len(), 10);
    assert!(old.iter().all(|c| !new.contains(c)));
    let user = app.state.store.user_by_username("sv01").await.unwrap().unwrap();
    let hash = khoa_core::recovery::code_hash(&old[0]).unwrap();
    let event =
        khoa_core::audit::Event::new(app.state.now(), "login.recovery_code_used", khoa_core::audit::Actor::System);
    assert!(!app.state.store.use_recovery_code(user.id, &hash, app.state.now(), &event).await.unwrap(), "void");
    crate::testing::mail_where(&app, |m| m.subject.starts_with("New recovery codes were made")).await;
    // A password reset by mail (a stolen mailbox) does not remove the second factor.
    let (secret_link, token) = khoa_core::account::AccountToken::issue(
        khoa_core::account::Purpose::PasswordReset,
        user.id,
        None,
        app.state.now(),
    );
    app.state.store.insert_account_token(&token, &crate::testing::user_event()).await.unwrap();
    let new = "a brand new passphrase";
    let reset = crate::service::account::reset_password(&app.state, &secret_link, new, new, crate::testing::PEER.ip());
    assert!(matches!(reset.await.unwrap(), crate::service::account::ResetOutcome::Done(_)));
    let left = app.state.store.credentials(user.id).await.unwrap();
    assert!(left.iter().any(|c| c.method.as_str() == "totp"), "the app stays");
    let _ = secret;
}
