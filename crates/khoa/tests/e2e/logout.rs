//! Logout end to end, on SQLite and on PostgreSQL: RP-initiated logout (with and
//! without id_token_hint), front-channel iframes, back-channel notifications delivered
//! durably (retries, restarts, several processes), and every refusal.

use khoa_server::clock::Clock;
use khoa_testkit::browser::{inputs, location, query, Browser};
use khoa_testkit::flow::{jwt_claims, Khoa, Server, CALLBACK};
use khoa_testkit::receiver::{verify_with_jwks, Receiver};
use khoa_testkit::{both_backends, run_cli, stdout_json, Backend, KhoaProcess, TestDatabase};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_khoa");
const BYE: &str = "http://127.0.0.1:9/bye";
/// Fast retries for the tests.
const ENV: &[(&str, &str)] = &[("KHOA_BACKCHANNEL_BASE_DELAY", "1s")];

/// `portal` (front- and back-channel) and `library` (back-channel, offline_access),
/// both used in one browser session; returns library's secret and the token responses
/// of both.
async fn signed_in(khoa: &Khoa, rp: &Receiver, browser: &Browser) -> (String, Value, Value) {
    let (fc, bc, bc2) = (rp.url("/fc"), rp.url("/bc"), rp.url("/bc2"));
    let portal = khoa
        .client(
            "portal",
            &[
                "--skip-consent",
                "--post-logout-redirect-uri",
                BYE,
                "--frontchannel-logout-uri",
                &fc,
                "--backchannel-logout-uri",
                &bc,
            ],
        )
        .unwrap();
    let library = khoa.client("library", &["--skip-consent", "--backchannel-logout-uri", &bc2]).unwrap();
    let code = khoa.code(browser, "portal", &[("scope", "openid profile")]).await;
    let p = khoa.exchange(&code, ("portal", &portal)).await;
    let code = khoa.code(browser, "library", &[("scope", "openid offline_access")]).await;
    let l = khoa.exchange(&code, ("library", &library)).await;
    (library, p, l)
}

fn logout_url(khoa: &Khoa, params: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(&khoa.url("/oauth2/sessions/logout")).unwrap();
    url.query_pairs_mut().extend_pairs(params);
    url.to_string()
}

/// prompt=none in this browser: does it still have a session?
async fn logged_in(khoa: &Khoa, browser: &Browser) -> bool {
    let url = khoa.authorize_url(&[
        ("client_id", "portal"),
        ("redirect_uri", CALLBACK),
        ("response_type", "code"),
        ("scope", "openid"),
        ("prompt", "none"),
    ]);
    let res = browser.get(&url).await;
    query(&location(&res, &khoa.issuer())).contains_key("code")
}

async fn jwks(khoa: &Khoa) -> Value {
    reqwest::get(khoa.url("/.well-known/jwks.json")).await.unwrap().json().await.unwrap()
}

async fn logout_with_hint_front_and_back_channel(db: TestDatabase) {
    let khoa = Khoa::with_env(BIN, db, ENV);
    let rp = Receiver::start(0).await;
    let browser = Browser::new();
    let (library_secret, portal, library) = signed_in(&khoa, &rp, &browser).await;
    let id_token = portal["id_token"].as_str().unwrap();
    let id = jwt_claims(id_token);
    assert!(logged_in(&khoa, &browser).await);

    let res = browser
        .get(&logout_url(&khoa, &[("id_token_hint", id_token), ("post_logout_redirect_uri", BYE), ("state", "st&8")]))
        .await;
    assert_eq!(res.status(), 200, "the logged-out page loads the front-channel iframe first");
    let csp = res.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains(&format!("frame-src {}", rp.url("/fc"))), "{csp}");
    let cleared = res.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cleared.starts_with("khoa_session=;") && cleared.contains("Max-Age=0"), "{cleared}");
    let html = res.text().await.unwrap();
    let expected_frame = format!(
        "{}?iss={}&#38;sid={}",
        rp.url("/fc"),
        url::form_urlencoded::byte_serialize(khoa.issuer().as_bytes()).collect::<String>(),
        id["sid"].as_str().unwrap()
    );
    assert!(html.contains(&expected_frame), "front-channel iframe with iss and sid: {html}");
    assert!(html.contains("url=http://127.0.0.1:9/bye?state=st%268"), "redirect with exactly the state: {html}");
    assert!(!logged_in(&khoa, &browser).await, "prompt=none after logout: login_required");

    // Back-channel: one notification per client, verifiable against JWKS.
    let keys = jwks(&khoa).await;
    for (path, aud) in [("/bc", "portal"), ("/bc2", "library")] {
        let tokens = rp.wait_for(path, 1, 10).await;
        assert_eq!(tokens.len(), 1, "{path}");
        let (header, claims) = verify_with_jwks(&tokens[0], &keys).expect("signed by khoa");
        assert_eq!(header["typ"], "logout+jwt");
        assert_eq!(claims["iss"], khoa.issuer());
        assert_eq!(claims["aud"], aud);
        assert_eq!(claims["sub"], id["sub"]);
        assert_eq!(claims["sid"], id["sid"]);
        assert_eq!(claims["events"], serde_json::json!({"http://schemas.openid.net/event/backchannel-logout": {}}));
        assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
        let (iat, exp) = (claims["iat"].as_i64().unwrap(), claims["exp"].as_i64().unwrap());
        assert!(exp > iat && exp - iat <= 120);
        assert!(claims.get("nonce").is_none());
    }
    // Session-bound tokens are revoked; offline_access refresh tokens survive (OIDC Core §11).
    assert_eq!(khoa.userinfo(portal["access_token"].as_str().unwrap()).await.0, 401);
    assert_eq!(khoa.userinfo(library["access_token"].as_str().unwrap()).await.0, 401);
    let rt = library["refresh_token"].as_str().unwrap();
    let (status, _, body) =
        khoa.token(&[("grant_type", "refresh_token"), ("refresh_token", rt)], Some(("library", &library_secret))).await;
    assert_eq!(status, 200, "an offline_access refresh token outlives the session: {body}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let list = stdout_json(&run_cli(BIN, &khoa.db, &["logout-deliveries", "list", "--json"], None));
    assert_eq!(list.as_array().unwrap().iter().filter(|d| d["status"] == "delivered").count(), 2, "{list}");
}

async fn confirmation_without_hint(db: TestDatabase) {
    let khoa = Khoa::with_env(BIN, db, ENV);
    let rp = Receiver::start(0).await;
    let browser = Browser::new();
    signed_in(&khoa, &rp, &browser).await;

    // No parameters: a confirmation page (vi by default, en on request), nothing ends yet.
    let res = browser.get(&logout_url(&khoa, &[])).await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("<html lang=\"vi\">") && html.contains("Đăng xuất"));
    let en = browser.get(&logout_url(&khoa, &[("ui_locales", "en")])).await.text().await.unwrap();
    assert!(en.contains("<html lang=\"en\">") && en.contains("Sign out"));
    assert!(logged_in(&khoa, &browser).await);
    let f = inputs(&html);
    // A forged confirmation (wrong token, or from another browser) is refused.
    let forged = browser.post_form(&khoa.url("/oauth2/sessions/logout/confirm"), &[("csrf_token", "forged")]).await;
    assert_eq!(forged.status(), 400);
    let other = Browser::new();
    assert_eq!(
        other
            .post_form(&khoa.url("/oauth2/sessions/logout/confirm"), &[("csrf_token", &f["csrf_token"])])
            .await
            .status(),
        400
    );
    assert!(logged_in(&khoa, &browser).await);
    // Confirmed: logged out (iframes for portal), then prompt=none needs a login.
    let done =
        browser.post_form(&khoa.url("/oauth2/sessions/logout/confirm"), &[("csrf_token", &f["csrf_token"])]).await;
    assert_eq!(done.status(), 200);
    assert!(done.text().await.unwrap().contains(&rp.url("/fc")));
    assert!(!logged_in(&khoa, &browser).await);
    assert_eq!(rp.wait_for("/bc", 1, 10).await.len(), 1);

    // client_id and a registered URI without a hint: confirm, then redirect with state.
    let b2 = Browser::new();
    let _ = khoa.code(&b2, "library", &[]).await;
    let page = b2
        .get(&logout_url(&khoa, &[("client_id", "portal"), ("post_logout_redirect_uri", BYE), ("state", "s1")]))
        .await
        .text()
        .await
        .unwrap();
    let f = inputs(&page);
    assert_eq!(f["post_logout_redirect_uri"], BYE);
    let form: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let res = b2.post_form(&khoa.url("/oauth2/sessions/logout/confirm"), &form).await;
    assert_eq!(res.status(), 303, "library has no front-channel URI: straight to the redirect");
    assert_eq!(location(&res, &khoa.issuer()), format!("{BYE}?state=s1"));
}

/// The hint has expired, which does not matter for the browser's current session; sent
/// by POST. Without the session's cookie (another browser), the same hint ends nothing
/// (security.rs: an_id_token_alone_logs_nobody_out).
async fn logout_by_hint_without_cookie(db: TestDatabase) {
    let khoa = Khoa::embedded(BIN, db, |s| s.backchannel.base_delay = 1).await;
    let rp = Receiver::start(0).await;
    let browser = Browser::new();
    signed_in(&khoa, &rp, &browser).await;
    let short = khoa.client("short", &["--skip-consent", "--id-token-lifetime", "1s"]).unwrap();
    let code = khoa.code(&browser, "short", &[]).await;
    let hint = khoa.exchange(&code, ("short", &short)).await["id_token"].as_str().unwrap().to_string();
    khoa.clock().advance(2);
    assert!(jwt_claims(&hint)["exp"].as_i64().unwrap() < khoa.clock().now(), "the hint has expired");
    let cookieless = Browser::new();
    let res = cookieless.post_form(&khoa.url("/oauth2/sessions/logout"), &[("id_token_hint", &hint)]).await;
    assert_eq!(res.status(), 200);
    assert!(logged_in(&khoa, &browser).await, "a hint alone ends no session");
    assert!(rp.received("/bc").is_empty());
    let res = browser.post_form(&khoa.url("/oauth2/sessions/logout"), &[("id_token_hint", &hint)]).await;
    assert_eq!(res.status(), 200);
    assert!(!logged_in(&khoa, &browser).await, "the browser's own session named by the hint has ended");
    assert_eq!(rp.wait_for("/bc", 1, 10).await.len(), 1, "and its clients are told");
}

both_backends!(logout_with_hint_front_and_back_channel, confirmation_without_hint, logout_by_hint_without_cookie,);

/// A receiver that fails twice then accepts: three attempts, three distinct tokens;
/// a receiver that answers 400: given up at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backchannel_retries_and_permanent_failures() {
    // Retries are due by the server's clock, which the test moves; the worker looks
    // for due notices every 50 ms.
    let khoa = Khoa::embedded(BIN, khoa_testkit::test_database(Backend::Sqlite).await, |s| {
        s.backchannel.base_delay = 1;
        s.backchannel_poll = std::time::Duration::from_millis(50);
    })
    .await;
    let rp = Receiver::start(0).await;
    rp.answer_with("/bc", &[503, 500]);
    let browser = Browser::new();
    signed_in(&khoa, &rp, &browser).await;
    let html = browser.get(&logout_url(&khoa, &[])).await.text().await.unwrap();
    browser
        .post_form(&khoa.url("/oauth2/sessions/logout/confirm"), &[("csrf_token", &inputs(&html)["csrf_token"])])
        .await;
    // First attempt at once; each retry only once its delay (1 s, then 2 s) has passed.
    let mut tokens = rp.wait_for("/bc", 1, 10).await;
    assert_eq!(tokens.len(), 1, "the first attempt");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(rp.received("/bc").len(), 1, "no retry before its delay has passed");
    for _ in 0..60 {
        if tokens.len() == 3 {
            break;
        }
        khoa.clock().advance(1);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        tokens = rp.received("/bc");
    }
    assert_eq!(tokens.len(), 3, "two failures, then delivered");
    let jtis: std::collections::HashSet<String> =
        tokens.iter().map(|t| jwt_claims(t)["jti"].as_str().unwrap().to_string()).collect();
    assert_eq!(jtis.len(), 3, "a fresh token per attempt");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let list = stdout_json(&run_cli(BIN, &khoa.db, &["logout-deliveries", "list", "--json"], None));
    let portal_delivery = list.as_array().unwrap().iter().find(|d| d["client_id"] == "portal").unwrap().clone();
    assert_eq!(
        (portal_delivery["status"].as_str(), portal_delivery["attempts"].as_i64()),
        (Some("delivered"), Some(3))
    );

    // 400: a permanent failure, kept for inspection.
    let b2 = Browser::new();
    let _ = khoa.code(&b2, "portal", &[]).await;
    rp.answer_with("/bc", &[400]);
    let html = b2.get(&logout_url(&khoa, &[])).await.text().await.unwrap();
    b2.post_form(&khoa.url("/oauth2/sessions/logout/confirm"), &[("csrf_token", &inputs(&html)["csrf_token"])]).await;
    let deliveries = || stdout_json(&run_cli(BIN, &khoa.db, &["logout-deliveries", "list", "--json"], None));
    let mut list = deliveries();
    for _ in 0..50 {
        if list.as_array().unwrap().iter().any(|d| d["status"] == "failed") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        list = deliveries();
    }
    let failed: Vec<&Value> = list.as_array().unwrap().iter().filter(|d| d["status"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{list}");
    assert_eq!((failed[0]["attempts"].as_i64(), failed[0]["last_status"].as_i64()), (Some(1), Some(400)));
    let table = String::from_utf8(run_cli(BIN, &khoa.db, &["logout-deliveries", "list"], None).stdout).unwrap();
    assert!(table.contains("failed") && table.contains("delivered"), "{table}");
    let metrics = reqwest::get(khoa.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("khoa_logout_delivery_attempts_total{outcome=\"retry\"} 2"), "{metrics}");
    assert!(metrics.contains("khoa_logout_outbox{status=\"failed\"} 1"), "{metrics}");
}

/// The receiver is down at logout, khoa is killed and restarted, the receiver comes up:
/// the notification still arrives. On SQLite and PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_survive_a_restart() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let mut khoa = Khoa::with_env(BIN, khoa_testkit::test_database(backend).await, ENV);
        let port = khoa_testkit::free_port();
        let down = format!("http://127.0.0.1:{port}/bc");
        let secret = khoa.client("portal", &["--skip-consent", "--backchannel-logout-uri", &down]).unwrap();
        let browser = Browser::new();
        let code = khoa.code(&browser, "portal", &[]).await;
        let tokens = khoa.exchange(&code, ("portal", &secret)).await;
        let res = browser.get(&logout_url(&khoa, &[("id_token_hint", tokens["id_token"].as_str().unwrap())])).await;
        assert_eq!(res.status(), 200);
        // Killed (SIGKILL) while the notification is pending.
        let old = std::mem::replace(&mut khoa.server, Server::Process(KhoaProcess::start(BIN, &khoa.db, ENV)));
        drop(old);
        let rp = Receiver::start(port).await;
        let got = rp.wait_for("/bc", 1, 30).await;
        assert_eq!(got.len(), 1, "delivered after the restart ({backend:?})");
    }
}

/// Two processes on one PostgreSQL: each attempt is made by exactly one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_deliver_each_attempt_once() {
    let khoa = Khoa::with_env(BIN, khoa_testkit::test_database(Backend::Postgres).await, ENV);
    // Behind one load balancer, both processes are the same issuer.
    let issuer = khoa.issuer();
    let second = KhoaProcess::start(BIN, &khoa.db, &[ENV[0], ("KHOA_ISSUER", &issuer)]);
    let rp = Receiver::start(0).await;
    rp.answer_with("/bc", &[503]);
    let secret = khoa.client("portal", &["--skip-consent", "--backchannel-logout-uri", &rp.url("/bc")]).unwrap();
    let browser = Browser::new();
    let code = khoa.code(&browser, "portal", &[]).await;
    let tokens = khoa.exchange(&code, ("portal", &secret)).await;
    // Log out through the second process.
    let url =
        format!("{}/oauth2/sessions/logout?id_token_hint={}", second.base_url, tokens["id_token"].as_str().unwrap());
    assert_eq!(browser.get(&url).await.status(), 200);
    let got = rp.wait_for("/bc", 2, 20).await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let got_after = rp.received("/bc");
    assert_eq!((got.len(), got_after.len()), (2, 2), "one failed attempt, one delivery, no duplicates");
}
