//! In-process tests through the router: an [`AppState`] on an in-memory SQLite
//! database and a [`ManualClock`], requests sent with `oneshot`, answers read whole.

use crate::app::clock::ManualClock;
use crate::{AppState, Settings};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use base64::Engine;
use khoa_core::client::{Client, ClientRegistration, SecretChoice};
use khoa_core::clock::Clock;
use khoa_core::code::AuthorizationCode;
use khoa_core::sealing::MasterKey;
use khoa_core::session::Session;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use tower::ServiceExt;

pub(crate) const NOW: i64 = 1_800_000_000;
pub(crate) const CALLBACK: &str = "https://app.example/cb";
/// A client secret for the tests' confidential clients.
pub(crate) const SECRET: &str = "0123456789abcdef0123456789abcdef-secret";
/// RFC 7636 Appendix B's verifier and its S256 challenge.
pub(crate) const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub(crate) const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
/// The session cookie's value for the session `sid-1` of [`TestApp::stored_code`].
pub(crate) const SESSION_HANDLE: &str = "the-session-handle";
/// The client address of requests sent by [`TestApp::send`].
pub(crate) const PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7)), 40000);

pub(crate) struct TestApp {
    pub state: AppState,
    pub clock: Arc<ManualClock>,
    /// What was mailed, when the settings have `smtp`.
    pub mails: Arc<crate::app::mail::RecordingMailer>,
}

/// An answer: status, headers, the body as text and as JSON (`Null` when it is not JSON).
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    /// `(status, error, error_description)` of an RFC 6749 error answer.
    pub fn error(&self) -> (u16, &str, &str) {
        let text = |k: &str| self.body[k].as_str().unwrap_or_default();
        (self.status.as_u16(), text("error"), text("error_description"))
    }

    /// The `Location` header ("" when there is none).
    pub fn location(&self) -> &str {
        self.headers.get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    /// The query parameters of the `Location` header.
    pub fn redirect_query(&self) -> std::collections::HashMap<String, String> {
        let location = self.location();
        let query = location.split_once('?').map(|(_, q)| q).unwrap_or_default();
        url::form_urlencoded::parse(query.as_bytes()).into_owned().collect()
    }

    /// `name=value` of every `Set-Cookie`, attributes dropped.
    pub fn cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .map(str::to_string)
            .collect()
    }
}

/// The value of `<input name="NAME" value="…">` in a page.
pub(crate) fn input(page: &str, name: &str) -> Option<String> {
    let at = page.find(&format!("name=\"{name}\""))?;
    let tag_start = page[..at].rfind('<')?;
    let tag = &page[tag_start..tag_start + page[tag_start..].find('>')?];
    let value = tag.split("value=\"").nth(1)?.split('"').next()?;
    Some(value.replace("&amp;", "&").replace("&quot;", "\"").replace("&#x27;", "'"))
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with_settings(|_| {}).await
    }

    /// An app whose settings `change` adjusts.
    pub async fn with_settings(change: impl FnOnce(&mut Settings)) -> Self {
        let store = khoa_store::connect("sqlite::memory:").await.expect("in-memory SQLite");
        store.migrate().await.expect("migrate");
        let master = MasterKey::generate().0;
        let mut settings = Settings::new("https://sso.example.vn", ([127, 0, 0, 1], 0).into());
        change(&mut settings);
        crate::app::keys::ensure_initial_keys(store.as_ref(), &master, &settings.algorithms, NOW).await.expect("keys");
        let clock = Arc::new(ManualClock::new(NOW));
        let with_mail = settings.smtp.is_some();
        let mut state = AppState::with_clock(settings, store, master, clock.clone()).await.expect("state");
        let mails = Arc::new(crate::app::mail::RecordingMailer::default());
        if with_mail {
            assert!(state.set_mailer(mails.clone()));
        }
        Self { state, clock, mails }
    }

    /// Registers a client (`change` adjusts the registration); its secret, if any.
    pub async fn client(&self, id: &str, change: impl FnOnce(&mut ClientRegistration)) -> (Client, Option<String>) {
        let mut r = ClientRegistration::new(id);
        r.redirect_uris = vec![CALLBACK.into()];
        r.skip_consent = true;
        change(&mut r);
        let given = match &r.secret {
            SecretChoice::Given(s) => Some(s.clone()),
            _ => None,
        };
        let registered = r.register(NOW).expect("a valid registration");
        let event = khoa_core::audit::Event::new(NOW, "client.created", khoa_core::audit::Actor::CommandLine)
            .client(&registered.client.client_id);
        self.state.store.insert_client(&registered.client, &event).await.expect("insert");
        (registered.client, registered.plaintext_secret.or(given))
    }

    /// A form POST, with `Authorization: Basic` when `basic` is given.
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> Answer {
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let mut req = Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some((id, secret)) = basic {
            let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let creds = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(id), enc(secret)));
            req = req.header(header::AUTHORIZATION, format!("Basic {creds}"));
        }
        self.send(req.body(Body::from(body)).expect("request")).await
    }

    /// Stores the code `handle` of the client `web` for a user `sv01` in a session
    /// `sid-1` (cookie [`Self::session_cookie`]), as the authorization endpoint would (redirect URI [`CALLBACK`], scope
    /// `openid`, no PKCE, 60 s).
    pub async fn stored_code(&self, handle: &str) {
        self.stored_code_with(handle, |_| {}).await
    }

    /// [`Self::stored_code`], the code adjusted by `change` before it is stored.
    pub async fn stored_code_with(&self, handle: &str, change: impl FnOnce(&mut AuthorizationCode)) {
        let store = &self.state.store;
        let user = match store.user_by_username("sv01").await.expect("read") {
            Some(u) => u,
            None => store.insert_user(&test_user(), &user_event()).await.expect("insert user"),
        };
        if store.session_by_sid("sid-1").await.expect("read").is_none() {
            let session = Session {
                id_hash: khoa_core::session::handle_hash(SESSION_HANDLE),
                sid: "sid-1".into(),
                user_id: user.id,
                auth_time: NOW,
                amr: vec!["pwd".into()],
                created_at: NOW,
                expires_at: NOW + 3600,
                ended_at: None,
                device: None,
                address: None,
                last_used_at: 0,
            };
            store.insert_session(&session).await.expect("insert session");
        }
        let mut code = AuthorizationCode {
            code_hash: khoa_core::session::handle_hash(handle),
            client_id: "web".into(),
            user_id: user.id,
            sid: "sid-1".into(),
            redirect_uri: CALLBACK.into(),
            redirect_uri_sent: true,
            scope: "openid".into(),
            nonce: None,
            code_challenge: None,
            auth_time: NOW,
            amr: vec!["pwd".into()],
            created_at: self.clock.now(),
            expires_at: self.clock.now() + 60,
        };
        change(&mut code);
        store.insert_code(&code).await.expect("insert code");
    }

    /// The token response of the client `web` (secret `secret`) for a fresh code.
    pub async fn tokens_of_web(&self, secret: &str, handle: &str) -> Value {
        self.stored_code(handle).await;
        let form = [("grant_type", "authorization_code"), ("code", handle), ("redirect_uri", CALLBACK)];
        let answer = self.post_form("/oauth2/token", &form, Some(("web", secret))).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        answer.body
    }

    /// A GET with the given `Cookie` header values (`name=value`).
    pub async fn get(&self, path: &str, cookies: &[String]) -> Answer {
        let mut req = Request::get(path);
        if !cookies.is_empty() {
            req = req.header(header::COOKIE, cookies.join("; "));
        }
        self.send(req.body(Body::empty()).expect("request")).await
    }

    /// Stores the user `sv01` with the password `password`, unless it exists.
    pub async fn user_with_password(&self, password: &str) {
        let store = &self.state.store;
        if store.user_by_username("sv01").await.expect("read").is_none() {
            let hash = khoa_core::password::hash_password(password, Default::default()).expect("hash");
            let user = khoa_core::user::NewUser { password_hash: Some(hash), ..test_user() };
            store.insert_user(&user, &user_event()).await.expect("insert");
        }
    }

    /// The `Cookie` of the browser signed in to the session `sid-1`.
    pub fn session_cookie() -> String {
        format!("{}={SESSION_HANDLE}", crate::http::cookies::SESSION_COOKIE)
    }

    /// The rows of `table`.
    pub async fn rows(&self, table: &str) -> i64 {
        let counts = self.state.store.row_counts().await.expect("counts");
        counts.iter().find(|(t, _)| *t == table).map(|(_, n)| *n).expect("a counted table")
    }

    /// Sends a request from the client address [`PEER`] (unless it names its own).
    pub async fn send(&self, req: Request<Body>) -> Answer {
        Self::answer(crate::router(self.state.clone()), req).await
    }

    /// Sends a request to the admin listener's application; its answer must be one the
    /// OpenAPI document describes.
    pub async fn send_admin(&self, req: Request<Body>) -> Answer {
        let (method, path) = (req.method().to_string(), req.uri().to_string());
        let answer = Self::answer(crate::admin_router(self.state.clone()), req).await;
        let content_type = answer.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        static DOC: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
        let doc = DOC.get_or_init(|| {
            serde_json::to_value(crate::routes::admin::openapi::build("https://sso.example.vn")).expect("the document")
        });
        khoa_testkit::openapi::check_response(
            doc,
            &method,
            &path,
            answer.status.as_u16(),
            content_type,
            answer.text.as_bytes(),
        );
        answer
    }

    /// An admin API request with `token` as its Bearer token (none: no header) and a
    /// JSON body (with `Content-Type: application/json`) when given.
    pub async fn admin(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Answer {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = match body {
            Some(json) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        self.send_admin(req.body(body).expect("request")).await
    }

    /// Registers an admin client `id` with `scope` and returns a client_credentials
    /// access token for it.
    pub async fn admin_token(&self, id: &str, scope: &str) -> String {
        let scopes = scope.to_string();
        self.client(id, move |r| {
            r.redirect_uris.clear();
            r.grant_types = Some(vec![khoa_core::client::GrantType::ClientCredentials]);
            r.scopes = Some(scopes);
            r.secret = SecretChoice::Given(SECRET.into());
        })
        .await;
        let answer = self.post_form("/oauth2/token", &[("grant_type", "client_credentials")], Some((id, SECRET))).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        answer.body["access_token"].as_str().expect("an access token").to_string()
    }

    async fn answer(app: axum::Router, mut req: Request<Body>) -> Answer {
        if req.extensions().get::<ConnectInfo<SocketAddr>>().is_none() {
            req.extensions_mut().insert(ConnectInfo(PEER));
        }
        let res = app.oneshot(req).await.expect("the router answers");
        let (status, headers) = (res.status(), res.headers().clone());
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.expect("body");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Answer { status, headers, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null), text }
    }
}

pub fn user_event() -> khoa_core::audit::Event {
    khoa_core::audit::Event::new(NOW, "user.created", khoa_core::audit::Actor::CommandLine)
}

pub fn test_user() -> khoa_core::user::NewUser {
    khoa_core::user::NewUser {
        username: "sv01".into(),
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        email: Some("sv01@hutech.edu.vn".into()),
        email_verified: true,
        name: Some("Nguyễn Văn A".into()),
        phone_number: None,
        phone_number_verified: false,
        picture: None,
        attributes: Default::default(),
        created_at: NOW,
    }
}

/// A browser: cookies kept across requests, one address, English pages.
pub(crate) struct Browser<'a> {
    pub app: &'a TestApp,
    pub cookies: std::collections::BTreeMap<String, String>,
    pub peer: SocketAddr,
}

impl<'a> Browser<'a> {
    pub fn new(app: &'a TestApp) -> Self {
        Self { app, cookies: std::collections::BTreeMap::new(), peer: PEER }
    }

    pub fn at(mut self, peer: SocketAddr) -> Self {
        self.peer = peer;
        self
    }

    pub async fn send(&mut self, req: axum::http::request::Builder, body: Body) -> Answer {
        let mut req = req.header(header::ACCEPT_LANGUAGE, "en");
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req = req.header(header::COOKIE, jar.join("; "));
        }
        let mut req = req.body(body).unwrap();
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let answer = self.app.send(req).await;
        for set in answer.headers.get_all(header::SET_COOKIE).iter().filter_map(|v| v.to_str().ok()) {
            let (pair, attributes) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
        answer
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        self.send(Request::get(path), Body::empty()).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let req = Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        self.send(req, Body::from(body)).await
    }

    /// Posts the login form of `page` (its interaction and anti-forgery token) as
    /// `username` with `password`.
    pub async fn log_in(&mut self, page: &Answer, username: &str, password: &str) -> Answer {
        let interaction = input(&page.text, "interaction").expect("a login form");
        let csrf = input(&page.text, "csrf_token").expect("a login form");
        let form = [
            ("interaction", interaction.as_str()),
            ("csrf_token", csrf.as_str()),
            ("username", username),
            ("password", password),
        ];
        self.post("/oauth2/auth/login", &form).await
    }

    /// The first answer to an authorization request of `client` (code flow, `openid`)
    /// with `extra` parameters.
    pub async fn authorize(&mut self, client: &str, extra: &[(&str, &str)]) -> Answer {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([("client_id", client), ("redirect_uri", CALLBACK), ("response_type", "code")])
            .append_pair("scope", "openid")
            .extend_pairs(extra)
            .finish();
        self.get(&format!("/oauth2/auth?{query}")).await
    }

    /// From `back`, follows khoa's redirects to the client's callback, exchanges its code
    /// as `client` (secret [`SECRET`]) and returns the ID token's claims.
    pub async fn id_token_claims(&mut self, mut back: Answer, client: &str) -> Value {
        while back.status.is_redirection() && back.location().starts_with('/') {
            let location = back.location().to_string();
            back = self.get(&location).await;
        }
        assert!(back.location().starts_with(&format!("{CALLBACK}?code=")), "{} {}", back.status, back.text);
        let code = back.redirect_query()["code"].clone();
        let grant = [("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", CALLBACK)];
        let tokens = self.app.post_form("/oauth2/token", &grant, Some((client, SECRET))).await;
        assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text);
        let id_token = tokens.body["id_token"].as_str().expect("an ID token");
        let payload = id_token.split('.').nth(1).expect("a JWT");
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
            .expect("JSON claims")
    }

    /// Follows redirects within khoa (the account client's callback included).
    pub async fn follow(&mut self, mut answer: Answer) -> Answer {
        for _ in 0..10 {
            if !answer.status.is_redirection() {
                return answer;
            }
            let location = answer.location().to_string();
            let path = location.strip_prefix("https://sso.example.vn").unwrap_or(&location).to_string();
            answer = self.get(&path).await;
        }
        panic!("too many redirects");
    }
}

/// The first mail delivered that `wanted` picks.
pub(crate) async fn mail_where(
    app: &TestApp,
    wanted: impl Fn(&crate::app::mail::Mail) -> bool,
) -> crate::app::mail::Mail {
    for _ in 0..400 {
        if let Some(m) = app.mails.0.lock().unwrap().iter().find(|m| wanted(m)) {
            return m.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!(
        "no such mail among {:?}",
        app.mails.0.lock().unwrap().iter().map(|m| (&m.to, &m.subject)).collect::<Vec<_>>()
    );
}
