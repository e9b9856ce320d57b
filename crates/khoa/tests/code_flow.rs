//! The authorization code flow end to end: the real `khoa` binary on a random loopback
//! port, the `openidconnect` crate as the relying party, khoa's HTML login and consent
//! pages driven like a browser; on SQLite and on PostgreSQL. Every refusal of the
//! authorization, token and userinfo endpoints is tried.

use base64::Engine;
use khoa_testkit::browser::{inputs, location, query, Browser};
use khoa_testkit::{both_backends, run_cli, stdout_json, KhoaProcess, TestDatabase};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_khoa");
const PASSWORD: &str = "mật khẩu rất dài";
/// Relying parties' callback: never contacted, the browser stops at the redirect.
const CALLBACK: &str = "http://127.0.0.1:9/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

struct Khoa {
    db: TestDatabase,
    server: KhoaProcess,
}

impl Khoa {
    /// A server on `db` with the user `sv01`.
    fn new(db: TestDatabase) -> Self {
        let server = KhoaProcess::start(BIN, &db, &[]);
        let k = Self { db, server };
        k.user("sv01");
        k
    }

    fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    fn issuer(&self) -> String {
        self.server.base_url.clone()
    }

    /// Registers a client with the test callback; returns its secret (if confidential).
    fn client(&self, id: &str, extra: &[&str]) -> Option<String> {
        let mut args = vec!["client", "create", "--id", id, "--redirect-uri", CALLBACK, "--name", "Ứng dụng mẫu"];
        args.extend_from_slice(extra);
        stdout_json(&run_cli(BIN, &self.db, &args, None))["client_secret"].as_str().map(str::to_string)
    }

    fn user(&self, username: &str) {
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
        stdout_json(&run_cli(BIN, &self.db, &args, Some(PASSWORD)));
    }

    /// An authorization URL built by hand.
    fn authorize_url(&self, params: &[(&str, &str)]) -> String {
        let mut url = url::Url::parse(&self.url("/oauth2/auth")).unwrap();
        url.query_pairs_mut().extend_pairs(params);
        url.to_string()
    }

    /// A code for `client_id` with the standard parameters plus `extra`.
    async fn code(&self, browser: &Browser, client_id: &str, extra: &[(&str, &str)]) -> String {
        let mut params = vec![
            ("client_id", client_id),
            ("redirect_uri", CALLBACK),
            ("response_type", "code"),
            ("scope", "openid profile"),
            ("state", "st"),
        ];
        params.extend_from_slice(extra);
        let callback = sign_in(browser, self, &self.authorize_url(&params), "sv01", PASSWORD).await;
        query(&callback)["code"].clone()
    }

    async fn token(
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

    async fn userinfo(&self, token: &str) -> (u16, reqwest::header::HeaderMap, Value) {
        let res = reqwest::Client::new().get(self.url("/userinfo")).bearer_auth(token).send().await.unwrap();
        let (status, headers) = (res.status().as_u16(), res.headers().clone());
        (status, headers, res.json().await.unwrap_or(Value::Null))
    }
}

/// Drives the browser from an authorization URL to the client's callback, logging in
/// and allowing consent where the pages ask. Returns the callback URL.
async fn sign_in(browser: &Browser, khoa: &Khoa, start: &str, username: &str, password: &str) -> String {
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

fn http() -> openidconnect::reqwest::Client {
    openidconnect::reqwest::ClientBuilder::new()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn jwt_claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn jwt_header(jwt: &str) -> Value {
    let header = jwt.split('.').next().unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

/// A confidential client logs the user in through the pages (login, consent); a second
/// client in the same browser gets its code without a login page (single sign-on).
async fn confidential_client_and_single_sign_on(db: TestDatabase) {
    let khoa = Khoa::new(db);
    let secret = khoa.client("portal", &["--secret", "a:b%c-0123456789-0123456789-0123456789"]);
    assert_eq!(secret.as_deref(), Some("a:b%c-0123456789-0123456789-0123456789"));
    khoa.client("library", &["--skip-consent"]);

    let http = http();
    let meta = CoreProviderMetadata::discover_async(IssuerUrl::new(khoa.issuer()).unwrap(), &http).await.unwrap();
    let client =
        CoreClient::from_provider_metadata(meta.clone(), ClientId::new("portal".into()), secret.map(ClientSecret::new))
            .set_redirect_uri(RedirectUrl::new(CALLBACK.into()).unwrap());
    let (auth_url, csrf, nonce) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .url();

    let browser = Browser::new();
    let callback = sign_in(&browser, &khoa, auth_url.as_str(), "sv01", PASSWORD).await;
    let q = query(&callback);
    assert_eq!(q["state"], *csrf.secret(), "state is returned exactly");
    assert_eq!(q["iss"], khoa.issuer(), "RFC 9207 iss");

    let tokens =
        client.exchange_code(AuthorizationCode::new(q["code"].clone())).unwrap().request_async(&http).await.unwrap();
    let id_token = tokens.id_token().unwrap();
    let verifier = client.id_token_verifier();
    let claims = id_token.claims(&verifier, &nonce).unwrap();
    let at_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&at_hash));
    assert!(claims.auth_time().is_some());
    let raw = jwt_claims(&id_token.to_string());
    assert_eq!(raw["azp"], "portal");
    assert!(raw["sid"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(raw["amr"], serde_json::json!(["pwd"]));
    let sub = claims.subject().to_string();
    assert_eq!(tokens.token_type().as_ref(), "bearer");
    let scopes: Vec<String> = tokens.scopes().unwrap().iter().map(|s| s.to_string()).collect();
    assert!(scopes.contains(&"email".to_string()) && scopes.contains(&"openid".to_string()));

    // RFC 9068 access token.
    let at = tokens.access_token().secret();
    assert_eq!(jwt_header(at)["typ"], "at+jwt");
    let at_claims = jwt_claims(at);
    for claim in ["iss", "sub", "aud", "client_id", "exp", "iat", "jti", "scope"] {
        assert!(at_claims.get(claim).is_some(), "access token lacks {claim}");
    }
    assert_eq!(at_claims["sub"], sub.as_str());

    let info: CoreUserInfoClaims =
        client.user_info(tokens.access_token().clone(), None).unwrap().request_async(&http).await.unwrap();
    assert_eq!(info.subject().as_str(), sub);
    assert_eq!(info.email().unwrap().as_str(), "sv01@hutech.edu.vn");
    assert_eq!(info.preferred_username().unwrap().as_str(), "sv01");
    assert_eq!(info.name().unwrap().get(None).unwrap().as_str(), "Nguyễn Văn A");

    // Single sign-on: the second app gets a code at once, for the same user.
    let sso = khoa.authorize_url(&[
        ("client_id", "library"),
        ("redirect_uri", CALLBACK),
        ("response_type", "code"),
        ("scope", "openid"),
        ("state", "x"),
    ]);
    let res = browser.get(&sso).await;
    assert_eq!(res.status(), 303, "no login page the second time");
    let code = query(&location(&res, &khoa.issuer()))["code"].clone();
    let (status, _, body) = khoa
        .token(
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CALLBACK),
                ("client_id", "library"),
            ],
            None,
        )
        .await;
    assert_eq!(status, 401, "library is confidential and sent no secret: {body}");

    // Consent is remembered for the same scopes: no consent page the second time.
    let (again, _, _) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("email".into()))
        .url();
    assert_eq!(browser.get(again.as_str()).await.status(), 303);
}

/// A public client with PKCE and an ES256 (then EdDSA) ID token.
async fn public_client_with_pkce(db: TestDatabase) {
    let khoa = Khoa::new(db);
    for (id, alg, core_alg) in [
        ("mobile", "ES256", CoreJwsSigningAlgorithm::EcdsaP256Sha256),
        ("mobile-ed", "EdDSA", CoreJwsSigningAlgorithm::EdDsa),
    ] {
        assert!(khoa.client(id, &["--public", "--skip-consent", "--id-token-alg", alg]).is_none());
        let http = http();
        let meta = CoreProviderMetadata::discover_async(IssuerUrl::new(khoa.issuer()).unwrap(), &http).await.unwrap();
        let client = CoreClient::from_provider_metadata(meta, ClientId::new(id.into()), None)
            .set_redirect_uri(RedirectUrl::new(CALLBACK.into()).unwrap());
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (auth_url, _, nonce) = client
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge)
            .url();
        let callback = sign_in(&Browser::new(), &khoa, auth_url.as_str(), "sv01", PASSWORD).await;
        let tokens = client
            .exchange_code(AuthorizationCode::new(query(&callback)["code"].clone()))
            .unwrap()
            .set_pkce_verifier(verifier)
            .request_async(&http)
            .await
            .unwrap();
        let id_token = tokens.id_token().unwrap();
        assert_eq!(jwt_header(&id_token.to_string())["alg"], alg);
        let verifier = client.id_token_verifier().set_allowed_algs(vec![core_alg]);
        id_token.claims(&verifier, &nonce).unwrap();
        let info: CoreUserInfoClaims =
            client.user_info(tokens.access_token().clone(), None).unwrap().request_async(&http).await.unwrap();
        assert_eq!(info.preferred_username().unwrap().as_str(), "sv01");
    }
}

/// Two (and more) parallel redemptions of one code: exactly one succeeds.
async fn parallel_redemptions_give_exactly_one_token(db: TestDatabase) {
    let khoa = Khoa::new(db);
    khoa.client("spa", &["--public", "--skip-consent"]);
    let code =
        khoa.code(&Browser::new(), "spa", &[("code_challenge", CHALLENGE), ("code_challenge_method", "S256")]).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
        ("client_id", "spa"),
        ("code_verifier", VERIFIER),
    ];
    let attempts = (0..8).map(|_| khoa.token(&form, None));
    let results = futures::future::join_all(attempts).await;
    let ok = results.iter().filter(|(s, _, _)| *s == 200).count();
    assert_eq!(ok, 1, "{:?}", results.iter().map(|r| (r.0, r.2.clone())).collect::<Vec<_>>());
    for (status, _, body) in results.iter().filter(|(s, _, _)| *s != 200) {
        assert_eq!((*status, body["error"].as_str()), (400, Some("invalid_grant")));
    }
}

/// RFC 6749 §4.1.2: a replayed code is refused and every token issued from it revoked.
async fn replayed_code_revokes_its_tokens(db: TestDatabase) {
    let khoa = Khoa::new(db);
    let secret = khoa.client("portal", &["--skip-consent"]).unwrap();
    let code = khoa.code(&Browser::new(), "portal", &[]).await;
    let form = [("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", CALLBACK)];
    let (status, headers, body) = khoa.token(&form, Some(("portal", &secret))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["pragma"], "no-cache");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].is_i64());
    let access = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(khoa.userinfo(&access).await.0, 200);
    let (status, _, body) = khoa.token(&form, Some(("portal", &secret))).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    let (status, headers, body) = khoa.userinfo(&access).await;
    assert_eq!(status, 401, "the token from a replayed code must be revoked");
    assert_eq!(body["error"], "invalid_token");
    assert!(headers["www-authenticate"].to_str().unwrap().contains("error=\"invalid_token\""));
}

both_backends!(
    confidential_client_and_single_sign_on,
    public_client_with_pkce,
    parallel_redemptions_give_exactly_one_token,
    replayed_code_revokes_its_tokens,
);
