//! `khoa-bench soak`: runs a release `khoa serve` on a fresh SQLite database (or the
//! PostgreSQL in `KHOA_BENCH_POSTGRES_URL`) with shortened lifetimes, drives a constant
//! load of complete sign-ins (login page, code exchange, two refreshes, a client
//! credentials grant), and samples the row counts, database size and server memory
//! every 30 seconds. With cleanup working, every table levels off once the lifetimes
//! have elapsed.
//!
//! Usage: khoa-bench soak [MINUTES] [SIGN-INS PER SECOND]   (defaults: 10, 20)

use khoa_testkit::browser::{inputs, location, query, Browser};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PASSWORD: &str = "a long bench password";
const CALLBACK: &str = "http://127.0.0.1:9/cb";

fn khoa_bin() -> String {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.with_file_name("khoa").to_string_lossy().into_owned()
}

fn cli(bin: &str, env: &[(String, String)], args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut child = Command::new(bin)
        .args(args)
        .envs(env.iter().cloned())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
    if let (Some(mut pipe), Some(input)) = (child.stdin.take(), stdin) {
        let _ = pipe.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().expect("khoa output");
    assert!(out.status.success(), "khoa {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[derive(Default)]
struct Counters {
    signins: AtomicU64,
    failures: AtomicU64,
}

async fn one_signin(base: &str, secret: &str, m2m_secret: &str) -> Result<(), String> {
    let b = Browser::new();
    let auth = format!(
        "{base}/oauth2/auth?client_id=app&redirect_uri={}&response_type=code&scope=openid%20offline_access&state=s",
        url::form_urlencoded::byte_serialize(CALLBACK.as_bytes()).collect::<String>()
    );
    let page = b.http.get(&auth).send().await.map_err(|e| e.to_string())?.text().await.map_err(|e| e.to_string())?;
    let f = inputs(&page);
    let (Some(interaction), Some(csrf)) = (f.get("interaction"), f.get("csrf_token")) else {
        return Err("no login form".into());
    };
    let form = [
        ("interaction", interaction.as_str()),
        ("csrf_token", csrf.as_str()),
        ("username", "bench"),
        ("password", PASSWORD),
    ];
    let res = b.http.post(format!("{base}/oauth2/auth/login")).form(&form).send().await.map_err(|e| e.to_string())?;
    if res.status() != 303 {
        return Err(format!("login: {}", res.status()));
    }
    let res = b.get(&location(&res, base)).await;
    let code = query(&location(&res, base)).get("code").cloned().ok_or("no code")?;
    let http = reqwest::Client::new();
    let token = |form: Vec<(&'static str, String)>, id: &'static str, s: String| {
        let req = http.post(format!("{base}/oauth2/token")).basic_auth(id, Some(s)).form(&form);
        async move {
            let res = req.send().await.map_err(|e| e.to_string())?;
            if res.status() != 200 {
                return Err(format!("token: {}", res.status()));
            }
            res.json::<serde_json::Value>().await.map_err(|e| e.to_string())
        }
    };
    let mut body = token(
        vec![("grant_type", "authorization_code".to_string()), ("code", code), ("redirect_uri", CALLBACK.into())],
        "app",
        secret.into(),
    )
    .await?;
    for _ in 0..2 {
        let rt = body["refresh_token"].as_str().ok_or("no refresh token")?.to_string();
        body = token(vec![("grant_type", "refresh_token".to_string()), ("refresh_token", rt)], "app", secret.into())
            .await?;
    }
    token(vec![("grant_type", "client_credentials".to_string())], "m2m", m2m_secret.into()).await?;
    Ok(())
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("khoa.db"))
                .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

mod scenarios;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("soak") => soak(&args).await,
        Some("run") => run(&args).await,
        _ => {
            eprintln!("usage: khoa-bench soak [MINUTES] [SIGN-INS PER SECOND]\n       khoa-bench run [SECONDS PER SCENARIO] [CONCURRENCY] [CHART.svg]");
            std::process::exit(2);
        }
    }
}

/// Starts a release khoa on a fresh SQLite database with the bench clients and user.
async fn start_khoa(
    env_extra: &[(&str, &str)],
) -> (std::process::Child, Vec<(String, String)>, String, String, String, std::path::PathBuf) {
    let bin = khoa_bin();
    let dir = tempfile_dir();
    let port = khoa_testkit::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut env: Vec<(String, String)> = [
        ("KHOA_DATABASE_URL", format!("sqlite://{}/khoa.db", dir.display())),
        ("KHOA_SECRET", "bench-master-secret-0123456789abcdef".into()),
        ("KHOA_LISTEN", format!("127.0.0.1:{port}")),
        ("KHOA_ISSUER", base.clone()),
        ("KHOA_LOG", "warn".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    env.extend(env_extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let client =
        cli(&bin, &env, &["client", "create", "--id", "bench", "--redirect-uri", CALLBACK, "--skip-consent"], None);
    let secret =
        serde_json::from_str::<serde_json::Value>(&client).unwrap()["client_secret"].as_str().unwrap().to_string();
    let m2m = cli(
        &bin,
        &env,
        &["client", "create", "--id", "m2m", "--grant-types", "client_credentials", "--scopes", "api"],
        None,
    );
    let m2m_secret =
        serde_json::from_str::<serde_json::Value>(&m2m).unwrap()["client_secret"].as_str().unwrap().to_string();
    cli(&bin, &env, &["user", "create", "--username", "bench", "--password-stdin"], Some(PASSWORD));
    let server =
        Command::new(&bin).arg("serve").envs(env.iter().cloned()).stdout(Stdio::null()).spawn().expect("khoa serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{base}/health/ready")).await.map(|r| r.status() != 200).unwrap_or(true) {
        assert!(Instant::now() < deadline, "khoa did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (server, env, base, secret, m2m_secret, dir)
}

async fn run(args: &[String]) {
    use scenarios::*;
    let secs: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let concurrency: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(16);
    let chart = args.get(4).cloned();
    let duration = Duration::from_secs(secs);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);

    println!("khoa-bench run: {secs} s per scenario, concurrency {concurrency}, {cores} cores, SQLite, RS256");
    let sign = signing_limit(khoa_core::jose::SigningAlgorithm::RS256, Duration::from_secs(3));
    let argon = argon2_limit(Duration::from_secs(3));
    println!("limits (in-process, all cores): RS256 {sign:.0} signatures/s, argon2id (m=19 MiB, t=2) {argon:.1} verifications/s");

    let (mut server, _env, base, secret, m2m_secret, dir) = start_khoa(&[]).await;
    let pid = server.id();
    let t = Arc::new(Target {
        base: base.clone(),
        secret: secret.clone(),
        m2m_secret,
        password: PASSWORD.into(),
        callback: CALLBACK.into(),
    });
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let idle_rss = rss_kib(pid);

    // One SSO session and one refresh chain per worker.
    let mut browsers = vec![];
    let mut chains = vec![];
    for _ in 0..concurrency {
        let b = logged_in_browser(&t).await.expect("login");
        let first = sso_round_trip(&t, &b).await.expect("first round trip");
        chains.push(tokio::sync::Mutex::new(first["refresh_token"].as_str().unwrap().to_string()));
        browsers.push(b);
    }
    let browsers = Arc::new(browsers);
    let chains = Arc::new(chains);
    let token = sso_round_trip(&t, &browsers[0]).await.expect("round trip");
    let access = Arc::new(token["access_token"].as_str().unwrap().to_string());
    let http = reqwest::Client::new();
    let steps = sql_per_step(&t, &browsers[0], &http, &chains[0], &access).await;
    let mut outcomes = vec![];

    {
        let (t, browsers) = (t.clone(), browsers.clone());
        outcomes.push(
            run("sso", concurrency, duration, 2.0, "signatures", move |w| {
                let (t, browsers) = (t.clone(), browsers.clone());
                async move { sso_round_trip(&t, &browsers[w]).await.map(|_| ()) }
            })
            .await,
        );
    }
    for (name, scope, cost) in [("refresh (openid)", None, 2.0), ("refresh (no openid)", Some("offline_access"), 1.0)] {
        let (t, chains, http) = (t.clone(), chains.clone(), http.clone());
        outcomes.push(
            run(name, concurrency, duration, cost, "signatures", move |w| {
                let (t, chains, http) = (t.clone(), chains.clone(), http.clone());
                async move {
                    let mut rt = chains[w].lock().await;
                    let mut form = vec![("grant_type", "refresh_token".to_string()), ("refresh_token", rt.clone())];
                    if let Some(s) = scope {
                        form.push(("scope", s.to_string()));
                    }
                    let res = http
                        .post(format!("{}/oauth2/token", t.base))
                        .basic_auth("bench", Some(&t.secret))
                        .form(&form)
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    if res.status() != 200 {
                        return Err(format!("refresh: {}", res.status()));
                    }
                    let body: serde_json::Value = res.json().await.map_err(|e| e.to_string())?;
                    *rt = body["refresh_token"].as_str().ok_or("no refresh token")?.to_string();
                    Ok(())
                }
            })
            .await,
        );
    }
    {
        let (t, http) = (t.clone(), http.clone());
        outcomes.push(
            one_request("client_credentials", concurrency, duration, 1.0, "signatures", move || {
                http.post(format!("{}/oauth2/token", t.base))
                    .basic_auth("m2m", Some(&t.m2m_secret))
                    .form(&[("grant_type", "client_credentials")])
            })
            .await,
        );
    }
    {
        let (t, http, access) = (t.clone(), http.clone(), access.clone());
        outcomes.push(
            one_request("introspect", concurrency, duration, 0.0, "-", move || {
                http.post(format!("{}/oauth2/introspect", t.base))
                    .basic_auth("bench", Some(&t.secret))
                    .form(&[("token", access.as_str())])
            })
            .await,
        );
    }
    {
        let (t, http, access) = (t.clone(), http.clone(), access.clone());
        outcomes.push(
            one_request("userinfo", concurrency, duration, 0.0, "-", move || {
                http.get(format!("{}/userinfo", t.base)).bearer_auth(access.as_str())
            })
            .await,
        );
    }
    for (name, path) in [("discovery", "/.well-known/openid-configuration"), ("jwks", "/.well-known/jwks.json")] {
        let (t, http) = (t.clone(), http.clone());
        outcomes.push(
            one_request(name, concurrency, duration, 0.0, "-", move || http.get(format!("{}{path}", t.base))).await,
        );
    }
    {
        let t = t.clone();
        outcomes.push(
            run("login", concurrency, duration, 1.0, "argon2id", move |_| {
                let t = t.clone();
                async move { logged_in_browser(&t).await.map(|_| ()) }
            })
            .await,
        );
    }

    let peak_rss = peak.load(Ordering::Relaxed);
    sampler.abort();
    println!("\n| scenario | per second | p50 (ms) | p99 (ms) | errors | limit | share of limit |");
    println!("|---|---|---|---|---|---|---|");
    for o in &outcomes {
        let (limit, share) = match o.bound_by {
            "signatures" => {
                let l = sign / o.cost;
                (format!("{l:.0} ({} sig/op)", o.cost), format!("{:.0} %", 100.0 * o.per_second / l))
            }
            "argon2id" => (format!("{argon:.1} hashes/s"), format!("{:.0} %", 100.0 * o.per_second / argon)),
            _ => ("-".into(), "-".into()),
        };
        println!(
            "| {} | {:.0} | {:.1} | {:.1} | {} | {limit} | {share} |",
            o.name, o.per_second, o.p50_ms, o.p99_ms, o.errors
        );
    }
    println!("\n| step | SQL statements (BEGIN/COMMIT included) | transactions |");
    println!("|---|---|---|");
    for (name, statements, transactions) in &steps {
        println!("| {name} | {statements:.1} | {transactions:.1} |");
    }
    println!("\nserver RSS: idle {} MiB, peak under load {} MiB", idle_rss / 1024, peak_rss / 1024);
    if let Some(path) = chart {
        std::fs::write(&path, svg_chart(&outcomes)).expect("write chart");
        println!("chart: {path}");
    }
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// SQL statements (BEGIN and COMMIT included) and transactions per step, counted by
/// the server (`khoa_sql_statements_total`, `khoa_sql_transactions_total`): each step
/// runs `N` times in a row between two readings; the reading's own cost is taken off.
async fn sql_per_step(
    t: &scenarios::Target,
    b: &khoa_testkit::browser::Browser,
    http: &reqwest::Client,
    chain: &tokio::sync::Mutex<String>,
    access: &str,
) -> Vec<(&'static str, f64, f64)> {
    use scenarios::*;
    const N: usize = 50;
    let read = || async { sql_counters(&t.base).await.expect("SQL counters at /metrics") };
    let (s0, t0) = read().await;
    let (s1, t1) = read().await;
    let reading = (s1 - s0, t1 - t0);
    let mut rows = vec![];
    let mut measure = |name: &'static str, before: (f64, f64), after: (f64, f64), n: usize| {
        let per = |a: f64, b: f64, r: f64| ((a - b - r) / n as f64).max(0.0);
        rows.push((name, per(after.0, before.0, reading.0), per(after.1, before.1, reading.1)));
    };
    let before = read().await;
    let mut codes = vec![];
    for _ in 0..N {
        codes.push(authorize(t, b).await.expect("authorize"));
    }
    let after = read().await;
    measure("authorize (SSO session)", before, after, N);
    let before = read().await;
    let mut last = serde_json::Value::Null;
    for (code, verifier) in &codes {
        last = exchange(t, b, code, verifier).await.expect("exchange");
    }
    let after = read().await;
    measure("code exchange", before, after, N);
    let refresh = |scope: Option<&'static str>, rt: String| {
        let mut form = vec![("grant_type", "refresh_token".to_string()), ("refresh_token", rt)];
        if let Some(s) = scope {
            form.push(("scope", s.to_string()));
        }
        http.post(format!("{}/oauth2/token", t.base)).basic_auth("bench", Some(&t.secret)).form(&form).send()
    };
    let mut rt = last["refresh_token"].as_str().expect("refresh token").to_string();
    for (name, scope) in [("refresh (openid)", None), ("refresh (no openid)", Some("offline_access"))] {
        let before = read().await;
        for _ in 0..N {
            let body: serde_json::Value = refresh(scope, rt).await.expect("refresh").json().await.expect("json");
            rt = body["refresh_token"].as_str().expect("refresh token").to_string();
        }
        let after = read().await;
        measure(name, before, after, N);
    }
    let _ = chain;
    let singles: [(&'static str, Box<dyn Fn() -> reqwest::RequestBuilder + '_>); 3] = [
        (
            "client_credentials",
            Box::new(|| {
                http.post(format!("{}/oauth2/token", t.base))
                    .basic_auth("m2m", Some(&t.m2m_secret))
                    .form(&[("grant_type", "client_credentials")])
            }),
        ),
        (
            "introspect",
            Box::new(|| {
                http.post(format!("{}/oauth2/introspect", t.base))
                    .basic_auth("bench", Some(&t.secret))
                    .form(&[("token", access)])
            }),
        ),
        ("userinfo", Box::new(|| http.get(format!("{}/userinfo", t.base)).bearer_auth(access))),
    ];
    for (name, build) in &singles {
        let before = read().await;
        for _ in 0..N {
            let res = build().send().await.expect(name);
            assert_eq!(res.status(), 200, "{name}");
        }
        let after = read().await;
        measure(name, before, after, N);
    }
    let before = read().await;
    for _ in 0..10 {
        logged_in_browser(t).await.expect("login");
    }
    let after = read().await;
    measure("login (page + form)", before, after, 10);
    rows
}

/// A horizontal bar chart of requests per second (log scale), as SVG.
fn svg_chart(outcomes: &[scenarios::Outcome]) -> String {
    let max = outcomes.iter().map(|o| o.per_second).fold(1.0f64, f64::max).log10().ceil();
    let row = 28;
    let height = 40 + row * outcomes.len();
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"720\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"13\">\n");
    s.push_str("<text x=\"10\" y=\"20\" font-weight=\"bold\">khoa: operations per second (log scale)</text>\n");
    for (i, o) in outcomes.iter().enumerate() {
        let y = 34 + i * row;
        let w = if o.per_second > 1.0 { (o.per_second.log10() / max * 440.0) as i64 } else { 2 };
        s.push_str(&format!(
            "<text x=\"10\" y=\"{}\">{}</text><rect x=\"170\" y=\"{y}\" width=\"{w}\" height=\"18\" fill=\"#0b5fff\"/><text x=\"{}\" y=\"{}\">{:.0}/s</text>\n",
            y + 14,
            o.name,
            176 + w,
            y + 14,
            o.per_second
        ));
    }
    s.push_str("</svg>\n");
    s
}

async fn soak(args: &[String]) {
    let minutes: u64 = args.get(2).and_then(|m| m.parse().ok()).unwrap_or(10);
    let rate: u64 = args.get(3).and_then(|r| r.parse().ok()).unwrap_or(20);
    let bin = khoa_bin();
    let dir = tempfile_dir();
    let port = khoa_testkit::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let postgres = std::env::var("KHOA_BENCH_POSTGRES_URL").ok();
    let database_url = postgres.clone().unwrap_or_else(|| format!("sqlite://{}/khoa.db", dir.display()));
    let env: Vec<(String, String)> = [
        ("KHOA_DATABASE_URL", database_url.as_str()),
        ("KHOA_SECRET", "bench-master-secret-0123456789abcdef"),
        ("KHOA_LISTEN", &format!("127.0.0.1:{port}")),
        ("KHOA_ISSUER", &base),
        ("KHOA_LOG", "warn"),
        ("KHOA_AUTHORIZATION_CODE_LIFETIME", "10s"),
        ("KHOA_ACCESS_TOKEN_LIFETIME", "30s"),
        ("KHOA_ID_TOKEN_LIFETIME", "30s"),
        ("KHOA_REFRESH_TOKEN_LIFETIME", "60s"),
        ("KHOA_SESSION_LIFETIME", "60s"),
        ("KHOA_CLEANUP_INTERVAL", "5s"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let client =
        cli(&bin, &env, &["client", "create", "--id", "app", "--redirect-uri", CALLBACK, "--skip-consent"], None);
    let secret =
        serde_json::from_str::<serde_json::Value>(&client).unwrap()["client_secret"].as_str().unwrap().to_string();
    let m2m = cli(
        &bin,
        &env,
        &["client", "create", "--id", "m2m", "--grant-types", "client_credentials", "--scopes", "api"],
        None,
    );
    let m2m_secret =
        serde_json::from_str::<serde_json::Value>(&m2m).unwrap()["client_secret"].as_str().unwrap().to_string();
    cli(&bin, &env, &["user", "create", "--username", "bench", "--password-stdin"], Some(PASSWORD));

    let mut server =
        Command::new(&bin).arg("serve").envs(env.iter().cloned()).stdout(Stdio::piped()).spawn().expect("khoa serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{base}/health/ready")).await.map(|r| r.status() != 200).unwrap_or(true) {
        assert!(Instant::now() < deadline, "khoa did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = server.id();
    let store = khoa_store::connect(&database_url).await.expect("database");
    let counters = Arc::new(Counters::default());
    let limit = Arc::new(tokio::sync::Semaphore::new(64));
    let end = Instant::now() + Duration::from_secs(minutes * 60);

    println!("khoa soak: {rate} sign-ins/s for {minutes} min, lifetimes: code 10s, access 30s, refresh 60s, session 60s; cleanup every 5s");
    println!("database: {}", if postgres.is_some() { "PostgreSQL" } else { "SQLite" });
    let tables = [
        "sessions",
        "session_clients",
        "interactions",
        "authorization_codes",
        "access_tokens",
        "refresh_tokens",
        "login_throttle",
    ];
    println!("\n| t (s) | sign-ins | failed | {} | db files (KiB) | RSS (MiB) |", tables.join(" | "));
    println!("|{}", "---|".repeat(tables.len() + 5));
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    let mut next_sample = Instant::now();
    while Instant::now() < end {
        ticker.tick().await;
        if Instant::now() >= next_sample {
            next_sample += Duration::from_secs(30);
            let counts = store.row_counts().await.unwrap_or_default();
            let get = |t: &str| counts.iter().find(|(n, _)| *n == t).map(|(_, c)| *c).unwrap_or(0);
            let size = if postgres.is_some() { 0 } else { dir_size(&dir) / 1024 };
            println!(
                "| {} | {} | {} | {} | {} | {} |",
                started.elapsed().as_secs(),
                counters.signins.load(Ordering::Relaxed),
                counters.failures.load(Ordering::Relaxed),
                tables.iter().map(|t| get(t).to_string()).collect::<Vec<_>>().join(" | "),
                size,
                rss_kib(pid) / 1024
            );
        }
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            counters.failures.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let (base, secret, m2m_secret, counters) = (base.clone(), secret.clone(), m2m_secret.clone(), counters.clone());
        tokio::spawn(async move {
            match one_signin(&base, &secret, &m2m_secret).await {
                Ok(()) => counters.signins.fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    eprintln!("sign-in failed: {e}");
                    counters.failures.fetch_add(1, Ordering::Relaxed)
                }
            };
            drop(permit);
        });
    }
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("khoa-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench folder");
    dir
}
