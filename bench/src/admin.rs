//! `khoa-bench admin [USERS] [CLIENTS] [CONCURRENCY]` (defaults 100000, 10000, 32): the
//! admin API of a release `khoa serve` on a fresh SQLite database (or the PostgreSQL
//! in `KHOA_BENCH_POSTGRES_URL`): creates USERS users through it, lists them all page
//! by page (500 a page), and creates CLIENTS clients, CONCURRENCY requests at a time.
//! Prints throughput, latency percentiles and the server's CPU time per request.

use super::{cli, khoa_bin, rss_kib, serve_until_ready, tempfile_dir};
use serde_json::{json, Value};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 * 10.0
}

/// A client_credentials token for the client `khoa admin bootstrap` printed.
async fn admin_token(http: &reqwest::Client, base: &str, boot: &Value) -> String {
    let token: Value = http
        .post(format!("{base}/oauth2/token"))
        .basic_auth(boot["client_id"].as_str().unwrap_or_default(), boot["client_secret"].as_str())
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("a token")
        .json()
        .await
        .expect("a token response");
    token["access_token"].as_str().expect("an access token").to_string()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

struct Measured {
    what: String,
    requests: usize,
    items: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    server_cpu_ms: f64,
}

impl Measured {
    fn row(&mut self) -> String {
        self.latencies.sort();
        format!(
            "| {} | {} | {} | {:.1} s | {:.0} | {:.1} | {:.1} | {:.3} |",
            self.what,
            self.requests,
            self.items,
            self.elapsed.as_secs_f64(),
            self.items as f64 / self.elapsed.as_secs_f64(),
            percentile(&self.latencies, 0.5),
            percentile(&self.latencies, 0.99),
            self.server_cpu_ms / self.requests.max(1) as f64,
        )
    }
}

/// `count` POSTs of `body(i)` to `path`, `concurrency` at a time; each must answer 201.
async fn create_many(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    count: usize,
    concurrency: usize,
    body: fn(usize) -> Value,
) -> (Duration, Vec<Duration>) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (http, url, token, next) = (http.clone(), url.to_string(), token.to_string(), next.clone());
            tokio::spawn(async move {
                let mut latencies = vec![];
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= count {
                        return latencies;
                    }
                    let t = Instant::now();
                    let res = http.post(&url).bearer_auth(&token).json(&body(i)).send().await.expect("a request");
                    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap_or_default());
                    latencies.push(t.elapsed());
                }
            })
        })
        .collect();
    let mut all = vec![];
    for w in workers {
        all.extend(w.await.expect("a worker"));
    }
    (started.elapsed(), all)
}

pub async fn admin(args: &[String]) {
    let arg = |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (users, clients, concurrency) = (arg(2, 100_000), arg(3, 10_000), arg(4, 32));
    let bin = khoa_bin();
    let dir = tempfile_dir();
    let (port, admin_port) = (khoa_testkit::free_port(), khoa_testkit::free_port());
    let base = format!("http://127.0.0.1:{port}");
    let admin = format!("http://127.0.0.1:{admin_port}");
    let postgres = std::env::var("KHOA_BENCH_POSTGRES_URL").ok();
    let database_url = postgres.clone().unwrap_or_else(|| format!("sqlite://{}/khoa.db", dir.display()));
    let env: Vec<(String, String)> = [
        ("KHOA_DATABASE_URL", database_url.as_str()),
        ("KHOA_SECRET", "bench-master-secret-0123456789abcdef"),
        ("KHOA_LISTEN", &format!("127.0.0.1:{port}")),
        ("KHOA_ADMIN_LISTEN", &format!("127.0.0.1:{admin_port}")),
        ("KHOA_ISSUER", &base),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let boot: Value = serde_json::from_str(&cli(&bin, &env, &["admin", "bootstrap"], None)).expect("bootstrap JSON");
    let log = std::fs::File::create(dir.join("khoa.log")).map(Stdio::from).unwrap_or_else(|_| Stdio::null());
    let mut server = serve_until_ready(&bin, &env, &base, Stdio::null(), log).await;
    let pid = server.id();
    let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().expect("a client");
    let token = admin_token(&http, &base, &boot).await;
    let backend = if postgres.is_some() { "PostgreSQL" } else { "SQLite" };
    println!("khoa-bench admin: {users} users, {clients} clients, concurrency {concurrency}, {backend}\n");
    let mut rows = vec![];

    let cpu = cpu_ms(pid);
    let (elapsed, latencies) = create_many(&http, &format!("{admin}/admin/users"), &token, users, concurrency, |i| {
        json!({"username": format!("user{i:06}"), "email": format!("user{i:06}@example.vn"), "name": "Nguyễn Văn A",
               "attributes": {"student_id": format!("{i:010}")}})
    })
    .await;
    rows.push(Measured {
        what: "create users (no password)".into(),
        requests: users,
        items: users,
        elapsed,
        latencies,
        server_cpu_ms: cpu_ms(pid) - cpu,
    });

    for limit in [500, 100] {
        let cpu = cpu_ms(pid);
        let started = Instant::now();
        let (mut latencies, mut seen, mut cursor) = (vec![], 0, None::<String>);
        loop {
            let mut url = format!("{admin}/admin/users?limit={limit}");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let t = Instant::now();
            let page: Value =
                http.get(&url).bearer_auth(&token).send().await.expect("a page").json().await.expect("JSON");
            latencies.push(t.elapsed());
            seen += page["items"].as_array().map_or(0, Vec::len);
            match page["next"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
        }
        assert_eq!(seen, users, "every user listed once");
        rows.push(Measured {
            what: format!("list every user, {limit} a page"),
            requests: latencies.len(),
            items: seen,
            elapsed: started.elapsed(),
            latencies,
            server_cpu_ms: cpu_ms(pid) - cpu,
        });
    }

    let cpu = cpu_ms(pid);
    let (elapsed, latencies) = create_many(&http, &format!("{admin}/admin/clients"), &token, clients, concurrency, |i| {
        json!({"client_id": format!("app-{i:05}"), "client_name": "Ứng dụng", "redirect_uris": [format!("https://app{i}.example.vn/cb")],
               "scope": "openid profile email", "post_logout_redirect_uris": [format!("https://app{i}.example.vn/")]})
    })
    .await;
    rows.push(Measured {
        what: "create clients (secret generated)".into(),
        requests: clients,
        items: clients,
        elapsed,
        latencies,
        server_cpu_ms: cpu_ms(pid) - cpu,
    });

    println!("| operation | requests | items | time | items/s | p50 (ms) | p99 (ms) | server CPU ms/request |");
    println!("|---|---|---|---|---|---|---|---|");
    for mut r in rows {
        println!("{}", r.row());
    }
    println!("\nserver peak RSS: {} MiB", rss_peak_kib(pid).max(rss_kib(pid)) / 1024);
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

fn rss_peak_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// `khoa-bench import [USERS]` (default 100000): writes a JSON-lines file of USERS
/// users with hashes of every accepted kind and times `khoa user import FILE` on a
/// fresh SQLite database (or `KHOA_BENCH_POSTGRES_URL`), then once more (every line
/// already there), then the same file through `POST /admin/users/import` into another
/// database in requests of 20,000 lines.
pub async fn import(args: &[String]) {
    let users: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let bin = khoa_bin();
    let dir = tempfile_dir();
    let hashes = [
        "$2b$10$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
        "pbkdf2_sha256$600000$seasalt2$a75qzbogeVhNFeMqhdgyyoqGKpIzYUo651sq57RERew=",
        "$pbkdf2-sha256$i=25000,l=32$a2hvYS1pbXBvcnQtc2FsdA$L72/oLT1NZn8p/vZA/jIwV3SohGQzcHqIYv/mrOasoQ",
        "$scrypt$ln=12,r=8,p=1$a2hvYS1pbXBvcnQtc2FsdA$/qxYk/lpA5omQlk/yXy6BAIlRcHyjp8BFygvmZAtCY8",
        "$argon2id$v=19$m=19456,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$4wB1YVk1K8Ca2tmUi9Hz9AIRWfYfCd5QLO1T6ZJ2QQ8",
    ];
    let lines: Vec<String> = (0..users)
        .map(|i| {
            json!({"username": format!("sv{i:06}"), "password_hash": hashes[i % hashes.len()],
                   "email": format!("sv{i:06}@hutech.edu.vn"), "email_verified": true, "name": "Nguyễn Văn A",
                   "phone": "+84976535298", "attributes": {"student_id": format!("{i:010}")}})
            .to_string()
        })
        .collect();
    let file = dir.join("users.jsonl");
    std::fs::write(&file, lines.join("\n")).expect("the import file");
    let postgres = std::env::var("KHOA_BENCH_POSTGRES_URL").ok();
    let backend = if postgres.is_some() { "PostgreSQL" } else { "SQLite" };
    let env_for = |db: &str| -> Vec<(String, String)> {
        let url = postgres.clone().unwrap_or_else(|| format!("sqlite://{}/{db}.db", dir.display()));
        vec![("KHOA_DATABASE_URL".into(), url), ("KHOA_SECRET".into(), "bench-master-secret-0123456789abcdef".into())]
    };
    println!(
        "khoa-bench import: {users} users, {backend}, {} MB of JSON lines\n",
        std::fs::metadata(&file).map_or(0, |m| m.len()) >> 20
    );
    println!("| run | time | users/s | result |");
    println!("|---|---|---|---|");
    let env = env_for("cli");
    cli(&bin, &env, &["migrate"], None);
    for run in ["khoa user import (fresh database)", "khoa user import (again: every user exists)"] {
        let started = Instant::now();
        let out = cli(&bin, &env, &["user", "import", file.to_str().unwrap_or_default()], None);
        let elapsed = started.elapsed();
        println!(
            "| {run} | {:.2} s | {:.0} | `{}` |",
            elapsed.as_secs_f64(),
            users as f64 / elapsed.as_secs_f64(),
            out.trim()
        );
    }
    if postgres.is_some() {
        // One database: the API run would find every user there already.
        return;
    }
    let env = env_for("api");
    let (port, admin_port) = (khoa_testkit::free_port(), khoa_testkit::free_port());
    let base = format!("http://127.0.0.1:{port}");
    let mut env = env;
    env.push(("KHOA_LISTEN".into(), format!("127.0.0.1:{port}")));
    env.push(("KHOA_ADMIN_LISTEN".into(), format!("127.0.0.1:{admin_port}")));
    env.push(("KHOA_ISSUER".into(), base.clone()));
    let boot: Value = serde_json::from_str(&cli(&bin, &env, &["admin", "bootstrap"], None)).expect("bootstrap JSON");
    let mut server = serve_until_ready(&bin, &env, &base, Stdio::null(), Stdio::null()).await;
    let http = reqwest::Client::new();
    let token = admin_token(&http, &base, &boot).await;
    let started = Instant::now();
    let mut created = 0;
    for chunk in lines.chunks(20_000) {
        let res = http
            .post(format!("http://127.0.0.1:{admin_port}/admin/users/import"))
            .bearer_auth(&token)
            .header("content-type", "application/x-ndjson")
            .body(chunk.join("\n"))
            .send()
            .await
            .expect("an import");
        let status = res.status();
        let report: Value = res.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 200, "{report}");
        created += report["created"].as_u64().unwrap_or(0);
    }
    let elapsed = started.elapsed();
    println!(
        "| POST /admin/users/import, 20,000 lines a request | {:.2} s | {:.0} | {created} created |",
        elapsed.as_secs_f64(),
        users as f64 / elapsed.as_secs_f64()
    );
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
