//! The authentication engine: what a sign-in still needs, as pure decisions. A sign-in
//! is a state ([`SignIn`]) that collects proofs, one method at a time; after each, the
//! engine answers [`Next`]: done (with the `acr`, `amr` and `auth_time` it reached),
//! continue with one of these methods, enrol one of these first, or denied (model:
//! kanidm's per-session credential handlers). Nothing here knows HTTP, SQL or the
//! clock: the caller passes `now`, keeps the state (sealed or stored) between steps,
//! and checks each credential before it hands the engine a [`Proof`].

use crate::UnixTime;
use serde::{Deserialize, Serialize};

/// How long a half-finished sign-in waits for its next step.
pub const STEP_LIFETIME: i64 = 5 * 60;

/// A kind of credential a person presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Password,
    /// An authenticator app's code (RFC 6238).
    Totp,
    /// One of the person's single-use recovery codes.
    RecoveryCode,
    /// A WebAuthn credential: after a password, or alone (passwordless).
    Passkey,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::Totp => "totp",
            Self::RecoveryCode => "recovery_code",
            Self::Passkey => "passkey",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Password, Self::Totp, Self::RecoveryCode, Self::Passkey].into_iter().find(|m| m.as_str() == s)
    }

    /// Something the person knows (a password) or has (every other method).
    fn knowledge(self) -> bool {
        self == Self::Password
    }
}

/// What one successful step proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    pub method: Method,
    /// When it was presented (the `auth_time` it may give).
    pub at: UnixTime,
    /// A passkey's user verification (a PIN or biometrics on the authenticator): the
    /// `user` amr, and with it the passkey is two factors by itself.
    #[serde(default)]
    pub user_verified: bool,
    /// A passkey in hardware (`hwk`) rather than synced software (`swk`).
    #[serde(default)]
    pub hardware: bool,
}

impl Proof {
    pub fn of(method: Method, at: UnixTime) -> Self {
        Self { method, at, user_verified: false, hardware: false }
    }

    pub fn passkey(at: UnixTime, user_verified: bool, hardware: bool) -> Self {
        Self { method: Method::Passkey, at, user_verified, hardware }
    }
}

/// The assurance a sign-in reaches, in order (OIDC Core §2 `acr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Level {
    /// One factor: a password, or a passkey without user verification.
    SingleFactor,
    /// Two factors of different kinds: something known and something held, or a
    /// passkey with user verification.
    MultiFactor,
    /// Two factors, one of them a passkey: it cannot be phished (OpenID EAP ACR `phr`).
    PhishingResistant,
}

/// khoa's single-factor `acr` value.
pub const ACR_SINGLE_FACTOR: &str = "urn:khoa:acr:single-factor";
/// PAPE's multi-factor policy, the value relying parties know.
pub const ACR_MULTI_FACTOR: &str = "http://schemas.openid.net/pape/policies/2007/06/multi-factor";
/// OpenID EAP ACR Values 1.0: phishing-resistant.
pub const ACR_PHISHING_RESISTANT: &str = "phr";

impl Level {
    pub const ALL: [Level; 3] = [Level::SingleFactor, Level::MultiFactor, Level::PhishingResistant];

    /// Its `acr` value (`acr_values_supported`).
    pub fn acr(self) -> &'static str {
        match self {
            Self::SingleFactor => ACR_SINGLE_FACTOR,
            Self::MultiFactor => ACR_MULTI_FACTOR,
            Self::PhishingResistant => ACR_PHISHING_RESISTANT,
        }
    }

    pub fn parse(acr: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.acr() == acr)
    }

    /// What `proofs` reach together; `None` for no proof at all.
    pub fn of(proofs: &[Proof]) -> Option<Self> {
        if proofs.is_empty() {
            return None;
        }
        let knows = proofs.iter().any(|p| p.method.knowledge());
        let has = proofs.iter().any(|p| !p.method.knowledge());
        let verified_passkey = proofs.iter().any(|p| p.method == Method::Passkey && p.user_verified);
        let passkey = proofs.iter().any(|p| p.method == Method::Passkey);
        let multi = (knows && has) || verified_passkey;
        Some(match (multi, passkey) {
            (true, true) => Self::PhishingResistant,
            (true, false) => Self::MultiFactor,
            (false, _) => Self::SingleFactor,
        })
    }
}

/// The `amr` values of `proofs` (RFC 8176 §2), sorted: `pwd`; `otp` for an app's or a
/// recovery code; `hwk` or `swk` for a passkey, with `user` when it verified the person;
/// `mfa` once two factors were used.
pub fn amr(proofs: &[Proof]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = proofs
        .iter()
        .flat_map(|p| match p.method {
            Method::Password => vec!["pwd"],
            Method::Totp | Method::RecoveryCode => vec!["otp"],
            Method::Passkey => {
                let key = if p.hardware { "hwk" } else { "swk" };
                if p.user_verified {
                    vec![key, "user"]
                } else {
                    vec![key]
                }
            }
        })
        .collect();
    if Level::of(proofs).is_some_and(|l| l >= Level::MultiFactor) {
        out.push("mfa");
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The level a session's `amr` shows (what [`amr`] wrote for its proofs): `mfa` with a
/// passkey's `hwk`/`swk` is phishing-resistant, `mfa` alone two factors, anything else
/// one. Sessions keep their `amr`, so this is how a later request reads them.
pub fn level_of_amr<S: AsRef<str>>(amr: &[S]) -> Option<Level> {
    let has = |v: &str| amr.iter().any(|a| a.as_ref() == v);
    if amr.is_empty() {
        return None;
    }
    Some(match (has("mfa"), has("hwk") || has("swk")) {
        (true, true) => Level::PhishingResistant,
        (true, false) => Level::MultiFactor,
        (false, _) => Level::SingleFactor,
    })
}

/// The proofs a session's `amr` stands for, all at its `auth_time` (the session keeps
/// no finer times): what a step-up starts from.
pub fn proofs_of_amr<S: AsRef<str>>(amr: &[S], auth_time: UnixTime) -> Vec<Proof> {
    let has = |v: &str| amr.iter().any(|a| a.as_ref() == v);
    let mut proofs = vec![];
    if has("pwd") {
        proofs.push(Proof::of(Method::Password, auth_time));
    }
    if has("otp") {
        proofs.push(Proof::of(Method::Totp, auth_time));
    }
    if has("hwk") || has("swk") {
        proofs.push(Proof::passkey(auth_time, has("user"), has("hwk")));
    }
    proofs
}

/// What the request and the policies ask of a sign-in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Asks<'a> {
    /// `acr_values` (OIDC Core §3.1.2.1): space-separated, in order of preference.
    pub acr_values: Option<&'a str>,
    pub max_age: Option<i64>,
    pub prompt_login: bool,
    /// `accounts.require_mfa`, the client's or a group's policy: two factors.
    pub require_mfa: bool,
    /// Whether passkeys can be used here (not on an IP-address issuer): without them
    /// `phr` cannot be reached, and a request for it is passed over like an unknown
    /// value.
    pub passkeys: bool,
}

/// What a sign-in must reach, and since when its proofs count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    pub level: Level,
    /// Proofs from before this do not count (`prompt=login`: the sign-in's start;
    /// `max_age`: that many seconds before it).
    pub not_before: Option<UnixTime>,
}

impl Requirement {
    /// The strictest of what is asked. Of `acr_values` the first that khoa knows is
    /// taken (they are in order of preference, and voluntary: unknown ones are
    /// passed over); a policy's two factors are never lowered by a request.
    pub fn of(asks: &Asks<'_>, started_at: UnixTime) -> Self {
        let reachable = |l: &Level| asks.passkeys || *l != Level::PhishingResistant;
        let requested = asks.acr_values.and_then(|v| v.split(' ').filter_map(Level::parse).find(reachable));
        let policy = if asks.require_mfa { Level::MultiFactor } else { Level::SingleFactor };
        let level = requested.map_or(policy, |r| r.max(policy));
        let by_prompt = asks.prompt_login.then_some(started_at);
        let by_age = asks.max_age.map(|age| started_at - age);
        Self { level, not_before: by_prompt.max(by_age) }
    }
}

/// The methods a person has enrolled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enrolled {
    pub password: bool,
    pub totp: bool,
    pub passkeys: bool,
    /// Unused recovery codes left.
    pub recovery_codes: bool,
}

impl Enrolled {
    fn has(&self, m: Method) -> bool {
        match m {
            Method::Password => self.password,
            Method::Totp => self.totp,
            Method::RecoveryCode => self.recovery_codes,
            Method::Passkey => self.passkeys,
        }
    }
}

/// What comes next in a sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The requirement is met: what the ID token says (`acr`, `amr`, `auth_time`).
    Success {
        level: Level,
        amr: Vec<&'static str>,
        auth_time: UnixTime,
    },
    /// Ask for one of these (never empty).
    Continue(Vec<Method>),
    /// The person cannot meet the requirement with what they have: they enrol one of
    /// these first (their first factor is proven), before any code is issued.
    Enrol(Vec<Method>),
    Denied(Denied),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The sign-in waited too long for its next step: start again.
    Expired,
    /// That method is not one the sign-in asked for now (a later form posted
    /// directly, or a method used twice).
    NotAsked,
    /// Nothing this person has enrolled can sign them in.
    NoMethod,
}

/// A sign-in in progress. The caller keeps it between steps (sealed in the page, or
/// stored), bound to this browser, and never trusts a step it did not ask for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignIn {
    /// The person, once a first step named them.
    pub user_id: Option<i64>,
    pub requirement: Requirement,
    /// What was proven, in this sign-in or by the browser's session (when it still
    /// counts).
    pub proofs: Vec<Proof>,
    pub started_at: UnixTime,
    pub expires_at: UnixTime,
}

impl SignIn {
    /// A sign-in at `now` for `requirement`. A session of this browser brings its
    /// user and the proofs that still count, so a step-up asks only for what is
    /// missing (a password session asked for two factors is asked for the second).
    pub fn start(requirement: Requirement, session: Option<(i64, &[Proof])>, now: UnixTime) -> Self {
        let counts = |p: &&Proof| requirement.not_before.is_none_or(|t| p.at >= t);
        let (user_id, proofs) = match session {
            Some((user, proofs)) => {
                let kept: Vec<Proof> = proofs.iter().filter(counts).copied().collect();
                (Some(user).filter(|_| !kept.is_empty()), kept)
            }
            None => (None, vec![]),
        };
        Self { user_id, requirement, proofs, started_at: now, expires_at: now + STEP_LIFETIME }
    }

    /// What comes next at `now` for a person who has `enrolled` (for a sign-in whose
    /// person is not named yet: the first steps, password or a passkey alone). A person
    /// with an authenticator app or a passkey needs two factors, whatever was asked.
    pub fn next(&self, enrolled: Option<&Enrolled>, now: UnixTime) -> Next {
        if now >= self.expires_at {
            return Next::Denied(Denied::Expired);
        }
        let Some(reached) = Level::of(&self.proofs) else {
            let first = [Method::Password, Method::Passkey];
            return match enrolled {
                None => Next::Continue(first.to_vec()),
                Some(e) => {
                    let usable: Vec<Method> = first.into_iter().filter(|m| e.has(*m)).collect();
                    if usable.is_empty() {
                        Next::Denied(Denied::NoMethod)
                    } else {
                        Next::Continue(usable)
                    }
                }
            };
        };
        // A person who has set up a second factor is always asked for it: their own
        // choice raises what their sign-ins must reach.
        let own = enrolled.is_some_and(|e| e.totp || e.passkeys);
        let required = if own { self.requirement.level.max(Level::MultiFactor) } else { self.requirement.level };
        if reached >= required {
            let auth_time = self.proofs.iter().map(|p| p.at).max().unwrap_or(now);
            return Next::Success { level: reached, amr: amr(&self.proofs), auth_time };
        }
        // Which one more method reaches the requirement.
        let candidates: Vec<Method> = [Method::Password, Method::Totp, Method::Passkey, Method::RecoveryCode]
            .into_iter()
            .filter(|m| !self.proofs.iter().any(|p| p.method == *m))
            .filter(|m| {
                let mut with = self.proofs.clone();
                with.push(Proof::of(*m, now));
                Level::of(&with).is_some_and(|l| l >= required)
            })
            .collect();
        let e = enrolled.copied().unwrap_or_default();
        let usable: Vec<Method> = candidates.iter().copied().filter(|m| e.has(*m)).collect();
        if !usable.is_empty() {
            return Next::Continue(usable);
        }
        // Recovery codes come with a second factor: they are not enrolled alone.
        let enrollable: Vec<Method> =
            candidates.into_iter().filter(|m| matches!(m, Method::Totp | Method::Passkey)).collect();
        if enrollable.is_empty() {
            Next::Denied(Denied::NoMethod)
        } else {
            Next::Enrol(enrollable)
        }
    }

    /// The sign-in with `proof` (its credential checked by the caller) of `user_id`,
    /// if that method is one it asks for now; else why not. A sign-in names one person
    /// only: a proof of another is refused.
    pub fn prove(&self, user_id: i64, proof: Proof, enrolled: &Enrolled, now: UnixTime) -> Result<Self, Denied> {
        if self.user_id.is_some_and(|u| u != user_id) {
            return Err(Denied::NotAsked);
        }
        match self.next(self.user_id.map(|_| enrolled), now) {
            Next::Continue(allowed) if allowed.contains(&proof.method) => {}
            Next::Denied(d) => return Err(d),
            _ => return Err(Denied::NotAsked),
        }
        let mut next = self.clone();
        next.user_id = Some(user_id);
        next.proofs.push(proof);
        Ok(next)
    }
}

/// How recent a sign-in must be to add or remove a way of signing in (else the person
/// signs in again first): someone at an unlocked computer must not add their own
/// authenticator app to another's account.
pub const RECENT_AUTHENTICATION: i64 = 5 * 60;

/// Whether a session that authenticated at `auth_time` may change sign-in methods at `now`.
pub fn recent(auth_time: UnixTime, now: UnixTime) -> bool {
    now - auth_time <= RECENT_AUTHENTICATION && auth_time <= now + 60
}

/// Whether a person with `enrolled` may remove one credential of `method` (of which
/// they have `count`) when a policy requiring two factors applies to them: never the
/// last second factor (an app or a passkey; recovery codes only stand in for one).
pub fn may_remove(enrolled: &Enrolled, method: Method, count: usize, policy_requires_mfa: bool) -> bool {
    if !policy_requires_mfa || count > 1 {
        return true;
    }
    match method {
        Method::Totp => enrolled.passkeys,
        Method::Passkey => enrolled.totp,
        Method::Password | Method::RecoveryCode => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changing_methods_needs_a_recent_sign_in_and_keeps_a_factor_under_policy() {
        assert!(recent(NOW - 300, NOW) && !recent(NOW - 301, NOW) && !recent(NOW + 3600, NOW));
        let app_only = Enrolled { totp: true, ..PASSWORD_ONLY };
        let passkey_only = Enrolled { passkeys: true, ..PASSWORD_ONLY };
        // (name, enrolled, method, count, policy, may)
        let cases: &[(&str, Enrolled, Method, usize, bool, bool)] = &[
            ("no policy: anything", app_only, Method::Totp, 1, false, true),
            ("the last app under policy", app_only, Method::Totp, 1, true, false),
            ("the last passkey under policy", passkey_only, Method::Passkey, 1, true, false),
            ("an app beside a passkey", ALL, Method::Totp, 1, true, true),
            ("one of two passkeys", passkey_only, Method::Passkey, 2, true, true),
            ("recovery codes", ALL, Method::RecoveryCode, 1, true, true),
        ];
        for (name, enrolled, method, count, policy, may) in cases {
            assert_eq!(may_remove(enrolled, *method, *count, *policy), *may, "{name}");
        }
    }

    const NOW: UnixTime = 100_000;
    const ALL: Enrolled = Enrolled { password: true, totp: true, passkeys: true, recovery_codes: true };
    const PASSWORD_ONLY: Enrolled = Enrolled { password: true, totp: false, passkeys: false, recovery_codes: false };

    fn pwd(at: UnixTime) -> Proof {
        Proof::of(Method::Password, at)
    }

    #[test]
    fn levels_and_amr_of_what_was_proven() {
        let uv_hw = Proof::passkey(NOW, true, true);
        let plain_sw = Proof::passkey(NOW, false, false);
        let totp = Proof::of(Method::Totp, NOW);
        let recovery = Proof::of(Method::RecoveryCode, NOW);
        // (name, proofs, level, amr)
        type Case = (&'static str, Vec<Proof>, Option<Level>, &'static [&'static str]);
        let cases: &[Case] = &[
            ("nothing", vec![], None, &[]),
            ("a password", vec![pwd(NOW)], Some(Level::SingleFactor), &["pwd"]),
            ("password + app code", vec![pwd(NOW), totp], Some(Level::MultiFactor), &["mfa", "otp", "pwd"]),
            ("password + recovery code", vec![pwd(NOW), recovery], Some(Level::MultiFactor), &["mfa", "otp", "pwd"]),
            ("a verified hardware passkey", vec![uv_hw], Some(Level::PhishingResistant), &["hwk", "mfa", "user"]),
            ("an unverified synced passkey", vec![plain_sw], Some(Level::SingleFactor), &["swk"]),
            (
                "password + unverified passkey",
                vec![pwd(NOW), plain_sw],
                Some(Level::PhishingResistant),
                &["mfa", "pwd", "swk"],
            ),
            (
                "app code + unverified passkey: two things held",
                vec![totp, plain_sw],
                Some(Level::SingleFactor),
                &["otp", "swk"],
            ),
        ];
        for (name, proofs, level, expected) in cases {
            assert_eq!(Level::of(proofs), *level, "{name}");
            assert_eq!(amr(proofs), *expected, "{name}");
        }
        for l in Level::ALL {
            assert_eq!(Level::parse(l.acr()), Some(l));
        }
        for m in [Method::Password, Method::Totp, Method::RecoveryCode, Method::Passkey] {
            assert_eq!(Method::parse(m.as_str()), Some(m));
        }
        assert_eq!(Method::parse("sms"), None);
        assert_eq!(Level::parse("urn:mace:incommon:iap:silver"), None);
    }

    #[test]
    fn what_is_required() {
        let asks = |acr: Option<&'static str>, max_age: Option<i64>, login: bool, mfa: bool| Asks {
            acr_values: acr,
            max_age,
            prompt_login: login,
            require_mfa: mfa,
            passkeys: true,
        };
        let cases: &[(&str, Asks, Level, Option<UnixTime>)] = &[
            ("nothing asked", asks(None, None, false, false), Level::SingleFactor, None),
            ("a policy of two factors", asks(None, None, false, true), Level::MultiFactor, None),
            ("phr asked", asks(Some("phr"), None, false, false), Level::PhishingResistant, None),
            (
                "unknown values passed over",
                asks(Some("silver phr"), None, false, false),
                Level::PhishingResistant,
                None,
            ),
            (
                "the first known one wins",
                asks(Some("http://schemas.openid.net/pape/policies/2007/06/multi-factor phr"), None, false, false),
                Level::MultiFactor,
                None,
            ),
            (
                "a request cannot lower a policy",
                asks(Some(ACR_SINGLE_FACTOR), None, false, true),
                Level::MultiFactor,
                None,
            ),
            ("nothing known", asks(Some("silver gold"), None, false, false), Level::SingleFactor, None),
            ("prompt=login: from the start", asks(None, None, true, false), Level::SingleFactor, Some(NOW)),
            ("max_age", asks(None, Some(600), false, false), Level::SingleFactor, Some(NOW - 600)),
            ("both: the later", asks(None, Some(600), true, false), Level::SingleFactor, Some(NOW)),
        ];
        for (name, a, level, not_before) in cases {
            assert_eq!(Requirement::of(a, NOW), Requirement { level: *level, not_before: *not_before }, "{name}");
        }
        // Without passkeys, phr is passed over like an unknown value.
        let no_passkeys = Asks { passkeys: false, ..asks(Some("phr"), None, false, true) };
        assert_eq!(Requirement::of(&no_passkeys, NOW).level, Level::MultiFactor);
        let then_mfa = Asks {
            passkeys: false,
            ..asks(Some(&"phr http://schemas.openid.net/pape/policies/2007/06/multi-factor"), None, false, false)
        };
        assert_eq!(Requirement::of(&then_mfa, NOW).level, Level::MultiFactor);
    }

    /// A session keeps only its `amr` and `auth_time`: the level and proofs read back
    /// from them are those it was made with.
    #[test]
    fn a_sessions_amr_reads_back() {
        let cases: Vec<Vec<Proof>> = vec![
            vec![pwd(NOW)],
            vec![pwd(NOW), Proof::of(Method::Totp, NOW)],
            vec![Proof::passkey(NOW, true, true)],
            vec![Proof::passkey(NOW, false, false)],
            vec![pwd(NOW), Proof::passkey(NOW, false, true)],
        ];
        for proofs in cases {
            let written: Vec<String> = amr(&proofs).into_iter().map(String::from).collect();
            assert_eq!(level_of_amr(&written), Level::of(&proofs), "{written:?}");
            let back = proofs_of_amr(&written, NOW);
            assert_eq!(Level::of(&back), Level::of(&proofs), "{written:?}");
            assert_eq!(amr(&back), amr(&proofs), "{written:?}");
        }
        assert_eq!(level_of_amr::<&str>(&[]), None);
        // Recovery codes read back as app codes: the same amr and level.
        let recovered = amr(&[pwd(NOW), Proof::of(Method::RecoveryCode, NOW)]);
        assert_eq!(level_of_amr(&recovered), Some(Level::MultiFactor));
    }

    #[test]
    fn the_steps_of_a_sign_in() {
        let req = |level| Requirement { level, not_before: None };
        let mfa = req(Level::MultiFactor);
        // (name, requirement, proofs so far, enrolled, next)
        type Case = (&'static str, Requirement, Vec<Proof>, Option<Enrolled>, Next);
        let success = |level, amr: &[&'static str], at| Next::Success { level, amr: amr.to_vec(), auth_time: at };
        let cases: Vec<Case> = vec![
            ("anyone, at first", mfa, vec![], None, Next::Continue(vec![Method::Password, Method::Passkey])),
            (
                "a password alone will do",
                req(Level::SingleFactor),
                vec![pwd(NOW)],
                Some(PASSWORD_ONLY),
                success(Level::SingleFactor, &["pwd"], NOW),
            ),
            (
                "two factors: the second, of those enrolled",
                mfa,
                vec![pwd(NOW)],
                Some(ALL),
                Next::Continue(vec![Method::Totp, Method::Passkey, Method::RecoveryCode]),
            ),
            (
                "two factors, only an app",
                mfa,
                vec![pwd(NOW)],
                Some(Enrolled { totp: true, ..PASSWORD_ONLY }),
                Next::Continue(vec![Method::Totp]),
            ),
            (
                "two factors, none enrolled: enrol one",
                mfa,
                vec![pwd(NOW)],
                Some(PASSWORD_ONLY),
                Next::Enrol(vec![Method::Totp, Method::Passkey]),
            ),
            (
                "phr: only a passkey raises it",
                req(Level::PhishingResistant),
                vec![pwd(NOW), Proof::of(Method::Totp, NOW)],
                Some(ALL),
                Next::Continue(vec![Method::Passkey]),
            ),
            (
                "phr without a passkey: enrol one",
                req(Level::PhishingResistant),
                vec![pwd(NOW)],
                Some(Enrolled { totp: true, ..PASSWORD_ONLY }),
                Next::Enrol(vec![Method::Passkey]),
            ),
            (
                "an unverified passkey first: the password next",
                mfa,
                vec![Proof::passkey(NOW, false, true)],
                Some(ALL),
                Next::Continue(vec![Method::Password]),
            ),
            (
                "passwordless with user verification",
                mfa,
                vec![Proof::passkey(NOW, true, false)],
                Some(ALL),
                success(Level::PhishingResistant, &["mfa", "swk", "user"], NOW),
            ),
            (
                "done: auth_time is the latest proof",
                mfa,
                vec![pwd(NOW - 50), Proof::of(Method::Totp, NOW - 10)],
                Some(ALL),
                success(Level::MultiFactor, &["mfa", "otp", "pwd"], NOW - 10),
            ),
            ("nothing usable enrolled", mfa, vec![], Some(Enrolled::default()), Next::Denied(Denied::NoMethod)),
            (
                "a passkey-only account",
                mfa,
                vec![],
                Some(Enrolled { passkeys: true, ..Enrolled::default() }),
                Next::Continue(vec![Method::Passkey]),
            ),
        ];
        for (name, requirement, proofs, enrolled, expected) in cases {
            let s = SignIn { user_id: Some(7), requirement, proofs, started_at: NOW - 60, expires_at: NOW + 240 };
            assert_eq!(s.next(enrolled.as_ref(), NOW), expected, "{name}");
        }
    }

    /// A step-up: the browser's password session, asked for two factors, is asked for
    /// the second only; `prompt=login` and `max_age` drop the session's proofs.
    #[test]
    fn a_session_counts_unless_it_is_too_old() {
        let session = [pwd(NOW - 3_000)];
        let mfa = Requirement { level: Level::MultiFactor, not_before: None };
        let s = SignIn::start(mfa, Some((7, &session)), NOW);
        assert_eq!((s.user_id, s.expires_at), (Some(7), NOW + STEP_LIFETIME));
        assert_eq!(s.next(Some(&ALL), NOW), Next::Continue(vec![Method::Totp, Method::Passkey, Method::RecoveryCode]));
        let done = s.prove(7, Proof::of(Method::Totp, NOW + 5), &ALL, NOW + 5).unwrap();
        let expected = Next::Success { level: Level::MultiFactor, amr: vec!["mfa", "otp", "pwd"], auth_time: NOW + 5 };
        assert_eq!(done.next(Some(&ALL), NOW + 5), expected, "auth_time moves: the person authenticated again");
        // A session that already reached the level: no step, auth_time unchanged.
        let both = [pwd(NOW - 3_000), Proof::of(Method::Totp, NOW - 2_990)];
        let s = SignIn::start(mfa, Some((7, &both)), NOW);
        assert!(matches!(s.next(Some(&ALL), NOW), Next::Success { auth_time, .. } if auth_time == NOW - 2_990));
        // Too old for max_age, or prompt=login: nothing of the session counts.
        for not_before in [NOW - 1_000, NOW] {
            let s = SignIn::start(Requirement { not_before: Some(not_before), ..mfa }, Some((7, &both)), NOW);
            assert_eq!((s.user_id, s.proofs.len()), (None, 0));
            assert_eq!(s.next(None, NOW), Next::Continue(vec![Method::Password, Method::Passkey]));
        }
    }

    /// The second step cannot be skipped nor done out of turn, the sign-in expires, and
    /// it belongs to one person.
    #[test]
    fn steps_not_asked_for_are_refused() {
        let mfa = Requirement { level: Level::MultiFactor, not_before: None };
        let s = SignIn::start(mfa, None, NOW);
        assert_eq!(s.prove(7, Proof::of(Method::Totp, NOW), &ALL, NOW), Err(Denied::NotAsked), "an app code first");
        let s = s.prove(7, pwd(NOW), &ALL, NOW).unwrap();
        assert_eq!(s.prove(7, pwd(NOW + 1), &ALL, NOW + 1), Err(Denied::NotAsked), "the password again");
        assert_eq!(
            s.prove(8, Proof::of(Method::Totp, NOW + 1), &ALL, NOW + 1),
            Err(Denied::NotAsked),
            "another person"
        );
        let late = NOW + STEP_LIFETIME;
        assert_eq!(s.prove(7, Proof::of(Method::Totp, late), &ALL, late), Err(Denied::Expired));
        assert_eq!(s.next(Some(&ALL), late), Next::Denied(Denied::Expired));
        assert!(s.prove(7, Proof::of(Method::Totp, NOW + 2), &ALL, NOW + 2).is_ok());
        // A method not enrolled is not asked for.
        let s = SignIn::start(mfa, None, NOW).prove(7, pwd(NOW), &PASSWORD_ONLY, NOW).unwrap();
        assert_eq!(s.prove(7, Proof::of(Method::Totp, NOW), &PASSWORD_ONLY, NOW), Err(Denied::NotAsked));
    }

    #[test]
    fn the_state_survives_sealing() {
        let s = SignIn::start(Requirement { level: Level::PhishingResistant, not_before: Some(NOW) }, None, NOW)
            .prove(7, Proof::passkey(NOW, true, true), &ALL, NOW)
            .unwrap();
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<SignIn>(&text).unwrap(), s);
    }
}
