use super::{format_time, print_json, print_table};
use crate::cli::PartnerCommand;
use crate::config::Config;
use crate::secret::master_key;
use anyhow::bail;
use khoa_server::clock::{Clock, SystemClock};
use khoa_server::service::admin::partners::{self, NewPartner};
use khoa_server::service::admin::{ChangeError, Who};
use khoa_store::Store;
use std::sync::Arc;

fn who() -> Who {
    Who::command_line(SystemClock.now())
}

pub async fn run(command: PartnerCommand, config: &Config, store: &Arc<dyn Store>) -> anyhow::Result<()> {
    match command {
        PartnerCommand::Create { code, client_id, key_hex, require_nonce } => {
            let master = master_key(config)?;
            let new = NewPartner { code: code.clone(), client_id: client_id.clone(), key_hex, require_nonce };
            let (partner, key_hex) = match partners::create(store.as_ref(), &master, new, &who()).await {
                Err(ChangeError::Exists(_)) => bail!("a partner with code {code:?} already exists"),
                Err(ChangeError::Invalid { field, detail }) if field == "key_hex" => {
                    bail!("--key-hex: {detail}")
                }
                other => other?,
            };
            let mut out = serde_json::json!({
                "code": partner.code, "client_id": partner.client_id, "require_nonce": partner.require_nonce,
            });
            if let Some(hex) = key_hex {
                // Shown once; only a sealed copy is stored.
                out["key_hex"] = hex.into();
            }
            println!("{}", serde_json::to_string(&out)?);
            Ok(())
        }
        PartnerCommand::List(args) => {
            let partners = store.partners().await?;
            if args.json {
                let rows: Vec<_> = partners
                    .iter()
                    .map(|p| {
                        serde_json::json!({
                            "code": p.code, "client_id": p.client_id, "require_nonce": p.require_nonce,
                            "created_at": p.created_at,
                        })
                    })
                    .collect();
                return print_json(&rows);
            }
            print_table(
                &["CODE", "CLIENT_ID", "NONCE", "CREATED"],
                partners
                    .iter()
                    .map(|p| {
                        let nonce = if p.require_nonce { "required" } else { "optional" };
                        vec![p.code.clone(), p.client_id.clone(), nonce.into(), format_time(p.created_at)]
                    })
                    .collect(),
            );
            Ok(())
        }
        PartnerCommand::Delete { code } => {
            if !partners::delete(store.as_ref(), &code, &who()).await? {
                bail!("no partner with code {code:?}");
            }
            println!("partner {code} deleted");
            Ok(())
        }
    }
}
