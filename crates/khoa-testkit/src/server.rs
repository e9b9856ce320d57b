//! Real `khoa` processes for end-to-end tests: a random loopback port, the database of
//! a [`TestDatabase`], logs kept in its folder, stopped when dropped.

use crate::{Backend, TestDatabase};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The master secret test processes on PostgreSQL share.
pub const TEST_SECRET: &str = "test-master-secret-0123456789abcdef";

/// A free TCP port on 127.0.0.1 (bound, then released for the server to take).
#[allow(clippy::expect_used)]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().expect("local address").port()
}

/// The environment a khoa process needs for `db`.
pub fn khoa_env(db: &TestDatabase) -> Vec<(String, String)> {
    let mut env = vec![
        ("KHOA_DATABASE_URL".to_string(), db.url.clone()),
        ("KHOA_LOG".into(), "info".into()),
        // Each test server's admin API on a port of its own (the default, 8081, is one).
        ("KHOA_ADMIN_LISTEN".into(), "127.0.0.1:0".into()),
    ];
    if db.backend == Backend::Postgres {
        env.push(("KHOA_SECRET".into(), TEST_SECRET.into()));
    }
    env
}

/// Runs a khoa command (not `serve`) to completion in `db`'s folder.
pub fn run_cli(bin: &str, db: &TestDatabase, args: &[&str], stdin: Option<&str>) -> Output {
    run_cli_with(bin, db, &[], args, stdin)
}

/// [`run_cli`] with extra environment variables.
#[allow(clippy::expect_used)]
pub fn run_cli_with(
    bin: &str,
    db: &TestDatabase,
    extra: &[(&str, &str)],
    args: &[&str],
    stdin: Option<&str>,
) -> Output {
    use std::io::Write;
    let mut child = Command::new(bin)
        .args(args)
        .current_dir(db.dir.path())
        .env_clear()
        .envs(khoa_env(db))
        .envs(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn khoa");
    if let Some(mut pipe) = child.stdin.take() {
        if let Some(input) = stdin {
            let _ = pipe.write_all(input.as_bytes());
        }
    }
    child.wait_with_output().expect("khoa output")
}

pub struct KhoaProcess {
    child: Option<Child>,
    pub port: u16,
    pub base_url: String,
    /// `http://ADDR` of the admin API, when it listens.
    pub admin_url: Option<String>,
    pub stderr_path: PathBuf,
}

impl KhoaProcess {
    /// Starts `khoa serve` for `db` with issuer `http://127.0.0.1:PORT` plus `extra`
    /// environment, and waits until it listens. `("KHOA_ISSUER", "localhost")` in
    /// `extra` makes the issuer `http://localhost:PORT` instead (browsers allow
    /// passkeys on a domain name only), and `("KHOA_ISSUER", "https://localhost")`
    /// makes it `https://localhost:PORT` (with `KHOA_TLS_*`); it still listens on
    /// 127.0.0.1.
    pub fn start(bin: &str, db: &TestDatabase, extra: &[(&str, &str)]) -> Self {
        Self::start_in(bin, db.dir.path(), khoa_env(db), extra)
    }

    #[allow(clippy::expect_used)]
    pub fn start_in(bin: &str, dir: &Path, base_env: Vec<(String, String)>, extra: &[(&str, &str)]) -> Self {
        let mut last_error = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let issuer = extra.iter().find(|(k, _)| *k == "KHOA_ISSUER").map(|(_, v)| *v);
            let base_url = match issuer {
                Some("localhost") => format!("http://localhost:{port}"),
                Some("https://localhost") => format!("https://localhost:{port}"),
                _ => format!("http://127.0.0.1:{port}"),
            };
            let stderr_path = dir.join(format!("khoa-{port}.log"));
            let stderr = std::fs::File::create(&stderr_path).expect("log file");
            let mut cmd = Command::new(bin);
            cmd.arg("serve")
                .current_dir(dir)
                .env_clear()
                .envs(base_env.iter().cloned())
                .env("KHOA_LISTEN", format!("127.0.0.1:{port}"))
                .env("KHOA_ISSUER", &base_url);
            let placeholder = |k: &str, v: &str| k == "KHOA_ISSUER" && (v == "localhost" || v == "https://localhost");
            for (k, v) in extra.iter().filter(|(k, v)| !placeholder(k, v)) {
                cmd.env(k, v);
            }
            let mut child =
                cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(stderr).spawn().expect("spawn khoa serve");
            let stdout = child.stdout.take().expect("stdout");
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut admin_url = None;
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(addr) = line.strip_prefix("khoa admin listening on ") {
                        admin_url = Some(format!("http://{addr}"));
                    }
                    if line.starts_with("khoa listening on") {
                        let _ = tx.send(admin_url.take());
                    }
                }
            });
            if let Ok(admin_url) = rx.recv_timeout(Duration::from_secs(60)) {
                return Self { child: Some(child), port, base_url, admin_url, stderr_path };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_error = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        }
        panic!("khoa serve did not start:\n{last_error}");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// SIGTERM, then waits (up to 20 s) for a graceful exit.
    #[allow(clippy::expect_used)]
    pub fn terminate(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("khoa did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for KhoaProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
