//! The authorization code flow end to end: the real `khoa` binary on a random loopback
//! port, the `openidconnect` crate as the relying party, khoa's HTML login and consent
//! pages driven like a browser; on SQLite and on PostgreSQL. The endpoints' refusals, one
//! rule a test, are in-process beside each route (khoa-server `routes::*::tests`).

use khoa_testkit::browser::{inputs, location, query, Browser};
use khoa_testkit::flow::{jwt_claims, jwt_header, sign_in, Khoa, CALLBACK, CHALLENGE, PASSWORD, VERIFIER};
use khoa_testkit::{both_backends, TestDatabase};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};

const BIN: &str = env!("CARGO_BIN_EXE_khoa");

fn http() -> openidconnect::reqwest::Client {
    openidconnect::reqwest::ClientBuilder::new()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A confidential client logs the user in through the pages (login, consent); a second
/// client in the same browser gets its code without a login page (single sign-on).
async fn confidential_client_and_single_sign_on(db: TestDatabase) {
    let khoa = Khoa::new(BIN, db);
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
    let khoa = Khoa::new(BIN, db);
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
    let khoa = Khoa::new(BIN, db);
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
    let khoa = Khoa::new(BIN, db);
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

/// The error of a 303 back to the client (its `state` and `iss` checked).
async fn redirect_error(khoa: &Khoa, browser: &Browser, params: &[(&str, &str)]) -> String {
    let res = browser.get(&khoa.authorize_url(params)).await;
    assert_eq!(res.status(), 303, "{params:?}: {}", res.text().await.unwrap_or_default());
    let q = query(&location(&res, &khoa.issuer()));
    assert_eq!((q.get("state").map(String::as_str), &q["iss"]), (Some("s&t=ä"), &khoa.issuer()));
    q["error"].clone()
}

async fn pages_sessions_consent_and_prompts(db: TestDatabase) {
    let khoa = Khoa::embedded(BIN, db, |_| {}).await;
    let secret = khoa.client("web", &["--logo-uri", "https://app.example/logo.png"]).unwrap();
    let b = Browser::new();
    let auth = |extra: &[(&'static str, &'static str)]| {
        let mut p = vec![
            ("client_id", "web"),
            ("redirect_uri", CALLBACK),
            ("response_type", "code"),
            ("scope", "openid email"),
            ("state", "s&t=ä"),
        ];
        p.extend_from_slice(extra);
        khoa.authorize_url(&p)
    };

    // The login page: language, client name and logo, headers, login_hint.
    let res = b.get(&auth(&[("login_hint", "sv01")])).await;
    assert_eq!(res.status(), 200);
    let h = res.headers().clone();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    // A login may end in a 303 straight to the client; browsers check form-action on it.
    assert!(csp.contains("form-action 'self' http://127.0.0.1:9"), "{csp}");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["cache-control"], "no-store");
    let html = res.text().await.unwrap();
    assert!(html.contains("<html lang=\"vi\">") && html.contains("Đăng nhập"), "Vietnamese by default");
    assert!(html.contains("Ứng dụng mẫu") && html.contains("https://app.example/logo.png"));
    assert!(
        html.contains("<form method=\"post\"")
            && html.contains("name=\"username\"")
            && html.contains("name=\"password\"")
    );
    assert_eq!(inputs(&html)["username"], "sv01", "login_hint pre-fills the username");
    let en = b.get(&auth(&[("ui_locales", "en")])).await.text().await.unwrap();
    assert!(en.contains("<html lang=\"en\">") && en.contains("Sign in"));
    let accept_en =
        b.http.get(auth(&[])).header("accept-language", "en-GB,en;q=0.8").send().await.unwrap().text().await.unwrap();
    assert!(accept_en.contains("<html lang=\"en\">"));
    let ui_over_accept = b
        .http
        .get(auth(&[("ui_locales", "vi")]))
        .header("accept-language", "en")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(ui_over_accept.contains("<html lang=\"vi\">"));

    // Wrong password and unknown user: one generic message, no session.
    let f = inputs(&en);
    let login = |user: &'static str, pw: &'static str, f: &std::collections::HashMap<String, String>| {
        let form = vec![
            ("interaction", f["interaction"].clone()),
            ("csrf_token", f["csrf_token"].clone()),
            ("username", user.into()),
            ("password", pw.into()),
        ];
        let b = &b;
        let url = khoa.url("/oauth2/auth/login");
        async move { b.http.post(url).form(&form).send().await.unwrap() }
    };
    let wrong = login("sv01", "wrong password", &f).await;
    assert_eq!(wrong.status(), 200);
    assert!(wrong.headers().get("set-cookie").is_none());
    let wrong = wrong.text().await.unwrap();
    let unknown = login("nobody", "wrong password", &f).await.text().await.unwrap();
    assert!(wrong.contains("Incorrect username or password.") && unknown.contains("Incorrect username or password."));

    // CSRF: a wrong token, or the right fields from another browser, are refused.
    let mut forged = f.clone();
    forged.insert("csrf_token".into(), "forged".into());
    assert_eq!(login("sv01", PASSWORD, &forged).await.status(), 400);
    let other = Browser::new();
    let form = [
        ("interaction", f["interaction"].as_str()),
        ("csrf_token", f["csrf_token"].as_str()),
        ("username", "sv01"),
        ("password", PASSWORD),
    ];
    assert_eq!(other.post_form(&khoa.url("/oauth2/auth/login"), &form).await.status(), 400);

    // Success: 303 and the session cookie.
    let ok = login("sv01", PASSWORD, &f).await;
    assert_eq!(ok.status(), 303);
    let cookie = ok.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with("khoa_session="), "{cookie}");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=86400"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    assert!(!cookie.contains("Secure"), "http issuer: no Secure");
    let first_session = cookie.split(';').next().unwrap().to_string();

    // Consent: scopes in plain words; deny → access_denied.
    let consent = b.get(&location(&ok, &khoa.issuer())).await;
    assert_eq!(consent.status(), 200);
    let consent = consent.text().await.unwrap();
    assert!(
        consent.contains("Your email address") && consent.contains("name=\"decision\" value=\"allow\""),
        "{consent}"
    );
    let f = inputs(&consent);
    let deny = b
        .post_form(
            &khoa.url("/oauth2/auth/consent"),
            &[("interaction", &f["interaction"]), ("csrf_token", &f["csrf_token"]), ("decision", "deny")],
        )
        .await;
    let q = query(&location(&deny, &khoa.issuer()));
    assert_eq!((q["error"].as_str(), q["state"].as_str()), ("access_denied", "s&t=ä"));

    // prompt=none: logged in but no consent → consent_required.
    assert_eq!(
        redirect_error(
            &khoa,
            &b,
            &[
                ("client_id", "web"),
                ("redirect_uri", CALLBACK),
                ("response_type", "code"),
                ("scope", "openid email"),
                ("state", "s&t=ä"),
                ("prompt", "none")
            ]
        )
        .await,
        "consent_required"
    );
    // Allow once; then prompt=none gives a code with no UI, and the nonce comes back.
    let callback = sign_in(&b, &khoa, &auth(&[]), "sv01", PASSWORD).await;
    assert!(query(&callback).contains_key("code"));
    let res = b.get(&auth(&[("prompt", "none"), ("nonce", "n-0S6_WzA2Mj")])).await;
    assert_eq!(res.status(), 303);
    let code = query(&location(&res, &khoa.issuer()))["code"].clone();
    let body = khoa.exchange(&code, ("web", &secret)).await;
    assert_eq!(jwt_claims(body["id_token"].as_str().unwrap())["nonce"], "n-0S6_WzA2Mj", "nonce echoed unchanged");
    // A valid id_token_hint for the logged-in user is accepted.
    let hint: &'static str = Box::leak(body["id_token"].as_str().unwrap().to_string().into_boxed_str());
    let res = b.get(&auth(&[("prompt", "none"), ("id_token_hint", hint)])).await;
    assert!(query(&location(&res, &khoa.issuer())).contains_key("code"), "id_token_hint refused");

    // prompt=consent asks again.
    let res = b.get(&auth(&[("prompt", "consent")])).await;
    assert!(res.text().await.unwrap().contains("value=\"allow\""));

    // prompt=login: a new login, a later auth_time, and a new session id.
    khoa.clock().advance(1);
    let res = b.get(&auth(&[("prompt", "login")])).await;
    let html = res.text().await.unwrap();
    assert!(html.contains("action=\"/oauth2/auth/login\""), "prompt=login shows the login page");
    let f = inputs(&html);
    let ok = login("sv01", PASSWORD, &f).await;
    let second_session = ok.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    assert_ne!(first_session, second_session, "the session id is rotated on login");
    // …and the code it leads to carries a later auth_time.
    let first_auth_time = jwt_claims(hint)["auth_time"].as_i64().unwrap();
    let callback = b.get(&location(&ok, &khoa.issuer())).await;
    let code = query(&location(&callback, &khoa.issuer()))["code"].clone();
    let body = khoa.exchange(&code, ("web", &secret)).await;
    assert!(jwt_claims(body["id_token"].as_str().unwrap())["auth_time"].as_i64().unwrap() > first_auth_time);
    // The old session is over: its cookie alone gets no single sign-on.
    let stale = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let res = stale.get(auth(&[("prompt", "none")])).header("cookie", &first_session).send().await.unwrap();
    assert_eq!(query(&location(&res, &khoa.issuer()))["error"], "login_required");

    // max_age exceeded forces a login.
    khoa.clock().advance(1);
    let res = b.get(&auth(&[("max_age", "0")])).await;
    assert!(res.text().await.unwrap().contains("action=\"/oauth2/auth/login\""));
}

/// The status of a form POST with a `len`-byte body, written over a raw socket.
async fn raw_status(khoa: &Khoa, path: &str, len: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", khoa.process().port)).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let _ = stream.write_all(&vec![b'a'; len]).await; // the server may close early
    let mut response = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response);
    text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Malformed input of every kind is a 4xx, never a 5xx or a hang.
async fn malformed_input_is_refused_with_4xx(db: TestDatabase) {
    let khoa = Khoa::new(BIN, db);
    khoa.client("web", &[]);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let form = "application/x-www-form-urlencoded";
    // Oversized bodies: 413 (written over a raw socket, since the server may stop
    // reading).
    for path in ["/oauth2/token", "/oauth2/auth/login", "/oauth2/auth", "/userinfo"] {
        assert_eq!(raw_status(&khoa, path, 100 * 1024).await, 413, "{path}");
    }
    let cases: Vec<(&str, &str, Option<&str>, Vec<u8>)> = vec![
        (
            "POST",
            "/oauth2/token",
            Some(form),
            b"grant_type=authorization_code&code=\xff\xfe&client_id=\xc3\x28".to_vec(),
        ),
        ("POST", "/oauth2/token", Some(form), b"%%%&&&===".to_vec()),
        ("POST", "/oauth2/token", Some("text/plain"), b"grant_type=authorization_code".to_vec()),
        ("POST", "/oauth2/auth/login", Some(form), b"interaction=\xff&csrf_token=x".to_vec()),
        ("POST", "/oauth2/auth/consent", Some(form), b"decision=allow".to_vec()),
        ("GET", "/oauth2/auth/continue?interaction=nope", None, vec![]),
        ("GET", "/oauth2/auth/continue", None, vec![]),
        ("GET", "/oauth2/auth?client_id=%zz&redirect_uri=%ff", None, vec![]),
        ("GET", "/oauth2/auth?client_id=web&client_id=web", None, vec![]),
        ("POST", "/userinfo", Some(form), b"access_token=%ff%fe".to_vec()),
        ("GET", "/userinfo", None, vec![]),
    ];
    for (method, path, content_type, body) in cases {
        let mut req = http.request(method.parse().unwrap(), khoa.url(path)).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let status = req.send().await.unwrap().status().as_u16();
        assert!((400..500).contains(&status), "{method} {path}: {status}");
    }
    let status = http
        .get(khoa.url("/userinfo"))
        .header("authorization", "Bearer \u{7f}")
        .send()
        .await
        .map(|r| r.status().as_u16());
    assert!(status.map_or(true, |s| (400..500).contains(&s)));
    assert_eq!(reqwest::get(khoa.url("/health/ready")).await.unwrap().status(), 200, "still serving");
}

/// Product name, logo and primary colour come from the configuration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branding_by_configuration() {
    let env = [
        ("KHOA_BRAND_NAME", "Cổng SSO HUTECH"),
        ("KHOA_BRAND_LOGO_URL", "https://sso.example.vn/logo.svg"),
        ("KHOA_BRAND_COLOR", "#C8102E"),
    ];
    let khoa = Khoa::with_env(BIN, khoa_testkit::test_database(khoa_testkit::Backend::Sqlite).await, &env);
    khoa.client("web", &[]);
    let url = khoa.authorize_url(&[
        ("client_id", "web"),
        ("redirect_uri", CALLBACK),
        ("response_type", "code"),
        ("scope", "openid"),
    ]);
    let html = Browser::new().get(&url).await.text().await.unwrap();
    assert!(html.contains("Cổng SSO HUTECH") && html.contains("https://sso.example.vn/logo.svg"), "{html}");
    assert!(html.contains("/assets/theme.css"));
    let theme = reqwest::get(khoa.url("/assets/theme.css")).await.unwrap().text().await.unwrap();
    assert!(theme.contains("--primary: #c8102e"), "{theme}");
}

/// A client with a shared secret authenticates with it in the header or in the body,
/// whatever it registered (the Python libraries most used send it in the body by
/// default); a refusal spends nothing; the registered method is shown and can be
/// changed with the command line.
async fn a_client_secret_works_in_the_header_or_the_body(db: TestDatabase) {
    let khoa = Khoa::new(BIN, db);
    let basic_secret = khoa.client("by-header", &["--skip-consent"]).unwrap();
    let post_secret =
        khoa.client("by-body", &["--skip-consent", "--token-endpoint-auth-method", "client_secret_post"]).unwrap();
    let b = Browser::new();
    let grant = |code: &str| {
        vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code.to_string()),
            ("redirect_uri", CALLBACK.into()),
        ]
    };
    let in_body = |code: &str, id: &'static str, secret: &str| {
        let mut form = grant(code);
        form.extend([("client_id", id.to_string()), ("client_secret", secret.to_string())]);
        form
    };
    let send = |form: Vec<(&'static str, String)>, basic: Option<(&'static str, String)>| {
        let khoa = &khoa;
        async move {
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, _, body) = khoa.token(&form, basic.as_ref().map(|(id, s)| (*id, s.as_str()))).await;
            (status, body["error"].clone(), body["error_description"].clone())
        }
    };

    // The default client, with its secret in the body; the other in the header.
    let code = khoa.code(&b, "by-header", &[]).await;
    assert_eq!(send(in_body(&code, "by-header", "wrong-secret"), None).await.0, 401, "a wrong secret in the body");
    assert_eq!(send(in_body(&code, "by-header", &basic_secret), None).await.0, 200, "the code was not spent");
    let code = khoa.code(&b, "by-body", &[]).await;
    assert_eq!(send(grant(&code), Some(("by-body", post_secret.clone()))).await.0, 200, "in the header");
    // Without any secret: refused, saying what to send.
    let code = khoa.code(&b, "by-header", &[]).await;
    let mut no_secret = grant(&code);
    no_secret.push(("client_id", "by-header".into()));
    assert_eq!(
        send(no_secret, None).await,
        (
            401,
            "invalid_client".into(),
            "this client authenticates with its client_secret (the Authorization header, or client_id and \
             client_secret in the body)"
                .into()
        )
    );

    // Shown, and changed by `client update`.
    let shown =
        khoa_testkit::stdout_json(&khoa_testkit::run_cli(BIN, &khoa.db, &["client", "show", "by-header"], None));
    assert_eq!(shown["token_endpoint_auth_method"], "client_secret_basic");
    let args = ["client", "update", "by-header", "--token-endpoint-auth-method", "client_secret_post"];
    let updated = khoa_testkit::stdout_json(&khoa_testkit::run_cli(BIN, &khoa.db, &args, None));
    assert_eq!(updated["token_endpoint_auth_method"], "client_secret_post");
    // A public client has no secret method; an unknown method is refused.
    for (args, message) in [
        (
            &["--public", "--token-endpoint-auth-method", "client_secret_basic"][..],
            "a public client authenticates with none",
        ),
        (&["--token-endpoint-auth-method", "private_key_jwt"][..], "private_key_jwt"),
    ] {
        let mut all = vec!["client", "create", "--id", "odd", "--redirect-uri", CALLBACK];
        all.extend_from_slice(args);
        let out = khoa_testkit::run_cli(BIN, &khoa.db, &all, None);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains(message), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// `--access-token-alg`: a client's JWT access tokens are signed with its own
/// algorithm (its ID tokens keep theirs), published in the JWKS, accepted by userinfo
/// and introspection; an empty value returns to the server's algorithm.
async fn a_client_may_have_its_own_access_token_algorithm(db: TestDatabase) {
    let khoa = Khoa::new(BIN, db);
    let secret = khoa.client("api-es", &["--skip-consent", "--access-token-alg", "ES256"]).unwrap();
    let b = Browser::new();
    let tokens = khoa.exchange(&khoa.code(&b, "api-es", &[]).await, ("api-es", &secret)).await;
    let (at, id) = (tokens["access_token"].as_str().unwrap(), tokens["id_token"].as_str().unwrap());
    assert_eq!((jwt_header(at)["alg"].as_str(), jwt_header(at)["typ"].as_str()), (Some("ES256"), Some("at+jwt")));
    assert_eq!(jwt_header(id)["alg"], "RS256", "the ID token keeps its own algorithm");
    let kid = jwt_header(at)["kid"].as_str().unwrap().to_string();
    assert!(khoa_testkit::jwks_kids(&khoa.url("")).await.contains(&kid), "published");
    assert_eq!(khoa.userinfo(at).await.0, 200);
    assert_eq!(khoa.introspect(("api-es", &secret), at).await.2["active"], true);

    let show = |args: &[&str]| khoa_testkit::stdout_json(&khoa_testkit::run_cli(BIN, &khoa.db, args, None));
    assert_eq!(show(&["client", "show", "api-es"])["access_token_signed_response_alg"], "ES256");
    let cleared = show(&["client", "update", "api-es", "--access-token-alg="]);
    assert!(cleared.get("access_token_signed_response_alg").is_none(), "{cleared}");
    let mut rs256 = false;
    for _ in 0..40 {
        let tokens = khoa.exchange(&khoa.code(&b, "api-es", &[]).await, ("api-es", &secret)).await;
        if jwt_header(tokens["access_token"].as_str().unwrap())["alg"] == "RS256" {
            rs256 = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(rs256, "back to the server's algorithm");
    let out =
        khoa_testkit::run_cli(BIN, &khoa.db, &["client", "update", "api-es", "--access-token-alg", "HS256"], None);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--access-token-alg"));
}

both_backends!(
    a_client_may_have_its_own_access_token_algorithm,
    a_client_secret_works_in_the_header_or_the_body,
    confidential_client_and_single_sign_on,
    public_client_with_pkce,
    parallel_redemptions_give_exactly_one_token,
    replayed_code_revokes_its_tokens,
    pages_sessions_consent_and_prompts,
    malformed_input_is_refused_with_4xx,
);

/// authlib, a Python relying-party library, sends its secret in the body, as the most
/// used Python libraries (mozilla-django-oidc, django-allauth, flask-oidc) do by
/// default, to a client registered with the defaults (`client_secret_basic`): it gets
/// its tokens (the review found a 401 "this client authenticates with
/// client_secret_basic" here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authlib_sends_its_secret_in_the_body_to_a_client_registered_with_the_defaults() {
    let khoa = Khoa::new(BIN, khoa_testkit::test_database(khoa_testkit::Backend::Sqlite).await);
    let secret = khoa.client("django", &["--skip-consent"]).unwrap();
    let code = khoa.code(&Browser::new(), "django", &[]).await;
    const FETCH: &str = r#"
import json, sys, requests
from authlib.integrations.requests_client import OAuth2Session
issuer, client_id, secret, code, redirect_uri = sys.argv[1:6]
meta = requests.get(issuer + "/.well-known/openid-configuration").json()
session = OAuth2Session(client_id, secret, token_endpoint_auth_method="client_secret_post", redirect_uri=redirect_uri)
print(json.dumps(session.fetch_token(meta["token_endpoint"], grant_type="authorization_code", code=code)))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", FETCH, &khoa.issuer(), "django", &secret, &code, CALLBACK])
        .output()
        .expect("python3 with authlib (pip install authlib; the test command does it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(token["access_token"].is_string() && token["id_token"].is_string(), "{token}");
    let shown = khoa_testkit::stdout_json(&khoa_testkit::run_cli(BIN, &khoa.db, &["client", "show", "django"], None));
    assert_eq!(shown["token_endpoint_auth_method"], "client_secret_basic", "registered with the defaults");
}
