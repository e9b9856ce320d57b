//! Running khoa in production: https on the listener itself with certificate renewal,
//! the redirecting plain-http listener, `khoa config check`, backup and restore.

use khoa_testkit::browser::{query, Browser};
use khoa_testkit::flow::{sign_in, Khoa, CALLBACK};
use khoa_testkit::{run_cli_with, test_database, Backend};
use serde_json::Value;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_khoa");

/// A certificate authority of the test's own and a server certificate for `localhost`
/// signed by it: (CA PEM, certificate PEM, key PEM).
fn certificate_for_localhost(serial: u64) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, format!("khoa test CA {serial}"));
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.serial_number = Some(serial.into());
    let leaf = leaf.signed_by(&key, &ca, &ca_key).unwrap();
    (ca.pem(), leaf.pem(), key.serialize_pem())
}

/// An https client trusting only `ca` (no built-in roots), with a cookie jar and no
/// automatic redirects, connecting from `from` when given.
fn client_trusting(ca: &str, from: Option<std::net::IpAddr>) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .local_address(from)
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// The serial number of the certificate a fresh https connection to `port` is shown
/// (read with openssl, a client of its own, which verifies against `ca_file`), or ""
/// when none is.
fn served_serial(port: u16, ca_file: &std::path::Path) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "localhost",
            "-verify_return_error",
            "-showcerts",
        ])
        .arg("-CAfile")
        .arg(ca_file)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(b"");
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let Some(pem) = text
        .split("-----BEGIN CERTIFICATE-----")
        .nth(1)
        .and_then(|rest| rest.split("-----END CERTIFICATE-----").next())
        .map(|body| format!("-----BEGIN CERTIFICATE-----{body}-----END CERTIFICATE-----\n"))
    else {
        return String::new();
    };
    let mut x509 = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    x509.stdin.take().unwrap().write_all(pem.as_bytes()).unwrap();
    String::from_utf8_lossy(&x509.wait_with_output().unwrap().stdout).trim().to_string()
}

/// https on the listener: a real client verifying the certificate signs in and gets
/// tokens; a client that does not trust the CA is refused; a renewed certificate is
/// served to new connections without a restart; plain http on the redirect listener
/// is sent to the https issuer, same path and query, whatever the Host says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_renewed_certificate_and_a_redirecting_listener() {
    let db = test_database(Backend::Sqlite).await;
    let dir = db.dir.path().to_path_buf();
    let (ca, cert, key) = certificate_for_localhost(1001);
    let (cert_file, key_file, ca_file) = (dir.join("cert.pem"), dir.join("key.pem"), dir.join("ca.pem"));
    std::fs::write(&cert_file, &cert).unwrap();
    std::fs::write(&key_file, &key).unwrap();
    std::fs::write(&ca_file, &ca).unwrap();
    let redirect_port = khoa_testkit::free_port();
    let redirect = format!("127.0.0.1:{redirect_port}");
    let env = [
        ("KHOA_ISSUER", "https://localhost"),
        ("KHOA_TLS_CERT", cert_file.to_str().unwrap()),
        ("KHOA_TLS_KEY", key_file.to_str().unwrap()),
        ("KHOA_TLS_REDIRECT_LISTEN", redirect.as_str()),
    ];
    let khoa = Khoa::with_env(BIN, db, &env);
    let issuer = khoa.issuer();
    assert!(issuer.starts_with("https://localhost:"), "{issuer}");
    let port = khoa.process().port;
    let secret = khoa.client("app", &[]).unwrap();

    let http = client_trusting(&ca, None);
    let discovery: Value =
        http.get(khoa.url("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(discovery["issuer"], issuer.as_str());
    assert_eq!(discovery["token_endpoint"], format!("{issuer}/oauth2/token"));

    // A whole sign-in over https; the session cookie is Secure and HSTS is sent.
    let browser = Browser { http: http.clone() };
    let params = [
        ("client_id", "app"),
        ("redirect_uri", CALLBACK),
        ("response_type", "code"),
        ("scope", "openid"),
        ("state", "s"),
    ];
    let callback = sign_in(&browser, &khoa, &khoa.authorize_url(&params), "sv01", khoa_testkit::flow::PASSWORD).await;
    let code = query(&callback)["code"].clone();
    let res = http
        .post(khoa.url("/oauth2/token"))
        .basic_auth("app", Some(&secret))
        .form(&[("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", CALLBACK)])
        .send()
        .await
        .unwrap();
    assert!(res.headers()["strict-transport-security"].to_str().unwrap().contains("max-age="));
    let tokens: Value = res.json().await.unwrap();
    assert!(tokens["id_token"].is_string(), "{tokens}");

    // Not trusted without the CA.
    let stranger = reqwest::Client::builder().tls_built_in_root_certs(false).build().unwrap();
    let refused = stranger.get(khoa.url("/health/ready")).send().await.unwrap_err();
    assert!(refused.is_connect(), "{refused:?}");
    // Plain http on the https port gets no answer a client could mistake for one.
    let plain = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/health/ready")).send().await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));

    // Renewal: new files (another CA, another serial) are served to new connections.
    assert_eq!(served_serial(port, &ca_file), "serial=03E9");
    let (ca2, cert2, key2) = certificate_for_localhost(2002);
    std::fs::write(&key_file, &key2).unwrap();
    std::fs::write(&cert_file, &cert2).unwrap();
    std::fs::write(&ca_file, &ca2).unwrap();
    let start = Instant::now();
    while served_serial(port, &ca_file) != "serial=07D2" {
        assert!(start.elapsed() < Duration::from_secs(10), "the renewed certificate is not served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let renewed = client_trusting(&ca2, None);
    assert_eq!(renewed.get(khoa.url("/health/ready")).send().await.unwrap().status(), 200);
    assert!(khoa.process().logs().contains("TLS certificate reloaded"));
    // A broken renewal (a key of another certificate) is refused; the renewed one stays.
    std::fs::write(&key_file, &key).unwrap();
    let start = Instant::now();
    while !khoa.process().logs().contains("does not belong to the certificate") {
        assert!(start.elapsed() < Duration::from_secs(10), "the mismatch is not reported");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served_serial(port, &ca_file), "serial=07D2");

    // The redirect listener: 308 to the same path and query at the issuer, whatever Host.
    let (status, to) =
        plain_http(&format!("http://{redirect}/oauth2/auth?client_id=app&state=x%20y"), "evil.example").await;
    assert_eq!((status, to), (308, format!("{issuer}/oauth2/auth?client_id=app&state=x%20y")));
}

/// A plain-http request with `host`, redirects not followed: (status, Location).
async fn plain_http(url: &str, host: &str) -> (u16, String) {
    let plain = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let res = plain.post(url).header("host", host).send().await.unwrap();
    let to = res.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or_default().to_string();
    (res.status().as_u16(), to)
}

/// `khoa config check` prints the settings in force with secrets masked and exits 0;
/// a misspelt setting in the file or the environment is named, with the nearest
/// known one, and exits 2. It touches no database.
#[tokio::test]
async fn config_check_names_what_is_wrong_and_prints_what_is_in_force() {
    let db = test_database(Backend::Sqlite).await;
    let dir = db.dir.path();
    let text = |o: &std::process::Output| {
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    };
    std::fs::write(
        dir.join("khoa.toml"),
        "issuer = \"https://sso.example.vn\"\nsecret = \"a-long-master-secret-0123456789abcdef\"\n[smtp]\n\
         url = \"smtp://khoa:mail-pass@127.0.0.1:2525\"\nfrom = \"sso@example.vn\"\n",
    )
    .unwrap();
    let ok = run_cli_with(BIN, &db, &[], &["config", "check", "--config", "khoa.toml"], None);
    assert!(ok.status.success(), "{}", text(&ok));
    let shown = String::from_utf8_lossy(&ok.stdout);
    assert!(shown.contains("issuer = \"https://sso.example.vn\"\n") && shown.contains("secret = \"***\"\n"), "{shown}");
    assert!(shown.contains("smtp.url = \"smtp://khoa:***@127.0.0.1:2525\"\n"), "{shown}");
    assert!(!text(&ok).contains("mail-pass") && !text(&ok).contains("0123456789abcdef"));
    assert!(!dir.join("khoa.db").exists(), "config check opened the database");

    let typo = run_cli_with(BIN, &db, &[("KHOA_TLS_CRT", "cert.pem")], &["config", "check", "-c", "khoa.toml"], None);
    assert_eq!(typo.status.code(), Some(2));
    assert!(text(&typo).contains("KHOA_TLS_CRT is not a setting; did you mean KHOA_TLS_CERT?"), "{}", text(&typo));
    std::fs::write(dir.join("bad.toml"), "[http]\ntrusted_proxy = [\"10.0.0.1\"]\n").unwrap();
    let bad = run_cli_with(BIN, &db, &[], &["config", "check", "-c", "bad.toml"], None);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad).contains("unknown setting `http.trusted_proxy` (line 2); did you mean `http.trusted_proxies`?"),
        "{}",
        text(&bad)
    );
    let half = run_cli_with(BIN, &db, &[("KHOA_TLS_CERT", "cert.pem")], &["config", "check", "-c", "khoa.toml"], None);
    assert_eq!(half.status.code(), Some(2));
    assert!(text(&half).contains("KHOA_TLS_CERT: needs tls.key (KHOA_TLS_KEY) too"), "{}", text(&half));

    // `khoa health` (the container's HEALTHCHECK) asks the running server.
    // `khoa serve` starts with a misspelt variable, and says so.
    let server = khoa_testkit::KhoaProcess::start(BIN, &db, &[("KHOA_ADMIN_LISTEN", "off"), ("KHOA_TLS_CRT", "x")]);
    let logs = server.logs();
    assert!(logs.contains("KHOA_TLS_CRT") && logs.contains("KHOA_TLS_CERT") && logs.contains("no setting"), "{logs}");
    let listen = format!("127.0.0.1:{}", server.port);
    let env = [("KHOA_LISTEN", listen.as_str()), ("KHOA_ADMIN_LISTEN", "off")];
    let ready = run_cli_with(BIN, &db, &env, &["health"], None);
    assert!(ready.status.success() && text(&ready).contains(&format!("ready ({listen})")), "{}", text(&ready));
    drop(server);
    let down = run_cli_with(BIN, &db, &env, &["health"], None);
    assert!(!down.status.success() && text(&down).contains(&format!("cannot ask {listen}")), "{}", text(&down));
}

/// `khoa backup` under load, `khoa restore` into a fresh directory: every token issued
/// before the backup works on the restored server, a code redeemed after the backup
/// cannot be redeemed again there, the running server's own database cannot be
/// restored over, and what is not a khoa backup is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_load_and_restore_into_a_fresh_directory() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let khoa = Arc::new(Khoa::new(BIN, test_database(Backend::Sqlite).await));
    let secret = khoa.client("app", &["--skip-consent"]).unwrap();
    let app = ("app", secret.as_str());
    let code = khoa.code(&Browser::new(), "app", &[("scope", "openid profile offline_access")]).await;
    let before = khoa.exchange(&code, app).await;
    let unredeemed = khoa.code(&Browser::new(), "app", &[]).await;

    // Load: sign-ins, code exchanges and refreshes, until the backup is done (bounded).
    let (stop, done) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let mut load = vec![];
    for _ in 0..2 {
        let (khoa, secret, stop, done) = (khoa.clone(), secret.clone(), stop.clone(), done.clone());
        load.push(tokio::spawn(async move {
            for _ in 0..40 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let code = khoa.code(&Browser::new(), "app", &[("scope", "openid offline_access")]).await;
                let tokens = khoa.exchange(&code, ("app", &secret)).await;
                let form =
                    [("grant_type", "refresh_token"), ("refresh_token", tokens["refresh_token"].as_str().unwrap())];
                let (status, _, body) = khoa.token(&form, Some(("app", &secret))).await;
                assert_eq!(status, 200, "{body}");
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    while done.load(Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let backup = khoa.db.dir.path().join("backup.db");
    let out = khoa_testkit::run_cli(BIN, &khoa.db, &["backup", backup.to_str().unwrap()], None);
    let during = done.load(Ordering::SeqCst);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(" users, ") && stdout.contains("the master key is not in the backup"), "{stdout}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777, 0o600);
    // Never over an existing file.
    let again = khoa_testkit::run_cli(BIN, &khoa.db, &["backup", backup.to_str().unwrap()], None);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("never overwrites"));
    stop.store(true, Ordering::SeqCst);
    for task in load {
        task.await.unwrap();
    }
    eprintln!("sign-ins with refresh: {during} before the backup ended, {} in all", done.load(Ordering::SeqCst));

    // After the backup: the code is redeemed on the running server.
    assert!(khoa.exchange(&unredeemed, app).await["access_token"].is_string());
    // Restoring over the database the server uses is refused.
    let refused = khoa_testkit::run_cli(BIN, &khoa.db, &["restore", backup.to_str().unwrap()], None);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is in use by a running khoa serve"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // A fresh directory with the master key the backup was made with.
    let fresh = test_database(Backend::Sqlite).await;
    std::fs::copy(khoa.db.dir.path().join("khoa.key"), fresh.dir.path().join("khoa.key")).unwrap();
    let not_khoa = fresh.dir.path().join("notes.txt");
    std::fs::write(&not_khoa, "not a database").unwrap();
    let bad = khoa_testkit::run_cli(BIN, &fresh, &["restore", not_khoa.to_str().unwrap()], None);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("not a khoa database"));
    let restored = khoa_testkit::run_cli(BIN, &fresh, &["restore", backup.to_str().unwrap()], None);
    assert!(restored.status.success(), "{}", String::from_utf8_lossy(&restored.stderr));
    assert!(String::from_utf8_lossy(&restored.stdout).contains("authorization codes and mailed links were voided"));
    let issuer = khoa.issuer();
    let server = khoa_testkit::KhoaProcess::start(BIN, &fresh, &[("KHOA_ISSUER", &issuer)]);
    let restored = Khoa { bin: BIN.to_string(), server: khoa_testkit::flow::Server::Process(server), db: fresh };

    // Tokens issued before the backup still work.
    let (status, _, claims) = restored.userinfo(before["access_token"].as_str().unwrap()).await;
    assert_eq!((status, claims["sub"].is_string()), (200, true), "{claims}");
    let jwks: Value = reqwest::get(restored.url("/.well-known/jwks.json")).await.unwrap().json().await.unwrap();
    assert!(khoa_testkit::receiver::verify_with_jwks(before["id_token"].as_str().unwrap(), &jwks).is_some());
    let form = [("grant_type", "refresh_token"), ("refresh_token", before["refresh_token"].as_str().unwrap())];
    let (status, _, refreshed) = restored.token(&form, Some(app)).await;
    assert_eq!(status, 200, "{refreshed}");
    // The code redeemed after the backup is not redeemed twice.
    let form = [("grant_type", "authorization_code"), ("code", unredeemed.as_str()), ("redirect_uri", CALLBACK)];
    let (status, _, body) = restored.token(&form, Some(app)).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    // And the restored server signs people in.
    let code = restored.code(&Browser::new(), "app", &[]).await;
    assert!(restored.exchange(&code, app).await["id_token"].is_string());
}

/// The fenced block of `docs/deployment.md` in `language`: the configuration the
/// documentation gives is the one the proxy tests run.
fn documented(language: &str) -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/deployment.md")).unwrap();
    let fence = format!("```{language}\n");
    let start = doc.find(&fence).unwrap_or_else(|| panic!("no {language} block")) + fence.len();
    doc[start..].split("\n```").next().unwrap().to_string()
}

/// A proxy process stopped (and waited for) when dropped.
struct Proxy(std::process::Child);

impl Proxy {
    /// Writes `config` to `path` and runs `program` (Debian's package, installed by
    /// ./scripts/test.sh) with `args` then the path.
    fn run(program: &str, args: &[&str], path: std::path::PathBuf, config: String) -> Self {
        std::fs::write(&path, config).unwrap();
        let child = std::process::Command::new(program)
            .args(args)
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} (Debian's package; ./scripts/test.sh installs it): {e}"));
        Proxy(child)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// khoa behind `proxy` (started by `start` with the proxy's https and http ports and
/// khoa's address): a whole sign-in through the proxy with a client that verifies
/// the proxy's certificate, the client's own address (not the proxy's, not one the
/// client made up) in the audit trail, and plain http redirected to https.
async fn sign_in_through(
    name: &str,
    start: impl FnOnce(&std::path::Path, u16, u16, &str, (&std::path::Path, &std::path::Path)) -> Proxy,
) {
    let db = test_database(Backend::Sqlite).await;
    let dir = db.dir.path().to_path_buf();
    let (ca, cert, key) = certificate_for_localhost(77);
    let (cert_file, key_file) = (dir.join("proxy-cert.pem"), dir.join("proxy-key.pem"));
    std::fs::write(&cert_file, &cert).unwrap();
    std::fs::write(&key_file, &key).unwrap();
    let (https_port, http_port) = (khoa_testkit::free_port(), khoa_testkit::free_port());
    let issuer = format!("https://localhost:{https_port}");
    let env = [("KHOA_ISSUER", issuer.as_str()), ("KHOA_TRUSTED_PROXIES", "127.0.0.1")];
    let khoa = Khoa::with_env(BIN, db, &env);
    let secret = khoa.client("app", &["--skip-consent"]).unwrap();
    let upstream = format!("127.0.0.1:{}", khoa.process().port);
    let _proxy = start(&dir, https_port, http_port, &upstream, (&cert_file, &key_file));
    // The person's own address: 127.0.0.3 (loopback, but neither the proxy's nor khoa's).
    let http = client_trusting(&ca, Some("127.0.0.3".parse().unwrap()));
    let ready = Instant::now();
    loop {
        match http.get(format!("{issuer}/health/ready")).send().await {
            Ok(r) if r.status() == 200 => break,
            other => {
                assert!(ready.elapsed() < Duration::from_secs(20), "{name} not ready: {other:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let discovery: Value =
        http.get(format!("{issuer}/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(discovery["issuer"], issuer.as_str(), "{name}");

    // A sign-in through the proxy, with a made-up X-Forwarded-For on every request.
    let spoofing = reqwest::header::HeaderMap::from_iter([(
        reqwest::header::HeaderName::from_static("x-forwarded-for"),
        reqwest::header::HeaderValue::from_static("203.0.113.9"),
    )]);
    let authorize = khoa_testkit::flow::authorize_url_at(
        &issuer,
        &[
            ("client_id", "app"),
            ("redirect_uri", CALLBACK),
            ("response_type", "code"),
            ("scope", "openid"),
            ("state", "s"),
        ],
    );
    let login = http.get(&authorize).headers(spoofing.clone()).send().await.unwrap();
    assert_eq!(login.status(), 200, "{name}");
    let form = khoa_testkit::browser::inputs(&login.text().await.unwrap());
    let posted = http
        .post(format!("{issuer}/oauth2/auth/login"))
        .headers(spoofing.clone())
        .form(&[
            ("interaction", form["interaction"].as_str()),
            ("csrf_token", form["csrf_token"].as_str()),
            ("username", "sv01"),
            ("password", khoa_testkit::flow::PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 303, "{name}");
    let mut res = posted;
    let callback = loop {
        assert_eq!(res.status(), 303, "{name}: {}", res.text().await.unwrap_or_default());
        let next = khoa_testkit::browser::location(&res, &issuer);
        if next.starts_with(CALLBACK) {
            break next;
        }
        res = http.get(&next).headers(spoofing.clone()).send().await.unwrap();
    };
    let code = query(&callback)["code"].clone();
    let tokens: Value = http
        .post(format!("{issuer}/oauth2/token"))
        .basic_auth("app", Some(&secret))
        .form(&[("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", CALLBACK)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(tokens["id_token"].is_string(), "{name}: {tokens}");
    let claims = khoa_testkit::flow::jwt_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(claims["iss"], issuer.as_str());

    // khoa saw the person's address as the proxy passed it on.
    let audit = khoa_testkit::run_cli(BIN, &khoa.db, &["audit", "list", "--type", "login.succeeded", "--json"], None);
    let line = String::from_utf8_lossy(&audit.stdout).lines().next().unwrap_or_default().to_string();
    let event: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("{name}: no login event: {line}"));
    assert_eq!(event["address"], "127.0.0.3", "{name}: {event}");

    // Plain http is redirected to https.
    let (status, to) =
        plain_http(&format!("http://127.0.0.1:{http_port}/oauth2/auth?client_id=app"), "localhost").await;
    assert_eq!(status, 308, "{name}");
    assert!(to.starts_with("https://localhost"), "{name}: {to}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_nginx() {
    sign_in_through("nginx", |dir, https_port, http_port, upstream, (cert, key)| {
        let site = documented("nginx")
            .replace("127.0.0.1:8080", upstream)
            .replace("listen 443 ssl http2;", &format!("listen 127.0.0.1:{https_port} ssl http2;"))
            .replace("listen 80;", &format!("listen 127.0.0.1:{http_port};"))
            .replace("sso.example.vn", "localhost")
            .replace("/etc/ssl/localhost/fullchain.pem", cert.to_str().unwrap())
            .replace("/etc/ssl/localhost/privkey.pem", key.to_str().unwrap())
            // The https port is not 443 here: the redirect names it.
            .replace("https://$host$request_uri", &format!("https://$host:{https_port}$request_uri"));
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nerror_log {d}/nginx-error.log;\npid {d}/nginx.pid;\nevents {{}}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/nginx-body;\n proxy_temp_path {d}/nginx-proxy;\n\
             fastcgi_temp_path {d}/nginx-fastcgi;\n uwsgi_temp_path {d}/nginx-uwsgi;\n scgi_temp_path {d}/nginx-scgi;\n\
             {site}\n}}\n"
        );
        Proxy::run("nginx", &["-p", dir.to_str().unwrap(), "-c"], dir.join("nginx.conf"), conf)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_haproxy() {
    sign_in_through("HAProxy", |dir, https_port, http_port, upstream, (cert, key)| {
        let pem = dir.join("haproxy.pem");
        let both = format!("{}{}", std::fs::read_to_string(cert).unwrap(), std::fs::read_to_string(key).unwrap());
        std::fs::write(&pem, both).unwrap();
        let conf = documented("haproxy")
            .replace("127.0.0.1:8080", upstream)
            .replace(
                "bind :443 ssl crt /etc/haproxy/certs/sso.example.vn.pem",
                &format!("bind 127.0.0.1:{https_port} ssl crt {}", pem.display()),
            )
            .replace("bind :80", &format!("bind 127.0.0.1:{http_port}"))
            .replace("inter 5s", "inter 1s");
        Proxy::run("haproxy", &["-db", "-f"], dir.join("haproxy.cfg"), format!("{conf}\n"))
    })
    .await;
}

/// docs/metrics.md lists exactly the metrics `/metrics` serves, with their types, and
/// every alert in docs/alerts.yml (valid YAML, each rule an alert with an expression)
/// uses only metrics that exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_is_documented_and_every_alert_uses_one() {
    let db = test_database(Backend::Sqlite).await;
    let khoa = khoa_testkit::KhoaProcess::start(BIN, &db, &[]);
    let text = reqwest::get(khoa.url("/metrics")).await.unwrap().text().await.unwrap();
    let served: std::collections::BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_string(), kind.to_string()))
        .collect();
    assert!(served.len() > 15, "{text}");
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metrics.md")).unwrap();
    let documented: std::collections::BTreeMap<String, String> = docs
        .lines()
        .filter_map(|l| l.strip_prefix("| `khoa_"))
        .filter_map(|l| {
            let mut cells = l.split('|');
            let name = cells.next()?.trim().trim_end_matches('`');
            Some((format!("khoa_{name}"), cells.next()?.trim().to_string()))
        })
        .collect();
    assert_eq!(documented, served, "docs/metrics.md against /metrics");

    let rules = std::process::Command::new("python3")
        .args(["-c", "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/alerts.yml"))
        .output()
        .unwrap();
    assert!(rules.status.success(), "docs/alerts.yml: {}", String::from_utf8_lossy(&rules.stderr));
    let rules: Value = serde_json::from_slice(&rules.stdout).unwrap();
    let rules = rules["groups"][0]["rules"].as_array().unwrap();
    assert!(rules.len() >= 8);
    for rule in rules {
        let (alert, expr) = (rule["alert"].as_str().unwrap(), rule["expr"].as_str().unwrap());
        assert!(docs.contains(&format!("`{alert}`")), "{alert} is not described in docs/metrics.md");
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("khoa_")) {
            let family =
                ["_total", "_bucket", "_sum", "_count"].iter().find_map(|s| word.strip_suffix(s)).unwrap_or(word);
            assert!(served.contains_key(family), "{alert} uses {word}, which /metrics does not serve");
        }
    }
}

/// With `KHOA_OTLP_ENDPOINT`, every request is a span sent over OTLP/HTTP to a
/// collector: its route pattern, status, outcome and client, under service.name
/// khoa; no secret, code, password or query string is in what is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_go_to_an_otlp_collector_without_secrets() {
    use axum::routing::post;
    use std::sync::{Arc, Mutex};
    let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
    let collector = axum::Router::new().route(
        "/v1/traces",
        post({
            let bodies = bodies.clone();
            move |body: axum::body::Bytes| async move {
                bodies.lock().unwrap().push(String::from_utf8_lossy(&body).to_string());
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, collector).await });

    let env = [("KHOA_OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "100")];
    let khoa = Khoa::with_env(BIN, test_database(Backend::Sqlite).await, &env);
    let secret = khoa.client("app", &["--skip-consent"]).unwrap();
    let code = khoa.code(&Browser::new(), "app", &[]).await;
    let tokens = khoa.exchange(&code, ("app", &secret)).await;

    let attribute = |span: &Value, key: &str| -> Option<String> {
        let value = &span["attributes"].as_array()?.iter().find(|a| a["key"] == key)?["value"];
        value["stringValue"].as_str().map(str::to_string).or_else(|| match &value["intValue"] {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    let start = Instant::now();
    let token_span = loop {
        let sent = bodies.lock().unwrap().clone();
        let spans: Vec<(Value, Value)> = sent
            .iter()
            .filter_map(|b| serde_json::from_str::<Value>(b).ok())
            .flat_map(|doc| doc["resourceSpans"].as_array().cloned().unwrap_or_default())
            .flat_map(|rs| {
                let resource = rs["resource"].clone();
                rs["scopeSpans"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .flat_map(|ss| ss["spans"].as_array().cloned().unwrap_or_default())
                    .map(move |span| (resource.clone(), span))
            })
            .collect();
        if let Some(found) = spans.iter().find(|(_, s)| attribute(s, "http.route").as_deref() == Some("/oauth2/token"))
        {
            break found.clone();
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no span of the token endpoint: {sent:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (resource, span) = token_span;
    assert_eq!(span["name"], "POST /oauth2/token");
    assert_eq!(attribute(&span, "client_id").as_deref(), Some("app"), "{span}");
    assert_eq!(attribute(&span, "http.response.status_code").as_deref(), Some("200"), "{span}");
    assert_eq!(attribute(&span, "outcome").as_deref(), Some("ok"), "{span}");
    assert!(resource["attributes"].to_string().contains("\"khoa\""), "service.name: {resource}");
    // The authorization endpoint's span names the client too.
    let everything = bodies.lock().unwrap().join("\n");
    assert!(everything.contains("/oauth2/auth"), "{everything}");
    for secret in
        [secret.as_str(), code.as_str(), khoa_testkit::flow::PASSWORD, tokens["access_token"].as_str().unwrap()]
    {
        assert!(!everything.contains(secret), "a secret was sent to the collector");
    }
    assert!(!everything.contains("state=") && !everything.contains("code="), "a query string was sent");
    drop(khoa);
    server.abort();
}
