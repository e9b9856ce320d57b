use super::{format_time, print_json, print_table, read_stdin_secret};
use crate::cli::{UserCommand, UserCreate};
use anyhow::bail;
use khoa_core::password::{hash_password, validate_new_password, PasswordParams};
use khoa_core::user::UserRegistration;
use khoa_server::clock::{Clock, SystemClock};
use khoa_server::Settings;
use khoa_store::{Store, StoreError, UserChange};
use std::sync::Arc;

/// argon2id is deliberately slow: keep it off the async executor.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    Ok(tokio::task::spawn_blocking(f).await?)
}

/// Ends the user's sessions and tokens together with `change`, in one transaction;
/// their clients get back-channel logout notices (sent by the running servers).
async fn end_sessions(
    store: &Arc<dyn Store>,
    settings: &Settings,
    username: &str,
    change: UserChange,
) -> anyhow::Result<khoa_store::EndedSessions> {
    let now = SystemClock.now();
    let keep_until = khoa_server::logout::keep_deliveries_until(settings, now);
    match store.end_user_sessions(username, change, now, keep_until).await? {
        Some(ended) => Ok(ended),
        None => bail!("no user named {username:?}"),
    }
}

fn ended_text(e: &khoa_store::EndedSessions) -> String {
    format!(
        "{} session(s) ended, {} token(s) revoked, {} back-channel notice(s) queued",
        e.sessions, e.tokens, e.notifications
    )
}

pub async fn run(command: UserCommand, settings: &Settings, store: &Arc<dyn Store>) -> anyhow::Result<()> {
    match command {
        UserCommand::Create(UserCreate {
            username,
            password_stdin: _,
            email,
            email_verified,
            name,
            phone,
            phone_verified,
            picture,
        }) => {
            let password = read_stdin_secret("password")?;
            let reg = UserRegistration {
                username,
                password,
                email,
                email_verified,
                name,
                phone_number: phone,
                phone_number_verified: phone_verified,
                picture,
            };
            let now = SystemClock.now();
            let new_user = blocking(move || reg.validate(PasswordParams::default(), now)).await??;
            match store.insert_user(&new_user).await {
                Ok(user) => print_json(&user),
                Err(StoreError::Conflict(_)) => {
                    bail!("the username {:?} is taken", new_user.username)
                }
                Err(e) => Err(e.into()),
            }
        }
        UserCommand::List(args) => {
            let users = store.users().await?;
            if args.json {
                return print_json(&users);
            }
            print_table(
                &["ID", "USERNAME", "NAME", "EMAIL", "CREATED"],
                users
                    .iter()
                    .map(|u| {
                        vec![
                            u.id.to_string(),
                            u.username.clone(),
                            u.name.clone().unwrap_or_default(),
                            u.email.clone().unwrap_or_default(),
                            format_time(u.created_at),
                        ]
                    })
                    .collect(),
            );
            Ok(())
        }
        UserCommand::Delete { username } => {
            let ended = end_sessions(store, settings, &username, UserChange::Delete).await?;
            println!("user {username} deleted; {}", ended_text(&ended));
            Ok(())
        }
        UserCommand::RevokeSessions { username } => {
            let ended = end_sessions(store, settings, &username, UserChange::None).await?;
            println!("{}", ended_text(&ended));
            Ok(())
        }
        UserCommand::SetPassword { username, password_stdin: _ } => {
            if store.user_by_username(&username).await?.is_none() {
                bail!("no user named {username:?}");
            }
            let password = read_stdin_secret("password")?;
            validate_new_password(&password)?;
            let hash = blocking(move || hash_password(&password, PasswordParams::default())).await??;
            let ended = end_sessions(store, settings, &username, UserChange::Password { hash }).await?;
            println!("password of {username} changed; {}", ended_text(&ended));
            Ok(())
        }
    }
}
