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
    let token = token["access_token"].as_str().expect("an access token").to_string();
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
