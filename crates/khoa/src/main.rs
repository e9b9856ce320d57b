//! khoa: single-binary OpenID Connect / OAuth 2.0 single-sign-on server.

mod cli;
mod commands;
mod config;
mod secret;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let config = match config::load(cli.config.as_deref(), &|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("khoa: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    // A command's changes are in the audit trail (`khoa audit list`); its terminal
    // gets the events' log lines only when asked for (KHOA_LOG=khoa::audit=info).
    let quiet_audit = !matches!(cli.command, cli::Command::Serve) && !config.log_filter.contains("khoa::audit");
    init_logging(&config, quiet_audit);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("khoa: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(commands::run(cli.command, config));
    // Blocking work still running (a password verification the shutdown abandoned) is
    // not waited for: a stopped server uses no more CPU.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("khoa: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to standard error (standard output carries command results).
fn init_logging(config: &config::Config, quiet_audit: bool) {
    let filter =
        if quiet_audit { format!("{},khoa::audit=warn", config.log_filter) } else { config.log_filter.clone() };
    let filter = tracing_subscriber::EnvFilter::builder()
        .parse(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match config.log_format {
        config::LogFormat::Json => builder.json().flatten_event(true).init(),
        config::LogFormat::Text => builder.init(),
    }
}
