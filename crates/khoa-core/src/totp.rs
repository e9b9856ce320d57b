//! Authenticator-app codes (RFC 6238, on `totp-rs`): HMAC-SHA-1, 30-second steps,
//! 6 digits, the step before and the one after the current one accepted for clock
//! drift (§5.2), and each time step accepted at most once per credential (§5.2: the
//! caller stores the step of the last accepted code and passes it back).

use crate::UnixTime;

/// 160 bits, as RFC 4226 §4 recommends.
pub const SECRET_BYTES: usize = 20;
pub const STEP_SECONDS: u64 = 30;
pub const DIGITS: u8 = 6;

/// A new secret from the operating system's CSPRNG.
pub fn new_secret() -> [u8; SECRET_BYTES] {
    crate::random::random_bytes::<SECRET_BYTES>()
}

/// The secret as people type it into an app: RFC 4648 base32, no padding.
pub fn base32(secret: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(secret.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in secret {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The bytes of a base32 secret as [`base32`] writes it (spaces and case ignored);
/// `None` when it is not one.
pub fn from_base32(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| *c != b' ').map(|c| c.to_ascii_uppercase()) {
        let value = ALPHABET.iter().position(|a| *a == c)? as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The `otpauth://totp/…` URI an app reads from a QR code or a link (the Key URI
/// Format of Google Authenticator, which the other apps follow).
pub fn otpauth_uri(secret: &[u8], issuer: &str, account: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20");
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
        enc(issuer),
        enc(account),
        base32(secret),
        enc(issuer)
    )
}

fn totp(secret: &[u8]) -> Option<totp_rs::Totp> {
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(DIGITS)
        .with_skew(1)
        .with_step_duration(STEP_SECONDS)
        .with_secret(secret.to_vec())
        .build()
        .ok()
}

/// What a code typed at `now` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeCheck {
    /// Right, for this time step (store it: it is never accepted again).
    Accepted {
        step: u64,
    },
    /// Right, but for a step already accepted: a replayed code.
    Replayed,
    Wrong,
}

/// Checks `code` (6 digits; spaces ignored) against `secret` at `now`, given the step
/// of the last code accepted for this credential.
pub fn check(secret: &[u8], code: &str, now: UnixTime, last_step: Option<u64>) -> CodeCheck {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != usize::from(DIGITS) || !code.bytes().all(|b| b.is_ascii_digit()) || now < 0 {
        return CodeCheck::Wrong;
    }
    let Some(totp) = totp(secret) else { return CodeCheck::Wrong };
    match totp.check(&code, now as u64) {
        Some(step) if last_step.is_some_and(|last| step <= last) => CodeCheck::Replayed,
        Some(step) => CodeCheck::Accepted { step },
        None => CodeCheck::Wrong,
    }
}

/// The code of `secret` at `at` (what an app shows; for tests and enrolment checks).
pub fn code_at(secret: &[u8], at: UnixTime) -> Option<String> {
    Some(totp(secret)?.generate(u64::try_from(at).ok()?).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B's SHA-1 vectors (the secret "12345678901234567890"), in six
    /// digits: the same truncation, modulo 10⁶.
    #[test]
    fn base32_round_trips() {
        for _ in 0..20 {
            let secret = new_secret();
            assert_eq!(from_base32(&base32(&secret)).as_deref(), Some(&secret[..]));
        }
        assert_eq!(from_base32("gezd gnbv").as_deref(), Some(&b"12345"[..]));
        assert_eq!(from_base32("GEZDGNBV1"), None, "1 is not base32");
        assert_eq!(from_base32(""), None);
    }

    #[test]
    fn rfc_6238_vectors() {
        let secret = b"12345678901234567890";
        for (t, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(code_at(secret, t).as_deref(), Some(code), "T = {t}");
            assert_eq!(check(secret, code, t, None), CodeCheck::Accepted { step: t as u64 / 30 }, "T = {t}");
        }
        assert_eq!(base32(secret), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    }

    #[test]
    fn drift_replay_and_garbage() {
        let secret = new_secret();
        let now: UnixTime = 1_800_000_015; // inside step 60,000,000
        let step = now as u64 / 30;
        let code = code_at(&secret, now).unwrap();
        // (name, code, at, last accepted step, outcome)
        let before = code_at(&secret, now - 30).unwrap();
        let after = code_at(&secret, now + 30).unwrap();
        let too_old = code_at(&secret, now - 60).unwrap();
        let cases: &[(&str, &str, Option<u64>, CodeCheck)] = &[
            ("the current code", &code, None, CodeCheck::Accepted { step }),
            ("with a space", &format!("{} {}", &code[..3], &code[3..]), None, CodeCheck::Accepted { step }),
            ("the step before", &before, None, CodeCheck::Accepted { step: step - 1 }),
            ("the step after", &after, None, CodeCheck::Accepted { step: step + 1 }),
            ("two steps old", &too_old, None, CodeCheck::Wrong),
            ("the same code again", &code, Some(step), CodeCheck::Replayed),
            ("an older step after a newer one", &before, Some(step), CodeCheck::Replayed),
            ("a newer step after an older one", &code, Some(step - 1), CodeCheck::Accepted { step }),
            ("five digits", &code[..5], None, CodeCheck::Wrong),
            ("letters", "12a456", None, CodeCheck::Wrong),
            ("seven digits", "1234567", None, CodeCheck::Wrong),
            ("fullwidth digits", "１２３４５６", None, CodeCheck::Wrong),
        ];
        for (name, typed, last, expected) in cases {
            assert_eq!(check(&secret, typed, now, *last), *expected, "{name}");
        }
        // Another secret's code is wrong (one in a million by chance: a fixed pair).
        let other = [7u8; SECRET_BYTES];
        assert_eq!(check(&other, &code_at(&[9u8; SECRET_BYTES], now).unwrap(), now, None), CodeCheck::Wrong);
        assert_eq!(check(&secret, &code, -5, None), CodeCheck::Wrong);
        assert_eq!(check(&[1u8; 4], "123456", now, None), CodeCheck::Wrong, "a secret too short is refused");
    }

    #[test]
    fn the_uri_an_app_reads() {
        let uri = otpauth_uri(b"12345678901234567890", "Đại học HUTECH", "sv01@hutech.edu.vn");
        assert_eq!(
            uri,
            "otpauth://totp/%C4%90%E1%BA%A1i%20h%E1%BB%8Dc%20HUTECH:sv01%40hutech.edu.vn?\
             secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=%C4%90%E1%BA%A1i%20h%E1%BB%8Dc%20HUTECH\
             &algorithm=SHA1&digits=6&period=30"
        );
        assert_eq!(base32(&[0xff]), "74");
        assert_eq!(base32(&[]), "");
    }
}
