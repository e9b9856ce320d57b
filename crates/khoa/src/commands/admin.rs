//! `khoa admin bootstrap` and `khoa audit list`.

use super::print_table;
use crate::cli::{AdminCommand, AuditCommand};
use anyhow::bail;
use khoa_core::client::{ClientRegistration, GrantType, SecretChoice};
use khoa_core::scope::ADMIN;
use khoa_server::clock::{Clock, SystemClock};
use khoa_server::service::admin::{clients, ChangeError, Who};
use khoa_store::{AuditFilter, Store};
use std::sync::Arc;

pub async fn bootstrap(command: AdminCommand, store: &Arc<dyn Store>) -> anyhow::Result<()> {
    let AdminCommand::Bootstrap { id } = command;
    let mut reg = ClientRegistration::new(id.clone());
    reg.secret = SecretChoice::Generate;
    reg.grant_types = Some(vec![GrantType::ClientCredentials]);
    reg.scopes = Some(ADMIN.to_string());
    reg.client_name = Some("khoa admin".into());
    let (client, secret) = match clients::create(store.as_ref(), reg, &Who::command_line(SystemClock.now())).await {
        Err(ChangeError::Exists(_)) => bail!(
            "a client with id {id:?} exists: give another --id, or rotate its secret with `khoa client rotate-secret {id}`"
        ),
        other => other?,
    };
    let Some(secret) = secret else { bail!("no secret was generated") };
    let out = serde_json::json!({
        "client_id": client.client_id,
        "client_secret": secret,
        "scope": client.scopes.join(" "),
        "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": client.token_endpoint_auth_method(),
    });
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}

pub async fn audit(command: AuditCommand, store: &Arc<dyn Store>) -> anyhow::Result<()> {
    let AuditCommand::List { kind, client, user, since, limit, json } = command;
    if !(1..=10_000).contains(&limit) {
        bail!("--limit must be 1 to 10000");
    }
    let since = since.map(|d| SystemClock.now() - d.as_secs() as i64);
    let filter = AuditFilter { kind, client_id: client, user_id: user, since, before_id: None, limit };
    let events = store.audit_events(&filter).await?;
    if json {
        for e in &events {
            let line = serde_json::json!({
                "id": e.id, "at": e.at, "type": e.kind, "actor": e.actor, "client_id": e.client_id,
                "user_id": e.user_id, "address": e.address, "detail": e.detail,
            });
            println!("{line}");
        }
        return Ok(());
    }
    print_table(
        &["ID", "AT", "TYPE", "ACTOR", "CLIENT", "USER", "ADDRESS"],
        events
            .iter()
            .map(|e| {
                vec![
                    e.id.to_string(),
                    humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH + std::time::Duration::from_secs(e.at.max(0) as u64),
                    )
                    .to_string(),
                    e.kind.clone(),
                    e.actor.clone(),
                    e.client_id.clone().unwrap_or_default(),
                    e.user_id.map(|u| u.to_string()).unwrap_or_default(),
                    e.address.clone().unwrap_or_default(),
                ]
            })
            .collect(),
    );
    Ok(())
}
