//! TCONNECT partners as the admin API and the command line make them: a Partner-Code
//! bound to a confidential client and a 256-bit key, sealed under the master key.

use super::{ChangeError, Who};
use khoa_core::audit::kind;
use khoa_core::sealing::MasterKey;
use khoa_core::tconnect::PartnerKey;
use khoa_store::{Partner, Store, StoreError};

/// What is asked for a new partner.
#[derive(Debug, Clone)]
pub struct NewPartner {
    pub code: String,
    pub client_id: String,
    /// 64 hexadecimal characters; none: generated (and shown once).
    pub key_hex: Option<String>,
    pub require_nonce: bool,
}

/// Creates a partner; returns it and, when generated, its key in hexadecimal.
pub async fn create(
    store: &dyn Store,
    master: &MasterKey,
    new: NewPartner,
    who: &Who,
) -> Result<(Partner, Option<String>), ChangeError> {
    let code_ok = !new.code.is_empty()
        && new.code.len() <= 64
        && new.code.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !code_ok {
        return Err(ChangeError::invalid(
            "code",
            "the partner code must be 1 to 64 characters of A-Z a-z 0-9 - _ .".into(),
        ));
    }
    let Some(client) = store.client(&new.client_id).await.map_err(ChangeError::Store)? else {
        return Err(ChangeError::invalid("client_id", format!("no client has client_id {:?}", new.client_id)));
    };
    if client.is_public() {
        return Err(ChangeError::invalid(
            "client_id",
            format!("the client {:?} is public; a partner needs a confidential client", new.client_id),
        ));
    }
    let generated = new.key_hex.is_none();
    let key = match &new.key_hex {
        Some(h) => PartnerKey::from_hex(h).ok_or_else(|| {
            ChangeError::invalid("key_hex", "the key must be 64 hexadecimal characters (256 bits)".into())
        })?,
        None => PartnerKey::generate(),
    };
    let sealed = master
        .seal(format!("partner:{}", new.code).as_bytes(), key.as_bytes())
        .map_err(|e| ChangeError::invalid("key_hex", e.to_string()))?;
    let partner = Partner {
        code: new.code.clone(),
        client_id: new.client_id,
        key_sealed: sealed,
        require_nonce: new.require_nonce,
        created_at: who.now,
    };
    let event = who.event(kind::PARTNER_CREATED).client(&partner.client_id).detail(serde_json::json!({
        "code": partner.code, "require_nonce": partner.require_nonce, "key_generated": generated,
    }));
    match store.insert_partner(&partner, &event).await {
        Err(StoreError::Conflict(_)) => Err(ChangeError::Exists(format!("a partner with code {:?} exists", new.code))),
        other => other.map_err(ChangeError::Store),
    }?;
    // Shown once; only the sealed copy is stored.
    Ok((partner, generated.then(|| key.to_hex())))
}

/// Deletes a partner; `false` when there was none.
pub async fn delete(store: &dyn Store, code: &str, who: &Who) -> Result<bool, ChangeError> {
    let Some(partner) = store.partner(code).await.map_err(ChangeError::Store)? else { return Ok(false) };
    let event = who.event(kind::PARTNER_DELETED).client(&partner.client_id).detail(serde_json::json!({ "code": code }));
    store.delete_partner(code, &event).await.map_err(ChangeError::Store)
}
