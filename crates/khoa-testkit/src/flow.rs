//! The authorization code flow as a test harness: a khoa process with a user, clients
//! made with the command line, a browser that signs in through the pages, and the
//! token and userinfo endpoints called directly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::browser::{inputs, location, query, Browser};
use crate::embedded::Embedded;
use crate::{run_cli, stdout_json, KhoaProcess, TestDatabase};
use base64::Engine;
use serde_json::Value;

pub const PASSWORD: &str = "mật khẩu rất dài";
/// Relying parties' callback: never contacted, the browser stops at the redirect.
pub const CALLBACK: &str = "http://127.0.0.1:9/callback";
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

pub struct Khoa {
    pub bin: String,
    pub server: Server,
    /// Declared last: the server stops before its database goes.
    pub db: TestDatabase,
}

/// A `khoa serve` process, or a server in the test's own process on a manual clock.
pub enum Server {
    Process(KhoaProcess),
    Embedded(Embedded),
}

impl Khoa {
    /// A server on `db` with the user `sv01`.
    pub fn new(bin: &str, db: TestDatabase) -> Self {
        Self::with_env(bin, db, &[])
    }

    pub fn with_env(bin: &str, db: TestDatabase, env: &[(&str, &str)]) -> Self {
        let server = Server::Process(KhoaProcess::start(bin, &db, env));
        let k = Self { bin: bin.to_string(), db, server };
        k.user("sv01");
        k
    }

    /// A server in this process on a [`ManualClock`](khoa_core::clock::ManualClock)
    /// (`khoa.clock()`), with the user `sv01`; `configure` adjusts its settings.
    pub async fn embedded(bin: &str, db: TestDatabase, configure: impl FnOnce(&mut khoa_server::Settings)) -> Self {
        let server = Server::Embedded(Embedded::start(&db, configure).await);
        let k = Self { bin: bin.to_string(), db, server };
        k.user("sv01");
        k
    }

    /// The clock of an embedded server.
    pub fn clock(&self) -> &khoa_core::clock::ManualClock {
        match &self.server {
            Server::Embedded(e) => &e.clock,
            Server::Process(_) => panic!("a khoa process runs on the wall clock"),
        }
    }

    /// The `khoa serve` process.
    pub fn process(&self) -> &KhoaProcess {
        match &self.server {
            Server::Process(p) => p,
            Server::Embedded(_) => panic!("an embedded server is no process"),
        }
    }

    /// The `khoa serve` process, to stop it.
    pub fn into_process(self) -> KhoaProcess {
        match self.server {
            Server::Process(p) => p,
            Server::Embedded(_) => panic!("an embedded server is no process"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer())
    }

    pub fn issuer(&self) -> String {
        match &self.server {
            Server::Process(p) => p.base_url.clone(),
            Server::Embedded(e) => e.base_url.clone(),
        }
    }

    /// Registers a client with the test callback; returns its secret (if confidential).
    pub fn client(&self, id: &str, extra: &[&str]) -> Option<String> {
        let mut args = vec!["client", "create", "--id", id, "--redirect-uri", CALLBACK, "--name", "Ứng dụng mẫu"];
        args.extend_from_slice(extra);
        stdout_json(&run_cli(&self.bin, &self.db, &args, None))["client_secret"].as_str().map(str::to_string)
    }

    pub fn user(&self, username: &str) {
        let args = [
            "user",
            "create",
            "--username",
            username,
            "--password-stdin",
            "--email",
            "sv01@hutech.edu.vn",
            "--name",
            "Nguyễn Văn A",
        ];
        stdout_json(&run_cli(&self.bin, &self.db, &args, Some(PASSWORD)));
    }

    /// An authorization URL built by hand.
    pub fn authorize_url(&self, params: &[(&str, &str)]) -> String {
        authorize_url_at(&self.url(""), params)
    }

    /// A code for `client_id`, signing in as `username` where the pages ask.
    pub async fn code_as(&self, browser: &Browser, client_id: &str, username: &str, password: &str) -> String {
        let params = [
            ("client_id", client_id),
            ("redirect_uri", CALLBACK),
            ("response_type", "code"),
            ("scope", "openid profile"),
            ("state", "st"),
        ];
        let callback = sign_in(browser, self, &self.authorize_url(&params), username, password).await;
        query(&callback).get("code").cloned().unwrap_or_else(|| panic!("no code: {callback}"))
    }

    /// `POST /oauth2/introspect` with Basic client authentication.
    pub async fn introspect(&self, basic: (&str, &str), token: &str) -> (u16, reqwest::header::HeaderMap, Value) {
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let creds = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(basic.0), enc(basic.1)));
        let res = reqwest::Client::new()
            .post(self.url("/oauth2/introspect"))
            .header("authorization", format!("Basic {creds}"))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        let (status, headers) = (res.status().as_u16(), res.headers().clone());
        (status, headers, res.json().await.unwrap_or(Value::Null))
    }

    /// A code for `client_id` with the standard parameters plus `extra`.
    pub async fn code(&self, browser: &Browser, client_id: &str, extra: &[(&str, &str)]) -> String {
        let mut params = vec![
            ("client_id", client_id),
            ("redirect_uri", CALLBACK),
            ("response_type", "code"),
            ("scope", "openid profile"),
            ("state", "st"),
        ];
        params.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        params.extend_from_slice(extra);
        let callback = sign_in(browser, self, &self.authorize_url(&params), "sv01", PASSWORD).await;
        query(&callback).get("code").cloned().unwrap_or_else(|| panic!("no code: {callback}"))
    }

    pub async fn token(
        &self,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = reqwest::Client::new().post(self.url("/oauth2/token")).form(form);
        if let Some((id, secret)) = basic {
            let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let creds = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(id), enc(secret)));
            req = req.header("authorization", format!("Basic {creds}"));
        }
        let res = req.send().await.unwrap();
        let (status, headers) = (res.status().as_u16(), res.headers().clone());
        (status, headers, res.json().await.unwrap_or(Value::Null))
    }

    /// Redeems `code` with Basic client authentication; the token response.
    pub async fn exchange(&self, code: &str, basic: (&str, &str)) -> Value {
        let form = [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", CALLBACK)];
        let (status, _, body) = self.token(&form, Some(basic)).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub async fn userinfo(&self, token: &str) -> (u16, reqwest::header::HeaderMap, Value) {
        let res = reqwest::Client::new().get(self.url("/userinfo")).bearer_auth(token).send().await.unwrap();
        let (status, headers) = (res.status().as_u16(), res.headers().clone());
        (status, headers, res.json().await.unwrap_or(Value::Null))
    }
}

/// Drives the browser from an authorization URL to the client's callback, logging in
/// and allowing consent where the pages ask. Returns the callback URL.
pub async fn sign_in(browser: &Browser, khoa: &Khoa, start: &str, username: &str, password: &str) -> String {
    let mut res = browser.get(start).await;
    for _ in 0..8 {
        match res.status().as_u16() {
            303 => {
                let next = location(&res, &khoa.issuer());
                if next.starts_with(CALLBACK) {
                    return next;
                }
                res = browser.get(&next).await;
            }
            200 => {
                let html = res.text().await.unwrap();
                let f = inputs(&html);
                if html.contains("action=\"/oauth2/auth/login\"") {
                    let form = [
                        ("interaction", f["interaction"].as_str()),
                        ("csrf_token", f["csrf_token"].as_str()),
                        ("username", username),
                        ("password", password),
                    ];
                    res = browser.post_form(&khoa.url("/oauth2/auth/login"), &form).await;
                } else {
                    assert!(html.contains("name=\"decision\" value=\"allow\""), "unexpected page: {html}");
                    let form = [
                        ("interaction", f["interaction"].as_str()),
                        ("csrf_token", f["csrf_token"].as_str()),
                        ("decision", "allow"),
                    ];
                    res = browser.post_form(&khoa.url("/oauth2/auth/consent"), &form).await;
                }
            }
            other => panic!("unexpected {other}: {}", res.text().await.unwrap_or_default()),
        }
    }
    panic!("no redirect to the client after 8 steps");
}

pub fn jwt_claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

pub fn jwt_header(jwt: &str) -> Value {
    let header = jwt.split('.').next().unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

/// The authorization endpoint of the server at `base` with `params`.
pub fn authorize_url_at(base: &str, params: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(&format!("{base}/oauth2/auth")).expect("a base URL");
    url.query_pairs_mut().extend_pairs(params);
    url.to_string()
}
