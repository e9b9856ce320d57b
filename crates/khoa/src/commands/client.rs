use super::{print_json, print_table, read_stdin_secret};
use crate::cli::{ClientCommand, ClientCreate, ClientOptions};
use anyhow::{bail, Context};
use khoa_core::client::{ClientRegistration, SecretChoice};
use khoa_server::clock::{Clock, SystemClock};
use khoa_server::service::admin::{clients, ChangeError, Who};
use khoa_store::Store;
use std::sync::Arc;

/// Changes made here are recorded as the command line's.
fn who() -> Who {
    Who::command_line(SystemClock.now())
}

fn seconds(d: Option<humantime::Duration>) -> Option<i64> {
    d.map(|d| d.as_secs() as i64)
}

fn registration(a: ClientCreate) -> anyhow::Result<ClientRegistration> {
    let mut reg = ClientRegistration::new(a.id);
    reg.secret = if a.public {
        SecretChoice::Public
    } else if let Some(s) = a.secret {
        SecretChoice::Given(s)
    } else if a.secret_stdin {
        SecretChoice::Given(read_stdin_secret("client secret")?)
    } else {
        SecretChoice::Generate
    };
    apply_options(&mut reg, a.options)?;
    Ok(reg)
}

/// An option that was given: an empty value clears the field.
fn set_text(field: &mut Option<String>, given: Option<String>) {
    if let Some(v) = given {
        *field = Some(v).filter(|v| !v.is_empty());
    }
}

/// A repeatable option that was given replaces the list; one empty value clears it.
fn set_list(field: &mut Vec<String>, given: Vec<String>) {
    if !given.is_empty() {
        *field = given.into_iter().filter(|v| !v.is_empty()).collect();
    }
}

/// The options of `client create` or `client update`, applied to a registration.
fn apply_options(reg: &mut ClientRegistration, a: ClientOptions) -> anyhow::Result<()> {
    set_list(&mut reg.redirect_uris, a.redirect_uris);
    set_list(&mut reg.allowed_origins, a.allowed_origins);
    set_list(&mut reg.post_logout_redirect_uris, a.post_logout_redirect_uris);
    set_list(&mut reg.contacts, a.contacts);
    set_text(&mut reg.frontchannel_logout_uri, a.frontchannel_logout_uri);
    set_text(&mut reg.backchannel_logout_uri, a.backchannel_logout_uri);
    set_text(&mut reg.client_name, a.name);
    set_text(&mut reg.logo_uri, a.logo_uri);
    set_text(&mut reg.client_uri, a.client_uri);
    set_text(&mut reg.policy_uri, a.policy_uri);
    set_text(&mut reg.tos_uri, a.tos_uri);
    set_text(&mut reg.owner, a.owner);
    if let Some(g) = a.grant_types {
        reg.grant_types = Some(g);
    }
    if let Some(s) = a.scopes {
        reg.scopes = Some(s);
    }
    for (field, given) in [
        (&mut reg.skip_consent, a.skip_consent),
        (&mut reg.always_issue_refresh_token, a.always_issue_refresh_token),
        (&mut reg.resource_server, a.resource_server),
        (&mut reg.require_mfa, a.require_mfa),
    ] {
        if let Some(v) = given {
            *field = v;
        }
    }
    if let Some(m) = a.metadata {
        reg.metadata = Some(serde_json::from_str(&m).context("--metadata is not valid JSON")?);
    }
    if let Some(alg) = a.id_token_alg {
        reg.id_token_signed_response_alg = Some(alg);
    }
    if let Some(alg) = a.access_token_alg {
        reg.access_token_signed_response_alg =
            if alg.is_empty() { None } else { Some(alg.parse().context("--access-token-alg")?) };
    }
    if let Some(method) = a.token_endpoint_auth_method {
        reg.secret_method = Some(method);
    }
    let l = &mut reg.lifetimes;
    for (field, given) in [
        (&mut l.authorization_code, a.authorization_code_lifetime),
        (&mut l.access_token, a.access_token_lifetime),
        (&mut l.id_token, a.id_token_lifetime),
        (&mut l.refresh_token, a.refresh_token_lifetime),
    ] {
        if given.is_some() {
            *field = seconds(given);
        }
    }
    Ok(())
}

/// The client as `show` prints it: its fields and the origins it allows in all.
fn shown(client: &khoa_core::client::Client) -> anyhow::Result<serde_json::Value> {
    let mut out = serde_json::to_value(client)?;
    out["origins"] = serde_json::to_value(client.origins())?;
    out["token_endpoint_auth_method"] = client.token_endpoint_auth_method().into();
    Ok(out)
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
            let id = reg.client_id.clone();
            let (client, generated) = match clients::create(store.as_ref(), reg, &who()).await {
                Err(ChangeError::Exists(_)) => bail!("a client with id {id:?} already exists"),
                other => other?,
            };
            let mut out = shown(&client)?;
            if let Some(secret) = generated.or(shown_secret) {
                out["client_secret"] = serde_json::Value::String(secret);
            }
            println!("{}", serde_json::to_string(&out)?);
            Ok(())
        }
        ClientCommand::List(args) => {
            let clients = store.clients().await?;
            if args.json {
                let all = clients.iter().map(shown).collect::<anyhow::Result<Vec<_>>>()?;
                return print_json(&all);
            }
            print_table(
                &["CLIENT_ID", "TYPE", "AUTH_METHOD", "NAME", "GRANT_TYPES", "REDIRECT_URIS", "ORIGINS"],
                clients
                    .iter()
                    .map(|c| {
                        vec![
                            c.client_id.clone(),
                            if c.is_public() { "public" } else { "confidential" }.to_string(),
                            c.token_endpoint_auth_method().to_string(),
                            c.client_name.clone().unwrap_or_default(),
                            c.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(","),
                            c.redirect_uris.join(" "),
                            c.origins().join(" "),
                        ]
                    })
                    .collect(),
            );
            Ok(())
        }
        ClientCommand::Show { id } => match store.client(&id).await? {
            Some(c) => print_json(&shown(&c)?),
            None => bail!("no client with id {id:?}"),
        },
        ClientCommand::Update(args) => {
            let Some(existing) = store.client(&args.id).await? else { bail!("no client with id {:?}", args.id) };
            let mut reg = ClientRegistration::from_client(&existing);
            apply_options(&mut reg, args.options)?;
            let (updated, _) = match clients::update(store.as_ref(), &existing, reg, None, &who()).await {
                Err(ChangeError::NotFound) => bail!("no client with id {:?}", existing.client_id),
                other => other?,
            };
            print_json(&shown(&updated)?)
        }
        ClientCommand::RotateSecret { id, keep_old_for } => {
            let Some(existing) = store.client(&id).await? else { bail!("no client with id {id:?}") };
            let who = who();
            let keep_until = keep_old_for.map(|d| who.now + d.as_secs() as i64);
            let (rotated, secret) =
                match clients::rotate_secret(store.as_ref(), &existing, keep_until, None, &who).await {
                    Err(ChangeError::NotFound) => bail!("no client with id {id:?}"),
                    other => other?,
                };
            let mut out = shown(&rotated)?;
            out["client_secret"] = serde_json::Value::String(secret);
            println!("{}", serde_json::to_string(&out)?);
            Ok(())
        }
        ClientCommand::Delete { id } => {
            if !clients::delete(store.as_ref(), &id, &who()).await? {
                bail!("no client with id {id:?}");
            }
            println!("client {id} deleted");
            Ok(())
        }
    }
}
