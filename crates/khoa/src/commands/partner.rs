use super::{format_time, print_json, print_table};
use crate::cli::PartnerCommand;
use crate::config::Config;
use crate::secret::master_key;
use anyhow::{bail, Context};
use khoa_core::tconnect::PartnerKey;
use khoa_server::clock::{Clock, SystemClock};
use khoa_store::{Partner, Store, StoreError};
use std::sync::Arc;

pub async fn run(command: PartnerCommand, config: &Config, store: &Arc<dyn Store>) -> anyhow::Result<()> {
    match command {
        PartnerCommand::Create { code, client_id, key_hex, require_nonce } => {
            let code_ok = !code.is_empty()
                && code.len() <= 64
                && code.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !code_ok {
                bail!("the partner code must be 1 to 64 characters of A-Z a-z 0-9 - _ .");
            }
            let Some(client) = store.client(&client_id).await? else { bail!("no client with id {client_id:?}") };
            if client.is_public() {
                bail!("the client {client_id:?} is public; a partner needs a confidential client");
            }
            let generated = key_hex.is_none();
            let key = match key_hex {
                Some(h) => {
                    PartnerKey::from_hex(&h).context("--key-hex must be 64 hexadecimal characters (256 bits)")?
                }
                None => PartnerKey::generate(),
            };
            let master = master_key(config)?;
            let sealed = master.seal(format!("partner:{code}").as_bytes(), key.as_bytes())?;
            let partner = Partner {
                code: code.clone(),
                client_id,
                key_sealed: sealed,
                require_nonce,
                created_at: SystemClock.now(),
            };
            match store.insert_partner(&partner).await {
                Err(StoreError::Conflict(_)) => bail!("a partner with code {code:?} already exists"),
                other => other?,
            }
            let mut out = serde_json::json!({
                "code": partner.code, "client_id": partner.client_id, "require_nonce": partner.require_nonce,
            });
            if generated {
                // Shown once; only a sealed copy is stored.
                out["key_hex"] = key.to_hex().into();
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
            if !store.delete_partner(&code).await? {
                bail!("no partner with code {code:?}");
            }
            println!("partner {code} deleted");
            Ok(())
        }
    }
}
