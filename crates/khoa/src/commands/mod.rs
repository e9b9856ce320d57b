mod admin;
mod client;
mod deliveries;
mod keys;
mod partner;
mod serve;
mod user;

use crate::cli::Command;
use crate::config::Config;
use anyhow::Context;
use khoa_store::Store;
use std::io::Read;
use std::sync::Arc;

pub async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve::serve(config).await,
        Command::Migrate { check: true } => {
            let store = khoa_store::connect(&config.database_url)
                .await
                .with_context(|| format!("cannot open the database {}", redact(&config.database_url)))?;
            let schema = store.schema().await.context("cannot read the database's migrations")?;
            if let Some(refusal) = schema.refusal() {
                return Err(refusal).context("the database cannot be used by this khoa");
            }
            if schema.pending.is_empty() {
                println!("the database is up to date: {} migrations applied, none pending", schema.applied);
                return Ok(());
            }
            for (version, description) in &schema.pending {
                println!("pending: {version:04} {description}");
            }
            anyhow::bail!("{} migration(s) pending: khoa migrate (or khoa serve) applies them", schema.pending.len())
        }
        Command::Migrate { check: false } => {
            let store = open_store(&config).await?;
            println!("migrations applied");
            for (username, holder) in store.username_collisions().await? {
                println!(
                    "username {username:?} differs from {holder:?} only in case or width: it keeps working as typed, \
                     but rename one of them (khoa user or the admin API) so that neither can pass for the other"
                );
            }
            Ok(())
        }
        Command::Client(c) => client::run(c, &open_store(&config).await?).await,
        Command::User(c) => user::run(c, &config.settings, &open_store(&config).await?).await,
        Command::Keys(c) => keys::run(c, &config, open_store(&config).await?).await,
        Command::Partner(c) => partner::run(c, &config, &open_store(&config).await?).await,
        Command::LogoutDeliveries(c) => deliveries::run(c, &open_store(&config).await?).await,
        Command::Admin(c) => admin::bootstrap(c, &open_store(&config).await?).await,
        Command::Audit(c) => admin::audit(c, &open_store(&config).await?).await,
        Command::Health => health(&config.settings).await,
        Command::Backup { file } => {
            let url = config.database_url.clone();
            let target = file.clone();
            let done = tokio::task::spawn_blocking(move || khoa_store::backup::backup(&url, &target)).await??;
            println!(
                "backed up {} to {}: {} migrations, {} users, {} clients, {} bytes",
                redact(&config.database_url),
                file.display(),
                done.migrations,
                done.users,
                done.clients,
                done.bytes
            );
            println!("the master key is not in the backup: keep {} with it, apart", secret_home(&config));
            Ok(())
        }
        Command::Restore { file } => {
            let url = config.database_url.clone();
            let source = file.clone();
            let done = tokio::task::spawn_blocking(move || khoa_store::backup::restore(&source, &url)).await??;
            println!(
                "restored {} into {}: {} migrations, {} users, {} clients; authorization codes and mailed links \
                 were voided",
                file.display(),
                redact(&config.database_url),
                done.migrations,
                done.users,
                done.clients
            );
            println!("start khoa with the master key the backup was made with ({})", secret_home(&config));
            Ok(())
        }
        // Reached only with a configuration that loaded (main.rs): what remains are
        // variables that are no setting.
        Command::Config(crate::cli::ConfigCommand::Check) => {
            let unknown = crate::config::unknown_variables(std::env::vars().map(|(k, _)| k));
            if !unknown.is_empty() {
                for (name, near) in &unknown {
                    match near {
                        Some(near) => eprintln!("khoa: {name} is not a setting; did you mean {near}?"),
                        None => eprintln!("khoa: {name} is not a setting (khoa serve --help lists them)"),
                    }
                }
                std::process::exit(2);
            }
            print!("{}", config.effective());
            eprintln!("khoa: the configuration is valid");
            Ok(())
        }
    }
}

/// `khoa health`: one HTTP/1.1 request to `/health/ready` on a plain listener of this
/// configuration (the admin listener, else the metrics one, else the public one
/// unless it speaks https); a wildcard address is asked on loopback.
async fn health(settings: &khoa_server::Settings) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let plain_public = settings.tls.is_none().then_some(settings.listen);
    let Some(mut addr) = settings.admin_listen.or(settings.metrics_listen).or(plain_public) else {
        anyhow::bail!("no plain-http listener to ask: set admin.listen or metrics.listen");
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(b"GET /health/ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await?;
        let mut answer = Vec::with_capacity(512);
        stream.take(4096).read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(std::time::Duration::from_secs(5), ask)
        .await
        .map_err(|_| anyhow::anyhow!("{addr} did not answer within 5 s"))?
        .with_context(|| format!("cannot ask {addr}"))?;
    let status_line = String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_string();
    if status_line.split(' ').nth(1) == Some("200") {
        println!("ready ({addr})");
        Ok(())
    } else {
        anyhow::bail!("not ready ({addr}): {status_line}")
    }
}

/// Where the master key comes from, for messages (never the key itself).
fn secret_home(config: &Config) -> String {
    match &config.secret {
        crate::config::SecretSource::Secret(_) => "the secret setting, KHOA_SECRET".to_string(),
        crate::config::SecretSource::File(path) => path.display().to_string(),
    }
}

/// Connects to the configured database and applies pending migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let store = khoa_store::connect(&config.database_url)
        .await
        .with_context(|| format!("cannot open the database {}", redact(&config.database_url)))?;
    store.migrate().await.context("cannot migrate the database")?;
    Ok(store)
}

/// The database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Reads a secret from standard input: the whole input less one trailing newline.
pub fn read_stdin_secret(what: &str) -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut s)
        .with_context(|| format!("cannot read the {what} from standard input (it must be UTF-8)"))?;
    let s = s.strip_suffix('\n').map(|s| s.strip_suffix('\r').unwrap_or(s)).unwrap_or(&s).to_string();
    anyhow::ensure!(!s.is_empty(), "no {what} on standard input");
    Ok(s)
}

/// Prints rows as aligned columns under a header.
pub fn print_table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
}

pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub fn format_time(t: i64) -> String {
    let st = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64);
    humantime::format_rfc3339_seconds(st).to_string()
}
