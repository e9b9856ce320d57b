//! Recovery codes: ten single-use codes, shown once, for a person who has lost their
//! second factor. Each has 80 bits from the operating system's CSPRNG, written as 16
//! characters of Crockford's base32 in four groups (`7kq2-9xmd-…`), so that a copy
//! of the database, where only their SHA-256 is kept, cannot be searched for them.

use crate::session::handle_hash;

/// How many codes a person gets at a time (a new set voids the old one).
pub const CODES: usize = 10;
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// A new set of codes, as the person is shown them.
pub fn new_codes() -> Vec<String> {
    (0..CODES).map(|_| new_code()).collect()
}

fn new_code() -> String {
    let bytes = crate::random::random_bytes::<10>();
    let mut value = bytes.iter().fold(0u128, |v, b| (v << 8) | u128::from(*b));
    let mut chars = [0u8; 16];
    for c in chars.iter_mut().rev() {
        *c = ALPHABET[(value & 31) as usize];
        value >>= 5;
    }
    chars.chunks(4).map(|g| String::from_utf8_lossy(g).into_owned()).collect::<Vec<_>>().join("-")
}

/// A code as typed, in its one spelling: dashes and spaces dropped, lower case, and
/// Crockford's look-alikes read as digits (`o` as 0, `i` and `l` as 1); `None` when
/// it cannot be a code.
pub fn normalize(typed: &str) -> Option<String> {
    let out: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' ' | '\t'))
        .map(|c| match c.to_ascii_lowercase() {
            'o' => '0',
            'i' | 'l' => '1',
            c => c,
        })
        .collect();
    (out.len() == 16 && out.bytes().all(|b| ALPHABET.contains(&b))).then_some(out)
}

/// What is stored of a code: the SHA-256 of its one spelling.
pub fn code_hash(code: &str) -> Option<String> {
    normalize(code).map(|c| handle_hash(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_distinct_codes_in_their_one_spelling() {
        let codes = new_codes();
        assert_eq!(codes.len(), CODES);
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), CODES);
        for code in &codes {
            assert_eq!(code.len(), 19, "{code}");
            assert_eq!(code.matches('-').count(), 3, "{code}");
            assert!(normalize(code).is_some(), "{code}");
        }
    }

    #[test]
    fn typing_variants_match_and_garbage_does_not() {
        let code = "7kq2-9xmd-0a1b-zz3f";
        let hash = code_hash(code).unwrap();
        for typed in [
            "7KQ2-9XMD-0A1B-ZZ3F",
            "7kq2 9xmd 0a1b zz3f",
            "7kq29xmd0a1bzz3f",
            "7kq2-9xmd-Oa1b-zz3f",
            "7kq2-9xmd-0aIb-zz3f",
            "7kq2-9xmd-0aLb-zz3f",
        ] {
            assert_eq!(code_hash(typed).as_deref(), Some(hash.as_str()), "{typed}");
        }
        for bad in ["", "7kq2-9xmd-0a1b", "7kq2-9xmd-0a1b-zz3f-aaaa", "7kq2-9xmd-0a1b-zz3u", "7kq2-9xmd-0a1b-zz3é"] {
            assert_eq!(code_hash(bad), None, "{bad}");
        }
        assert_ne!(code_hash("7kq2-9xmd-0a1b-zz3g"), Some(hash), "one character differs");
    }
}
