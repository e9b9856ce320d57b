//! Proof Key for Code Exchange (RFC 7636), S256 only (RFC 9700 §2.1.1: `plain` is not
//! to be used).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use subtle::ConstantTimeEq;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PkceError {
    #[error("code_challenge_method must be S256")]
    UnsupportedMethod,
    #[error("code_challenge must be 43 base64url characters (the S256 of a code_verifier)")]
    ChallengeFormat,
    #[error("code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~")]
    VerifierFormat,
    #[error("code_verifier does not match the code_challenge")]
    Mismatch,
}

/// A validated S256 `code_challenge`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct CodeChallenge(String);

fn is_base64url(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl CodeChallenge {
    /// RFC 7636 §4.3: `method` absent means `plain`, which khoa refuses.
    pub fn parse(challenge: &str, method: Option<&str>) -> Result<Self, PkceError> {
        if method != Some("S256") {
            return Err(PkceError::UnsupportedMethod);
        }
        // BASE64URL(SHA-256(verifier)) is always 43 characters without padding.
        if challenge.len() != 43 || !is_base64url(challenge) || URL_SAFE_NO_PAD.decode(challenge).is_err() {
            return Err(PkceError::ChallengeFormat);
        }
        Ok(Self(challenge.to_string()))
    }

    /// A challenge read back from storage, where it was validated when stored.
    pub fn from_stored(challenge: String) -> Self {
        Self(challenge)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The S256 challenge of a verifier (RFC 7636 §4.2).
    pub fn s256(verifier: &str) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
        Self(URL_SAFE_NO_PAD.encode(digest.as_ref()))
    }

    /// RFC 7636 §4.6: recompute the challenge from the verifier and compare in
    /// constant time.
    pub fn verify(&self, verifier: &str) -> Result<(), PkceError> {
        validate_verifier(verifier)?;
        if bool::from(Self::s256(verifier).0.as_bytes().ct_eq(self.0.as_bytes())) {
            Ok(())
        } else {
            Err(PkceError::Mismatch)
        }
    }
}

/// RFC 7636 §4.1: code-verifier = 43*128unreserved
pub fn validate_verifier(verifier: &str) -> Result<(), PkceError> {
    let ok = (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if ok {
        Ok(())
    } else {
        Err(PkceError::VerifierFormat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc7636_appendix_b() {
        assert_eq!(CodeChallenge::s256(VERIFIER).as_str(), CHALLENGE);
        let challenge = CodeChallenge::parse(CHALLENGE, Some("S256")).unwrap();
        assert_eq!(challenge.verify(VERIFIER), Ok(()));
    }

    #[test]
    fn wrong_verifier_is_refused() {
        let challenge = CodeChallenge::parse(CHALLENGE, Some("S256")).unwrap();
        let mut wrong = VERIFIER.to_string();
        wrong.replace_range(0..1, "e");
        assert_eq!(challenge.verify(&wrong), Err(PkceError::Mismatch));
        assert_eq!(challenge.verify("short"), Err(PkceError::VerifierFormat));
        assert_eq!(challenge.verify(&"a".repeat(129)), Err(PkceError::VerifierFormat));
        assert_eq!(challenge.verify(&format!("{}+", &VERIFIER[..43])), Err(PkceError::VerifierFormat));
    }

    #[test]
    fn only_s256_with_a_well_formed_challenge() {
        assert_eq!(CodeChallenge::parse(CHALLENGE, Some("plain")), Err(PkceError::UnsupportedMethod));
        assert_eq!(CodeChallenge::parse(CHALLENGE, None), Err(PkceError::UnsupportedMethod));
        assert_eq!(CodeChallenge::parse(CHALLENGE, Some("s256")), Err(PkceError::UnsupportedMethod));
        assert_eq!(CodeChallenge::parse(&CHALLENGE[..42], Some("S256")), Err(PkceError::ChallengeFormat));
        assert_eq!(
            CodeChallenge::parse(&format!("{}=", &CHALLENGE[..42]), Some("S256")),
            Err(PkceError::ChallengeFormat)
        );
        assert_eq!(CodeChallenge::parse(VERIFIER, Some("S256")).map(|c| c.as_str().len()), Ok(43));
    }
}
