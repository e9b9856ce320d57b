//! Refresh-token rotation (RFC 6749 §6, RFC 9700 §4.14.2): what a presentation of a
//! refresh token leads to, decided from its stored state and `now`.
//!
//! The store applies the decision atomically: [`Outcome::Rotate`] is its conditional
//! update (exactly one concurrent presentation wins it); the others are decided here
//! for the presentations that lost it.

use crate::scope::ScopeSet;
use crate::UnixTime;

/// A refresh token as stored, as far as rotation looks at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presented<'a> {
    pub client_id: &'a str,
    pub expires_at: UnixTime,
    pub rotated_at: Option<UnixTime>,
    pub revoked: bool,
}

/// What presenting a refresh token leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Live: it is rotated now, and its successor issued.
    Rotate,
    /// Rotated within the grace window: an honest retry (a lost response) gets the
    /// same successor again, if that successor is still the live head of the family
    /// ([`duplicate`]); otherwise it is reuse.
    Duplicate,
    /// Rotated before the grace window: the family is revoked (RFC 9700 §4.14.2).
    Reuse,
    Revoked,
    Expired,
    /// Issued to another client (RFC 6749 §6: bound to its client).
    OtherClient,
}

/// The outcome of presenting `token` as `client_id` at `now`, with a grace window of
/// `grace` seconds after a rotation.
pub fn classify(token: &Presented<'_>, client_id: &str, now: UnixTime, grace: i64) -> Outcome {
    if token.client_id != client_id {
        Outcome::OtherClient
    } else if token.revoked {
        Outcome::Revoked
    } else if let Some(rotated_at) = token.rotated_at {
        if now - rotated_at <= grace {
            Outcome::Duplicate
        } else {
            Outcome::Reuse
        }
    } else if now >= token.expires_at {
        Outcome::Expired
    } else {
        Outcome::Rotate
    }
}

/// A duplicate within the grace window is handed the successor again only while the
/// successor is live and its sealed handle is still kept; otherwise it is reuse.
pub fn duplicate(successor_is_live: bool, sealed_handle_kept: bool) -> Outcome {
    if successor_is_live && sealed_handle_kept {
        Outcome::Duplicate
    } else {
        Outcome::Reuse
    }
}

/// The scope of the successor: the granted one, or a narrower one requested
/// (RFC 6749 §6: never wider). `None` refuses the request.
pub fn narrow(granted: ScopeSet, requested: Option<&ScopeSet>) -> Option<ScopeSet> {
    match requested {
        None => Some(granted),
        Some(requested) if requested.is_subset(&granted) => Some(requested.clone()),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presentations_by_stored_state() {
        let live = Presented { client_id: "app", expires_at: 1000, rotated_at: None, revoked: false };
        let rotated = |at| Presented { rotated_at: Some(at), ..live };
        let cases: &[(&str, Presented, &str, UnixTime, Outcome)] = &[
            ("live", live, "app", 999, Outcome::Rotate),
            ("expired at its expiry", live, "app", 1000, Outcome::Expired),
            ("another client's", live, "other", 500, Outcome::OtherClient),
            (
                "another client's, though revoked",
                Presented { revoked: true, ..live },
                "other",
                500,
                Outcome::OtherClient,
            ),
            ("revoked", Presented { revoked: true, ..live }, "app", 500, Outcome::Revoked),
            ("revoked after its rotation", Presented { revoked: true, ..rotated(400) }, "app", 405, Outcome::Revoked),
            ("a retry at the rotation's second", rotated(400), "app", 400, Outcome::Duplicate),
            ("a retry at the window's end", rotated(400), "app", 410, Outcome::Duplicate),
            ("reuse after the window", rotated(400), "app", 411, Outcome::Reuse),
            ("reuse after expiry", rotated(400), "app", 5000, Outcome::Reuse),
        ];
        for (name, token, client, now, expected) in cases {
            assert_eq!(classify(token, client, *now, 10), *expected, "{name}");
        }
    }

    #[test]
    fn a_duplicate_needs_a_live_successor_and_its_handle() {
        assert_eq!(duplicate(true, true), Outcome::Duplicate);
        assert_eq!(duplicate(false, true), Outcome::Reuse, "the successor was rotated or revoked since");
        assert_eq!(duplicate(true, false), Outcome::Reuse, "the sealed handle was cleared");
    }

    #[test]
    fn scope_is_narrowed_never_widened() {
        let s = |v: &str| ScopeSet::parse(v).unwrap();
        let granted = s("openid profile email");
        assert_eq!(narrow(granted.clone(), None), Some(granted.clone()));
        assert_eq!(narrow(granted.clone(), Some(&s("openid email"))), Some(s("openid email")));
        assert_eq!(narrow(granted.clone(), Some(&s("openid"))), Some(s("openid")));
        assert_eq!(narrow(granted.clone(), Some(&s("openid admin"))), None);
        assert_eq!(narrow(s("openid"), Some(&s("openid profile"))), None);
    }
}
