use super::{format_time, print_json, print_table, read_stdin_secret};
use crate::cli::{UserCommand, UserCreate};
use anyhow::bail;
use khoa_core::user::Profile;
use khoa_server::clock::{Clock, SystemClock};
use khoa_server::service::admin::{users, ChangeError, Who};
use khoa_server::Settings;
use khoa_store::{Store, UserChange};
use std::sync::Arc;

/// Changes made here are recorded as the command line's.
fn who() -> Who {
    Who::command_line(SystemClock.now())
}

/// Ends the user's sessions and tokens together with `change`, in one transaction.
async fn end_sessions(
    store: &Arc<dyn Store>,
    settings: &Settings,
    username: &str,
    change: UserChange,
) -> anyhow::Result<khoa_store::EndedSessions> {
    match users::end_sessions(store.as_ref(), settings, username.into(), change, &who()).await {
        Err(ChangeError::NotFound) => bail!("no user named {username:?}"),
        other => Ok(other?),
    }
}

fn ended_text(e: &khoa_store::EndedSessions) -> String {
    format!(
        "{} session(s) ended, {} token(s) revoked, {} back-channel notice(s) queued",
        e.sessions, e.tokens, e.notifications
    )
}

/// The SMTP connection `--send-verification` needs (none when not asked).
fn mailer(
    settings: &Settings,
    verification: &crate::cli::SendVerification,
) -> anyhow::Result<Option<khoa_server::mail::SmtpMailer>> {
    if !verification.send_verification {
        return Ok(None);
    }
    let Some(smtp) = &settings.smtp else {
        bail!("--send-verification needs smtp.url and smtp.from (KHOA_SMTP_URL, KHOA_SMTP_FROM)");
    };
    Ok(Some(khoa_server::mail::SmtpMailer::new(smtp)?))
}

/// Mails a verification link to each `(id, username, email)`, one after the other;
/// the first that cannot be delivered stops the command (its link stays valid: run
/// the mail again with the admin API or ask the user to change their email).
async fn send_verifications(
    store: &Arc<dyn Store>,
    settings: &Settings,
    mailer: &khoa_server::mail::SmtpMailer,
    verification: &crate::cli::SendVerification,
    users: &[(i64, String, String)],
) -> anyhow::Result<()> {
    use khoa_server::mail::Mailer;
    let locale =
        if verification.mail_language == "en" { khoa_server::i18n::Locale::En } else { khoa_server::i18n::Locale::Vi };
    for (id, username, email) in users {
        let actor = khoa_core::audit::Actor::CommandLine;
        let now = SystemClock.now();
        let issued = khoa_server::service::account::issue_verification;
        let Some(mail) = issued(store.as_ref(), settings, *id, email, locale, actor, now).await? else {
            // The per-account and per-address limits of every mailed link.
            eprintln!("verification mail to {email} not sent: {username} or the address was mailed too often; try again in an hour");
            continue;
        };
        mailer.deliver(&mail).await.map_err(|e| {
            anyhow::anyhow!("{username} exists, but the verification mail to {email} could not be sent: {e}")
        })?;
        eprintln!("verification mail sent to {email}");
    }
    Ok(())
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
            verification,
        }) => {
            if verification.send_verification && (email.is_none() || email_verified) {
                bail!("--send-verification needs an --email that is not --email-verified");
            }
            let mailer = mailer(settings, &verification)?;
            let password = read_stdin_secret("password")?;
            let profile = Profile {
                username,
                email,
                email_verified,
                name,
                phone_number: phone,
                phone_number_verified: phone_verified,
                picture,
                attributes: Default::default(),
            };
            let passwords = khoa_server::passwords::Passwords::default();
            let user = users::create(store.as_ref(), &passwords, profile, Some(password), &who()).await?;
            if let (Some(mailer), Some(email)) = (&mailer, &user.email) {
                let to_verify = [(user.id, user.username.clone(), email.clone())];
                send_verifications(store, settings, mailer, &verification, &to_verify).await?;
            }
            print_json(&user)
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
            let hash = users::hash_new_password(&khoa_server::passwords::Passwords::default(), password).await?;
            let ended = end_sessions(store, settings, &username, UserChange::Password { hash }).await?;
            println!("password of {username} changed; {}", ended_text(&ended));
            Ok(())
        }
        UserCommand::Disable { username } => {
            let ended = end_sessions(store, settings, &username, UserChange::Disable).await?;
            println!("user {username} disabled; {}", ended_text(&ended));
            Ok(())
        }
        UserCommand::Import { file, verification } => {
            let mailer = mailer(settings, &verification)?;
            let text = if file.as_os_str() == "-" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
                s
            } else {
                std::fs::read_to_string(&file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?
            };
            let report = users::import(store.as_ref(), text.lines(), &who()).await?;
            // Every failure by line; of the existing ones (a re-run), the first hundred.
            for l in report.existing.iter().take(100) {
                eprintln!("line {}: {} exists, not imported again", l.line, l.username.as_deref().unwrap_or(""));
            }
            if report.existing.len() > 100 {
                eprintln!("… and {} more existing usernames", report.existing.len() - 100);
            }
            for l in &report.failed {
                let field = l.field.as_deref().filter(|f| !f.is_empty()).map(|f| format!(" {f}:")).unwrap_or_default();
                eprintln!("line {}:{field} {}", l.line, l.detail);
            }
            if let Some(mailer) = &mailer {
                send_verifications(store, settings, mailer, &verification, &report.to_verify).await?;
            }
            let summary = serde_json::json!({
                "created": report.created, "existing": report.existing.len(), "failed": report.failed.len(),
            });
            println!("{summary}");
            if !report.failed.is_empty() {
                bail!("{} line(s) could not be imported", report.failed.len());
            }
            Ok(())
        }
        UserCommand::Methods { username } => {
            let Some(user) = store.user_by_username(&username).await? else { bail!("no user named {username:?}") };
            let methods = users::methods(store.as_ref(), user.id).await?;
            println!("ID     KIND           ADDED                LAST USED            NAME");
            let time = |t: Option<i64>| t.map(|t| t.to_string()).unwrap_or_else(|| "-".into());
            for m in &methods {
                let last = if m.kind == "recovery_code" { m.used_at } else { m.last_used_at };
                println!(
                    "{:<6} {:<14} {:<20} {:<20} {}",
                    m.id,
                    m.kind,
                    m.created_at,
                    time(last),
                    m.name.as_deref().unwrap_or("")
                );
            }
            Ok(())
        }
        UserCommand::ResetMfa { username } => {
            let Some(user) = store.user_by_username(&username).await? else { bail!("no user named {username:?}") };
            let removed = users::reset_mfa(store.as_ref(), user.id, &who()).await?;
            println!("{removed} second factor(s) and recovery code(s) of {username} removed; they sign in with their password");
            Ok(())
        }
        UserCommand::Enable { username } => {
            let Some(user) = store.user_by_username(&username).await? else { bail!("no user named {username:?}") };
            users::enable(store.as_ref(), user.id, &who()).await?;
            println!("user {username} enabled");
            Ok(())
        }
    }
}
