//! The step after a valid authorization request (OIDC Core §3.1.2.1–§3.1.2.4): the
//! login page, the consent page, a code, or an error for `prompt=none`. Decided from
//! the request, the browser's session, the consent on record and `now`; the HTTP layer
//! only renders the outcome.

use super::{AuthorizeErrorCode, Prompt};
use crate::authn::Level;
use crate::scope::ScopeSet;
use crate::UnixTime;

/// What comes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Login,
    Consent,
    /// Every condition holds: issue the code.
    Issue,
    /// `prompt=none` and the user would have to act (OIDC Core §3.1.2.6).
    Refuse(AuthorizeErrorCode, &'static str),
}

/// The browser's active session, with its user's subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed<'a> {
    pub subject: &'a str,
    pub auth_time: UnixTime,
    /// What the session's sign-in reached (`crate::authn::level_of_amr`).
    pub level: Level,
}

/// What authentication asks of the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authentication<'a> {
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    /// The subject of a valid `id_token_hint`.
    pub hint_subject: Option<&'a str>,
    pub session: Option<Signed<'a>>,
    /// What `acr_values` and the policies require (`crate::authn::Requirement`): a
    /// session below it is stepped up.
    pub required: Level,
    /// The user has just logged in during this interaction: `prompt=login` and
    /// `max_age` are satisfied.
    pub logged_in_now: bool,
}

/// `Some(step)` when the user must (re)authenticate first; `None` when the session
/// will do: it exists, reached the level required (else it is stepped up: OIDC Core
/// §3.1.2.1 `acr_values`), and neither `prompt=login`, nor an `auth_time` older than
/// `max_age`, nor an `id_token_hint` naming somebody else asks for a new login.
pub fn authentication(a: &Authentication<'_>, now: UnixTime) -> Option<Step> {
    let needs_login = match a.session {
        None => true,
        Some(s) => {
            let too_old = a.max_age.is_some_and(|max| now - s.auth_time > max);
            let other_user = a.hint_subject.is_some_and(|sub| sub != s.subject);
            let too_weak = s.level < a.required;
            too_weak || (!a.logged_in_now && (a.prompt.login || too_old || other_user))
        }
    };
    match (needs_login, a.prompt.none) {
        (false, _) => None,
        (true, true) => Some(Step::Refuse(AuthorizeErrorCode::LoginRequired, "the user is not logged in")),
        (true, false) => Some(Step::Login),
    }
}

/// Whether the consent on record is needed to decide: not when the client skips
/// consent, nor when `prompt=consent` asks again anyway.
pub fn consent_on_record_matters(prompt: Prompt, skip_consent: bool) -> bool {
    !skip_consent && !prompt.consent
}

/// The step for an authenticated user: consent is needed unless the client skips it,
/// or the user already granted every requested scope to this client (and
/// `prompt=consent` does not ask again). `granted` is the scope on record.
pub fn consent(prompt: Prompt, skip_consent: bool, requested: &ScopeSet, granted: Option<&ScopeSet>) -> Step {
    let needed = if skip_consent {
        false
    } else if prompt.consent {
        true
    } else {
        !granted.is_some_and(|g| requested.is_subset(g))
    };
    match (needed, prompt.none) {
        (false, _) => Step::Issue,
        (true, true) => Step::Refuse(AuthorizeErrorCode::ConsentRequired, "the user has not consented"),
        (true, false) => Step::Consent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixTime = 10_000;

    fn prompt(v: &str) -> Prompt {
        Prompt {
            none: v.contains("none"),
            login: v.contains("login"),
            consent: v.contains("consent"),
            select_account: v.contains("select_account"),
        }
    }

    #[test]
    fn when_the_user_must_log_in() {
        let alice = Some(Signed { subject: "alice", auth_time: NOW - 100, level: Level::SingleFactor });
        let login_required = Some(Step::Refuse(AuthorizeErrorCode::LoginRequired, "the user is not logged in"));
        // (name, prompt, max_age, id_token_hint's subject, session, logged in now, outcome)
        type Case<'a> = (&'a str, &'a str, Option<i64>, Option<&'a str>, Option<Signed<'a>>, bool, Option<Step>);
        let cases: &[Case] = &[
            ("no session", "", None, None, None, false, Some(Step::Login)),
            ("no session, prompt=none", "none", None, None, None, false, login_required),
            ("a session", "", None, None, alice, false, None),
            ("a session, prompt=none", "none", None, None, alice, false, None),
            ("prompt=login", "login", None, None, alice, false, Some(Step::Login)),
            ("prompt=login, just logged in", "login", None, None, alice, true, None),
            ("max_age kept", "", Some(100), None, alice, false, None),
            ("max_age passed", "", Some(99), None, alice, false, Some(Step::Login)),
            ("max_age passed, just logged in", "", Some(0), None, alice, true, None),
            ("max_age passed, prompt=none", "none", Some(10), None, alice, false, login_required),
            ("hint for the same user", "", None, Some("alice"), alice, false, None),
            ("hint for another user", "", None, Some("bob"), alice, false, Some(Step::Login)),
            ("hint for another user, prompt=none", "none", None, Some("bob"), alice, false, login_required),
            ("hint, no session", "", None, Some("alice"), None, false, Some(Step::Login)),
        ];
        for (name, p, max_age, hint, session, now_in, expected) in cases {
            let a = Authentication {
                prompt: prompt(p),
                max_age: *max_age,
                hint_subject: *hint,
                session: *session,
                required: Level::SingleFactor,
                logged_in_now: *now_in,
            };
            assert_eq!(authentication(&a, NOW), *expected, "{name}");
        }
        // A session below what is required is stepped up, even just after a login;
        // prompt=none cannot step up.
        let mfa = Some(Signed { level: Level::MultiFactor, ..alice.unwrap() });
        // (name, prompt, session, required, logged in now, outcome)
        let cases: &[(&str, &str, Option<Signed>, Level, bool, Option<Step>)] = &[
            ("one factor, two required", "", alice, Level::MultiFactor, false, Some(Step::Login)),
            ("one factor, two required, just logged in", "", alice, Level::MultiFactor, true, Some(Step::Login)),
            ("one factor, two required, prompt=none", "none", alice, Level::MultiFactor, false, login_required),
            ("two factors, two required", "", mfa, Level::MultiFactor, false, None),
            ("two factors, one required", "", mfa, Level::SingleFactor, false, None),
            ("two factors, phr required", "", mfa, Level::PhishingResistant, false, Some(Step::Login)),
        ];
        for (name, p, session, required, now_in, expected) in cases {
            let a = Authentication {
                prompt: prompt(p),
                max_age: None,
                hint_subject: None,
                session: *session,
                required: *required,
                logged_in_now: *now_in,
            };
            assert_eq!(authentication(&a, NOW), *expected, "{name}");
        }
    }

    #[test]
    fn when_the_user_must_consent() {
        let s = |v: &str| ScopeSet::parse(v).unwrap();
        let requested = s("openid profile");
        let consent_required = Step::Refuse(AuthorizeErrorCode::ConsentRequired, "the user has not consented");
        // (name, prompt, skip_consent, granted, outcome)
        let cases: &[(&str, &str, bool, Option<ScopeSet>, Step)] = &[
            ("nothing granted", "", false, None, Step::Consent),
            ("nothing granted, prompt=none", "none", false, None, consent_required),
            ("all granted", "", false, Some(s("openid profile email")), Step::Issue),
            ("all granted, prompt=none", "none", false, Some(s("openid profile")), Step::Issue),
            ("part granted", "", false, Some(s("openid")), Step::Consent),
            ("all granted, prompt=consent", "consent", false, Some(s("openid profile")), Step::Consent),
            ("prompt=consent and none", "none consent", false, Some(s("openid profile")), consent_required),
            ("skipped", "", true, None, Step::Issue),
            ("skipped, prompt=consent", "consent", true, None, Step::Issue),
        ];
        for (name, p, skip, granted, expected) in cases {
            assert_eq!(consent(prompt(p), *skip, &requested, granted.as_ref()), *expected, "{name}");
        }
        assert!(consent_on_record_matters(prompt(""), false));
        assert!(!consent_on_record_matters(prompt("consent"), false));
        assert!(!consent_on_record_matters(prompt(""), true));
    }
}
