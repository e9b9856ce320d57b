//! Passkeys (WebAuthn Level 3, on `webauthn-rs`): registration on the account page or
//! during a sign-in, and authentication as a second factor or alone (passwordless,
//! with a discoverable credential and user verification). The ceremony's state
//! ([`Ceremony`]) is sealed under the master key between the page and the post, and
//! each challenge is accepted once (it is spent in the single-use nonce table). A
//! counter that goes backwards (a cloned authenticator) is refused and audited; the
//! stored counter moves by compare-and-swap.

use crate::app::state::AppState;
use crate::http::error::ApiError;
use khoa_core::audit::{kind, Actor, Event};
use khoa_core::authn::{Method, Proof};
use khoa_core::user::User;
use khoa_core::UnixTime;
use khoa_store::{Credential, NewCredential, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential, Uuid,
    WebauthnError,
};

/// The longest credential a browser posts that is read (a registration carries an
/// attestation object; an assertion is far smaller).
pub const MAX_CREDENTIAL_JSON: usize = 32 * 1024;
/// The longest name of a passkey.
pub const MAX_NAME: usize = 64;
/// Passkeys one account may have.
pub const MAX_PASSKEYS: usize = 20;
/// The namespace of spent challenges in the single-use nonce table.
const SPENT: &str = "khoa:webauthn";

/// A ceremony in progress: what the browser was asked, kept sealed until it answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Ceremony {
    Register(PasskeyRegistration),
    /// Authentication, by a discoverable credential (passwordless) or by one of the
    /// named person's passkeys (a second factor: the browser is told which).
    Authenticate(DiscoverableAuthentication),
}

/// A ceremony started: the options for the browser's `navigator.credentials` call (JSON),
/// the state to keep, and its challenge.
pub struct Started {
    pub options: String,
    pub ceremony: Ceremony,
    pub challenge: String,
}

fn webauthn(state: &AppState) -> Result<&webauthn_rs::Webauthn, ApiError> {
    state.passkeys.as_deref().ok_or_else(|| ApiError::Internal("passkeys are not offered here".into()))
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(format!("passkey: {e}"))
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The WebAuthn user handle of a person: derived from their id under this issuer, so
/// that it names nobody elsewhere; stored by discoverable authenticators and given back
/// at a passwordless sign-in.
pub fn user_handle(state: &AppState, user_id: i64) -> Uuid {
    let hash = khoa_core::session::sha256(
        format!("khoa passkey user handle\n{}\n{user_id}", state.settings.issuer).as_bytes(),
    );
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash[..16]);
    Uuid::from_bytes(bytes)
}

/// The stored passkey of a credential row.
fn passkey_of(c: &Credential) -> Option<Passkey> {
    (c.method == Method::Passkey).then(|| serde_json::from_str(&c.data).ok()).flatten()
}

/// A registration for `user`: their passkeys excluded, a discoverable credential asked
/// for where the authenticator can keep one, user verification required.
pub fn start_registration(state: &AppState, user: &User, existing: &[Credential]) -> Result<Started, ApiError> {
    let exclude: Vec<_> = existing.iter().filter_map(passkey_of).map(|p| p.cred_id().clone()).collect();
    let display = user.name.as_deref().unwrap_or(&user.username);
    let (ccr, registration) = webauthn(state)?
        .start_passkey_registration(user_handle(state, user.id), &user.username, display, Some(exclude))
        .map_err(internal)?;
    let mut options = serde_json::to_value(&ccr).map_err(internal)?;
    // Passwordless needs a discoverable credential; `preferred` lets an authenticator
    // that cannot keep one still register (it then serves as a second factor).
    if let Some(selection) = options.pointer_mut("/publicKey/authenticatorSelection").and_then(|v| v.as_object_mut()) {
        selection.insert("residentKey".into(), json!("preferred"));
        selection.insert("requireResidentKey".into(), json!(false));
    }
    let challenge = b64url(ccr.public_key.challenge.as_ref());
    let options = options.to_string();
    Ok(Started { options, ceremony: Ceremony::Register(registration), challenge })
}

/// What finishing a registration came to.
pub enum Registered {
    Added(Box<Credential>),
    /// The browser's answer does not verify (or is not one), or the challenge was spent.
    Invalid,
    /// That credential is registered already (to this account or another).
    Duplicate,
    /// The account has [`MAX_PASSKEYS`].
    TooMany,
}

/// Verifies the browser's answer to `ceremony` and stores the passkey for `user`,
/// named `name` (audited as added by `actor`).
#[allow(clippy::too_many_arguments)]
pub async fn finish_registration(
    state: &AppState,
    user: &User,
    ceremony: &Ceremony,
    challenge: &str,
    credential: &str,
    name: &str,
    actor: Actor,
    now: UnixTime,
) -> Result<Registered, ApiError> {
    let Ceremony::Register(registration) = ceremony else { return Ok(Registered::Invalid) };
    if credential.len() > MAX_CREDENTIAL_JSON {
        return Ok(Registered::Invalid);
    }
    let Ok(answer) = serde_json::from_str::<RegisterPublicKeyCredential>(credential) else {
        return Ok(Registered::Invalid);
    };
    let Ok(passkey) = webauthn(state)?.finish_passkey_registration(&answer, registration) else {
        return Ok(Registered::Invalid);
    };
    let existing = state.store.credentials(user.id).await?;
    if existing.iter().filter(|c| c.method == Method::Passkey).count() >= MAX_PASSKEYS {
        return Ok(Registered::TooMany);
    }
    if !state.store.use_partner_nonce(SPENT, challenge, now + khoa_core::authn::STEP_LIFETIME * 2).await? {
        return Ok(Registered::Invalid);
    }
    let name: String = name.trim().chars().filter(|c| !c.is_control()).take(MAX_NAME).collect();
    let new = NewCredential {
        user_id: user.id,
        method: Method::Passkey,
        name: Some(name).filter(|n| !n.is_empty()),
        lookup: Some(b64url(passkey.cred_id().as_ref())),
        data: serde_json::to_string(&passkey).map_err(internal)?,
        counter: 0,
        created_at: now,
    };
    let detail = json!({ "method": "passkey", "backup_eligible": passkey_backup_eligible(&passkey) });
    let mut event = Event::new(now, kind::CREDENTIAL_ADDED, actor).detail(detail);
    event.user_id = Some(user.id);
    match state.store.insert_credential(&new, &event).await {
        Ok(c) => Ok(Registered::Added(Box::new(c))),
        Err(StoreError::Conflict(_)) => Ok(Registered::Duplicate),
        Err(e) => Err(e.into()),
    }
}

/// Whether a stored passkey is bound to its hardware (`hwk`), not synced (`swk`).
pub fn hardware(c: &Credential) -> bool {
    passkey_of(c).is_some_and(|p| !passkey_backup_eligible(&p))
}

/// Whether a passkey may be synced between devices (its backup-eligible flag): `swk`
/// rather than `hwk`.
fn passkey_backup_eligible(passkey: &Passkey) -> bool {
    serde_json::to_value(passkey)
        .ok()
        .and_then(|v| v.pointer("/cred/backup_eligible").and_then(|b| b.as_bool()))
        .unwrap_or(true)
}

/// An authentication: passwordless (`allowed` empty: the browser offers the person's
/// discoverable passkeys for this site), or by one of `allowed` (a named person's
/// second factor). User verification is asked for either way.
pub fn start_authentication(state: &AppState, allowed: &[Credential]) -> Result<Started, ApiError> {
    let (rcr, authentication) = webauthn(state)?.start_discoverable_authentication().map_err(internal)?;
    let mut options = serde_json::to_value(&rcr).map_err(internal)?;
    if let Some(o) = options.as_object_mut() {
        // A button starts it, not the browser's autofill.
        o.remove("mediation");
    }
    let allow: Vec<serde_json::Value> = allowed
        .iter()
        .filter_map(passkey_of)
        .map(|p| json!({ "type": "public-key", "id": b64url(p.cred_id().as_ref()) }))
        .collect();
    if let Some(public_key) = options.pointer_mut("/publicKey").and_then(|v| v.as_object_mut()) {
        public_key.insert("allowCredentials".into(), json!(allow));
    }
    let challenge = b64url(rcr.public_key.challenge.as_ref());
    let options = options.to_string();
    Ok(Started { options, ceremony: Ceremony::Authenticate(authentication), challenge })
}

/// What the browser's answer to an authentication came to.
pub enum Verified {
    /// The person the passkey belongs to, and what it proved.
    Ok { user_id: i64, proof: Proof },
    /// Not an answer to this ceremony, not a passkey of the expected person, a
    /// signature that does not verify, or a challenge already spent.
    Invalid,
    /// The authenticator's counter went backwards: it may have been cloned.
    CounterWentBackwards { user_id: i64 },
}

/// Verifies the browser's answer to `ceremony` (of `expected`, when a person is named
/// already), spends its challenge, and moves the passkey's counter.
pub async fn verify(
    state: &AppState,
    ceremony: &Ceremony,
    challenge: &str,
    expected: Option<i64>,
    credential: &str,
    now: UnixTime,
) -> Result<Verified, ApiError> {
    let Ceremony::Authenticate(authentication) = ceremony else { return Ok(Verified::Invalid) };
    if credential.len() > MAX_CREDENTIAL_JSON {
        return Ok(Verified::Invalid);
    }
    let Ok(answer) = serde_json::from_str::<PublicKeyCredential>(credential) else { return Ok(Verified::Invalid) };
    let lookup = b64url(answer.get_credential_id());
    let Some(stored) = state.store.credential_by_lookup(Method::Passkey, &lookup).await? else {
        return Ok(Verified::Invalid);
    };
    // WebAuthn §7.2 step 6: the credential is the named person's; a passwordless answer
    // names its person by the user handle, which must be this credential's owner's.
    let handle_matches =
        answer.get_user_unique_id().map(|h| h == user_handle(state, stored.user_id).as_bytes().as_slice());
    let owner_ok = match expected {
        Some(user_id) => stored.user_id == user_id && handle_matches != Some(false),
        None => handle_matches == Some(true),
    };
    let Some(mut passkey) = passkey_of(&stored).filter(|_| owner_ok) else { return Ok(Verified::Invalid) };
    // The challenge is spent before the signature is checked: an answer is verified
    // once, whatever it comes to (a failure shows a new ceremony).
    if !state.store.use_partner_nonce(SPENT, challenge, now + khoa_core::authn::STEP_LIFETIME * 2).await? {
        return Ok(Verified::Invalid);
    }
    let wa = webauthn(state)?;
    let result = match wa.finish_discoverable_authentication_v2(&answer, authentication.clone(), &passkey) {
        Ok(result) => result,
        Err(WebauthnError::CredentialPossibleCompromise) => {
            return Ok(Verified::CounterWentBackwards { user_id: stored.user_id });
        }
        Err(_) => return Ok(Verified::Invalid),
    };
    if !result.user_verified() && expected.is_none() {
        return Ok(Verified::Invalid);
    }
    passkey.update_credential(&result);
    let counter = i64::from(result.counter());
    let data = serde_json::to_string(&passkey).map_err(internal)?;
    // Of two uses of one answer at once, one moves the counter.
    if !state.store.swap_data(stored.id, stored.counter, counter.max(stored.counter), &data, now).await? {
        return Ok(Verified::Invalid);
    }
    let proof = Proof::passkey(now, result.user_verified(), !result.backup_eligible());
    Ok(Verified::Ok { user_id: stored.user_id, proof })
}

/// Records a counter that went backwards: the credential may be cloned.
pub async fn record_counter_went_backwards(
    state: &AppState,
    user_id: i64,
    client_id: &str,
    address: Option<String>,
    now: UnixTime,
) -> Result<(), ApiError> {
    let mut event = Event::new(now, kind::LOGIN_FAILED, Actor::Anonymous)
        .client(client_id)
        .from_address(address)
        .detail(json!({ "method": "passkey", "reason": "counter_went_backwards" }));
    event.user_id = Some(user_id);
    state.store.record(&event).await?;
    tracing::warn!(user_id, "a passkey's signature counter went backwards: it may have been cloned; refused");
    Ok(())
}
