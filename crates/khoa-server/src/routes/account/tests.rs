//! The account pages in-process: a browser (a cookie jar over the router) signs in
//! to the account page through khoa's own authorization endpoint, changes what is
//! its to change, and uses the links khoa mails. Every attack the pages must refuse
//! is tried: forged forms, reused and expired links, differences between accounts
//! that exist and accounts that do not, and floods of requests.

use crate::app::mail::{Mail, SmtpSettings};
use crate::testing::{input, mail_where, Answer, Browser, TestApp};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};

const PASSWORD: &str = "correct horse battery staple";
const NEW_PASSWORD: &str = "a much better passphrase";

/// The account page's sign-in of the test browser.
trait SignIn {
    async fn sign_in(&mut self, password: &str) -> Answer;
}

impl SignIn for Browser<'_> {
    /// Opens the account page, signing in with `password` on the way.
    async fn sign_in(&mut self, password: &str) -> Answer {
        let first = self.get("/").await;
        assert_eq!(first.status, StatusCode::SEE_OTHER);
        assert!(first.location().starts_with("/oauth2/auth?client_id=khoa-account&"), "{}", first.location());
        let login = self.follow(first).await;
        assert_eq!(login.status, 200, "{}", login.text);
        let posted = self.log_in(&login, "sv01", password).await;
        self.follow(posted).await
    }
}

async fn app_with_mail() -> TestApp {
    let app = TestApp::with_settings(|s| {
        s.smtp = Some(SmtpSettings { url: "smtp://127.0.0.1:2525".into(), from: "khoa <sso@example.vn>".into() });
    })
    .await;
    app.user_with_password(PASSWORD).await;
    app
}

/// The mails delivered so far (the outbox delivers in the background).
async fn mails(app: &TestApp, at_least: usize) -> Vec<Mail> {
    for _ in 0..200 {
        let sent = app.mails.0.lock().unwrap().clone();
        if sent.len() >= at_least {
            return sent;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    app.mails.0.lock().unwrap().clone()
}

/// A user stored as an operator (or an older version of khoa) would have: no password.
async fn stored_user(app: &TestApp, username: &str, email: &str, email_verified: bool) -> khoa_core::user::User {
    let user = khoa_core::user::Profile {
        username: username.into(),
        email: Some(email.into()),
        email_verified,
        ..Default::default()
    }
    .into_new_user(None, 0);
    let event = khoa_core::audit::Event::new(0, "user.created", khoa_core::audit::Actor::System);
    app.state.store.insert_user(&user, &event).await.unwrap()
}

/// The first mail delivered to `to` (mails leave in the background, in any order).
async fn mail_to(app: &TestApp, to: &str) -> Mail {
    mail_where(app, |m| m.to == to).await
}

/// How many mails went to `to`, once the outbox has had time to deliver.
async fn mails_to(app: &TestApp, to: &str) -> usize {
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    app.mails.0.lock().unwrap().iter().filter(|m| m.to == to).count()
}

/// The page of a mailed link, confirmed with its button: the confirmation's answer.
async fn confirm_link(b: &mut Browser<'_>, link: &str) -> Answer {
    let page = b.get(link).await;
    assert_eq!(page.status, 200, "{}", page.text);
    let path = link.split('?').next().unwrap().to_string();
    let form =
        [("csrf_token", input(&page.text, "csrf_token").unwrap()), ("token", input(&page.text, "token").unwrap())];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    b.post(&path, &form).await
}

/// The path and query of the link in a mail's text.
fn link_in(mail: &Mail) -> String {
    let at = mail.text.find("https://sso.example.vn/").expect("a link");
    let link = mail.text[at..].split_whitespace().next().unwrap();
    link.strip_prefix("https://sso.example.vn").unwrap().to_string()
}

async fn ask_for_reset(b: &mut Browser<'_>, identifier: &str) -> Answer {
    let page = b.get("/account/password/forgot?lang=en").await;
    assert_eq!(page.status, 200, "{}", page.text);
    let csrf = input(&page.text, "csrf_token").unwrap();
    b.post("/account/password/forgot", &[("csrf_token", &csrf), ("lang", "en"), ("identifier", identifier)]).await
}

async fn set_password(b: &mut Browser<'_>, link: &str, password: &str) -> Answer {
    let page = b.get(link).await;
    if page.status != 200 {
        return page;
    }
    let (csrf, token) = (input(&page.text, "csrf_token").unwrap(), input(&page.text, "token").unwrap());
    let form = [
        ("csrf_token", csrf.as_str()),
        ("lang", "en"),
        ("token", &token),
        ("password", password),
        ("confirmation", password),
    ];
    b.post("/account/password/reset", &form).await
}

async fn password_works(app: &TestApp, password: &str) -> bool {
    let origin = khoa_core::throttle::LoginOrigin::Browser { address: [198, 51, 100, 1].into(), device: None };
    let outcome = crate::service::password_login::password_login(&app.state, "sv01", password, origin, "web").await;
    matches!(outcome.unwrap(), crate::service::password_login::LoginOutcome::Succeeded(_))
}

#[tokio::test]
async fn forgot_password_is_offered_only_where_mail_can_be_sent() {
    let without = TestApp::new().await;
    without.client("web", |_| {}).await;
    let login = without
        .get(
            "/oauth2/auth?client_id=web&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&response_type=code&scope=openid",
            &[],
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.text);
    assert!(!login.text.contains("/account/password/forgot"));
    assert_eq!(without.get("/account/password/forgot", &[]).await.status, 404);
    assert_eq!(without.get("/account/register", &[]).await.status, 404, "self-registration is off by default");
    let with = app_with_mail().await;
    with.client("web", |_| {}).await;
    let login = with.get("/oauth2/auth?client_id=web&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&response_type=code&scope=openid&ui_locales=vi", &[]).await;
    assert!(login.text.contains("<a href=\"/account/password/forgot?lang=vi\">Quên mật khẩu?</a>"), "{}", login.text);
    assert!(!login.text.contains("/account/register"));
}

#[tokio::test]
async fn a_reset_link_works_once_and_ends_every_session() {
    let app = app_with_mail().await;
    app.stored_code("code").await; // a session, sid-1
    let mut b = Browser::new(&app);
    let sent = ask_for_reset(&mut b, "sv01").await;
    assert_eq!(sent.status, 200);
    assert!(sent.text.contains("If an account matches what you entered"), "{}", sent.text);
    let mail = mails(&app, 1).await.remove(0);
    assert_eq!((mail.to.as_str(), mail.subject.as_str()), ("sv01@hutech.edu.vn", "Reset your password · khoa"));
    assert!(mail.html.contains("Set a new password") && mail.html.contains("#0b5fff"), "branded: {}", mail.html);
    let link = link_in(&mail);
    assert!(link.starts_with("/account/password/reset?token="), "{link}");
    // Opening the link twice uses nothing up (mail scanners open links).
    assert_eq!(b.get(&link).await.status, 200);
    let done = set_password(&mut b, &link, NEW_PASSWORD).await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert!(done.text.contains("Every session has been signed out"));
    assert!(!app.state.store.session_by_sid("sid-1").await.unwrap().unwrap().is_active(app.state.now()));
    assert!(password_works(&app, NEW_PASSWORD).await && !password_works(&app, PASSWORD).await);
    // Used: the link is dead, for its form and for a replayed POST.
    let again = b.get(&link).await;
    assert_eq!(again.status, 400);
    assert!(again.text.contains("This link can no longer be used"));
    let token = link.split("token=").nth(1).unwrap().split('&').next().unwrap();
    let csrf = b.cookies["__Host-khoa_form"].clone();
    let replay = [("csrf_token", csrf.as_str()), ("token", token), ("password", PASSWORD), ("confirmation", PASSWORD)];
    assert_eq!(b.post("/account/password/reset", &replay).await.status, 400);
    assert!(password_works(&app, NEW_PASSWORD).await);
    let kinds: Vec<String> = app
        .state
        .store
        .audit_events(&khoa_store::AuditFilter { limit: 50, ..Default::default() })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .filter(|k| k.starts_with("user.password_reset"))
        .collect();
    assert_eq!(kinds, ["user.password_reset", "user.password_reset_requested"]);
}

#[tokio::test]
async fn a_reset_link_expires_after_thirty_minutes_and_a_bad_password_is_asked_again() {
    let app = app_with_mail().await;
    let mut b = Browser::new(&app);
    ask_for_reset(&mut b, "sv01@hutech.edu.vn").await;
    let link = link_in(&mails(&app, 1).await[0]);
    let page = b.get(&link).await;
    let (csrf, token) = (input(&page.text, "csrf_token").unwrap(), input(&page.text, "token").unwrap());
    let mismatch =
        [("csrf_token", csrf.as_str()), ("token", &token), ("password", NEW_PASSWORD), ("confirmation", "other one!")];
    let refused = b.post("/account/password/reset", &mismatch).await;
    assert_eq!(refused.status, 400);
    assert!(refused.text.contains("The two passwords differ."));
    let short = [("csrf_token", csrf.as_str()), ("token", &token), ("password", "short"), ("confirmation", "short")];
    assert!(b.post("/account/password/reset", &short).await.text.contains("A password has 8 to 1024 characters."));
    app.clock.advance(29 * 60 + 59);
    assert_eq!(b.get(&link).await.status, 200);
    app.clock.advance(1);
    assert_eq!(set_password(&mut b, &link, NEW_PASSWORD).await.status, 400, "expired at 30 minutes");
    assert!(password_works(&app, PASSWORD).await);
}

#[tokio::test]
async fn the_answer_is_the_same_for_accounts_that_exist_and_those_that_do_not() {
    let app = app_with_mail().await;
    let mut answers = vec![];
    for (i, identifier) in ["sv01", "nobody", "sv01@hutech.edu.vn", "nobody@hutech.edu.vn"].iter().enumerate() {
        let mut b = Browser::new(&app).at(([198, 51, 100, i as u8 + 1], 5000).into());
        let a = ask_for_reset(&mut b, identifier).await;
        answers.push((a.status, a.text.clone(), a.headers.get(header::CACHE_CONTROL).cloned()));
    }
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    let sent = mails(&app, 2).await;
    assert_eq!(sent.len(), 2, "mails only to the account that exists");
    assert!(sent.iter().all(|m| m.to == "sv01@hutech.edu.vn"));
}

#[tokio::test]
async fn requests_for_links_are_throttled_per_account_and_per_address() {
    let app = app_with_mail().await;
    // Per account: from many addresses, 3 mails, then the same answer and no mail.
    for i in 0..5u8 {
        let mut b = Browser::new(&app).at(([203, 0, 113, i + 1], 5000).into());
        let a = ask_for_reset(&mut b, "sv01").await;
        assert_eq!(a.status, 200, "an attacked account answers as always");
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(mails(&app, 3).await.len(), 3);
    // Per address: 10 requests, then 429 with Retry-After, whatever the names.
    let mut b = Browser::new(&app).at(([192, 0, 2, 99], 5000).into());
    for i in 0..10 {
        assert_eq!(ask_for_reset(&mut b, &format!("someone{i}")).await.status, 200);
    }
    let blocked = ask_for_reset(&mut b, "someone-else").await;
    assert_eq!(blocked.status, 429);
    assert_eq!(blocked.headers[header::RETRY_AFTER], "60");
    assert!(blocked.text.contains("Too many requests."));
    // Another address is not blocked.
    let mut other = Browser::new(&app).at(([192, 0, 2, 100], 5000).into());
    assert_eq!(ask_for_reset(&mut other, "nobody").await.status, 200);
}

#[tokio::test]
async fn forms_without_this_browsers_token_are_refused() {
    let app = app_with_mail().await;
    let mut b = Browser::new(&app);
    // No cookie at all (a cross-site form), then a cookie but a wrong token.
    let forged = b.post("/account/password/forgot", &[("csrf_token", &"A".repeat(43)), ("identifier", "sv01")]).await;
    assert_eq!(forged.status, 400);
    assert!(forged.text.contains("This form has expired."));
    b.get("/account/password/forgot").await;
    let wrong = b.post("/account/password/forgot", &[("csrf_token", &"B".repeat(43)), ("identifier", "sv01")]).await;
    assert_eq!(wrong.status, 400);
    ask_for_reset(&mut b, "sv01").await;
    let link = link_in(&mails(&app, 1).await[0]);
    let token = link.split("token=").nth(1).unwrap().split('&').next().unwrap().to_string();
    let mut stranger = Browser::new(&app);
    let reset = [
        ("csrf_token", "C".repeat(43)),
        ("token", token.clone()),
        ("password", NEW_PASSWORD.into()),
        ("confirmation", NEW_PASSWORD.into()),
    ];
    let reset: Vec<(&str, &str)> = reset.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(stranger.post("/account/password/reset", &reset).await.status, 400);
    assert!(password_works(&app, PASSWORD).await, "a forged reset changes nothing");
    assert_eq!(stranger.post("/account/email/verify", &[("token", &token)]).await.status, 400);
    assert_eq!(stranger.post("/account/email/report", &[("token", &token)]).await.status, 400);
    // The account page's forms, signed in: each refused without the page's token.
    let mut me = Browser::new(&app);
    assert_eq!(me.sign_in(PASSWORD).await.status, 200);
    for path in [
        "/account/profile",
        "/account/password",
        "/account/sessions/end",
        "/account/sessions/end-all",
        "/account/consents/revoke",
    ] {
        let a = me.post(path, &[("csrf_token", "forged"), ("name", "X"), ("sid", "sid-1")]).await;
        assert_eq!(a.status, 400, "{path}");
    }
    let user = app.state.store.user_by_username("sv01").await.unwrap().unwrap();
    assert_eq!(user.name.as_deref(), Some("Nguyễn Văn A"), "nothing changed");
    assert_eq!(app.state.store.user_sessions(user.id, app.state.now()).await.unwrap().len(), 1);
}

/// The page's forms, each with its token.
async fn page_form(b: &mut Browser<'_>, path: &str, fields: &[(&str, &str)]) -> Answer {
    let page = b.get("/").await;
    assert_eq!(page.status, 200, "{}", page.text);
    let csrf = input(&page.text, "csrf_token").unwrap();
    let mut form = vec![("csrf_token", csrf.as_str()), ("lang", "en")];
    form.extend_from_slice(fields);
    let a = b.post(path, &form).await;
    b.follow(a).await
}

#[tokio::test]
async fn the_account_page_signs_in_through_khoa_and_shows_what_is_mine() {
    let app = app_with_mail().await;
    app.client("lms", |r| r.client_name = Some("Học trực tuyến".into())).await;
    let user = app.state.store.user_by_username("sv01").await.unwrap().unwrap();
    app.state.store.grant_consent(user.id, "lms", "openid profile", crate::testing::NOW).await.unwrap();
    let mut b = Browser::new(&app);
    let page = b.sign_in(PASSWORD).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("Signed in as <strong>sv01</strong>"), "{}", page.text);
    assert!(page.text.contains("value=\"Nguyễn Văn A\""));
    assert!(page.text.contains("This session"));
    assert!(page.text.contains("Học trực tuyến") && page.text.contains("Your name, picture and username"));
    assert_eq!(page.headers[header::CACHE_CONTROL], "no-store");
    // No cookie of the page's own: it signs in again (the SSO session makes it quick).
    let mut other = Browser::new(&app);
    assert_eq!(other.get("/").await.status, StatusCode::SEE_OTHER);
    // Vietnamese on request.
    let vi = b.get("/?lang=vi").await;
    assert!(vi.text.contains("Tài khoản của bạn") && vi.text.contains("lang=\"vi\""));
    // The profile: name and phone at once.
    let saved = page_form(
        &mut b,
        "/account/profile",
        &[("name", "Nguyễn Văn Ân"), ("email", "sv01@hutech.edu.vn"), ("phone_number", "+84976535298")],
    )
    .await;
    assert!(saved.text.contains("Profile saved."), "{}", saved.text);
    let stored = app.state.store.user_by_id(user.id).await.unwrap().unwrap();
    assert_eq!((stored.name.as_deref(), stored.phone_number.as_deref()), (Some("Nguyễn Văn Ân"), Some("+84976535298")));
    let bad = page_form(&mut b, "/account/profile", &[("name", "A"), ("email", "not-an-address")]).await;
    assert_eq!(bad.status, 400);
    assert!(bad.text.contains("is not an email address"), "{}", bad.text);
    // Revoking an application's access: its consent goes.
    let revoked = page_form(&mut b, "/account/consents/revoke", &[("client_id", "lms")]).await;
    assert!(
        revoked.text.contains("The application&#x27;s access has been revoked.")
            || revoked.text.contains("access has been revoked"),
        "{}",
        revoked.text
    );
    assert!(app.state.store.user_consents(user.id).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_new_email_address_counts_once_verified() {
    let app = app_with_mail().await;
    let mut b = Browser::new(&app);
    b.sign_in(PASSWORD).await;
    let asked = page_form(
        &mut b,
        "/account/profile",
        &[("name", "Nguyễn Văn A"), ("email", "moi@example.vn"), ("current_password", PASSWORD)],
    )
    .await;
    assert!(asked.text.contains("We have sent a verification mail to the new address."), "{}", asked.text);
    let user = app.state.store.user_by_username("sv01").await.unwrap().unwrap();
    assert_eq!(
        (user.email.as_deref(), user.email_verified),
        (Some("sv01@hutech.edu.vn"), true),
        "unchanged until verified"
    );
    let mail = mail_to(&app, "moi@example.vn").await;
    let link = link_in(&mail);
    assert!(link.starts_with("/account/email/verify?token="), "{link}");
    // Opening shows a button, the account that asks and what it does; only the button verifies.
    let page = b.get(&link).await;
    assert!(page.text.contains("moi@example.vn"));
    assert!(page.text.contains("Account: <strong>sv01</strong>"), "{}", page.text);
    assert!(page.text.contains("password resets will be mailed here"), "{}", page.text);
    assert_eq!(
        app.state.store.user_by_id(user.id).await.unwrap().unwrap().email.as_deref(),
        Some("sv01@hutech.edu.vn")
    );
    let form =
        [("csrf_token", input(&page.text, "csrf_token").unwrap()), ("token", input(&page.text, "token").unwrap())];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let done = b.post("/account/email/verify", &form).await;
    assert_eq!(done.status, 200);
    let user = app.state.store.user_by_id(user.id).await.unwrap().unwrap();
    assert_eq!((user.email.as_deref(), user.email_verified), (Some("moi@example.vn"), true));
    assert_eq!(b.post("/account/email/verify", &form).await.status, 400, "once");
    // What applications are told: the ID token and userinfo of the `email` scope.
    use crate::testing::{CALLBACK, SECRET};
    app.client("web", |r| r.secret = khoa_core::client::SecretChoice::Given(SECRET.into())).await;
    app.stored_code_with("c-email", |c| c.scope = "openid email".into()).await;
    let form = [("grant_type", "authorization_code"), ("code", "c-email"), ("redirect_uri", CALLBACK)];
    let tokens = app.post_form("/oauth2/token", &form, Some(("web", SECRET))).await;
    let id_token = tokens.body["id_token"].as_str().expect("an ID token");
    use base64::Engine;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(id_token.split('.').nth(1).unwrap()).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!((claims["email"].as_str(), claims["email_verified"].as_bool()), (Some("moi@example.vn"), Some(true)));
    let bearer = format!("Bearer {}", tokens.body["access_token"].as_str().unwrap());
    let req = Request::get("/userinfo").header(header::AUTHORIZATION, bearer).body(Body::empty()).unwrap();
    let info = app.send(req).await;
    assert_eq!(
        (info.body["email"].as_str(), info.body["email_verified"].as_bool()),
        (Some("moi@example.vn"), Some(true))
    );
}

#[tokio::test]
async fn a_password_change_needs_the_current_one_and_ends_the_other_sessions() {
    let app = app_with_mail().await;
    app.stored_code("code").await; // another session, sid-1
    let mut b = Browser::new(&app);
    b.sign_in(PASSWORD).await;
    let wrong = page_form(
        &mut b,
        "/account/password",
        &[("current_password", "not it"), ("password", NEW_PASSWORD), ("confirmation", NEW_PASSWORD)],
    )
    .await;
    assert_eq!(wrong.status, 400);
    assert!(wrong.text.contains("The current password is wrong."));
    let changed = page_form(
        &mut b,
        "/account/password",
        &[("current_password", PASSWORD), ("password", NEW_PASSWORD), ("confirmation", NEW_PASSWORD)],
    )
    .await;
    assert!(changed.text.contains("Your other sessions have been signed out."), "{}", changed.text);
    assert!(!app.state.store.session_by_sid("sid-1").await.unwrap().unwrap().is_active(app.state.now()));
    assert_eq!(b.get("/").await.status, 200, "this session stays");
    assert!(password_works(&app, NEW_PASSWORD).await);
}

/// The client `web` with a back-channel logout URI.
async fn with_backchannel_client(app: &TestApp) {
    app.client("web", |r| r.backchannel_logout_uri = Some("https://app.example/bc".into())).await;
}

/// The back-channel notices queued, as (client, sid).
async fn notices(app: &TestApp) -> Vec<(String, String)> {
    let queued = app.state.store.deliveries(50).await.unwrap();
    queued.into_iter().map(|d| (d.notice.client_id, d.notice.sid)).collect()
}

#[tokio::test]
async fn signing_out_everywhere_notifies_the_applications() {
    let app = app_with_mail().await;
    with_backchannel_client(&app).await;
    app.stored_code("code").await; // sid-1, signed in to web
    let mut b = Browser::new(&app);
    b.sign_in(PASSWORD).await;
    page_form(&mut b, "/account/sessions/end-all", &[]).await;
    assert_eq!(notices(&app).await, [("web".to_string(), "sid-1".to_string())]);
    let user = app.state.store.user_by_username("sv01").await.unwrap().unwrap();
    let revoked = app
        .state
        .store
        .audit_events(&khoa_store::AuditFilter {
            kind: Some("user.sessions_revoked".into()),
            limit: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((revoked[0].user_id, revoked[0].detail["sessions_ended"].as_i64()), (Some(user.id), Some(2)));
}

#[tokio::test]
async fn sessions_end_one_by_one_or_everywhere() {
    let app = app_with_mail().await;
    with_backchannel_client(&app).await;
    app.stored_code("code").await; // sid-1, elsewhere, signed in to web
    let mut b = Browser::new(&app);
    let page = b.sign_in(PASSWORD).await;
    assert!(page.text.contains("value=\"sid-1\""));
    // Someone else's session cannot be ended by naming it.
    let ended = page_form(&mut b, "/account/sessions/end", &[("sid", "sid-1")]).await;
    assert!(ended.text.contains("That session has been signed out."));
    assert_eq!(notices(&app).await, [("web".to_string(), "sid-1".to_string())], "the application is told");
    assert!(!app.state.store.session_by_sid("sid-1").await.unwrap().unwrap().is_active(app.state.now()));
    let kinds = app
        .state
        .store
        .audit_events(&khoa_store::AuditFilter { kind: Some("logout".into()), limit: 5, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(kinds[0].detail["reason"], "account_page");
    let everywhere = page_form(&mut b, "/account/sessions/end-all", &[]).await;
    assert!(everywhere.text.contains("You have been signed out everywhere."), "{}", everywhere.text);
    let user = app.state.store.user_by_username("sv01").await.unwrap().unwrap();
    assert!(app.state.store.user_sessions(user.id, app.state.now()).await.unwrap().is_empty());
    assert_eq!(b.get("/").await.status, StatusCode::SEE_OTHER, "signed out of the page too");
}

#[tokio::test]
async fn another_users_session_cannot_be_ended() {
    let app = app_with_mail().await;
    app.stored_code("code").await; // sv01's sid-1
    let other = khoa_core::user::NewUser {
        username: "sv02".into(),
        email: Some("sv02@hutech.edu.vn".into()),
        ..crate::testing::test_user()
    };
    let hash = khoa_core::password::hash_password(PASSWORD, Default::default()).unwrap();
    app.state
        .store
        .insert_user(&khoa_core::user::NewUser { password_hash: Some(hash), ..other }, &crate::testing::user_event())
        .await
        .unwrap();
    let mut b = Browser::new(&app);
    // sv02 signs in to the account page.
    let first = b.get("/").await;
    let login = b.follow(first).await;
    let posted = b.log_in(&login, "sv02", PASSWORD).await;
    assert_eq!(b.follow(posted).await.status, 200);
    page_form(&mut b, "/account/sessions/end", &[("sid", "sid-1")]).await;
    assert!(app.state.store.session_by_sid("sid-1").await.unwrap().unwrap().is_active(app.state.now()));
}

async fn app_with_sign_up() -> TestApp {
    let app = TestApp::with_settings(|s| {
        s.smtp = Some(SmtpSettings { url: "smtp://127.0.0.1:2525".into(), from: "khoa <sso@example.vn>".into() });
        s.self_registration = true;
    })
    .await;
    app.user_with_password(PASSWORD).await;
    app
}

async fn sign_up(b: &mut Browser<'_>, username: &str, email: &str) -> Answer {
    let page = b.get("/account/register?lang=en").await;
    assert_eq!(page.status, 200, "{}", page.text);
    let csrf = input(&page.text, "csrf_token").unwrap();
    let form = [
        ("csrf_token", csrf.as_str()),
        ("lang", "en"),
        ("username", username),
        ("email", email),
        ("name", "Trần Thị B"),
        ("password", PASSWORD),
        ("confirmation", PASSWORD),
    ];
    b.post("/account/register", &form).await
}

#[tokio::test]
async fn sign_up_creates_the_account_once_its_address_is_proven_and_tells_nothing_of_others() {
    let app = app_with_sign_up().await;
    let mut b = Browser::new(&app);
    let fresh = sign_up(&mut b, "sv99", "sv99@example.vn").await;
    // A taken username, and a taken address: the same answer, and no mail.
    let taken_name = sign_up(&mut b, "sv01", "other@example.vn").await;
    let taken_mail = sign_up(&mut b, "sv98", "sv01@hutech.edu.vn").await;
    for a in [&taken_name, &taken_mail] {
        assert_eq!((a.status, &a.text), (fresh.status, &fresh.text));
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let sent = mails(&app, 1).await;
    assert_eq!(sent.iter().map(|m| m.to.as_str()).collect::<Vec<_>>(), ["sv99@example.vn"]);
    assert!(app.state.store.user_by_username("sv99").await.unwrap().is_none(), "not before the link is used");
    // Rules are told on the form (they say nothing about other accounts).
    let bad = sign_up(&mut b, "has space", "x@example.vn").await;
    assert_eq!(bad.status, 400);
    assert!(bad.text.contains("username must be 1 to 64 characters"), "{}", bad.text);
    let link = link_in(&sent[0]);
    assert!(link.starts_with("/account/register/complete?token="), "{link}");
    let page = b.get(&link).await;
    let form =
        [("csrf_token", input(&page.text, "csrf_token").unwrap()), ("token", input(&page.text, "token").unwrap())];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Without this browser's token, nothing happens.
    let mut stranger = Browser::new(&app);
    assert_eq!(stranger.post("/account/register/complete", &form).await.status, 400);
    assert!(app.state.store.user_by_username("sv99").await.unwrap().is_none());
    let done = b.post("/account/register/complete", &form).await;
    assert_eq!(done.status, 200, "{}", done.text);
    let user = app.state.store.user_by_username("sv99").await.unwrap().expect("created");
    assert_eq!((user.email.as_deref(), user.email_verified), (Some("sv99@example.vn"), true));
    assert!(password_works_for(&app, "sv99", PASSWORD).await);
    assert_eq!(b.post("/account/register/complete", &form).await.status, 400, "once");
    // A forged sign-up form is refused.
    let forged = b
        .post("/account/register", &[("csrf_token", "forged"), ("username", "sv97"), ("email", "sv97@example.vn")])
        .await;
    assert_eq!(forged.status, 400);
}

#[tokio::test]
async fn sign_up_is_throttled_per_address() {
    let app = app_with_sign_up().await;
    let mut b = Browser::new(&app).at(([192, 0, 2, 50], 5000).into());
    for i in 0..10 {
        assert_eq!(sign_up(&mut b, &format!("new{i}"), &format!("new{i}@example.vn")).await.status, 200);
    }
    let blocked = sign_up(&mut b, "new10", "new10@example.vn").await;
    assert_eq!(blocked.status, 429);
    assert!(blocked.headers.contains_key(header::RETRY_AFTER));
}

async fn password_works_for(app: &TestApp, username: &str, password: &str) -> bool {
    let origin = khoa_core::throttle::LoginOrigin::Browser { address: [198, 51, 100, 1].into(), device: None };
    let outcome = crate::service::password_login::password_login(&app.state, username, password, origin, "web").await;
    matches!(outcome.unwrap(), crate::service::password_login::LoginOutcome::Succeeded(_))
}

/// Bad input to every account page, with and without this browser's token: a clear
/// 4xx (or the page again), never a 5xx.
#[tokio::test]
async fn bad_input_to_the_account_pages_is_never_a_server_error() {
    let app = app_with_sign_up().await;
    let mut b = Browser::new(&app);
    b.sign_in(PASSWORD).await;
    let page = b.get("/").await;
    let page_token = input(&page.text, "csrf_token").unwrap();
    b.get("/account/password/forgot").await;
    let form_token = b.cookies["__Host-khoa_form"].clone();
    let long = "x".repeat(60_000);
    let values =
        ["", "\u{0}", "a\u{0}b", "\u{202e}evil", long.as_str(), "%zz", "@", "a@b", "+84", "javascript:alert(1)"];
    let paths = [
        ("/account/password/forgot", &form_token),
        ("/account/password/reset", &form_token),
        ("/account/email/verify", &form_token),
        ("/account/email/report", &form_token),
        ("/account/register", &form_token),
        ("/account/register/complete", &form_token),
        ("/account/profile", &page_token),
        ("/account/password", &page_token),
        ("/account/sessions/end", &page_token),
        ("/account/consents/revoke", &page_token),
    ];
    let fields = [
        "identifier",
        "token",
        "password",
        "confirmation",
        "username",
        "email",
        "name",
        "phone_number",
        "picture",
        "sid",
        "client_id",
        "current_password",
        "lang",
    ];
    for (path, token) in paths {
        for value in values {
            let mut form: Vec<(&str, &str)> = vec![("csrf_token", token.as_str())];
            form.extend(fields.iter().map(|f| (*f, value)));
            let a = b.post(path, &form).await;
            assert!(
                a.status.as_u16() < 500,
                "{path} with {:?}: {} {}",
                &value[..value.len().min(20)],
                a.status,
                a.text
            );
        }
        // Not a form at all: invalid UTF-8.
        let req = Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        let a = b.send(req, Body::from(vec![0xff, 0xfe, b'=', 0x80])).await;
        assert!(a.status.as_u16() < 500, "{path} with invalid UTF-8: {}", a.status);
    }
    for get in [
        "/account/password/reset?token=%00",
        "/account/email/verify?token=%ff",
        "/account/email/report?token=%ff",
        "/account/email/report",
        "/account/register/complete",
        "/?lang=%00",
        "/account/callback?code=x&state=y",
    ] {
        let a = b.get(get).await;
        assert!(a.status.as_u16() < 500, "{get}: {} {}", a.status, a.text);
    }
    // The account still signs in: nothing above changed the password.
    assert!(password_works(&app, PASSWORD).await);
}

/// The review's takeover at an unlocked computer: the email address cannot be changed
/// without the current password; when it is (the password known), the old address is
/// told at once, and its "it was not me" link gives the address back, signs the account
/// out everywhere and kills the reset link the new address had asked for.
#[tokio::test]
async fn changing_the_email_needs_the_password_and_the_old_address_can_undo_it() {
    let app = app_with_mail().await;
    let mut b = Browser::new(&app);
    b.sign_in(PASSWORD).await;
    let user = app.state.store.user_by_username("sv01").await.unwrap().unwrap();
    for (password, message) in [
        (None, "To change your email address, enter your current password."),
        (Some("not it"), "The current password is wrong."),
    ] {
        let mut form = vec![("name", "Nguyễn Văn A"), ("email", "mallory@evil.test")];
        form.extend(password.map(|p| ("current_password", p)));
        let refused = page_form(&mut b, "/account/profile", &form).await;
        assert_eq!(refused.status, 400, "{password:?}");
        assert!(refused.text.contains(message), "{password:?}: {}", refused.text);
    }
    // Removing the address needs it too.
    let removed = page_form(&mut b, "/account/profile", &[("name", "Nguyễn Văn A"), ("email", "")]).await;
    assert_eq!(removed.status, 400);
    assert_eq!(mails_to(&app, "mallory@evil.test").await, 0);
    let stored = app.state.store.user_by_id(user.id).await.unwrap().unwrap();
    assert_eq!((stored.email.as_deref(), stored.email_verified), (Some("sv01@hutech.edu.vn"), true));

    // With the password: the new address gets its link, the old one a notice.
    let form = [("name", "Nguyễn Văn A"), ("email", "mallory@evil.test"), ("current_password", PASSWORD)];
    page_form(&mut b, "/account/profile", &form).await;
    let notice = mail_to(&app, "sv01@hutech.edu.vn").await;
    assert_eq!(notice.subject, "Your email address is being changed · khoa");
    assert!(notice.text.contains("It was not me") && !notice.text.contains("mallory"), "{}", notice.text);
    let report = link_in(&notice);
    assert!(report.starts_with("/account/email/report?token="), "{report}");
    let mut mallory = Browser::new(&app).at(([203, 0, 113, 66], 4000).into());
    let verify = link_in(&mail_to(&app, "mallory@evil.test").await);
    assert_eq!(confirm_link(&mut mallory, &verify).await.status, 200);
    assert_eq!(app.state.store.user_by_id(user.id).await.unwrap().unwrap().email.as_deref(), Some("mallory@evil.test"));
    ask_for_reset(&mut mallory, "mallory@evil.test").await;
    let stolen = link_in(&mail_where(&app, |m| m.to == "mallory@evil.test" && m.subject.starts_with("Reset")).await);
    assert_ne!(stolen, verify);

    // The owner reads the notice: the page says what the button does.
    let mut owner = Browser::new(&app).at(([198, 51, 100, 9], 4000).into());
    let page = owner.get(&report).await;
    assert!(page.text.contains("Account: <strong>sv01</strong>") && page.text.contains("sv01@hutech.edu.vn"));
    assert!(page.text.contains("signs it out everywhere"), "{}", page.text);
    let undone = confirm_link(&mut owner, &report).await;
    assert_eq!(undone.status, 200, "{}", undone.text);
    assert!(undone.text.contains("The change is cancelled"), "{}", undone.text);
    let stored = app.state.store.user_by_id(user.id).await.unwrap().unwrap();
    assert_eq!((stored.email.as_deref(), stored.email_verified), (Some("sv01@hutech.edu.vn"), true));
    assert!(app.state.store.user_sessions(user.id, app.state.now()).await.unwrap().is_empty(), "signed out everywhere");
    assert_eq!(b.get("/").await.status, StatusCode::SEE_OTHER, "the unlocked computer's page too");
    assert_eq!(set_password(&mut mallory, &stolen, NEW_PASSWORD).await.status, 400, "the reset link is dead");
    assert!(password_works(&app, PASSWORD).await);
    assert_eq!(owner.get(&report).await.status, 400, "the report link works once");
    let reported =
        khoa_store::AuditFilter { kind: Some("user.email_change_reported".into()), limit: 5, ..Default::default() };
    let events = app.state.store.audit_events(&reported).await.unwrap();
    assert_eq!((events.len(), events[0].detail["address_restored"].as_bool()), (1, Some(true)));
}

/// The review's flood: fifteen profile posts with one new address sent fifteen mails.
/// Every mail the account page sends counts under the account and each recipient.
#[tokio::test]
async fn mails_from_the_account_page_are_throttled() {
    let app = app_with_mail().await;
    let mut b = Browser::new(&app);
    b.sign_in(PASSWORD).await;
    for _ in 0..15 {
        let form = [("name", "Nguyễn Văn A"), ("email", "flood@example.vn"), ("current_password", PASSWORD)];
        let a = page_form(&mut b, "/account/profile", &form).await;
        assert!(a.status == 200 || a.status == 429, "{}", a.status);
    }
    let limit = app.state.settings.mail_throttle_account.free_failures as usize;
    assert_eq!(mails_to(&app, "flood@example.vn").await, limit);
    assert_eq!(mails_to(&app, "sv01@hutech.edu.vn").await, limit, "the notices too");
    // And the same limits on the operator's path (the admin API and the command line).
    let user = app.state.store.user_by_username("sv01").await.unwrap().unwrap();
    let operator_sends = || {
        let (locale, actor) = (crate::http::i18n::Locale::En, khoa_core::audit::Actor::System);
        crate::service::account::send_verification(&app.state, user.id, "flood@example.vn", locale, actor)
    };
    assert_eq!(operator_sends().await.unwrap(), crate::service::account::Sent::Throttled);
    // An hour later, mail flows again.
    app.clock.advance(3601);
    assert_eq!(operator_sends().await.unwrap(), crate::service::account::Sent::Sent);
}

/// mallory cannot get alice's address verified onto his account: not by the profile
/// (no mail, the same answer), not by a link issued otherwise (the verification step
/// refuses it), and alice, shown which account asks, is told what the click would do.
#[tokio::test]
async fn an_address_verified_on_one_account_cannot_be_claimed_by_another() {
    let app = app_with_mail().await;
    let alice = stored_user(&app, "alice", "alice@victim.test", true).await;
    let mut b = Browser::new(&app);
    b.sign_in(PASSWORD).await;
    let form = [("name", "Nguyễn Văn A"), ("email", "ALICE@victim.test"), ("current_password", PASSWORD)];
    let answer = page_form(&mut b, "/account/profile", &form).await;
    assert!(answer.text.contains("We have sent a verification mail to the new address."), "the same answer");
    assert_eq!(mails_to(&app, "ALICE@victim.test").await + mails_to(&app, "alice@victim.test").await, 0);
    // A link made some other way (an operator's call) is refused at the step itself.
    let sv01 = app.state.store.user_by_username("sv01").await.unwrap().unwrap();
    let locale = crate::http::i18n::Locale::En;
    let mail = crate::service::account::issue_verification(
        app.state.store.as_ref(),
        &app.state.settings,
        sv01.id,
        "alice@victim.test",
        locale,
        khoa_core::audit::Actor::System,
        app.state.now(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(!mail.text.contains("sv01"), "a mail to an unproven address names no account: {}", mail.text);
    let link = link_in(&mail);
    let mut reader = Browser::new(&app).at(([198, 51, 100, 9], 4000).into());
    let page = reader.get(&link).await;
    assert!(page.text.contains("Account: <strong>sv01</strong>"), "{}", page.text);
    assert!(page.text.contains("If you did not ask for this, close this page"), "{}", page.text);
    let refused = confirm_link(&mut reader, &link).await;
    assert_eq!(refused.status, 409, "{}", refused.text);
    assert!(refused.text.contains("in use by another account"));
    let sv01 = app.state.store.user_by_id(sv01.id).await.unwrap().unwrap();
    assert_eq!(sv01.email.as_deref(), Some("sv01@hutech.edu.vn"));
    assert_eq!(
        app.state.store.user_by_id(alice.id).await.unwrap().unwrap().email.as_deref(),
        Some("alice@victim.test")
    );
}

/// The review's look-alikes of an existing username at sign-up, and a username that is
/// somebody's address: refused by rule, or answered as taken (no mail); "Forgot
/// password?" finds an address before a username, so a planted `victim@…` username
/// catches nothing.
#[tokio::test]
async fn look_alike_and_address_shaped_usernames_are_refused() {
    let app = app_with_sign_up().await;
    let mut b = Browser::new(&app);
    let ruled = [
        ("\u{455}v01", "username must be written in one script"), // Cyrillic ѕ
        ("sv01\u{200B}", "invisible or direction-changing"),
        ("sv\u{202E}10", "invisible or direction-changing"),
        ("alice@victim.test", "own verified email address"),
    ];
    for (i, (username, message)) in ruled.into_iter().enumerate() {
        let a = sign_up(&mut b, username, &format!("new{i}@example.vn")).await;
        assert_eq!(a.status, 400, "{username:?}");
        assert!(a.text.contains(message), "{username:?}: {}", a.text);
    }
    for (i, taken) in ["SV01", "Sv01", "ｓｖ０１"].into_iter().enumerate() {
        let a = sign_up(&mut b, taken, &format!("taken{i}@example.vn")).await;
        assert_eq!(a.status, 200, "the same answer as a free name");
        assert_eq!(mails_to(&app, &format!("taken{i}@example.vn")).await, 0, "{taken}");
    }
    // A username that is its own (to be verified) address is fine.
    assert_eq!(sign_up(&mut b, "own@example.vn", "own@example.vn").await.status, 200);
    let mail = mail_to(&app, "own@example.vn").await;
    assert!(!mail.text.contains("Trần Thị B"), "the name typed stays out of the mail");
    assert!(!mail.html.contains("own@example.vn</strong>"), "the mail names no account");

    // Made by an older version: a username that is alice's address, on mallory's account.
    stored_user(&app, "alice@victim.test", "mallory@evil.test", false).await;
    stored_user(&app, "alice", "alice@victim.test", true).await;
    let mut someone = Browser::new(&app).at(([198, 51, 100, 9], 4000).into());
    ask_for_reset(&mut someone, "alice@victim.test").await;
    assert_eq!(mails_to(&app, "alice@victim.test").await, 1, "alice's address, alice's account");
    assert_eq!(mails_to(&app, "mallory@evil.test").await, 0);
}

/// Reset links die with the password they would replace: one asked before a change on
/// the account page no longer works after it. (Asked with a forged Host and
/// X-Forwarded-Host: mailed links are built from the issuer alone.)
#[tokio::test]
async fn a_reset_link_dies_when_the_password_is_changed() {
    let app = app_with_mail().await;
    let mut stranger = Browser::new(&app).at(([198, 51, 100, 9], 4000).into());
    let page = stranger.get("/account/password/forgot?lang=en").await;
    let csrf = input(&page.text, "csrf_token").unwrap();
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("csrf_token", csrf.as_str()), ("lang", "en"), ("identifier", "sv01")])
        .finish();
    let req = Request::post("/account/password/forgot")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::HOST, "evil.example")
        .header("x-forwarded-host", "evil.example");
    assert_eq!(stranger.send(req, Body::from(body)).await.status, 200);
    let mail = mail_to(&app, "sv01@hutech.edu.vn").await;
    assert!(!mail.text.contains("evil.example") && !mail.html.contains("evil.example"), "{}", mail.text);
    let link = link_in(&mail);
    let mut b = Browser::new(&app);
    b.sign_in(PASSWORD).await;
    let form = [("current_password", PASSWORD), ("password", NEW_PASSWORD), ("confirmation", NEW_PASSWORD)];
    page_form(&mut b, "/account/password", &form).await;
    assert_eq!(set_password(&mut stranger, &link, "yet another password").await.status, 400);
    assert!(password_works(&app, NEW_PASSWORD).await);
}

/// The review's memory bomb: sixty concurrent sign-ups from sixty addresses each hashed
/// outside the password slots (1.2 GiB). Every argon2id hash (sign-up, reset, the
/// account page, an operator's create and set-password) now runs in the slots, in
/// reused buffers: never more at once than there are slots, nor more buffers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sign_ups_hash_within_the_password_slots() {
    let app = app_with_sign_up().await;
    let app = std::sync::Arc::new(app);
    let mut tasks = vec![];
    for i in 0..60u8 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let mut b = Browser::new(&app).at(([198, 18, 0, i], 4000).into());
            sign_up(&mut b, &format!("crowd{i}"), &format!("crowd{i}@example.vn")).await.status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let (peak, buffers) = app.state.passwords.peak();
    let slots = app.state.passwords.slots();
    assert!(peak <= slots && buffers <= slots, "peak {peak}, buffers {buffers}, slots {slots}");
    assert!(app.state.passwords.computed() >= 60, "each sign-up hashed in the slots");
}
