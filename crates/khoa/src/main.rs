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
    let traces = init_logging(&config, quiet_audit);
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
    // The spans still queued are sent before the process ends.
    if let Some(provider) = traces {
        if let Err(e) = provider.shutdown() {
            eprintln!("khoa: traces not all sent: {e}");
        }
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("khoa: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to standard error (standard output carries command results). With
/// `otlp.endpoint`, the spans (one per request) go to the collector too; the provider
/// returned is shut down at exit, which sends what is queued.
fn init_logging(config: &config::Config, quiet_audit: bool) -> Option<opentelemetry_sdk::trace::SdkTracerProvider> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{Layer, Registry};
    let directives =
        if quiet_audit { format!("{},khoa::audit=warn", config.log_filter) } else { config.log_filter.clone() };
    let filter = || {
        tracing_subscriber::EnvFilter::builder()
            .parse(&directives)
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = vec![match config.log_format {
        config::LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .with_filter(filter())
            .boxed(),
        config::LogFormat::Text => {
            tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi).with_filter(filter()).boxed()
        }
    }];
    let provider = match config.otlp_endpoint.as_deref().map(tracer) {
        Some(Ok((layer, provider))) => {
            layers.push(layer.with_filter(filter()).boxed());
            Some(provider)
        }
        Some(Err(e)) => {
            eprintln!("khoa: traces off: cannot set up the OTLP exporter: {e}");
            None
        }
        None => None,
    };
    tracing_subscriber::registry().with(layers).init();
    provider
}

/// The OTLP/HTTP (JSON) exporter of request spans, batched in a thread of its own.
fn tracer(
    endpoint: &str,
) -> Result<
    (
        tracing_opentelemetry::OpenTelemetryLayer<tracing_subscriber::Registry, opentelemetry_sdk::trace::Tracer>,
        opentelemetry_sdk::trace::SdkTracerProvider,
    ),
    String,
> {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(format!("{endpoint}/v1/traces"))
        .with_timeout(std::time::Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("khoa")
        .with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("khoa"));
    Ok((layer, provider))
}
