//! Key rotation policy (pure): which key signs now, which keys are published.
//!
//! Every key has an algorithm, a generation (1, 2, … per algorithm) and an
//! `activates_at` time. Rotation adds generation n+1 with `activates_at = now + delay`:
//! it is published in JWKS at once (so relying parties' caches learn it) but signs only
//! once the delay has passed. A superseded key stays published for `retention` after
//! its successor took over — long enough for every token it signed to expire.

use crate::jose::SigningAlgorithm;
use crate::UnixTime;

/// What the policy needs to know of a stored key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTimeline {
    pub kid: String,
    pub alg: SigningAlgorithm,
    pub generation: i64,
    pub created_at: UnixTime,
    pub activates_at: UnixTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Published, not yet signing.
    Pending,
    /// The key that signs for its algorithm.
    Active,
    /// Superseded, still published until tokens it signed have expired.
    Retired,
    /// Superseded and no longer published.
    Expired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Retired => "retired",
            Self::Expired => "expired",
        }
    }

    pub fn is_published(self) -> bool {
        !matches!(self, Self::Expired)
    }
}

/// The moment a newer generation of the same algorithm took over, if one has.
fn superseded_at(keys: &[KeyTimeline], key: &KeyTimeline, now: UnixTime) -> Option<UnixTime> {
    keys.iter()
        .filter(|k| k.alg == key.alg && k.generation > key.generation && k.activates_at <= now)
        .map(|k| k.activates_at)
        .min()
}

/// The signing key of `alg` at `now`: the newest generation that has activated.
pub fn signing_key(keys: &[KeyTimeline], alg: SigningAlgorithm, now: UnixTime) -> Option<&KeyTimeline> {
    keys.iter().filter(|k| k.alg == alg && k.activates_at <= now).max_by_key(|k| k.generation)
}

pub fn key_state(keys: &[KeyTimeline], key: &KeyTimeline, now: UnixTime, retention: i64) -> KeyState {
    if key.activates_at > now {
        // A pending key that a later generation already overtook will never sign, but it
        // stays published until the same horizon so no cache is surprised.
        return match superseded_at(keys, key, now) {
            Some(t) if now >= t + retention => KeyState::Expired,
            _ => KeyState::Pending,
        };
    }
    match superseded_at(keys, key, now) {
        None => KeyState::Active,
        Some(t) if now < t + retention => KeyState::Retired,
        Some(_) => KeyState::Expired,
    }
}

/// Keys to publish in JWKS at `now`, in a stable order (algorithm, newest first).
pub fn published(keys: &[KeyTimeline], now: UnixTime, retention: i64) -> Vec<&KeyTimeline> {
    let mut out: Vec<&KeyTimeline> =
        keys.iter().filter(|k| key_state(keys, k, now, retention).is_published()).collect();
    out.sort_by(|a, b| a.alg.cmp(&b.alg).then(b.generation.cmp(&a.generation)));
    out
}

/// When the next change of signing key or published set can happen after `now`
/// (for cache refresh scheduling).
pub fn next_transition(keys: &[KeyTimeline], now: UnixTime, retention: i64) -> Option<UnixTime> {
    keys.iter()
        .flat_map(|k| {
            let end = superseded_at(keys, k, UnixTime::MAX).map(|t| t + retention);
            [Some(k.activates_at), end]
        })
        .flatten()
        .filter(|t| *t > now)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use SigningAlgorithm::*;

    fn key(kid: &str, alg: SigningAlgorithm, generation: i64, activates_at: UnixTime) -> KeyTimeline {
        KeyTimeline { kid: kid.into(), alg, generation, created_at: 0, activates_at }
    }

    #[test]
    fn rotation_publishes_first_then_signs_after_the_delay() {
        let mut keys = vec![key("a", RS256, 1, 0), key("e", ES256, 1, 0)];
        assert_eq!(signing_key(&keys, RS256, 100).unwrap().kid, "a");
        // Rotated at t=100 with a 600 s pre-publication delay.
        keys.push(key("b", RS256, 2, 700));
        let kids = |now| published(&keys, now, 3600).iter().map(|k| k.kid.clone()).collect::<Vec<_>>();
        assert_eq!(kids(100), ["b", "a", "e"]);
        assert_eq!(signing_key(&keys, RS256, 699).unwrap().kid, "a");
        assert_eq!(key_state(&keys, &keys[2], 699, 3600), KeyState::Pending);
        assert_eq!(signing_key(&keys, RS256, 700).unwrap().kid, "b");
        assert_eq!(key_state(&keys, &keys[0], 700, 3600), KeyState::Retired);
        // Old key stays published until everything it signed has expired.
        assert_eq!(kids(700 + 3599), ["b", "a", "e"]);
        assert_eq!(kids(700 + 3600), ["b", "e"]);
        assert_eq!(key_state(&keys, &keys[0], 700 + 3600, 3600), KeyState::Expired);
        // Other algorithms are untouched.
        assert_eq!(signing_key(&keys, ES256, 5000).unwrap().kid, "e");
        assert!(signing_key(&keys, EdDSA, 5000).is_none());
    }

    #[test]
    fn immediate_rotation_overtakes_a_pending_key() {
        let keys = vec![key("a", RS256, 1, 0), key("b", RS256, 2, 1000), key("c", RS256, 3, 200)];
        assert_eq!(signing_key(&keys, RS256, 200).unwrap().kid, "c");
        // b never signs; it disappears with the same horizon as a.
        assert_eq!(signing_key(&keys, RS256, 1000).unwrap().kid, "c");
        assert_eq!(key_state(&keys, &keys[1], 1000, 50), KeyState::Expired);
        assert_eq!(key_state(&keys, &keys[0], 249, 50), KeyState::Retired);
        assert_eq!(key_state(&keys, &keys[0], 250, 50), KeyState::Expired);
    }

    #[test]
    fn next_transition_points_at_activation_and_expiry() {
        let keys = vec![key("a", RS256, 1, 0), key("b", RS256, 2, 700)];
        assert_eq!(next_transition(&keys, 100, 3600), Some(700));
        assert_eq!(next_transition(&keys, 700, 3600), Some(4300));
        assert_eq!(next_transition(&keys, 4300, 3600), None);
    }
}
