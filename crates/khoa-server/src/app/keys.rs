//! Signing keys: first-start generation, rotation, and the in-memory key ring every
//! handler signs with. Private keys are sealed with the master key before they reach
//! the store and opened only here.

use crate::app::settings::Settings;
use khoa_core::audit::{kind, Actor, Event};
use khoa_core::jose::{Jwk, JwkSet, KeyError, SigningAlgorithm, SigningKey};
use khoa_core::keyring::{self, KeyState, KeyTimeline};
use khoa_core::sealing::{MasterKey, SealingError};
use khoa_core::UnixTime;
use khoa_store::{ClientStore, KeyStore, Store, StoreError, StoredKey};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "signing key {kid} cannot be opened ({source}); was KHOA_SECRET or the key file changed since it was created?"
    )]
    Unseal { kid: String, source: SealingError },
    #[error("signing key {kid}: {source}")]
    Key { kid: String, source: KeyError },
    #[error("{0}")]
    Generate(KeyError),
    #[error("another process rotated the {0} key at the same moment; try again")]
    RotationRace(SigningAlgorithm),
}

/// Generates, seals and stores a key of `alg` as `generation`, recording `audit`.
async fn create_key(
    store: &dyn KeyStore,
    master: &MasterKey,
    alg: SigningAlgorithm,
    generation: i64,
    (now, activates_at): (UnixTime, UnixTime),
    audit: &Event,
) -> Result<KeyTimeline, KeysError> {
    // RSA generation takes tens of milliseconds: keep it off the async executor.
    let key = tokio::task::spawn_blocking(move || SigningKey::generate(alg))
        .await
        .map_err(|_| KeysError::Generate(KeyError::Generation))?
        .map_err(KeysError::Generate)?;
    let pkcs8 = key.to_pkcs8().map_err(KeysError::Generate)?;
    let kid = key.kid().to_string();
    let sealed =
        master.seal(kid.as_bytes(), &pkcs8).map_err(|source| KeysError::Unseal { kid: kid.clone(), source })?;
    let timeline = KeyTimeline { kid, alg, generation, created_at: now, activates_at };
    let stored = StoredKey {
        timeline: timeline.clone(),
        public_jwk: serde_json::to_string(key.public_jwk()).unwrap_or_default(),
        private_key_sealed: sealed,
    };
    store.insert_signing_key(&stored, audit).await?;
    Ok(timeline)
}

/// First start: a key for every configured algorithm that has none, active at once.
/// Several processes starting together on one database create exactly one each.
pub async fn ensure_initial_keys(
    store: &dyn KeyStore,
    master: &MasterKey,
    algorithms: &[SigningAlgorithm],
    now: UnixTime,
) -> Result<Vec<KeyTimeline>, KeysError> {
    let existing = store.signing_keys().await?;
    let mut created = vec![];
    for &alg in algorithms {
        if existing.iter().any(|k| k.timeline.alg == alg) {
            continue;
        }
        let event = Event::new(now, kind::KEY_CREATED, Actor::System);
        match create_key(store, master, alg, 1, (now, now), &event).await {
            Ok(t) => created.push(t),
            Err(KeysError::Store(StoreError::Conflict(_))) => {} // another process won
            Err(e) => return Err(e),
        }
    }
    Ok(created)
}

/// Rotation: a new generation of each algorithm, published at once, signing from
/// `activates_at`; each recorded as `actor`'s (from `address`).
pub async fn rotate(
    store: &dyn KeyStore,
    master: &MasterKey,
    algorithms: &[SigningAlgorithm],
    (now, activates_at): (UnixTime, UnixTime),
    (actor, address): (Actor, Option<String>),
) -> Result<Vec<KeyTimeline>, KeysError> {
    let existing = store.signing_keys().await?;
    let mut created = vec![];
    for &alg in algorithms {
        let generation =
            existing.iter().filter(|k| k.timeline.alg == alg).map(|k| k.timeline.generation).max().unwrap_or(0) + 1;
        let event = Event::new(now, kind::KEY_ROTATED, actor.clone()).from_address(address.clone());
        match create_key(store, master, alg, generation, (now, activates_at), &event).await {
            Ok(t) => created.push(t),
            Err(KeysError::Store(StoreError::Conflict(_))) => return Err(KeysError::RotationRace(alg)),
            Err(e) => return Err(e),
        }
    }
    Ok(created)
}

/// How long retired keys stay published, given the configuration and every client's
/// lifetime overrides.
pub async fn retention(store: &dyn ClientStore, settings: &Settings) -> Result<i64, StoreError> {
    Ok(settings.signed_token_horizon(store.longest_client_token_lifetime().await?))
}

/// Everything the handlers need about keys at one moment.
pub struct KeySnapshot {
    pub timelines: Vec<KeyTimeline>,
    keys: HashMap<String, Arc<SigningKey>>,
    pub retention: i64,
    /// The JWKS document (JSON) published at `computed_at`.
    pub jwks_json: Arc<str>,
    pub published_count: usize,
    pub computed_at: UnixTime,
    /// When the published set or a signing key next changes on its own.
    pub valid_until: Option<UnixTime>,
}

impl KeySnapshot {
    /// The key that signs for `alg` now.
    pub fn signing_key(&self, alg: SigningAlgorithm, now: UnixTime) -> Option<Arc<SigningKey>> {
        keyring::signing_key(&self.timelines, alg, now).and_then(|t| self.keys.get(&t.kid).cloned())
    }

    /// Any key khoa holds (active, pending or retired), by `kid`, for verifying tokens
    /// it signed.
    pub fn key(&self, kid: &str) -> Option<Arc<SigningKey>> {
        self.keys.get(kid).cloned()
    }

    pub fn state_of(&self, t: &KeyTimeline, now: UnixTime) -> KeyState {
        keyring::key_state(&self.timelines, t, now, self.retention)
    }
}

/// Loads and opens every stored key and computes what is published at `now`.
pub async fn load_snapshot(
    store: &dyn Store,
    master: &MasterKey,
    settings: &Settings,
    now: UnixTime,
) -> Result<KeySnapshot, KeysError> {
    let stored = store.signing_keys().await?;
    let retention = retention(store, settings).await?;
    let mut keys = HashMap::new();
    let mut timelines = vec![];
    for k in stored {
        let kid = k.timeline.kid.clone();
        let pkcs8 = master
            .open(kid.as_bytes(), &k.private_key_sealed)
            .map_err(|source| KeysError::Unseal { kid: kid.clone(), source })?;
        let key = SigningKey::from_pkcs8(k.timeline.alg, &pkcs8)
            .map_err(|source| KeysError::Key { kid: kid.clone(), source })?;
        keys.insert(kid, Arc::new(key));
        timelines.push(k.timeline);
    }
    let published: Vec<Jwk> = keyring::published(&timelines, now, retention)
        .into_iter()
        .filter_map(|t| keys.get(&t.kid).map(|k| k.public_jwk().clone()))
        .collect();
    let published_count = published.len();
    let jwks_json: Arc<str> = serde_json::to_string(&JwkSet { keys: published }).unwrap_or_default().into();
    let valid_until = keyring::next_transition(&timelines, now, retention);
    Ok(KeySnapshot { timelines, keys, retention, jwks_json, published_count, computed_at: now, valid_until })
}

/// The current [`KeySnapshot`], swapped atomically when keys change.
pub struct KeyRing {
    current: RwLock<Arc<KeySnapshot>>,
}

impl KeyRing {
    pub fn new(snapshot: KeySnapshot) -> Self {
        Self { current: RwLock::new(Arc::new(snapshot)) }
    }

    pub fn snapshot(&self) -> Arc<KeySnapshot> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn replace(&self, snapshot: KeySnapshot) {
        let mut g = match self.current.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *g = Arc::new(snapshot);
    }
}
