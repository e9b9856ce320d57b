//! `khoa-bench run`: throughput scenarios against a release `khoa serve`, each for a
//! fixed duration at a fixed concurrency, beside the limits measured in the same run
//! (signatures/s of the configured algorithm on all cores, argon2id hashes/s).

use khoa_core::jose::{SigningAlgorithm, SigningKey};
use khoa_core::password::{hash_password, verify_password, PasswordParams};
use khoa_core::pkce::CodeChallenge;
use khoa_testkit::browser::{inputs, location, query, Browser};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Target {
    pub base: String,
    pub secret: String,
    pub m2m_secret: String,
    pub password: String,
    pub callback: String,
    pub paths: Paths,
    /// node-oidc-provider rather than khoa (its login takes no password).
    pub peer: bool,
}

/// Where a server has its endpoints.
pub struct Paths {
    pub authorize: &'static str,
    pub token: &'static str,
    pub introspect: &'static str,
    pub userinfo: &'static str,
    pub jwks: &'static str,
}

impl Target {
    pub fn khoa(base: &str, secret: &str, m2m_secret: &str, password: &str, callback: &str) -> Self {
        Self {
            base: base.into(),
            secret: secret.into(),
            m2m_secret: m2m_secret.into(),
            password: password.into(),
            callback: callback.into(),
            paths: Paths {
                authorize: "/oauth2/auth",
                token: "/oauth2/token",
                introspect: "/oauth2/introspect",
                userinfo: "/userinfo",
                jwks: "/.well-known/jwks.json",
            },
            peer: false,
        }
    }

    /// node-oidc-provider's default routes; its clients' secrets come from the
    /// environment scripts/bench.sh started it with.
    pub fn peer(base: &str, password: &str, callback: &str) -> Self {
        let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} must be set for --peer"));
        Self {
            base: base.trim_end_matches('/').into(),
            secret: env("BENCH_SECRET"),
            m2m_secret: env("BENCH_M2M_SECRET"),
            password: password.into(),
            callback: callback.into(),
            paths: Paths {
                authorize: "/auth",
                token: "/token",
                introspect: "/token/introspection",
                userinfo: "/me",
                jwks: "/jwks",
            },
            peer: true,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

pub struct Outcome {
    pub name: &'static str,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
    /// Signatures (or argon2id hashes) one operation needs, for its bound.
    pub cost: f64,
    pub bound_by: &'static str,
    /// CPU time per operation, in ms: the server's and the load generator's (this
    /// process). `None` where the server's process is not known.
    pub cpu_ms: Option<(f64, f64)>,
}

/// The processes under load, whose CPU time each scenario reports (empty: unknown).
/// Each counts with its descendants (a Node.js cluster's workers).
static SERVER_PIDS: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// Names the processes the next scenarios load.
pub fn server_under_test(pids: &[u32]) {
    *SERVER_PIDS.lock().unwrap_or_else(|p| p.into_inner()) = pids.to_vec();
}

/// CPU time a process has used so far, in ms (user + system, from /proc/PID/stat;
/// the kernel reports it in USER_HZ = 100 ticks per second).
fn cpu_ms(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 * 10.0)
}

/// A process and its descendants (from /proc/PID/task/*/children).
fn with_descendants(pid: u32, out: &mut Vec<u32>) {
    out.push(pid);
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return };
    for task in tasks.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
            with_descendants(child, out);
        }
    }
}

/// (server, load generator) CPU time so far, in ms.
fn cpu_now() -> Option<(f64, f64)> {
    let roots = SERVER_PIDS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if roots.is_empty() {
        return None;
    }
    let mut pids = vec![];
    for root in roots {
        with_descendants(root, &mut pids);
    }
    let server = pids.iter().map(|pid| cpu_ms(&pid.to_string())).sum::<Option<f64>>()?;
    Some((server, cpu_ms("self")?))
}

/// Runs `op` from `concurrency` tasks for `duration`; each call is one operation.
pub async fn run<F, Fut>(
    name: &'static str,
    concurrency: usize,
    duration: Duration,
    cost: f64,
    bound_by: &'static str,
    op: F,
) -> Outcome
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    // KHOA_BENCH_ONLY=sso,userinfo runs only the scenarios named (for profiling).
    if std::env::var("KHOA_BENCH_ONLY").is_ok_and(|only| !only.split(',').any(|n| n.trim() == name)) {
        return Outcome { name, per_second: 0.0, p50_ms: 0.0, p99_ms: 0.0, errors: 0, cost, bound_by, cpu_ms: None };
    }
    let op = Arc::new(op);
    let cpu_before = cpu_now();
    let end = Instant::now() + duration;
    let tasks: Vec<_> = (0..concurrency)
        .map(|worker| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut latencies = vec![];
                let mut errors = 0u64;
                while Instant::now() < end {
                    let t = Instant::now();
                    match op(worker).await {
                        Ok(()) => latencies.push(t.elapsed()),
                        Err(e) => {
                            errors += 1;
                            if errors <= 3 {
                                eprintln!("{name}: {e}");
                            }
                        }
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut all = vec![];
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e)) = t.await {
            all.extend(l);
            errors += e;
        }
    }
    let cpu_ms = match (cpu_before, cpu_now()) {
        (Some((s0, c0)), Some((s1, c1))) if !all.is_empty() => {
            let n = all.len() as f64;
            Some(((s1 - s0) / n, (c1 - c0) / n))
        }
        _ => None,
    };
    all.sort();
    let pct =
        |p: f64| all.get(((all.len() as f64 - 1.0) * p) as usize).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0);
    Outcome {
        name,
        per_second: all.len() as f64 / duration.as_secs_f64(),
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        errors,
        cost,
        bound_by,
        cpu_ms,
    }
}

/// A scenario of one HTTP request per operation, which must answer 200.
pub async fn one_request<B>(
    name: &'static str,
    concurrency: usize,
    duration: Duration,
    cost: f64,
    bound_by: &'static str,
    build: B,
) -> Outcome
where
    B: Fn() -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let build = Arc::new(build);
    run(name, concurrency, duration, cost, bound_by, move |_| {
        let request = build();
        async move {
            let res = request.send().await.map_err(|e| e.to_string())?;
            let status = res.status();
            let _ = res.bytes().await;
            if status == 200 {
                Ok(())
            } else {
                Err(format!("{name}: {status}"))
            }
        }
    })
    .await
}

/// Signatures per second with `alg` on all cores, in-process.
pub fn signing_limit(alg: SigningAlgorithm, duration: Duration) -> f64 {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let key = Arc::new(SigningKey::generate(alg).expect("key"));
    let end = Instant::now() + duration;
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let key = key.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while Instant::now() < end {
                    let _ = key.sign(b"header.payload-of-a-typical-token");
                    n += 1;
                }
                n
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap_or(0)).sum::<u64>() as f64 / duration.as_secs_f64()
}

/// argon2id verifications per second with the configured (OWASP) parameters on all cores.
pub fn argon2_limit(duration: Duration) -> f64 {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let phc = Arc::new(hash_password("a long bench password", PasswordParams::default()).expect("hash"));
    let end = Instant::now() + duration;
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let phc = phc.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while Instant::now() < end {
                    let _ = verify_password("a long bench password", &phc);
                    n += 1;
                }
                n
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap_or(0)).sum::<u64>() as f64 / duration.as_secs_f64()
}

/// A browser with an SSO session at khoa.
pub async fn logged_in_browser(t: &Target) -> Result<Browser, String> {
    let b = Browser::new();
    let challenge = CodeChallenge::s256(&khoa_core::random::random_token::<32>());
    let page = b
        .http
        .get(authorize_url(t, challenge.as_str()))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    let f = inputs(&page);
    let form = [
        ("interaction", f.get("interaction").cloned().unwrap_or_default()),
        ("csrf_token", f.get("csrf_token").cloned().unwrap_or_default()),
        ("username", "bench".to_string()),
        ("password", t.password.clone()),
    ];
    let res =
        b.http.post(format!("{}/oauth2/auth/login", t.base)).form(&form).send().await.map_err(|e| e.to_string())?;
    if res.status() != 303 {
        return Err(format!("login: {}", res.status()));
    }
    Ok(b)
}

/// A browser with a session at node-oidc-provider: its interaction is finished with
/// the bench account at once (see bench/peer/server.mjs), then back to /auth.
pub async fn peer_logged_in_browser(t: &Target) -> Result<Browser, String> {
    let b = Browser::new();
    let challenge = CodeChallenge::s256(&khoa_core::random::random_token::<32>());
    let mut url = authorize_url(t, challenge.as_str());
    for _ in 0..6 {
        let res = b.http.get(&url).send().await.map_err(|e| e.to_string())?;
        if !res.status().is_redirection() {
            return Err(format!("peer login: {} at {url}", res.status()));
        }
        url = location(&res, &t.base);
        if url.starts_with(&t.callback) {
            return Ok(b);
        }
    }
    Err("peer login: too many redirects".into())
}

pub fn authorize_url(t: &Target, challenge: &str) -> String {
    format!(
        "{}?client_id=bench&redirect_uri={}&response_type=code&scope=openid%20offline_access%20profile&state=s&code_challenge={challenge}&code_challenge_method=S256",
        t.url(t.paths.authorize),
        url::form_urlencoded::byte_serialize(t.callback.as_bytes()).collect::<String>()
    )
}

/// One SSO round trip: authorize with the session cookie → 303 with a code → token
/// exchange with PKCE (ID token + access token + refresh token).
pub async fn sso_round_trip(t: &Target, b: &Browser) -> Result<serde_json::Value, String> {
    let (code, verifier) = authorize(t, b).await?;
    exchange(t, b, &code, &verifier).await
}

/// Authorize with the session cookie: the 303 to the client with a code.
pub async fn authorize(t: &Target, b: &Browser) -> Result<(String, String), String> {
    let verifier = khoa_core::random::random_token::<32>();
    let challenge = CodeChallenge::s256(&verifier);
    let res = b.http.get(authorize_url(t, challenge.as_str())).send().await.map_err(|e| e.to_string())?;
    if res.status() != 303 && res.status() != 302 {
        return Err(format!("authorize: {}", res.status()));
    }
    let code = query(&location(&res, &t.base)).get("code").cloned().ok_or("no code")?;
    Ok((code, verifier))
}

/// The code exchange with PKCE.
pub async fn exchange(t: &Target, b: &Browser, code: &str, verifier: &str) -> Result<serde_json::Value, String> {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", t.callback.as_str()),
        ("code_verifier", verifier),
    ];
    token_request(t, &b.http, &form, "token").await
}

/// A token request as the bench client (HTTP Basic): the JSON body of its 200 answer.
pub async fn token_request(
    t: &Target,
    http: &reqwest::Client,
    form: &[(&str, &str)],
    what: &str,
) -> Result<serde_json::Value, String> {
    let res = http
        .post(t.url(t.paths.token))
        .basic_auth("bench", Some(&t.secret))
        .form(form)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if res.status() != 200 {
        return Err(format!("{what}: {}", res.status()));
    }
    res.json().await.map_err(|e| e.to_string())
}

/// One refresh grant with `rt`, narrowed to `scope` if given: the next refresh token.
pub async fn refresh(t: &Target, http: &reqwest::Client, rt: &str, scope: Option<&str>) -> Result<String, String> {
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", rt)];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    let body = token_request(t, http, &form, "refresh").await?;
    Ok(body["refresh_token"].as_str().ok_or("no refresh token")?.to_string())
}

/// khoa's process-wide SQL counters, read from `/metrics`: (statements, transactions).
pub async fn sql_counters(base: &str) -> Result<(f64, f64), String> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    let read = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .ok_or(format!("{name} missing from /metrics"))
    };
    Ok((read("khoa_sql_statements_total")?, read("khoa_sql_transactions_total")?))
}
