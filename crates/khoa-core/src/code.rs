//! Authorization codes (RFC 6749 §4.1.2) and the rules checked when one is redeemed
//! (§4.1.3, RFC 7636 §4.6).

use crate::pkce::CodeChallenge;
use crate::UnixTime;

/// A code as stored: bound to everything the token request must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationCode {
    pub code_hash: String,
    pub client_id: String,
    pub user_id: i64,
    pub sid: String,
    pub redirect_uri: String,
    pub redirect_uri_sent: bool,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub auth_time: UnixTime,
    pub amr: Vec<String>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

/// Why a redeemed code gives no tokens (all `invalid_grant`, RFC 6749 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("the authorization code is invalid")]
    Unknown,
    #[error("the authorization code was already used")]
    Replayed,
    #[error("the authorization code was issued to another client")]
    OtherClient,
    #[error("the authorization code has expired")]
    Expired,
    #[error("redirect_uri does not match the authorization request")]
    RedirectUri,
    #[error("code_verifier is required")]
    MissingVerifier,
    #[error("code_verifier does not match the code_challenge")]
    WrongVerifier,
    #[error("code_verifier was sent but the authorization request had no code_challenge")]
    UnexpectedVerifier,
}

impl AuthorizationCode {
    /// The checks of RFC 6749 §4.1.3 and RFC 7636 §4.6 on a code this client has just
    /// consumed (consumption itself, and the client binding, happen atomically in the
    /// store).
    pub fn check_redemption(
        &self,
        redirect_uri: Option<&str>,
        code_verifier: Option<&str>,
        now: UnixTime,
    ) -> Result<(), CodeError> {
        if now >= self.expires_at {
            return Err(CodeError::Expired);
        }
        // §4.1.3: redirect_uri is required if it was in the authorization request, and
        // must then be identical. If it was not, a value sent must still match.
        match redirect_uri {
            Some(uri) if uri != self.redirect_uri => return Err(CodeError::RedirectUri),
            None if self.redirect_uri_sent => return Err(CodeError::RedirectUri),
            _ => {}
        }
        match (&self.code_challenge, code_verifier) {
            (Some(challenge), Some(verifier)) => {
                CodeChallenge::from_stored(challenge.clone()).verify(verifier).map_err(|_| CodeError::WrongVerifier)
            }
            (Some(_), None) => Err(CodeError::MissingVerifier),
            // RFC 9700 §2.1.1: a verifier without a stored challenge is a downgrade attempt.
            (None, Some(_)) => Err(CodeError::UnexpectedVerifier),
            (None, None) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn code(challenge: Option<&str>, sent: bool) -> AuthorizationCode {
        AuthorizationCode {
            code_hash: "h".into(),
            client_id: "c".into(),
            user_id: 1,
            sid: "s".into(),
            redirect_uri: "https://app.example/cb".into(),
            redirect_uri_sent: sent,
            scope: "openid".into(),
            nonce: None,
            code_challenge: challenge.map(str::to_string),
            auth_time: 0,
            amr: vec!["pwd".into()],
            created_at: 100,
            expires_at: 160,
        }
    }

    #[test]
    fn redemption_rules() {
        let c = code(Some(CHALLENGE), true);
        assert_eq!(c.check_redemption(Some("https://app.example/cb"), Some(VERIFIER), 159), Ok(()));
        assert_eq!(c.check_redemption(Some("https://app.example/cb"), Some(VERIFIER), 160), Err(CodeError::Expired));
        assert_eq!(
            c.check_redemption(Some("https://app.example/cb/x"), Some(VERIFIER), 120),
            Err(CodeError::RedirectUri)
        );
        assert_eq!(c.check_redemption(None, Some(VERIFIER), 120), Err(CodeError::RedirectUri));
        assert_eq!(c.check_redemption(Some("https://app.example/cb"), None, 120), Err(CodeError::MissingVerifier));
        let wrong = format!("{}A", &VERIFIER[..42]);
        assert_eq!(
            c.check_redemption(Some("https://app.example/cb"), Some(&wrong), 120),
            Err(CodeError::WrongVerifier)
        );
        let plain = code(None, false);
        assert_eq!(plain.check_redemption(None, None, 120), Ok(()));
        assert_eq!(plain.check_redemption(None, Some(VERIFIER), 120), Err(CodeError::UnexpectedVerifier));
        assert_eq!(plain.check_redemption(Some("https://other.example/cb"), None, 120), Err(CodeError::RedirectUri));
    }
}
