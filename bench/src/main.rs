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

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some("soak") {
        eprintln!("usage: khoa-bench soak [MINUTES] [SIGN-INS PER SECOND]");
        std::process::exit(2);
    }
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
