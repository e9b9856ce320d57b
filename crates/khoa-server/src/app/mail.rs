//! Mail: password reset and email verification links, sent through SMTP with lettre.
//!
//! A request never waits for a mail: it is handed to [`Outbox::send`], which delivers
//! it in the background (with a few retries), so that an answer takes as long, and
//! says the same, whether or not a mail was sent (no account enumeration).

use async_trait::async_trait;
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::sync::Arc;
use std::time::Duration;

/// `smtp.url` and `smtp.from`. The URL may hold a password: it is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    /// `smtp://user:pass@host:587?tls=required`, `smtps://host:465`, or
    /// `smtp://127.0.0.1:2525` for a local relay (no TLS).
    pub url: String,
    /// The sender, e.g. `Cổng SSO <sso@example.vn>`.
    pub from: String,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = url::Url::parse(&self.url)
            .map(|mut u| {
                if u.password().is_some() {
                    let _ = u.set_password(Some("***"));
                }
                u.to_string()
            })
            .unwrap_or_else(|_| "(unparsable)".into());
        f.debug_struct("SmtpSettings").field("url", &shown).field("from", &self.from).finish()
    }
}

/// Why the SMTP settings cannot be used (found at start, named by the setting).
#[derive(Debug, thiserror::Error)]
pub enum MailSettingsError {
    #[error("not an SMTP URL (smtp://… or smtps://…): {0}")]
    Url(String),
    #[error("not a mailbox like \"Name <sso@example.vn>\": {0}")]
    From(String),
}

/// A mail to one address, with a plain-text and an HTML body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// What delivers mails: SMTP in production, a recorder in in-process tests.
#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    async fn deliver(&self, mail: &Mail) -> Result<(), String>;
}

/// Delivery through an SMTP server (lettre's pooled async transport).
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpSettings {
    /// The transport these settings describe, and the sender; nothing is connected.
    fn parse(&self) -> Result<(lettre::transport::smtp::AsyncSmtpTransportBuilder, Mailbox), MailSettingsError> {
        let scheme = self.url.split("://").next().unwrap_or("");
        if scheme != "smtp" && scheme != "smtps" {
            return Err(MailSettingsError::Url(format!("the scheme is {scheme:?}")));
        }
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&self.url)
            .map_err(|e| MailSettingsError::Url(e.to_string()))?;
        let from = self.from.parse::<Mailbox>().map_err(|e| MailSettingsError::From(e.to_string()))?;
        Ok((transport, from))
    }

    /// Whether the settings can be used (checked when the configuration is read).
    pub fn check(&self) -> Result<(), MailSettingsError> {
        self.parse().map(drop)
    }
}

impl SmtpMailer {
    /// Needs a Tokio runtime (the connection pool runs on it).
    pub fn new(settings: &SmtpSettings) -> Result<Self, MailSettingsError> {
        let (transport, from) = settings.parse()?;
        Ok(Self { transport: transport.timeout(Some(Duration::from_secs(20))).build(), from })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn deliver(&self, mail: &Mail) -> Result<(), String> {
        let to = mail.to.parse::<Mailbox>().map_err(|e| format!("recipient: {e}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&mail.subject)
            .multipart(
                MultiPart::alternative()
                    .singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(mail.text.clone()))
                    .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(mail.html.clone())),
            )
            .map_err(|e| e.to_string())?;
        self.transport.send(message).await.map(drop).map_err(|e| e.to_string())
    }
}

/// Mails in memory, for in-process tests.
#[derive(Default)]
pub struct RecordingMailer(pub std::sync::Mutex<Vec<Mail>>);

#[async_trait]
impl Mailer for RecordingMailer {
    async fn deliver(&self, mail: &Mail) -> Result<(), String> {
        self.0.lock().map_err(|_| "poisoned".to_string())?.push(mail.clone());
        Ok(())
    }
}

/// Attempts per mail, and the wait before the first retry (doubled each time).
const ATTEMPTS: u32 = 4;
const FIRST_RETRY: Duration = Duration::from_secs(2);

/// Hands mails to the [`Mailer`] in the background.
#[derive(Clone)]
pub struct Outbox {
    mailer: Arc<dyn Mailer>,
    /// Deliveries at once (an import may mail thousands; the relay sees a few).
    slots: Arc<tokio::sync::Semaphore>,
}

/// Mails handed to the SMTP server at once.
const CONCURRENT_DELIVERIES: usize = 4;

impl Outbox {
    pub fn new(mailer: Arc<dyn Mailer>) -> Self {
        Self { mailer, slots: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_DELIVERIES)) }
    }

    /// Delivers `mail` in the background; a failed attempt is retried a few times, and
    /// a mail that cannot be delivered is logged (without its link).
    pub fn send(&self, kind: &'static str, mail: Mail) {
        let (mailer, slots) = (self.mailer.clone(), self.slots.clone());
        tokio::spawn(async move {
            let Ok(_slot) = slots.acquire().await else { return };
            let mut wait = FIRST_RETRY;
            for attempt in 1..=ATTEMPTS {
                match mailer.deliver(&mail).await {
                    Ok(()) => {
                        tracing::info!(target: "khoa::mail", kind, attempt, "mail delivered");
                        return;
                    }
                    Err(e) if attempt == ATTEMPTS => {
                        tracing::error!(target: "khoa::mail", kind, attempt, error = %e, "mail not delivered");
                    }
                    Err(e) => {
                        tracing::warn!(target: "khoa::mail", kind, attempt, error = %e, "mail delivery failed; retrying");
                        tokio::time::sleep(wait).await;
                        wait *= 2;
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_and_the_password_never_shown() {
        let ok = SmtpSettings {
            url: "smtp://khoa:s3cret@mail.example.vn:587?tls=required".into(),
            from: "Cổng SSO <sso@example.vn>".into(),
        };
        assert!(ok.check().is_ok());
        let shown = format!("{ok:?}");
        assert!(!shown.contains("s3cret") && shown.contains("***"), "{shown}");
        for url in ["smtps://mail.example.vn", "smtp://127.0.0.1:2525"] {
            assert!(SmtpSettings { url: url.into(), ..ok.clone() }.check().is_ok(), "{url}");
        }
        for url in ["http://mail.example.vn", "mail.example.vn", "smtp://"] {
            let e = SmtpSettings { url: url.into(), ..ok.clone() }.check().err();
            assert!(matches!(e, Some(MailSettingsError::Url(_))), "{url}: {e:?}");
        }
        let e = SmtpSettings { from: "not a mailbox".into(), ..ok }.check().err();
        assert!(matches!(e, Some(MailSettingsError::From(_))), "{e:?}");
    }
}
