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

mod admin;
mod scenarios;
mod signin;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("soak") => soak(&args).await,
        Some("run") => run(&args).await,
        Some("admin") => admin::admin(&args).await,
        Some("import") => admin::import(&args).await,
        Some("signin") => signin::signin(&args).await,
        _ => {
            eprintln!("usage: khoa-bench soak [MINUTES] [SIGN-INS PER SECOND]\n       khoa-bench run [SECONDS PER SCENARIO] [CONCURRENCY] [CHART.svg]\n       khoa-bench admin [USERS] [CLIENTS] [CONCURRENCY]\n       khoa-bench import [USERS]\n       khoa-bench signin [SECONDS PER SCENARIO] [CONCURRENCY]");
            std::process::exit(2);
        }
    }
}

/// Starts a release khoa on a fresh SQLite database with the bench clients and user.
async fn start_khoa(
    env_extra: &[(&str, &str)],
    id_token_alg: &str,
) -> (std::process::Child, Vec<(String, String)>, String, String, String, std::path::PathBuf) {
    let bin = khoa_bin();
    let dir = tempfile_dir();
    let port = khoa_testkit::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut env = khoa_env(&dir, port, &base);
    for (k, v) in env_extra {
        env.retain(|(key, _)| key != k);
        env.push((k.to_string(), v.to_string()));
    }
    let (secret, m2m_secret) = prepare(&bin, &env, "bench", &["--id-token-alg", id_token_alg]);
    // Its log (a line per request at the default level) goes to a file, as in a
    // deployment that keeps one.
    let log = std::fs::File::create(dir.join("khoa.log")).map(Stdio::from).unwrap_or_else(|_| Stdio::null());
    let server = serve_until_ready(&bin, &env, &base, Stdio::null(), log).await;
    (server, env, base, secret, m2m_secret, dir)
}

/// The environment of a bench server on SQLite in `dir`, listening on loopback `port`
/// with `issuer`. The access log stays on (the default, as a deployment keeps it).
/// Every login of a load is the same few accounts from one address, many at once:
/// login throttling counts attempts in flight, so its limits are lifted here.
fn khoa_env(dir: &std::path::Path, port: u16, issuer: &str) -> Vec<(String, String)> {
    [
        ("KHOA_DATABASE_URL", format!("sqlite://{}/khoa.db", dir.display())),
        ("KHOA_SECRET", "bench-master-secret-0123456789abcdef".into()),
        ("KHOA_LISTEN", format!("127.0.0.1:{port}")),
        ("KHOA_ADMIN_LISTEN", "127.0.0.1:0".into()),
        ("KHOA_ISSUER", issuer.to_string()),
        ("KHOA_LOGIN_FREE_FAILURES", "1000".into()),
        ("KHOA_LOGIN_ADDRESS_FREE_FAILURES", "100000".into()),
        ("KHOA_LOGIN_ACCOUNT_FREE_FAILURES", "100000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Creates the skip-consent client `client_id`, the client_credentials client `m2m`
/// and the user `bench`; returns the two clients' secrets.
fn prepare(bin: &str, env: &[(String, String)], client_id: &str, extra: &[&str]) -> (String, String) {
    let secret_of = |out: String| {
        serde_json::from_str::<serde_json::Value>(&out)
            .ok()
            .and_then(|v| v["client_secret"].as_str().map(str::to_string))
    };
    let mut create = vec!["client", "create", "--id", client_id, "--redirect-uri", CALLBACK, "--skip-consent"];
    create.extend(extra);
    let secret = secret_of(cli(bin, env, &create, None)).expect("client secret");
    let m2m = ["client", "create", "--id", "m2m", "--grant-types", "client_credentials", "--scopes", "api"];
    let m2m_secret = secret_of(cli(bin, env, &m2m, None)).expect("m2m secret");
    cli(bin, env, &["user", "create", "--username", "bench", "--password-stdin"], Some(PASSWORD));
    (secret, m2m_secret)
}

/// Starts `khoa serve` and waits until it is ready.
async fn serve_until_ready(
    bin: &str,
    env: &[(String, String)],
    base: &str,
    stdout: Stdio,
    stderr: Stdio,
) -> std::process::Child {
    let server = Command::new(bin)
        .arg("serve")
        .envs(env.iter().cloned())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("khoa serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{base}/health/ready")).await.map(|r| r.status() != 200).unwrap_or(true) {
        assert!(Instant::now() < deadline, "khoa did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server
}

/// What `khoa-bench run` was asked for.
struct RunOptions {
    secs: u64,
    concurrency: usize,
    chart: Option<String>,
    alg: khoa_core::jose::SigningAlgorithm,
    opaque: bool,
    /// node-oidc-provider set-ups started by scripts/bench.sh, for the comparison:
    /// (label, issuer URL, the processes whose CPU time is theirs).
    peers: Vec<(String, String, Vec<u32>)>,
    /// Also runs khoa on this (empty) PostgreSQL database.
    postgres: Option<String>,
}

fn run_options(args: &[String]) -> RunOptions {
    let mut positional = vec![];
    let mut o = RunOptions {
        secs: 10,
        concurrency: 32,
        chart: None,
        alg: khoa_core::jose::SigningAlgorithm::RS256,
        opaque: false,
        peers: vec![],
        postgres: None,
    };
    // KHOA_BENCH_PEER_PIDS: for each --peer in order, its process ids (with their
    // descendants), e.g. "4242;4250,4251".
    let pids =
        std::env::var("KHOA_BENCH_PEER_PIDS").or_else(|_| std::env::var("KHOA_BENCH_PEER_PID")).unwrap_or_default();
    let mut pids = pids.split(';').map(|p| p.split(',').filter_map(|p| p.trim().parse().ok()).collect::<Vec<u32>>());
    let mut it = args.iter().skip(2);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--alg" => {
                o.alg = it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
                    eprintln!("--alg takes RS256, ES256 or EdDSA");
                    std::process::exit(2)
                })
            }
            "--opaque" => o.opaque = true,
            // --peer [LABEL=]URL, once per set-up.
            "--peer" => {
                let Some(v) = it.next() else { continue };
                let (label, url) = match v.split_once('=') {
                    Some((label, url)) if !label.contains(':') => (label.to_string(), url.to_string()),
                    _ => ("node-oidc-provider".to_string(), v.clone()),
                };
                o.peers.push((label, url, pids.next().unwrap_or_default()));
            }
            "--postgres" => o.postgres = it.next().cloned(),
            _ => positional.push(a.clone()),
        }
    }
    if let Some(v) = positional.first().and_then(|s| s.parse().ok()) {
        o.secs = v;
    }
    if let Some(v) = positional.get(1).and_then(|s| s.parse().ok()) {
        o.concurrency = v;
    }
    o.chart = positional.get(2).cloned();
    o
}

/// One server's results: its scenarios, and (khoa only) SQL per step and memory.
struct Suite {
    label: String,
    outcomes: Vec<scenarios::Outcome>,
    steps: Vec<(&'static str, f64, f64)>,
    rss: Option<(u64, u64)>,
}

async fn run(args: &[String]) {
    use scenarios::*;
    let o = run_options(args);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let alg = o.alg.as_str();
    println!(
        "khoa-bench run: {} s per scenario, concurrency {}, {cores} cores, SQLite{}, {alg}{}",
        o.secs,
        o.concurrency,
        if o.postgres.is_some() { " and PostgreSQL" } else { "" },
        if o.peers.is_empty() { "" } else { ", against node-oidc-provider" }
    );
    let sign = signing_limit(o.alg, Duration::from_secs(3));
    let argon = argon2_limit(Duration::from_secs(3));
    println!("limits (in-process, all cores): {alg} {sign:.0} signatures/s, argon2id (m=19 MiB, t=2) {argon:.1} verifications/s");

    let mut suites = vec![];
    // With the peer, khoa runs with its JWT default and with opaque access tokens,
    // the peer's default; otherwise as asked.
    let formats: Vec<bool> = if o.peers.is_empty() { vec![o.opaque] } else { vec![false, true] };
    for opaque in formats {
        suites.push(khoa_suite(&o, opaque, None).await);
    }
    let khoa_suites = suites.len();
    for (label, url, pids) in &o.peers {
        let t = Arc::new(Target::peer(url, PASSWORD, CALLBACK));
        let mut browsers = vec![];
        for _ in 0..o.concurrency {
            browsers.push(peer_logged_in_browser(&t).await.expect("peer login"));
        }
        server_under_test(pids);
        let outcomes = scenario_suite(&o, t, browsers, (1.0, 1.0, 0.0, 0.0)).await;
        suites.push(Suite { label: format!("{label} (opaque)"), outcomes, steps: vec![], rss: None });
    }
    let compared = suites.len();
    if let Some(url) = &o.postgres {
        suites.push(khoa_suite(&o, o.opaque, Some(url)).await);
    }

    for suite in &suites {
        println!("\n{}\n", suite.label);
        println!("| scenario | per second | p50 (ms) | p99 (ms) | errors | limit | share of limit | CPU ms/op: server, load generator |");
        println!("|---|---|---|---|---|---|---|---|");
        for o in &suite.outcomes {
            let (limit, share) = match o.bound_by {
                "signatures" if o.cost > 0.0 => {
                    let l = sign / o.cost;
                    (format!("{l:.0} ({} sig/op)", o.cost), format!("{:.0} %", 100.0 * o.per_second / l))
                }
                "argon2id" => (format!("{argon:.1} hashes/s"), format!("{:.0} %", 100.0 * o.per_second / argon)),
                _ => ("-".into(), "-".into()),
            };
            let cpu = o.cpu_ms.map_or_else(|| "-".into(), |(server, load)| format!("{server:.3}, {load:.3}"));
            println!(
                "| {} | {:.0} | {:.1} | {:.1} | {} | {limit} | {share} | {cpu} |",
                o.name, o.per_second, o.p50_ms, o.p99_ms, o.errors
            );
        }
        if !suite.steps.is_empty() {
            println!("\n| step | SQL statements (BEGIN/COMMIT included) | transactions |");
            println!("|---|---|---|");
            for (name, statements, transactions) in &suite.steps {
                println!("| {name} | {statements:.1} | {transactions:.1} |");
            }
        }
        if let Some((idle, peak)) = suite.rss {
            println!("\nserver RSS: idle {} MiB, peak under load {} MiB", idle / 1024, peak / 1024);
        }
    }
    if !o.peers.is_empty() {
        // The peer at its best: for each scenario, the faster of its set-ups.
        let peers = &suites[khoa_suites..compared];
        let labels: Vec<&str> = peers.iter().map(|p| p.label.as_str()).collect();
        println!(
            "\n| scenario | khoa, JWT access tokens | khoa, opaque | {} | khoa opaque ÷ the best peer |",
            labels.join(" | ")
        );
        println!("|---|---|---|{}---|", "---|".repeat(peers.len()));
        for (i, jwt) in suites[0].outcomes.iter().enumerate() {
            let opaque = &suites[1].outcomes[i];
            let each: Vec<f64> = peers.iter().map(|p| p.outcomes.get(i).map_or(0.0, |o| o.per_second)).collect();
            let best = each.iter().copied().fold(0.0, f64::max);
            let ratio = if best > 0.0 { format!("{:.1}×", opaque.per_second / best) } else { "-".into() };
            let each: Vec<String> =
                each.iter().map(|v| if *v > 0.0 { format!("{v:.0}") } else { "not compared".into() }).collect();
            println!(
                "| {} | {:.0} | {:.0} | {} | {ratio} |",
                jwt.name,
                jwt.per_second,
                opaque.per_second,
                each.join(" | ")
            );
        }
    }
    if let Some(path) = &o.chart {
        std::fs::write(path, svg_chart(&suites)).expect("write chart");
        println!("chart: {path}");
    }
}

/// Starts khoa on a fresh SQLite database and runs every scenario against it.
async fn khoa_suite(o: &RunOptions, opaque: bool, postgres: Option<&str>) -> Suite {
    use scenarios::*;
    let alg = o.alg.as_str();
    let mut env = vec![("KHOA_ACCESS_TOKEN_ALG", alg)];
    if opaque {
        env.push(("KHOA_ACCESS_TOKEN_FORMAT", "opaque"));
    }
    if let Some(url) = postgres {
        env.push(("KHOA_DATABASE_URL", url));
    }
    let (mut server, _env, base, secret, m2m_secret, dir) = start_khoa(&env, alg).await;
    let pid = server.id();
    let t = Arc::new(Target::khoa(&base, &secret, &m2m_secret, PASSWORD, CALLBACK));
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
    let mut browsers = vec![];
    for _ in 0..o.concurrency {
        browsers.push(logged_in_browser(&t).await.expect("login"));
    }
    let (_, access) = first_tokens(&t, &browsers[0]).await;
    let steps = sql_per_step(&t, &browsers[0], &reqwest::Client::new(), &access).await;
    // Signatures per operation: an ID token for openid, and a JWT access token.
    let at = if opaque { 0.0 } else { 1.0 };
    server_under_test(&[pid]);
    let outcomes = scenario_suite(o, t, browsers, (1.0 + at, 1.0 + at, at, at)).await;
    let peak_rss = peak.load(Ordering::Relaxed);
    sampler.abort();
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let label = format!(
        "khoa, {} access tokens, {alg}, {}",
        if opaque { "opaque" } else { "JWT (RFC 9068)" },
        if postgres.is_some() { "PostgreSQL" } else { "SQLite" }
    );
    Suite { label, outcomes, steps, rss: Some((idle_rss, peak_rss)) }
}

/// The first token response of a worker's session: its refresh and access tokens.
async fn first_tokens(t: &scenarios::Target, b: &khoa_testkit::browser::Browser) -> (String, String) {
    let first = scenarios::sso_round_trip(t, b).await.expect("first round trip");
    let rt = first["refresh_token"].as_str().expect("a refresh token").to_string();
    let at = first["access_token"].as_str().expect("an access token").to_string();
    (rt, at)
}

/// Every scenario against one server. `costs` are the signatures per operation of
/// sso, refresh (openid), refresh (no openid) and client_credentials.
async fn scenario_suite(
    o: &RunOptions,
    t: Arc<scenarios::Target>,
    browsers: Vec<khoa_testkit::browser::Browser>,
    costs: (f64, f64, f64, f64),
) -> Vec<scenarios::Outcome> {
    use scenarios::*;
    let (concurrency, duration) = (o.concurrency, Duration::from_secs(o.secs));
    let mut chains = vec![];
    for b in &browsers {
        chains.push(tokio::sync::Mutex::new(first_tokens(&t, b).await.0));
    }
    let browsers = Arc::new(browsers);
    let chains = Arc::new(chains);
    // The token for introspect and userinfo comes from a session of its own, which
    // no refresh chain shares (the peer ties its tokens to one grant per session).
    let own = if t.peer { peer_logged_in_browser(&t).await } else { logged_in_browser(&t).await };
    let access = Arc::new(first_tokens(&t, &own.expect("a session for the access token")).await.1);
    let http = reqwest::Client::new();
    let mut outcomes = vec![];
    {
        let (t, browsers) = (t.clone(), browsers.clone());
        outcomes.push(
            run("sso", concurrency, duration, costs.0, "signatures", move |w| {
                let (t, browsers) = (t.clone(), browsers.clone());
                async move { sso_round_trip(&t, &browsers[w]).await.map(|_| ()) }
            })
            .await,
        );
    }
    for (name, scope, cost) in [("refresh (openid)", None, costs.1), ("refresh (no openid)", Some("profile"), costs.2)]
    {
        let (t, chains, http) = (t.clone(), chains.clone(), http.clone());
        outcomes.push(
            run(name, concurrency, duration, cost, "signatures", move |w| {
                let (t, chains, http) = (t.clone(), chains.clone(), http.clone());
                async move {
                    let mut rt = chains[w].lock().await;
                    *rt = refresh(&t, &http, &rt, scope).await?;
                    Ok(())
                }
            })
            .await,
        );
    }
    {
        let (t, http) = (t.clone(), http.clone());
        outcomes.push(
            one_request("client_credentials", concurrency, duration, costs.3, "signatures", move || {
                http.post(t.url(t.paths.token))
                    .basic_auth("m2m", Some(&t.m2m_secret))
                    .form(&[("grant_type", "client_credentials"), ("scope", "api")])
            })
            .await,
        );
    }
    {
        let (t, http, access) = (t.clone(), http.clone(), access.clone());
        outcomes.push(
            one_request("introspect", concurrency, duration, 0.0, "-", move || {
                http.post(t.url(t.paths.introspect))
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
                http.get(t.url(t.paths.userinfo)).bearer_auth(access.as_str())
            })
            .await,
        );
    }
    for (name, path) in [("discovery", "/.well-known/openid-configuration"), ("jwks", t.paths.jwks)] {
        let (t, http) = (t.clone(), http.clone());
        outcomes.push(one_request(name, concurrency, duration, 0.0, "-", move || http.get(t.url(path))).await);
    }
    if !t.peer {
        let t = t.clone();
        outcomes.push(
            run("login", concurrency, duration, 1.0, "argon2id", move |_| {
                let t = t.clone();
                async move { logged_in_browser(&t).await.map(|_| ()) }
            })
            .await,
        );
    } else {
        outcomes.push(Outcome {
            name: "login",
            per_second: 0.0,
            p50_ms: 0.0,
            p99_ms: 0.0,
            errors: 0,
            cost: 1.0,
            bound_by: "-",
            cpu_ms: None,
        });
    }
    outcomes
}

/// SQL statements (BEGIN and COMMIT included) and transactions per step, counted by
/// the server (`khoa_sql_statements_total`, `khoa_sql_transactions_total`): each step
/// runs `N` times in a row between two readings; the reading's own cost is taken off.
async fn sql_per_step(
    t: &scenarios::Target,
    b: &khoa_testkit::browser::Browser,
    http: &reqwest::Client,
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
    let mut rt = last["refresh_token"].as_str().expect("refresh token").to_string();
    for (name, scope) in [("refresh (openid)", None), ("refresh (no openid)", Some("profile"))] {
        let before = read().await;
        for _ in 0..N {
            rt = refresh(t, http, &rt, scope).await.expect("refresh");
        }
        let after = read().await;
        measure(name, before, after, N);
    }
    type Build<'a> = Box<dyn Fn() -> reqwest::RequestBuilder + 'a>;
    let singles: [(&'static str, Build<'_>); 3] = [
        (
            "client_credentials",
            Box::new(|| {
                http.post(t.url(t.paths.token))
                    .basic_auth("m2m", Some(&t.m2m_secret))
                    .form(&[("grant_type", "client_credentials"), ("scope", "api")])
            }),
        ),
        (
            "introspect",
            Box::new(|| {
                http.post(t.url(t.paths.introspect)).basic_auth("bench", Some(&t.secret)).form(&[("token", access)])
            }),
        ),
        ("userinfo", Box::new(|| http.get(t.url(t.paths.userinfo)).bearer_auth(access))),
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

/// Grouped horizontal bars of operations per second (log scale), one colour per
/// server, as SVG.
fn svg_chart(suites: &[Suite]) -> String {
    let colours = ["#0b5fff", "#00a36c", "#d9480f", "#9c36b5", "#f08c00"];
    let max =
        suites.iter().flat_map(|s| s.outcomes.iter().map(|o| o.per_second)).fold(10.0f64, f64::max).log10().ceil();
    let names: Vec<&str> = suites.first().map(|s| s.outcomes.iter().map(|o| o.name).collect()).unwrap_or_default();
    let bar = 16;
    let group = bar * suites.len() + 10;
    let legend = 22 * suites.len();
    let height = 40 + legend + group * names.len();
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"760\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n");
    s.push_str("<text x=\"10\" y=\"20\" font-weight=\"bold\">operations per second, log scale (same machine, same run)</text>\n");
    for (i, suite) in suites.iter().enumerate() {
        let y = 30 + 22 * i;
        s.push_str(&format!(
            "<rect x=\"10\" y=\"{y}\" width=\"14\" height=\"14\" fill=\"{}\"/><text x=\"30\" y=\"{}\">{}</text>\n",
            colours[i % colours.len()],
            y + 12,
            suite.label
        ));
    }
    for (g, name) in names.iter().enumerate() {
        let top = 40 + legend + g * group;
        s.push_str(&format!("<text x=\"10\" y=\"{}\">{name}</text>\n", top + bar));
        for (i, suite) in suites.iter().enumerate() {
            let Some(o) = suite.outcomes.get(g) else { continue };
            let y = top + i * bar;
            let w = if o.per_second > 1.0 { (o.per_second.log10() / max * 430.0) as i64 } else { 0 };
            let label = if o.per_second > 0.0 { format!("{:.0}/s", o.per_second) } else { "not compared".into() };
            s.push_str(&format!(
                "<rect x=\"170\" y=\"{y}\" width=\"{w}\" height=\"{}\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{label}</text>\n",
                bar - 2,
                colours[i % colours.len()],
                176 + w,
                y + bar - 4
            ));
        }
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
        ("KHOA_ADMIN_LISTEN", "127.0.0.1:0"),
        ("KHOA_ISSUER", &base),
        ("KHOA_LOG", "warn"),
        ("KHOA_AUTHORIZATION_CODE_LIFETIME", "10s"),
        ("KHOA_ACCESS_TOKEN_LIFETIME", "30s"),
        ("KHOA_ID_TOKEN_LIFETIME", "30s"),
        ("KHOA_REFRESH_TOKEN_LIFETIME", "60s"),
        ("KHOA_SESSION_LIFETIME", "60s"),
        ("KHOA_CLEANUP_INTERVAL", "5s"),
        // One account logs in many times at once from loopback (see start_khoa).
        ("KHOA_LOGIN_FREE_FAILURES", "1000"),
        ("KHOA_LOGIN_ADDRESS_FREE_FAILURES", "100000"),
        ("KHOA_LOGIN_ACCOUNT_FREE_FAILURES", "100000"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let (secret, m2m_secret) = prepare(&bin, &env, "app", &[]);
    let mut server = serve_until_ready(&bin, &env, &base, Stdio::piped(), Stdio::inherit()).await;
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
