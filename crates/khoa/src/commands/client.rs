use super::{print_json, print_table, read_stdin_secret};
use crate::cli::{ClientCommand, ClientCreate};
use anyhow::{bail, Context};
use khoa_core::client::{ClientLifetimes, ClientRegistration, SecretChoice};
use khoa_store::{Store, StoreError};
use std::sync::Arc;

fn seconds(d: Option<humantime::Duration>) -> Option<i64> {
    d.map(|d| d.as_secs() as i64)
}

fn registration(a: ClientCreate) -> anyhow::Result<ClientRegistration> {
    let secret = if a.public {
        SecretChoice::Public
    } else if let Some(s) = a.secret {
        SecretChoice::Given(s)
    } else if a.secret_stdin {
        SecretChoice::Given(read_stdin_secret("client secret")?)
    } else {
        SecretChoice::Generate
    };
    let metadata = match a.metadata {
        Some(m) => Some(serde_json::from_str(&m).context("--metadata is not valid JSON")?),
        None => None,
    };
    Ok(ClientRegistration {
        client_id: a.id,
        secret,
        redirect_uris: a.redirect_uris,
        post_logout_redirect_uris: a.post_logout_redirect_uris,
        frontchannel_logout_uri: a.frontchannel_logout_uri,
        backchannel_logout_uri: a.backchannel_logout_uri,
        grant_types: a.grant_types,
        scopes: a.scopes,
        skip_consent: a.skip_consent,
        always_issue_refresh_token: a.always_issue_refresh_token,
        resource_server: a.resource_server,
        client_name: a.name,
        logo_uri: a.logo_uri,
        client_uri: a.client_uri,
        policy_uri: a.policy_uri,
        tos_uri: a.tos_uri,
        owner: a.owner,
        contacts: a.contacts,
        metadata,
        id_token_signed_response_alg: a.id_token_alg,
        lifetimes: ClientLifetimes {
            authorization_code: seconds(a.authorization_code_lifetime),
            access_token: seconds(a.access_token_lifetime),
            id_token: seconds(a.id_token_lifetime),
            refresh_token: seconds(a.refresh_token_lifetime),
        },
    })
}

pub async fn run(command: ClientCommand, store: &Arc<dyn Store>) -> anyhow::Result<()> {
    match command {
        ClientCommand::Create(args) => {
            let reg = registration(*args)?;
            // RFC 6749 §2.3.1: the client needs its secret; an operator-given one is
            // echoed once, like a generated one, and only its hash is stored.
            let shown_secret = match &reg.secret {
                SecretChoice::Given(s) => Some(s.clone()),
                _ => None,
            };
            let registered = reg.register(khoa_server::now())?;
            match store.insert_client(&registered.client).await {
                Err(StoreError::Conflict(_)) => {
                    bail!("a client with id {:?} already exists", registered.client.client_id)
                }
                other => other?,
            }
            let mut out = serde_json::to_value(&registered.client)?;
            if let Some(secret) = registered.plaintext_secret.or(shown_secret) {
                out["client_secret"] = serde_json::Value::String(secret);
            }
            println!("{}", serde_json::to_string(&out)?);
            Ok(())
        }
        ClientCommand::List(args) => {
            let clients = store.clients().await?;
            if args.json {
                return print_json(&clients);
            }
            print_table(
                &["CLIENT_ID", "TYPE", "NAME", "GRANT_TYPES", "REDIRECT_URIS"],
                clients
                    .iter()
                    .map(|c| {
                        vec![
                            c.client_id.clone(),
                            format!("{:?}", c.client_type).to_lowercase(),
                            c.client_name.clone().unwrap_or_default(),
                            c.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(","),
                            c.redirect_uris.join(" "),
                        ]
                    })
                    .collect(),
            );
            Ok(())
        }
        ClientCommand::Show { id } => match store.client(&id).await? {
            Some(c) => print_json(&c),
            None => bail!("no client with id {id:?}"),
        },
        ClientCommand::Delete { id } => {
            if !store.delete_client(&id).await? {
                bail!("no client with id {id:?}");
            }
            println!("client {id} deleted");
            Ok(())
        }
    }
}
