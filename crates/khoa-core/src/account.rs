//! What a person does with their own account, as pure rules: the single-use links
//! sent by mail (password reset, email verification), and what they may change.

use crate::session::handle_hash;
use crate::UnixTime;

/// A password reset link is valid for 30 minutes (issue: accounts).
pub const RESET_LINK_LIFETIME: i64 = 30 * 60;
/// An email verification link is valid for 24 hours: it may be read the next day.
pub const VERIFICATION_LINK_LIFETIME: i64 = 24 * 3600;
/// The link in the notice of an address change, mailed to the old address, is valid
/// for 7 days: long after the change itself could have been completed.
pub const REPORT_LINK_LIFETIME: i64 = 7 * 24 * 3600;

/// What a mailed link does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    PasswordReset,
    /// Proves that the user reads the address it was sent to.
    EmailVerification,
    /// Creates the account in its payload once its address is proven (user id 0).
    Registration,
    /// Mailed to the old address when a change of address is asked: "it was not me".
    /// Its address is the old one.
    ChangeReport,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PasswordReset => "password_reset",
            Self::EmailVerification => "email_verification",
            Self::Registration => "registration",
            Self::ChangeReport => "email_change_report",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "password_reset" => Some(Self::PasswordReset),
            "email_verification" => Some(Self::EmailVerification),
            "registration" => Some(Self::Registration),
            "email_change_report" => Some(Self::ChangeReport),
            _ => None,
        }
    }

    pub fn lifetime(self) -> i64 {
        match self {
            Self::PasswordReset => RESET_LINK_LIFETIME,
            Self::EmailVerification | Self::Registration => VERIFICATION_LINK_LIFETIME,
            Self::ChangeReport => REPORT_LINK_LIFETIME,
        }
    }
}

/// A stored link: only the SHA-256 of its secret is kept, so a copy of the database
/// opens no account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountToken {
    pub token_hash: String,
    pub purpose: Purpose,
    pub user_id: i64,
    /// The address a verification link verifies (it may not be the user's yet).
    pub email: Option<String>,
    /// A pending self-registration (JSON; its password already hashed).
    pub payload: Option<String>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub used_at: Option<UnixTime>,
}

impl AccountToken {
    /// A new link for `user_id`: the secret that goes into the mail, and its record.
    pub fn issue(purpose: Purpose, user_id: i64, email: Option<String>, now: UnixTime) -> (String, Self) {
        let secret = crate::random::random_token::<32>();
        let token = Self {
            token_hash: handle_hash(&secret),
            purpose,
            user_id,
            email,
            payload: None,
            created_at: now,
            expires_at: now + purpose.lifetime(),
            used_at: None,
        };
        (secret, token)
    }

    /// Unused and unexpired at `now`: the one rule the store applies atomically too.
    pub fn is_usable(&self, now: UnixTime) -> bool {
        self.used_at.is_none() && now < self.expires_at
    }
}

/// The hash a link's secret is looked up by; a secret of the wrong shape matches
/// nothing (it is still hashed, so the answer takes the same time).
pub fn token_hash(secret: &str) -> String {
    handle_hash(secret)
}

/// The two passwords of a form that sets one: equal, and within the rules.
pub fn check_new_password(password: &str, confirmation: &str) -> Result<(), NewPasswordError> {
    if password != confirmation {
        return Err(NewPasswordError::Mismatch);
    }
    crate::password::validate_new_password(password).map_err(|_| NewPasswordError::Rules)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewPasswordError {
    /// The two entries differ.
    Mismatch,
    /// Too short or too long (`password::validate_new_password`).
    Rules,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_is_usable_once_and_until_it_expires() {
        let (secret, t) = AccountToken::issue(Purpose::PasswordReset, 7, None, 1000);
        assert_eq!(secret.len(), 43);
        assert_eq!(t.token_hash, token_hash(&secret));
        assert_ne!(t.token_hash, secret, "only the hash is stored");
        assert_eq!(t.expires_at, 1000 + 1800);
        let cases = [
            ("fresh", t.clone(), 1000, true),
            ("its last second", t.clone(), 2799, true),
            ("at its expiry", t.clone(), 2800, false),
            ("used", AccountToken { used_at: Some(1001), ..t.clone() }, 1002, false),
        ];
        for (name, token, now, usable) in cases {
            assert_eq!(token.is_usable(now), usable, "{name}");
        }
        let (_, v) = AccountToken::issue(Purpose::EmailVerification, 7, Some("a@b.vn".into()), 0);
        assert_eq!(v.expires_at, 86_400);
        for p in [Purpose::PasswordReset, Purpose::EmailVerification, Purpose::Registration, Purpose::ChangeReport] {
            assert_eq!(Purpose::parse(p.as_str()), Some(p));
        }
        assert_eq!(Purpose::parse("login"), None);
    }

    #[test]
    fn a_new_password_is_entered_twice_and_follows_the_rules() {
        assert_eq!(check_new_password("long enough", "long enough"), Ok(()));
        assert_eq!(check_new_password("long enough", "long enougH"), Err(NewPasswordError::Mismatch));
        assert_eq!(check_new_password("short", "short"), Err(NewPasswordError::Rules));
    }
}
