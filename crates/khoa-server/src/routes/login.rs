//! `POST /oauth2/auth/login` (the login form), `…/login/factor` (the second step) and
//! `…/login/enrol` (an authenticator app a policy asks for): each a step of the sign-in
//! engine (`service::signin`), rendered here. Throttled per account and per client
//! address; one message for unknown users and wrong passwords, with the same argon2id
//! work for both.

use crate::app::state::AppState;
use crate::http::error::ApiError;
use crate::routes::views;
use crate::service::flow::{self, current_session, Flow};
use crate::service::interaction::{resume, tokens_match};
use crate::service::password_login::{device_cookie, known_device, DEVICE_COOKIE};
use crate::service::signin::{self, Outcome, Pending, SignedIn};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use khoa_core::authn::{Denied, Method, SignIn};
use khoa_core::session::Interaction;
use khoa_core::throttle::LoginOrigin;
use std::collections::HashMap;

/// A posted step of a sign-in: its form, once its interaction is this browser's and
/// its anti-forgery token the interaction's; with the client's address.
pub(crate) struct Posted {
    form: HashMap<String, String>,
    handle: String,
    interaction: Interaction,
    flow: Flow,
    headers: HeaderMap,
    address: std::net::IpAddr,
}

/// Rejected with the page to show instead (an interaction that cannot go on).
impl axum::extract::FromRequest<AppState> for Posted {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &AppState) -> Result<Self, Response> {
        let (headers, peer, form) = crate::http::forms::read_post(req).await?;
        let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        let handle = field("interaction").to_string();
        let (interaction, flow) = match resumed(state, &headers, &handle, field("csrf_token")).await {
            Ok(Ok(found)) => found,
            Ok(Err(page)) => return Err(page),
            Err(e) => return Err(e.into_response()),
        };
        let address = crate::http::client_address(&state.settings, peer.ip(), &headers);
        Ok(Self { form, handle, interaction, flow, headers, address })
    }
}

impl Posted {
    fn field(&self, k: &str) -> &str {
        self.form.get(k).map(String::as_str).unwrap_or("")
    }

    /// This browser's sign-in in progress for this interaction.
    fn pending(&self, state: &AppState) -> Option<Pending> {
        Pending::open(state, &self.headers, &self.interaction.id_hash, state.now())
    }

    fn step<'a>(&'a self, state: &'a AppState, passkey: bool) -> Step<'a> {
        Step {
            passkey,
            state,
            flow: &self.flow,
            handle: &self.handle,
            interaction: &self.interaction,
            headers: &self.headers,
            address: self.address,
        }
    }
}

pub(crate) async fn post(State(state): State<AppState>, p: Posted) -> Result<Response, ApiError> {
    let now = state.now();
    let username = p.field("username");
    let device = crate::http::cookies::get(&p.headers, DEVICE_COOKIE);
    let device = known_device(&state, device.as_deref(), username, now);
    let origin = LoginOrigin::Browser { address: p.address, device: device.as_deref() };
    // A new sign-in: the password first (the session's proofs count only for a step-up,
    // which starts at the step it still needs).
    let start = SignIn::start(signin::requirement(&state, &p.flow.request, &p.flow.client, now), None, now);
    let client_id = &p.flow.client.client_id;
    let outcome = signin::with_password(&state, &start, username, p.field("password"), origin, client_id).await?;
    p.step(&state, false).render(outcome, None).await
}

/// `POST /oauth2/auth/login/factor`: the second step, with an app's code or a recovery
/// code. Only for this browser's sign-in in progress for this interaction.
pub(crate) async fn factor(State(state): State<AppState>, p: Posted) -> Result<Response, ApiError> {
    let Some(pending) = p.pending(&state) else { return Ok(expired(&state, &p.flow)) };
    let method = match Method::parse(p.field("method")) {
        Some(m @ (Method::Totp | Method::RecoveryCode)) => m,
        _ => return Ok(expired(&state, &p.flow)),
    };
    let origin = LoginOrigin::Browser { address: p.address, device: None };
    let client_id = &p.flow.client.client_id;
    let outcome = signin::with_code(&state, &pending.signin, method, p.field("code"), origin, client_id).await?;
    p.step(&state, false).render(outcome, Some(pending)).await
}

/// `POST /oauth2/auth/login/enrol`: the authenticator app a policy asked this person
/// to set up, confirmed by one of its codes.
pub(crate) async fn enrol(State(state): State<AppState>, p: Posted) -> Result<Response, ApiError> {
    let enrolling = p.pending(&state).and_then(|pending| {
        let secret = pending.enrol_secret.as_deref().and_then(khoa_core::totp::from_base32)?;
        Some((pending, secret))
    });
    let Some((pending, secret)) = enrolling else { return Ok(expired(&state, &p.flow)) };
    let origin = LoginOrigin::Browser { address: p.address, device: None };
    let client_id = &p.flow.client.client_id;
    let (outcome, codes) =
        signin::enrol_totp(&state, &pending.signin, &secret, p.field("code"), origin, client_id).await?;
    match (outcome, codes) {
        (Outcome::Done(signed), Some(codes)) => p.step(&state, false).finish(&signed, Some(&codes)).await,
        (outcome, _) => p.step(&state, false).render(outcome, Some(pending)).await,
    }
}

/// `POST /oauth2/auth/login/passkey`: the browser's answer to the passkey ceremony the
/// page started: passwordless from the login page, a second factor from the second
/// step, or a new passkey a policy asked for.
pub(crate) async fn passkey(State(state): State<AppState>, p: Posted) -> Result<Response, ApiError> {
    let ceremony = p.pending(&state).and_then(|pending| pending.ceremony.clone().map(|c| (pending, c)));
    let Some((pending, (ceremony, challenge))) = ceremony else { return Ok(expired(&state, &p.flow)) };
    let origin = LoginOrigin::Browser { address: p.address, device: None };
    let client_id = p.flow.client.client_id.clone();
    let (signin, credential) = (&pending.signin, p.field("credential"));
    let outcome = match &ceremony {
        signin::Ceremony::Register(_) => {
            let name = p.field("name");
            signin::enrol_passkey(&state, signin, &ceremony, &challenge, credential, name, origin, &client_id).await?
        }
        signin::Ceremony::Authenticate(_) => {
            signin::with_passkey(&state, signin, &ceremony, &challenge, credential, origin, &client_id).await?
        }
    };
    // A failed passwordless attempt shows the login form again.
    let pending = Some(pending).filter(|p| p.signin.user_id.is_some());
    p.step(&state, true).render(outcome, pending).await
}

/// The interaction of a posted form, if it is this browser's and the form's token is
/// its own; else the page to show.
async fn resumed(
    state: &AppState,
    headers: &HeaderMap,
    handle: &str,
    csrf_token: &str,
) -> Result<Result<(Interaction, Flow), Response>, ApiError> {
    let (interaction, flow) = match resume(state, headers, handle).await? {
        Ok(found) => found,
        Err(locale) => return Ok(Err(views::expired(state, locale))),
    };
    if !tokens_match(csrf_token, &interaction.csrf_token) {
        return Ok(Err(expired(state, &flow)));
    }
    Ok(Ok((interaction, flow)))
}

fn expired(state: &AppState, flow: &Flow) -> Response {
    views::expired(state, flow.locale)
}

/// A step of a sign-in on the login pages, and how its outcome is shown.
struct Step<'a> {
    /// The step was a passkey's (its failures say so).
    passkey: bool,
    state: &'a AppState,
    flow: &'a Flow,
    handle: &'a str,
    interaction: &'a Interaction,
    headers: &'a HeaderMap,
    address: std::net::IpAddr,
}

impl Step<'_> {
    /// The page for `outcome`. `pending`: the sign-in this step continued (its page is
    /// shown again after a wrong code); `None` for the first step, the login form.
    async fn render(&self, outcome: Outcome, pending: Option<Pending>) -> Result<Response, ApiError> {
        let (state, flow) = (self.state, self.flow);
        let interaction = Some((self.handle, self.interaction));
        let (t, f) = (flow.locale.texts(), flow.locale.factors());
        let first = pending.is_none();
        let passkey = self.passkey;
        let again = |error, status| self.again(pending, error, status);
        match outcome {
            Outcome::Blocked { retry_after } => {
                let mut res = again(t.throttled, StatusCode::TOO_MANY_REQUESTS).await?;
                res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                Ok(res)
            }
            Outcome::Failed if first && passkey => again(f.passkey_wrong, StatusCode::OK).await,
            Outcome::Failed if first => again(t.bad_credentials, StatusCode::OK).await,
            Outcome::Failed if passkey => again(f.passkey_wrong, StatusCode::OK).await,
            Outcome::Failed => again(f.wrong_code, StatusCode::OK).await,
            Outcome::Replayed => again(f.replayed_code, StatusCode::OK).await,
            Outcome::Disabled => {
                views::login_page(state, flow, interaction, Some(t.disabled), StatusCode::FORBIDDEN).await
            }
            Outcome::Denied(Denied::NoMethod) => {
                views::login_page(state, flow, interaction, Some(f.no_method), StatusCode::FORBIDDEN).await
            }
            Outcome::Denied(_) => Ok(expired(state, flow)),
            Outcome::Continue { methods, pending, .. } => {
                views::factor_page(state, flow, interaction, pending, &methods, None, StatusCode::OK).await
            }
            Outcome::Enrol { user, methods, pending } if !methods.contains(&Method::Totp) => {
                views::passkey_enrol_page(state, flow, interaction, pending, &user, None, StatusCode::OK).await
            }
            Outcome::Enrol { user, pending, .. } => {
                views::enrol_page(state, flow, interaction, pending, &user, None, None, StatusCode::OK).await
            }
            Outcome::Done(signed) => self.finish(&signed, None).await,
        }
    }

    /// A failure of a step: that step again, with its message (the login form for the
    /// first).
    async fn again(
        &self,
        pending: Option<Pending>,
        error: &'static str,
        status: StatusCode,
    ) -> Result<Response, ApiError> {
        let (state, flow) = (self.state, self.flow);
        let interaction = Some((self.handle, self.interaction));
        let Some(pending) = pending else {
            return views::login_page(state, flow, interaction, Some(error), status).await;
        };
        let user = match pending.signin.user_id {
            Some(id) => state.users.get(state.store.as_ref(), id).await?,
            None => None,
        };
        let Some(user) = user else { return Ok(expired(state, flow)) };
        if let Some(secret) = pending.enrol_secret {
            let signin = pending.signin;
            return views::enrol_page(state, flow, interaction, signin, &user, Some(secret), Some(error), status).await;
        }
        if matches!(pending.ceremony, Some((signin::Ceremony::Register(_), _))) {
            return views::passkey_enrol_page(state, flow, interaction, pending.signin, &user, Some(error), status)
                .await;
        }
        let (enrolled, _) = signin::enrolled(state.store.as_ref(), &user).await?;
        match pending.signin.next(Some(&enrolled), state.now()) {
            khoa_core::authn::Next::Continue(methods) => {
                views::factor_page(state, flow, interaction, pending.signin, &methods, Some(error), status).await
            }
            _ => Ok(expired(state, flow)),
        }
    }

    /// The sign-in is complete: the session (new, or this browser's raised), then on
    /// to consent or the code; or first the recovery codes made during it, shown once.
    async fn finish(&self, signed: &SignedIn, codes: Option<&[String]>) -> Result<Response, ApiError> {
        let (state, flow) = (self.state, self.flow);
        let now = state.now();
        let previous = current_session(state, self.headers, now).await?;
        let device = flow::Device::of(self.headers, self.address);
        let (session, cookie) = flow::session_for(state, signed, previous, device).await?;
        // The interaction is now the session's (a row of its own, if it was sealed).
        let existing = Some((self.handle, self.interaction));
        let (handle, _, csrf_cookie) = flow::interaction_for(state, flow, existing, Some(&session.sid)).await?;
        let next = format!("/oauth2/auth/continue?interaction={handle}");
        let mut res = match codes {
            None => Redirect::to(&next).into_response(),
            Some(codes) => {
                let f = flow.locale.factors();
                let html = crate::http::pages::render(&crate::http::pages::RecoveryCodesPage {
                    brand: &state.settings.branding,
                    lang: flow.locale.tag(),
                    title: f.codes_title,
                    f,
                    codes,
                    next: &next,
                })?;
                crate::http::pages::page(StatusCode::OK, html, None, vec![])
            }
        };
        let cookies = [cookie.1, Pending::cleared(state)].into_iter().chain(csrf_cookie.into_iter().map(|(_, v)| v));
        for value in cookies.chain(device_cookie(state, &signed.user.username, now)) {
            if let Ok(v) = HeaderValue::from_str(&value) {
                res.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        Ok(res)
    }
}

/// The login form's rules, in-process: one answer for unknown users and wrong passwords,
/// anti-forgery, throttling per account and address, and a login that completes once.
#[cfg(test)]
mod tests {
    use crate::testing::{input, Answer, TestApp, CALLBACK, PEER};
    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use axum::http::{header, Request};
    use khoa_core::throttle::ThrottlePolicy;
    use std::net::SocketAddr;

    const PASSWORD: &str = "correct horse battery staple";

    /// The login page of a request of `web`: its cookies, interaction and token.
    struct Page {
        cookies: Vec<String>,
        interaction: String,
        csrf: String,
    }

    async fn app() -> TestApp {
        let app = TestApp::with_settings(|s| {
            s.login_throttle.account_at_address =
                ThrottlePolicy { free_failures: 2, base_delay: 60, max_delay: 600, window: 3600 };
        })
        .await;
        app.client("web", |_| {}).await;
        app.user_with_password(PASSWORD).await;
        app
    }

    async fn login_page(app: &TestApp) -> Page {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([("client_id", "web"), ("redirect_uri", CALLBACK), ("response_type", "code")])
            .append_pair("scope", "openid")
            .finish();
        let a = app.get(&format!("/oauth2/auth?{query}"), &[]).await;
        assert_eq!(a.status, 200, "{}", a.text);
        Page {
            cookies: a.cookies(),
            interaction: input(&a.text, "interaction").expect("an interaction"),
            csrf: input(&a.text, "csrf_token").expect("a token"),
        }
    }

    async fn attempt(app: &TestApp, page: &Page, username: &str, password: &str, peer: SocketAddr) -> Answer {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("interaction", page.interaction.as_str()),
                ("csrf_token", page.csrf.as_str()),
                ("username", username),
                ("password", password),
            ])
            .finish();
        let mut req = Request::post("/oauth2/auth/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT_LANGUAGE, "en");
        if !page.cookies.is_empty() {
            req = req.header(header::COOKIE, page.cookies.join("; "));
        }
        let mut req = req.body(Body::from(body)).unwrap();
        req.extensions_mut().insert(ConnectInfo(peer));
        app.send(req).await
    }

    #[tokio::test]
    async fn unknown_users_and_wrong_passwords_get_one_answer() {
        let app = app().await;
        let page = login_page(&app).await;
        let unknown = attempt(&app, &page, "nobody", PASSWORD, PEER).await;
        let wrong = attempt(&app, &page, "sv01", "wrong password", PEER).await;
        for a in [&unknown, &wrong] {
            assert_eq!(a.status, 200);
            assert!(a.text.contains("Incorrect username or password."), "{}", a.text);
            assert!(a.cookies().iter().all(|c| !c.starts_with(crate::http::cookies::SESSION_COOKIE)));
        }
        assert_eq!(app.rows("sessions").await, 0);
        // Both recorded; what was typed as a username or password is not.
        let failed = khoa_store::AuditFilter { kind: Some("login.failed".into()), limit: 10, ..Default::default() };
        let events = app.state.store.audit_events(&failed).await.unwrap();
        let reasons: Vec<(&str, bool)> =
            events.iter().map(|e| (e.detail["reason"].as_str().unwrap(), e.user_id.is_some())).collect();
        assert_eq!(reasons, [("wrong_password", true), ("unknown_user", false)]);
        assert!(events
            .iter()
            .all(|e| e.address.as_deref() == Some("192.0.2.7") && e.client_id.as_deref() == Some("web")));
        let text = format!("{events:?}");
        assert!(!text.contains("nobody") && !text.contains("wrong password") && !text.contains(PASSWORD));
    }

    /// The same password work for every wrong answer: an unknown user, a wrong
    /// password, an account created without a password and one whose hash cannot be
    /// verified each cost exactly one argon2id verification (the review measured
    /// 1.1 ms for an account without a password against 19 ms for the others).
    #[tokio::test]
    async fn every_wrong_answer_costs_one_verification() {
        let app = app().await;
        for (name, hash) in [("nopass", ""), ("bomb", "$argon2id$v=19$m=8,t=4294967295,p=1$c2FsdHNhbHQ$aGFzaA")] {
            let user = khoa_core::user::Profile { username: name.into(), ..Default::default() }
                .into_new_user(Some(hash.into()).filter(|h: &String| !h.is_empty()), 0);
            let event = khoa_core::audit::Event::new(0, "user.created", khoa_core::audit::Actor::System);
            app.state.store.insert_user(&user, &event).await.unwrap();
        }
        let page = login_page(&app).await;
        // The dummy hash is made once, at the first use.
        attempt(&app, &page, "nobody", PASSWORD, PEER).await;
        for (i, username) in ["nobody", "sv01", "nopass", "bomb"].into_iter().enumerate() {
            let peer = SocketAddr::from(([192, 0, 2, 20 + i as u8], 4000));
            let before = app.state.passwords.computed();
            let a = attempt(&app, &page, username, "wrong password", peer).await;
            assert!(a.text.contains("Incorrect username or password."), "{username}: {}", a.text);
            assert_eq!(app.state.passwords.computed() - before, 1, "{username}");
        }
    }

    #[tokio::test]
    async fn a_disabled_account_is_told_so_only_with_its_password() {
        let app = app().await;
        let who = crate::service::admin::Who::command_line(crate::testing::NOW);
        let (store, settings) = (app.state.store.as_ref(), &app.state.settings);
        let disable = khoa_store::UserChange::Disable;
        crate::service::admin::users::end_sessions(store, settings, "sv01".into(), disable, &who).await.unwrap();
        app.state.users.clear();
        let page = login_page(&app).await;
        let refused = attempt(&app, &page, "sv01", PASSWORD, PEER).await;
        assert_eq!(refused.status, 403);
        assert!(
            refused.text.contains("This account is disabled. Please contact your administrator."),
            "{}",
            refused.text
        );
        let wrong = attempt(&app, &page, "sv01", "wrong password", PEER).await;
        assert!(wrong.text.contains("Incorrect username or password.") && !wrong.text.contains("disabled"));
        assert_eq!(app.rows("sessions").await, 0);
        let user = app.state.store.user_by_username("sv01").await.unwrap().unwrap();
        crate::service::admin::users::enable(store, user.id, &who).await.unwrap();
        assert_eq!(attempt(&app, &page, "sv01", PASSWORD, PEER).await.status, 303);
        let all =
            app.state.store.audit_events(&khoa_store::AuditFilter { limit: 50, ..Default::default() }).await.unwrap();
        let kinds: Vec<&str> = all.iter().map(|e| e.kind.as_str()).filter(|k| k.starts_with("login.")).collect();
        assert_eq!(kinds, ["login.succeeded", "login.failed", "login.refused_disabled"]);
    }

    #[tokio::test]
    async fn a_forged_form_is_refused_before_the_password_is_checked() {
        let app = app().await;
        let page = login_page(&app).await;
        let forged = Page { csrf: "A".repeat(43), ..page };
        let a = attempt(&app, &forged, "sv01", PASSWORD, PEER).await;
        assert_eq!(a.status, 400);
        assert_eq!(app.rows("sessions").await, 0);
        let none = Page { interaction: "no-such-interaction".into(), ..forged };
        assert_eq!(attempt(&app, &none, "sv01", PASSWORD, PEER).await.status, 400);
    }

    #[tokio::test]
    async fn an_account_is_throttled_at_an_address_without_locking_out_others() {
        let app = app().await;
        let page = login_page(&app).await;
        for _ in 0..2 {
            assert_eq!(attempt(&app, &page, "sv01", "wrong password", PEER).await.status, 200);
        }
        // Blocked at this address: even the right password is refused, with Retry-After.
        let blocked = attempt(&app, &page, "sv01", PASSWORD, PEER).await;
        assert_eq!(blocked.status, 429);
        let throttled =
            khoa_store::AuditFilter { kind: Some("login.throttled".into()), limit: 10, ..Default::default() };
        let events = app.state.store.audit_events(&throttled).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].detail["retry_after"], 60);
        assert_eq!(blocked.headers[header::RETRY_AFTER], "60");
        assert!(blocked.text.contains("Too many attempts. Please wait and try again."));
        // Another account at this address, and this account at another address, are not.
        assert_eq!(attempt(&app, &page, "someone-else", "whatever", PEER).await.status, 200);
        let elsewhere: SocketAddr = ([198, 51, 100, 9], 50000).into();
        assert_eq!(attempt(&app, &page, "sv01", PASSWORD, elsewhere).await.status, 303);
        // The waiting period ends on the server's clock.
        app.clock.advance(60);
        let page = login_page(&app).await;
        assert_eq!(attempt(&app, &page, "sv01", PASSWORD, PEER).await.status, 303);
    }

    #[tokio::test]
    async fn a_login_gives_one_code_and_completes_once() {
        let app = app().await;
        let page = login_page(&app).await;
        let a = attempt(&app, &page, "sv01", PASSWORD, PEER).await;
        assert_eq!(a.status, 303, "{}", a.text);
        assert!(a.location().starts_with("/oauth2/auth/continue?interaction="), "{}", a.location());
        let mut cookies = page.cookies.clone();
        cookies.extend(a.cookies());
        let done = app.get(a.location(), &cookies).await;
        assert_eq!(done.status, 303, "{}", done.text);
        assert!(done.location().starts_with(&format!("{CALLBACK}?code=")), "{}", done.location());
        assert_eq!(app.rows("authorization_codes").await, 1);
        // The same interaction again (a second tab, a replayed request): no second code.
        let again = app.get(a.location(), &cookies).await;
        assert_eq!(again.status, 400, "{}", again.location());
        assert_eq!(app.rows("authorization_codes").await, 1);
    }
}

#[cfg(test)]
#[path = "login_steps_tests.rs"]
mod steps_tests;

#[cfg(test)]
#[path = "passkey_tests.rs"]
mod passkey_tests;
