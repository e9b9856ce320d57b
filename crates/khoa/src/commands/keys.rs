use super::{format_time, print_json, print_table};
use crate::cli::KeysCommand;
use crate::config::Config;
use crate::secret::master_key;
use khoa_server::clock::{Clock, SystemClock};
use khoa_server::keys::{ensure_initial_keys, load_snapshot, rotate};
use khoa_store::Store;
use std::sync::Arc;

pub async fn run(command: KeysCommand, config: &Config, store: Arc<dyn Store>) -> anyhow::Result<()> {
    let master = master_key(config)?;
    let now = SystemClock.now();
    match command {
        KeysCommand::List(args) => {
            let snapshot = load_snapshot(store.as_ref(), &master, &config.settings, now).await?;
            let rows: Vec<serde_json::Value> = snapshot
                .timelines
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "kid": t.kid,
                        "alg": t.alg.as_str(),
                        "generation": t.generation,
                        "state": snapshot.state_of(t, now).as_str(),
                        "created_at": t.created_at,
                        "activates_at": t.activates_at,
                    })
                })
                .collect();
            if args.json {
                return print_json(&rows);
            }
            print_table(
                &["KID", "ALG", "GEN", "STATE", "CREATED", "SIGNS_FROM"],
                snapshot
                    .timelines
                    .iter()
                    .map(|t| {
                        vec![
                            t.kid.clone(),
                            t.alg.to_string(),
                            t.generation.to_string(),
                            snapshot.state_of(t, now).as_str().to_string(),
                            format_time(t.created_at),
                            format_time(t.activates_at),
                        ]
                    })
                    .collect(),
            );
            Ok(())
        }
        KeysCommand::Rotate { algorithms, immediately } => {
            let algorithms = if algorithms.is_empty() { config.settings.algorithms.clone() } else { algorithms };
            if let Some(alg) = algorithms.iter().find(|a| !config.settings.algorithms.contains(a)) {
                anyhow::bail!("{alg} is not among the configured algorithms (keys.algorithms)");
            }
            // Make sure generation 1 exists first, so a rotation never produces the first key.
            ensure_initial_keys(store.as_ref(), &master, &algorithms, now).await?;
            let activates_at = if immediately { now } else { now + config.settings.key_prepublication };
            let by = (khoa_core::audit::Actor::CommandLine, None);
            let created = rotate(store.as_ref(), &master, &algorithms, (now, activates_at), by).await?;
            let out: Vec<serde_json::Value> = created
                .iter()
                .map(|t| serde_json::json!({"kid": t.kid, "alg": t.alg.as_str(), "generation": t.generation, "activates_at": t.activates_at}))
                .collect();
            print_json(&out)
        }
    }
}
