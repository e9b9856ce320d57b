//! `khoa-bench signin [SECS] [CONCURRENCY]`: sign-in throughput and the server's CPU
//! per sign-in, in one run, for a password alone, a password and an authenticator
//! app's code, a password and a passkey, and a passkey alone (passwordless). Each
//! operation is a whole sign-in by a browser without a session: the login page, each
//! step, and the redirect to the client with a code. The passkeys are
//! `webauthn-authenticator-rs`'s SoftPasskey (ES256); the issuer is
//! `http://localhost:PORT`, where passkeys are offered.

use crate::scenarios::{run, server_under_test, Outcome};
use crate::{cli, khoa_bin, prepare, serve_until_ready, tempfile_dir, CALLBACK, PASSWORD};
use khoa_testkit::browser::{inputs, location, query};
use serde_json::Value;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};

/// A cookie jar that follows no redirect, with `localhost` pinned to the server's
/// address (no IPv6 attempt first).
fn browser(addr: SocketAddr) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .resolve("localhost", addr)
        .build()
        .map_err(|e| e.to_string())
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The passkey ceremony's options a page carries.
fn options(page: &str) -> Result<String, String> {
    let start = page.find("id=\"webauthn-options\">").ok_or("no passkey ceremony on the page")? + 22;
    let end = start + page[start..].find("</script>").ok_or("unterminated options")?;
    Ok(page[start..end].to_string())
}

struct Site {
    base: String,
    addr: SocketAddr,
}

impl Site {
    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        }
    }

    fn authorize(&self) -> String {
        format!(
            "{}/oauth2/auth?client_id=bench&redirect_uri={}&response_type=code&scope=openid&state=s",
            self.base,
            url::form_urlencoded::byte_serialize(CALLBACK.as_bytes()).collect::<String>()
        )
    }

    /// Follows 303s within khoa: the page reached (a code at the client ends it).
    async fn follow(&self, b: &reqwest::Client, mut res: reqwest::Response) -> Result<Reached, String> {
        for _ in 0..8 {
            if !res.status().is_redirection() {
                let status = res.status();
                let text = res.text().await.map_err(|e| e.to_string())?;
                return if status == 200 { Ok(Reached::Page(text)) } else { Err(format!("{status}: {text}")) };
            }
            let next = location(&res, &self.base);
            if next.starts_with(CALLBACK) {
                return query(&next).get("code").map(|_| Reached::Code).ok_or_else(|| format!("no code: {next}"));
            }
            res = b.get(self.url(&next)).send().await.map_err(|e| e.to_string())?;
        }
        Err("too many redirects".into())
    }

    async fn post(&self, b: &reqwest::Client, path: &str, form: &[(&str, &str)]) -> Result<Reached, String> {
        let res = b.post(self.url(path)).form(form).send().await.map_err(|e| e.to_string())?;
        self.follow(b, res).await
    }

    /// The login page of a fresh authorization request.
    async fn login_page(&self, b: &reqwest::Client) -> Result<String, String> {
        let res = b.get(self.authorize()).send().await.map_err(|e| e.to_string())?;
        match self.follow(b, res).await? {
            Reached::Page(p) => Ok(p),
            Reached::Code => Err("a code without a login".into()),
        }
    }

    /// The password step: the page it leads to (a second step), or the code.
    async fn password(&self, b: &reqwest::Client, page: &str, username: &str) -> Result<Reached, String> {
        let f = inputs(page);
        let form = [
            ("interaction", f.get("interaction").map(String::as_str).unwrap_or("")),
            ("csrf_token", f.get("csrf_token").map(String::as_str).unwrap_or("")),
            ("username", username),
            ("password", PASSWORD),
        ];
        self.post(b, "/oauth2/auth/login", &form).await
    }
}

enum Reached {
    Page(String),
    Code,
}

fn page(r: Reached, what: &str) -> Result<String, String> {
    match r {
        Reached::Page(p) => Ok(p),
        Reached::Code => Err(format!("{what}: signed in without it")),
    }
}

fn code(r: Reached, what: &str) -> Result<(), String> {
    match r {
        Reached::Code => Ok(()),
        Reached::Page(p) => {
            let error = p.split("role=\"alert\">").nth(1).and_then(|e| e.split('<').next()).unwrap_or("");
            Err(format!("{what}: no code ({error})"))
        }
    }
}

/// The account page of `username`, signed in with the password: its anti-forgery token.
async fn account(site: &Site, b: &reqwest::Client, username: &str) -> Result<String, String> {
    let res = b.get(site.url("/?lang=en")).send().await.map_err(|e| e.to_string())?;
    let login = page(site.follow(b, res).await?, "account")?;
    let home = page(site.password(b, &login, username).await?, "account")?;
    inputs(&home).get("csrf_token").cloned().ok_or_else(|| "no account page".into())
}

/// Sets up an authenticator app for `username`: its secret.
async fn enrol_app(site: &Site, username: &str) -> Result<Vec<u8>, String> {
    let b = browser(site.addr)?;
    let csrf = account(site, &b, username).await?;
    let enrol = page(site.post(&b, "/account/totp/start", &[("csrf_token", &csrf), ("lang", "en")]).await?, "enrol")?;
    let at = enrol.find("secret=").ok_or("no secret")? + 7;
    let b32: String = enrol[at..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
    let secret = khoa_core::totp::from_base32(&b32).ok_or("a secret that is not base32")?;
    let enrolment = inputs(&enrol).get("enrolment").cloned().ok_or("no enrolment")?;
    let code = khoa_core::totp::code_at(&secret, now()).ok_or("no code")?;
    let form = [("csrf_token", csrf.as_str()), ("lang", "en"), ("enrolment", &enrolment), ("code", &code)];
    page(site.post(&b, "/account/totp", &form).await?, "confirm")?;
    Ok(secret)
}

/// A person with a passkey in its own authenticator.
struct Holder {
    username: String,
    key: Mutex<SoftPasskey>,
    cred_id: String,
    handle: Vec<u8>,
}

/// Adds a passkey (a SoftPasskey of its own) to `username`.
async fn enrol_passkey(site: &Site, username: &str) -> Result<Holder, String> {
    let b = browser(site.addr)?;
    let csrf = account(site, &b, username).await?;
    let start =
        page(site.post(&b, "/account/passkeys/start", &[("csrf_token", &csrf), ("lang", "en")]).await?, "start")?;
    let request: CreationChallengeResponse = serde_json::from_str(&options(&start)?).map_err(|e| e.to_string())?;
    let handle = request.public_key.user.id.to_vec();
    let mut key = SoftPasskey::new(true);
    let origin = Url::parse(&site.base).map_err(|e| e.to_string())?;
    let answer = key.do_registration(origin, request).map_err(|e| format!("{e:?}"))?;
    let cred_id = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode::<&[u8]>(answer.raw_id.as_ref())
    };
    let credential = serde_json::to_string(&answer).map_err(|e| e.to_string())?;
    let enrolment = inputs(&start).get("enrolment").cloned().ok_or("no enrolment")?;
    let form = [
        ("csrf_token", csrf.as_str()),
        ("lang", "en"),
        ("enrolment", &enrolment),
        ("credential", &credential),
        ("name", "bench"),
    ];
    page(site.post(&b, "/account/passkeys", &form).await?, "added")?;
    Ok(Holder { username: username.into(), key: Mutex::new(key), cred_id, handle })
}

/// The holder's answer to the ceremony on `page` (passwordless: the credential found
/// and the user handle given back, as a discoverable authenticator does).
fn answer(site: &Site, holder: &Holder, page: &str, passwordless: bool) -> Result<String, String> {
    let mut request: Value = serde_json::from_str(&options(page)?).map_err(|e| e.to_string())?;
    if passwordless {
        request["publicKey"]["allowCredentials"] = serde_json::json!([{ "type": "public-key", "id": holder.cred_id }]);
    }
    let request: RequestChallengeResponse = serde_json::from_value(request).map_err(|e| e.to_string())?;
    let origin = Url::parse(&site.base).map_err(|e| e.to_string())?;
    let mut key = holder.key.lock().map_err(|_| "a poisoned authenticator")?;
    let mut answer = key.do_authentication(origin, request).map_err(|e| format!("{e:?}"))?;
    if passwordless {
        answer.response.user_handle = Some(holder.handle.clone().into());
    }
    serde_json::to_string(&answer).map_err(|e| e.to_string())
}

async fn post_passkey(site: &Site, b: &reqwest::Client, page: &str, credential: &str) -> Result<Reached, String> {
    let f = inputs(page);
    let form = [
        ("interaction", f.get("interaction").map(String::as_str).unwrap_or("")),
        ("csrf_token", f.get("csrf_token").map(String::as_str).unwrap_or("")),
        ("credential", credential),
    ];
    site.post(b, "/oauth2/auth/login/passkey", &form).await
}

pub async fn signin(args: &[String]) {
    let secs: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let concurrency: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(8);
    let duration = Duration::from_secs(secs);
    let bin = khoa_bin();
    let dir = tempfile_dir();
    let port = khoa_testkit::free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let base = format!("http://localhost:{port}");
    let env = crate::khoa_env(&dir, port, &base);
    prepare(&bin, &env, "bench", &[]);
    // The people: imported with one argon2id hash of the bench password.
    let hash = khoa_core::password::hash_password(PASSWORD, Default::default()).expect("a hash");
    // One app per sign-in (a code is accepted once per step), a passkey per worker.
    let apps = 1200;
    let mut lines = String::new();
    for name in (0..apps).map(|i| format!("app{i:05}")).chain((0..concurrency).map(|i| format!("key{i:03}"))) {
        lines.push_str(&serde_json::json!({ "username": name, "password_hash": hash }).to_string());
        lines.push('\n');
    }
    let file = dir.join("people.jsonl");
    std::fs::write(&file, lines).expect("people");
    cli(&bin, &env, &["user", "import", &file.display().to_string()], None);
    let log = std::fs::File::create(dir.join("khoa.log")).map(Stdio::from).unwrap_or_else(|_| Stdio::null());
    let mut server = serve_until_ready(&bin, &env, &format!("http://127.0.0.1:{port}"), Stdio::null(), log).await;
    let site = Arc::new(Site { base, addr });
    eprintln!("khoa-bench signin: setting up {apps} authenticator apps and {concurrency} passkeys");
    let mut secrets = vec![];
    let all: Vec<usize> = (0..apps).collect();
    for chunk in all.chunks(16) {
        let jobs: Vec<_> = chunk
            .iter()
            .map(|&i| {
                let site = site.clone();
                tokio::spawn(async move { enrol_app(&site, &format!("app{i:05}")).await })
            })
            .collect();
        for j in jobs {
            secrets.push(j.await.expect("a task").expect("an app set up"));
        }
    }
    let mut holders = vec![];
    for i in 0..concurrency {
        holders.push(Arc::new(enrol_passkey(&site, &format!("key{i:03}")).await.expect("a passkey")));
    }
    server_under_test(&[server.id()]);
    let mut outcomes: Vec<Outcome> = vec![];

    let s = site.clone();
    outcomes.push(
        run("password", concurrency, duration, 1.0, "argon2id", move |_| {
            let s = s.clone();
            async move {
                let b = browser(s.addr)?;
                let login = s.login_page(&b).await?;
                code(s.password(&b, &login, "bench").await?, "password")
            }
        })
        .await,
    );

    let (s, secrets) = (site.clone(), Arc::new(secrets));
    let next = Arc::new(AtomicUsize::new(0));
    outcomes.push(
        run("password + app code", concurrency, duration, 1.0, "argon2id", move |_| {
            let (s, secrets, next) = (s.clone(), secrets.clone(), next.clone());
            async move {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let secret = secrets.get(i).ok_or("out of app users: raise `apps`")?;
                let b = browser(s.addr)?;
                let login = s.login_page(&b).await?;
                let step = page(s.password(&b, &login, &format!("app{i:05}")).await?, "password")?;
                let f = inputs(&step);
                // The next step's code: the set-up used this one's.
                let totp = khoa_core::totp::code_at(secret, now() + 30).ok_or("no code")?;
                let form = [
                    ("interaction", f.get("interaction").map(String::as_str).unwrap_or("")),
                    ("csrf_token", f.get("csrf_token").map(String::as_str).unwrap_or("")),
                    ("method", "totp"),
                    ("code", totp.as_str()),
                ];
                code(s.post(&b, "/oauth2/auth/login/factor", &form).await?, "app code")
            }
        })
        .await,
    );

    let holders = Arc::new(holders);
    let (s, h) = (site.clone(), holders.clone());
    outcomes.push(
        run("password + passkey", concurrency, duration, 1.0, "argon2id", move |worker| {
            let (s, holder) = (s.clone(), h[worker % h.len()].clone());
            async move {
                let b = browser(s.addr)?;
                let login = s.login_page(&b).await?;
                let step = page(s.password(&b, &login, &holder.username).await?, "password")?;
                let credential = answer(&s, &holder, &step, false)?;
                code(post_passkey(&s, &b, &step, &credential).await?, "passkey")
            }
        })
        .await,
    );
    let (s, h) = (site.clone(), holders.clone());
    outcomes.push(
        run("passkey alone", concurrency, duration, 0.0, "-", move |worker| {
            let (s, holder) = (s.clone(), h[worker % h.len()].clone());
            async move {
                let b = browser(s.addr)?;
                let login = s.login_page(&b).await?;
                let credential = answer(&s, &holder, &login, true)?;
                code(post_passkey(&s, &b, &login, &credential).await?, "passwordless")
            }
        })
        .await,
    );
    let _ = server.kill();
    let _ = server.wait();

    println!(
        "sign-in, {secs} s each at concurrency {concurrency}, on {} cores:",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    println!("| sign-in | sign-ins/s | p50 ms | p99 ms | server CPU ms per sign-in | errors |");
    println!("|---|---:|---:|---:|---:|---:|");
    for o in &outcomes {
        let cpu = o.cpu_ms.map(|(s, _)| format!("{s:.2}")).unwrap_or_else(|| "-".into());
        println!("| {} | {:.0} | {:.1} | {:.1} | {cpu} | {} |", o.name, o.per_second, o.p50_ms, o.p99_ms, o.errors);
    }
    if let (Some(pwd), Some(alone)) = (outcomes.first(), outcomes.last()) {
        if pwd.per_second > 0.0 {
            println!("passkey alone / password alone: {:.1}x the rate", alone.per_second / pwd.per_second);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
