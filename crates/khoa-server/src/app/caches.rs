//! What each process remembers between requests, beside the client and user caches
//! (`clients.rs`): each is emptied or bounded so that it never outgrows the data.

use khoa_core::client::Client;
use khoa_core::tokens::AccessTokenClaims;
use khoa_store::{ClientStore, StoreError};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

/// Every origin some client allows, for preflights (which name no client); emptied by
/// the watcher whenever clients change.
#[derive(Default)]
pub struct OriginIndex {
    origins: RwLock<Option<Arc<HashSet<String>>>>,
}

impl OriginIndex {
    pub async fn contains(&self, store: &dyn ClientStore, origin: &str) -> Result<bool, StoreError> {
        let cached = self.origins.read().ok().and_then(|o| o.clone());
        let origins = match cached {
            Some(o) => o,
            None => {
                let all: HashSet<String> = store.clients().await?.iter().flat_map(Client::origins).collect();
                let all = Arc::new(all);
                if let Ok(mut o) = self.origins.write() {
                    *o = Some(all.clone());
                }
                all
            }
        };
        Ok(origins.contains(origin))
    }

    pub fn clear(&self) {
        if let Ok(mut o) = self.origins.write() {
            *o = None;
        }
    }
}

/// The SHA-256 of a presented token: the key of [`VerifiedAccessTokens`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub fn of(token: &str) -> Self {
        Self(khoa_core::session::sha256(token.as_bytes()))
    }
}

/// JWT access tokens whose signature, header and issuer have been checked, by the
/// SHA-256 of the whole token.
///
/// Checking a signature is a pure function of the token's bytes and the key, so its
/// outcome can be remembered: a resource server that introspects a token, or calls
/// userinfo with it, on every API call then costs one RS256 or ES256 verification per
/// token instead of one per call. Only that check is remembered: the token's record is
/// still read on every use, so revocation and expiry take effect at once. An entry
/// counts only while the key that signed it is still in the keyring, so a key that is
/// removed stops its tokens here as it does in verification. Only tokens that passed
/// the check are kept, so forged ones cannot fill it; it holds at most
/// [`VerifiedAccessTokens::CAPACITY`] entries and is emptied whole when full.
#[derive(Default)]
pub struct VerifiedAccessTokens {
    entries: Mutex<HashMap<TokenDigest, (String, Arc<AccessTokenClaims>)>>,
}

impl VerifiedAccessTokens {
    /// About 2 MB at most (a few hundred bytes of claims per entry).
    pub const CAPACITY: usize = 4096;

    /// The claims of a token checked before, if the key it names is still there.
    pub fn get(&self, digest: &TokenDigest, key_present: impl Fn(&str) -> bool) -> Option<Arc<AccessTokenClaims>> {
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (kid, claims) = entries.get(digest)?;
        key_present(kid).then(|| claims.clone())
    }

    pub fn insert(&self, digest: TokenDigest, kid: String, claims: Arc<AccessTokenClaims>) {
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() >= Self::CAPACITY {
            entries.clear();
        }
        entries.insert(digest, (kid, claims));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }
}

/// The waiting period of each throttled client, as this process last learned it.
#[derive(Default)]
pub struct ClientAuthBlocks {
    until: std::sync::Mutex<HashMap<String, i64>>,
}

impl ClientAuthBlocks {
    pub(crate) fn until(&self, client_id: &str) -> Option<i64> {
        self.until.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(client_id).copied()
    }

    /// Registered clients only, so the map is bounded by the number of clients.
    pub(crate) fn set(&self, client_id: &str, until: i64) {
        let mut map = self.until.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        map.insert(client_id.to_string(), until);
    }
}
