//! `khoa-demo-rp`: the demo relying party. Configured by environment:
//! DEMO_ISSUER (default http://localhost:8080), DEMO_CLIENT_ID (demo),
//! DEMO_CLIENT_SECRET, DEMO_LISTEN (127.0.0.1:3000), DEMO_BASE_URL
//! (http://127.0.0.1:3000), DEMO_NAME (Demo app).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let env = |k: &str, default: &str| std::env::var(k).unwrap_or_else(|_| default.to_string());
    let Ok(listen) = env("DEMO_LISTEN", "127.0.0.1:3000").parse() else {
        eprintln!("DEMO_LISTEN must be an address:port");
        return ExitCode::from(2);
    };
    let config = khoa_demo_rp::Config {
        issuer: env("DEMO_ISSUER", "http://localhost:8080"),
        client_id: env("DEMO_CLIENT_ID", "demo"),
        client_secret: env("DEMO_CLIENT_SECRET", ""),
        listen,
        base_url: env("DEMO_BASE_URL", "http://127.0.0.1:3000"),
        name: env("DEMO_NAME", "Demo app"),
    };
    match khoa_demo_rp::start(config).await {
        Ok(rp) => {
            println!("demo relying party on http://{}", rp.local_addr);
            let _ = tokio::signal::ctrl_c().await;
            rp.shutdown();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("demo relying party: {e}");
            ExitCode::FAILURE
        }
    }
}
