//! Links sent by mail (password reset, email verification). Each is redeemed once, by
//! a conditional write in the transaction of what it does, so a link used twice at
//! once (two tabs, two processes) does its work once.

use crate::audit;
use crate::db::{args, change, Conn, FromRow, Row};
use crate::engine::{Engine, SqlStore};
use crate::users::{cancel_reset_links, end_sessions, verified_elsewhere, EndedSessions, UserChange, UserRef};
use crate::StoreError;
use async_trait::async_trait;
use khoa_core::account::{AccountToken, Purpose};
use khoa_core::audit::Event;
use khoa_core::UnixTime;

#[async_trait]
pub trait AccountStore: Send + Sync + 'static {
    /// Stores the link, and `audit` in the same transaction.
    async fn insert_account_token(&self, token: &AccountToken, audit: &Event) -> Result<(), StoreError>;
    /// The link `token_hash` for `purpose` if it can still be used at `now` (a page
    /// showing its form; a mail scanner fetching the link uses nothing up).
    async fn account_token(
        &self,
        token_hash: &str,
        purpose: Purpose,
        now: UnixTime,
    ) -> Result<Option<AccountToken>, StoreError>;
    /// Uses the link (and the user's other links of its purpose) if it is usable at
    /// `now`: the link, or `None` when it is unknown, used or expired.
    async fn use_account_token(
        &self,
        token_hash: &str,
        purpose: Purpose,
        now: UnixTime,
    ) -> Result<Option<AccountToken>, StoreError>;
    /// In one transaction: uses the reset link (and every other reset link of its
    /// user), replaces the password with `password_hash`, ends every session and
    /// revokes every token of the user (as [`crate::UserStore::end_user_sessions`]),
    /// and records `audit`. `None` when the link is unknown, used or expired.
    async fn reset_password(
        &self,
        token_hash: &str,
        password_hash: &str,
        now: UnixTime,
        keep_until: UnixTime,
        audit: &Event,
    ) -> Result<Option<EndedSessions>, StoreError>;
    /// In one transaction: forgets the consent of `user_id` to `client_id` and revokes
    /// every access and refresh token of the user for that client; records `audit`.
    /// How many tokens were revoked, or `None` when there was no consent and no token.
    async fn revoke_consent(
        &self,
        user_id: i64,
        client_id: &str,
        now: UnixTime,
        audit: &Event,
    ) -> Result<Option<u64>, StoreError>;
    /// In one transaction: uses the verification link (and the user's other ones),
    /// makes its address the user's email, verified, cancels the user's reset links
    /// (mailed to the address it replaces), and records `audit`. The user's id and the
    /// address, or `None` when the link is unknown, used or expired;
    /// `Conflict("email")` (and nothing changed) when the address is verified on another
    /// account.
    async fn verify_email(
        &self,
        token_hash: &str,
        now: UnixTime,
        audit: &Event,
    ) -> Result<Option<(i64, String)>, StoreError>;
    /// In one transaction, for the person who reads the old address of an account
    /// whose address change they did not ask for: uses the report link, cancels the
    /// pending verification and reset links, gives the account back the link's address
    /// (verified: the link was read there) unless another account has it verified, ends
    /// every session and revokes every token (as [`crate::UserStore::end_user_sessions`]),
    /// and records `audit`. `None` when the link is unknown, used or expired.
    async fn report_email_change(
        &self,
        token_hash: &str,
        now: UnixTime,
        keep_until: UnixTime,
        audit: &Event,
    ) -> Result<Option<EndedSessions>, StoreError>;
}

const COLUMNS: &str = "token_hash, purpose, user_id, email, payload, created_at, expires_at, used_at";

impl FromRow for AccountToken {
    fn from_row(r: &mut Row) -> Result<Self, StoreError> {
        let token_hash = r.take()?;
        let purpose: String = r.take()?;
        Ok(AccountToken {
            token_hash,
            purpose: Purpose::parse(&purpose)
                .ok_or_else(|| StoreError::Corrupt(format!("account_tokens.purpose: {purpose:?}")))?,
            user_id: r.take()?,
            email: r.take()?,
            payload: r.take()?,
            created_at: r.take()?,
            expires_at: r.take()?,
            used_at: r.take()?,
        })
    }
}

/// Uses the link if it is usable, and with it every other unused link of its user for
/// the same purpose (the newest mail is not the only one that could be read).
async fn redeem(
    db: &mut impl Conn,
    token_hash: &str,
    purpose: Purpose,
    now: UnixTime,
) -> Result<Option<AccountToken>, StoreError> {
    let token: Option<AccountToken> = db
        .fetch_optional(
            &format!(
                "UPDATE account_tokens SET used_at = $1 \
                 WHERE token_hash = $2 AND purpose = $3 AND used_at IS NULL AND expires_at > $1 RETURNING {COLUMNS}"
            ),
            args![now, token_hash, purpose.as_str()],
        )
        .await?;
    if let Some(t) = token.as_ref().filter(|t| t.user_id != 0) {
        db.exec(
            "UPDATE account_tokens SET used_at = $1 WHERE user_id = $2 AND purpose = $3 AND used_at IS NULL",
            args![now, t.user_id, purpose.as_str()],
        )
        .await?;
    }
    Ok(token)
}

#[async_trait]
impl<E: Engine> AccountStore for SqlStore<E> {
    async fn insert_account_token(&self, t: &AccountToken, audit_event: &Event) -> Result<(), StoreError> {
        let (t, audit_event) = (t.clone(), audit_event.clone());
        self.write(move |db| {
            Box::pin(async move {
                audit::insert(db, &audit_event).await?;
                db.exec(
                    &format!("INSERT INTO account_tokens ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"),
                    args![
                        t.token_hash,
                        t.purpose.as_str(),
                        t.user_id,
                        t.email,
                        t.payload,
                        t.created_at,
                        t.expires_at,
                        t.used_at
                    ],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn account_token(
        &self,
        token_hash: &str,
        purpose: Purpose,
        now: UnixTime,
    ) -> Result<Option<AccountToken>, StoreError> {
        let token_hash = token_hash.to_owned();
        self.read(move |db| {
            Box::pin(async move {
                db.fetch_optional(
                    &format!(
                        "SELECT {COLUMNS} FROM account_tokens \
                         WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3"
                    ),
                    args![token_hash, purpose.as_str(), now],
                )
                .await
            })
        })
        .await
    }

    async fn use_account_token(
        &self,
        token_hash: &str,
        purpose: Purpose,
        now: UnixTime,
    ) -> Result<Option<AccountToken>, StoreError> {
        let token_hash = token_hash.to_owned();
        self.write(move |db| Box::pin(async move { redeem(db, &token_hash, purpose, now).await })).await
    }

    async fn reset_password(
        &self,
        token_hash: &str,
        password_hash: &str,
        now: UnixTime,
        keep_until: UnixTime,
        audit_event: &Event,
    ) -> Result<Option<EndedSessions>, StoreError> {
        let (token_hash, hash, audit_event) = (token_hash.to_owned(), password_hash.to_owned(), audit_event.clone());
        self.write(move |db| {
            Box::pin(async move {
                let Some(token) = redeem(db, &token_hash, Purpose::PasswordReset, now).await? else {
                    return Ok(None);
                };
                let change = UserChange::Password { hash };
                let mut event = audit_event;
                event.user_id = Some(token.user_id);
                end_sessions(db, &UserRef::Id(token.user_id), &change, "", now, keep_until, &event).await
            })
        })
        .await
    }

    async fn revoke_consent(
        &self,
        user_id: i64,
        client_id: &str,
        now: UnixTime,
        audit_event: &Event,
    ) -> Result<Option<u64>, StoreError> {
        let (client_id, audit_event) = (client_id.to_owned(), audit_event.clone());
        self.write(move |db| {
            Box::pin(async move {
                let consents =
                    db.exec("DELETE FROM consents WHERE user_id = $1 AND client_id = $2", args![user_id, client_id]).await?;
                let mut tokens = 0;
                for sql in [
                    "UPDATE access_tokens SET revoked_at = $1 WHERE user_id = $2 AND client_id = $3 AND revoked_at IS NULL",
                    "UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND client_id = $3 AND revoked_at IS NULL",
                ] {
                    tokens += db.exec(sql, args![now, user_id, client_id]).await?;
                }
                if consents == 0 && tokens == 0 {
                    return Ok(None);
                }
                let mut event = audit_event;
                if let serde_json::Value::Object(detail) = &mut event.detail {
                    detail.insert("tokens_revoked".into(), tokens.into());
                }
                audit::insert(db, &event).await?;
                Ok(Some(tokens))
            })
        })
        .await
    }

    async fn verify_email(
        &self,
        token_hash: &str,
        now: UnixTime,
        audit_event: &Event,
    ) -> Result<Option<(i64, String)>, StoreError> {
        let (token_hash, audit_event) = (token_hash.to_owned(), audit_event.clone());
        self.write(move |db| {
            Box::pin(async move {
                let Some(token) = redeem(db, &token_hash, Purpose::EmailVerification, now).await? else {
                    return Ok(None);
                };
                let Some(email) = token.email else { return Ok(None) };
                if verified_elsewhere(db, E::BACKEND, &email, Some(token.user_id)).await? {
                    // Undoes the link's use with the rest of the transaction.
                    return Err(StoreError::Conflict("email"));
                }
                let n = change(
                    db,
                    "UPDATE users SET email = $1, email_verified = TRUE, updated_at = $2, revision = revision + 1 \
                     WHERE id = $3",
                    args![email, now, token.user_id],
                )
                .await?;
                if n == 0 {
                    return Ok(None);
                }
                // Links mailed to the address this one replaces set no password now.
                cancel_reset_links(db, token.user_id, now).await?;
                let mut event = audit_event;
                event.user_id = Some(token.user_id);
                audit::insert(db, &event).await?;
                Ok(Some((token.user_id, email)))
            })
        })
        .await
    }

    async fn report_email_change(
        &self,
        token_hash: &str,
        now: UnixTime,
        keep_until: UnixTime,
        audit_event: &Event,
    ) -> Result<Option<EndedSessions>, StoreError> {
        let (token_hash, audit_event) = (token_hash.to_owned(), audit_event.clone());
        self.write(move |db| {
            Box::pin(async move {
                let Some(token) = redeem(db, &token_hash, Purpose::ChangeReport, now).await? else {
                    return Ok(None);
                };
                let user_id = token.user_id;
                db.exec(
                    "UPDATE account_tokens SET used_at = $1 WHERE user_id = $2 AND purpose = 'email_verification' \
                     AND used_at IS NULL",
                    args![now, user_id],
                )
                .await?;
                cancel_reset_links(db, user_id, now).await?;
                let mut restored = false;
                if let Some(old) = &token.email {
                    if !verified_elsewhere(db, E::BACKEND, old, Some(user_id)).await? {
                        restored = change(
                            db,
                            "UPDATE users SET email = $1, email_verified = TRUE, updated_at = $2, \
                             revision = revision + 1 WHERE id = $3 AND (email IS NULL OR LOWER(email) <> LOWER($1) \
                             OR NOT email_verified)",
                            args![old, now, user_id],
                        )
                        .await?
                            > 0;
                    }
                }
                let mut event = audit_event;
                event.user_id = Some(user_id);
                if let serde_json::Value::Object(detail) = &mut event.detail {
                    detail.insert("address_restored".into(), restored.into());
                }
                end_sessions(db, &UserRef::Id(user_id), &UserChange::None, "", now, keep_until, &event).await
            })
        })
        .await
    }
}
