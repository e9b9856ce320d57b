//! Clients as the admin API and the command line change them: one validation (the
//! core's `ClientRegistration`), one representation in RFC 7591 metadata names, and an
//! audit event written in the transaction of every change.

use super::{ChangeError, Who};
use khoa_core::audit::{self, kind, Event};
use khoa_core::client::{Client, ClientLifetimes, ClientRegistration, ClientType, SecretChoice, SecretMethod};
use khoa_store::{ClientStore, StoreError, Updated};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// What an operator sets on a client: every writable member of its document.
/// Members left out take their defaults (a replacement is whole).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClientSettings {
    /// Shown on the consent page.
    #[serde(default)]
    pub client_name: Option<String>,
    /// RFC 7591 §2: `client_secret_basic` (the default), `client_secret_post`, or `none`
    /// (a public client: a browser or mobile app, no secret).
    #[serde(default)]
    #[schema(example = "client_secret_basic")]
    pub token_endpoint_auth_method: Option<String>,
    /// Exact-match redirect URIs (RFC 9700 §4.1.3); required for the authorization_code grant.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Browser origins allowed (CORS) beyond those of the redirect URIs.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    #[serde(default)]
    pub frontchannel_logout_uri: Option<String>,
    #[serde(default)]
    pub backchannel_logout_uri: Option<String>,
    /// Default: authorization_code and refresh_token.
    #[serde(default)]
    pub grant_types: Option<Vec<String>>,
    /// Space-delimited (RFC 6749 §3.3). Default: `openid profile email phone offline_access`.
    /// `khoa:admin` and `khoa:admin.read` make an admin API client (client_credentials only).
    #[serde(default)]
    pub scope: Option<String>,
    /// First-party: no consent page.
    #[serde(default)]
    pub skip_consent: bool,
    #[serde(default)]
    pub always_issue_refresh_token: bool,
    /// May introspect other clients' access tokens (RFC 7662 §2.2).
    #[serde(default)]
    pub resource_server: bool,
    /// Its users sign in with two factors.
    #[serde(default)]
    pub require_mfa: bool,
    #[serde(default)]
    pub logo_uri: Option<String>,
    #[serde(default)]
    pub client_uri: Option<String>,
    #[serde(default)]
    pub policy_uri: Option<String>,
    #[serde(default)]
    pub tos_uri: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub contacts: Vec<String>,
    /// A JSON object of the operator's own.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// RS256 (default), ES256 or EdDSA.
    #[serde(default)]
    pub id_token_signed_response_alg: Option<String>,
    /// The algorithm of this client's JWT access tokens; null: the server's.
    #[serde(default)]
    pub access_token_signed_response_alg: Option<String>,
    #[serde(default)]
    pub lifetimes: LifetimeSettings,
}

/// Per-client lifetimes in seconds; null: the server's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LifetimeSettings {
    #[serde(default)]
    pub authorization_code: Option<i64>,
    #[serde(default)]
    pub access_token: Option<i64>,
    #[serde(default)]
    pub id_token: Option<i64>,
    #[serde(default)]
    pub refresh_token: Option<i64>,
}

/// A client as the admin API shows it. Secrets never appear, but the `client_secret`
/// of a creation or rotation, once.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ClientDocument {
    pub client_id: String,
    #[serde(flatten)]
    pub settings: ClientSettings,
    /// Read-only: every origin the client's browser apps may call from.
    pub origins: Vec<String>,
    /// Read-only (RFC 7591 §3.2.1), seconds since the epoch.
    pub client_id_issued_at: i64,
    /// Read-only, seconds since the epoch.
    pub updated_at: i64,
    /// Read-only: until when the secret before the last rotation still works.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<i64>,
    /// Present once: in the answer that created or rotated it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// RFC 7591 §3.2.1: 0, the secret does not expire (present with `client_secret`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_expires_at: Option<i64>,
}

/// Members of a document that a request may carry back but cannot set.
pub const READ_ONLY: &[&str] =
    &["origins", "client_id_issued_at", "updated_at", "previous_secret_expires_at", "client_secret_expires_at"];

impl ClientSettings {
    /// The settings that would register `client` again.
    pub fn of(client: &Client) -> Self {
        let l = &client.lifetimes;
        Self {
            client_name: client.client_name.clone(),
            token_endpoint_auth_method: Some(client.token_endpoint_auth_method().to_string()),
            redirect_uris: client.redirect_uris.clone(),
            post_logout_redirect_uris: client.post_logout_redirect_uris.clone(),
            allowed_origins: client.allowed_origins.clone(),
            frontchannel_logout_uri: client.frontchannel_logout_uri.clone(),
            backchannel_logout_uri: client.backchannel_logout_uri.clone(),
            grant_types: Some(client.grant_types.iter().map(|g| g.as_str().to_string()).collect()),
            scope: Some(client.scopes.join(" ")),
            skip_consent: client.skip_consent,
            always_issue_refresh_token: client.always_issue_refresh_token,
            resource_server: client.resource_server,
            require_mfa: client.require_mfa,
            logo_uri: client.logo_uri.clone(),
            client_uri: client.client_uri.clone(),
            policy_uri: client.policy_uri.clone(),
            tos_uri: client.tos_uri.clone(),
            owner: client.owner.clone(),
            contacts: client.contacts.clone(),
            metadata: Some(client.metadata.clone()),
            id_token_signed_response_alg: Some(client.id_token_signed_response_alg.as_str().to_string()),
            access_token_signed_response_alg: client.access_token_signed_response_alg.map(|a| a.as_str().to_string()),
            lifetimes: LifetimeSettings {
                authorization_code: l.authorization_code,
                access_token: l.access_token,
                id_token: l.id_token,
                refresh_token: l.refresh_token,
            },
        }
    }

    /// The registration these settings ask for; `secret` decides a confidential
    /// client's secret (a public one has none, whatever it says).
    pub fn registration(self, client_id: String, secret: SecretChoice) -> Result<ClientRegistration, ChangeError> {
        let mut reg = ClientRegistration::new(client_id);
        match self.token_endpoint_auth_method.as_deref() {
            Some("none") => reg.secret = SecretChoice::Public,
            None => reg.secret = secret,
            Some(method) => {
                reg.secret_method = Some(method.parse::<SecretMethod>().map_err(ChangeError::from)?);
                reg.secret = secret;
            }
        }
        reg.client_name = self.client_name;
        reg.redirect_uris = self.redirect_uris;
        reg.post_logout_redirect_uris = self.post_logout_redirect_uris;
        reg.allowed_origins = self.allowed_origins;
        reg.frontchannel_logout_uri = self.frontchannel_logout_uri;
        reg.backchannel_logout_uri = self.backchannel_logout_uri;
        reg.grant_types = match self.grant_types {
            None => None,
            Some(list) => {
                Some(list.iter().map(|g| g.parse()).collect::<Result<Vec<_>, _>>().map_err(ChangeError::from)?)
            }
        };
        reg.scopes = self.scope;
        reg.skip_consent = self.skip_consent;
        reg.always_issue_refresh_token = self.always_issue_refresh_token;
        reg.resource_server = self.resource_server;
        reg.require_mfa = self.require_mfa;
        reg.logo_uri = self.logo_uri;
        reg.client_uri = self.client_uri;
        reg.policy_uri = self.policy_uri;
        reg.tos_uri = self.tos_uri;
        reg.owner = self.owner;
        reg.contacts = self.contacts;
        reg.metadata = self.metadata;
        let alg = |field: &'static str, v: Option<String>| {
            v.map(|a| {
                a.parse().map_err(|_| ChangeError::invalid(field, format!("{a:?} is not one of RS256, ES256, EdDSA")))
            })
            .transpose()
        };
        reg.id_token_signed_response_alg = alg("id_token_signed_response_alg", self.id_token_signed_response_alg)?;
        reg.access_token_signed_response_alg =
            alg("access_token_signed_response_alg", self.access_token_signed_response_alg)?;
        let l = self.lifetimes;
        reg.lifetimes = ClientLifetimes {
            authorization_code: l.authorization_code,
            access_token: l.access_token,
            id_token: l.id_token,
            refresh_token: l.refresh_token,
        };
        Ok(reg)
    }
}

impl ClientDocument {
    pub fn of(client: &Client) -> Self {
        Self {
            client_id: client.client_id.clone(),
            settings: ClientSettings::of(client),
            origins: client.origins(),
            client_id_issued_at: client.created_at,
            updated_at: client.updated_at,
            previous_secret_expires_at: client.previous_secret_expires_at,
            client_secret: None,
            client_secret_expires_at: None,
        }
    }

    /// With the secret shown once.
    pub fn with_secret(mut self, secret: Option<String>) -> Self {
        if secret.is_some() {
            self.client_secret_expires_at = Some(0);
        }
        self.client_secret = secret;
        self
    }
}

/// The ETag of a stored client: its creation time and revision, so that a client
/// deleted and created again does not match an old tag.
pub fn etag(client: &Client) -> String {
    format!("\"{}-{}\"", client.created_at, client.revision)
}

/// What an event's changes are taken from: the members a change sets (no secret among
/// them; the times a change moves are the event's own).
fn audited(client: &Client) -> Value {
    serde_json::to_value(ClientSettings::of(client)).unwrap_or(Value::Null)
}

/// The secret a client keeps through an update: its own while it stays confidential; a
/// new one (shown once) when a public client becomes confidential.
pub fn kept_secret(existing: &Client) -> SecretChoice {
    match (&existing.client_secret_hash, existing.client_type) {
        (Some(hash), ClientType::Confidential(_)) => SecretChoice::Keep {
            hash: hash.clone(),
            previous: existing.previous_secret_hash.clone().zip(existing.previous_secret_expires_at),
        },
        _ => SecretChoice::Generate,
    }
}

/// Registers a new client; returns it and its secret when one was generated.
pub async fn create(
    store: &dyn ClientStore,
    reg: ClientRegistration,
    who: &Who,
) -> Result<(Client, Option<String>), ChangeError> {
    let registered = reg.register(who.now).map_err(ChangeError::from)?;
    let mut client = registered.client;
    let event = who
        .event(kind::CLIENT_CREATED)
        .client(&client.client_id)
        .detail(serde_json::json!({ "changes": audit::changes(&serde_json::json!({}), &audited(&client)) }));
    match store.insert_client(&client, &event).await {
        Err(StoreError::Conflict(_)) => {
            return Err(ChangeError::Exists(format!("a client with id {:?} exists", client.client_id)))
        }
        other => other.map_err(ChangeError::Store)?,
    }
    // Every column as written; a new row's revision is 1.
    client.revision = 1;
    Ok((client, registered.plaintext_secret))
}

/// Registers `reg` as the new state of `existing` (every rule applies again), if the
/// client is still at revision `expected` when given.
pub async fn update(
    store: &dyn ClientStore,
    existing: &Client,
    reg: ClientRegistration,
    expected: Option<i64>,
    who: &Who,
) -> Result<(Client, Option<String>), ChangeError> {
    let registered = reg.register_update(existing, who.now).map_err(ChangeError::from)?;
    let mut client = registered.client;
    let event = who
        .event(kind::CLIENT_UPDATED)
        .client(&client.client_id)
        .detail(serde_json::json!({ "changes": audit::changes(&audited(existing), &audited(&client)) }));
    client.revision = written(store, &client, expected, &event).await?;
    Ok((client, registered.plaintext_secret))
}

/// A new secret for `existing` (returned once); the old one keeps working until
/// `keep_old_until`.
pub async fn rotate_secret(
    store: &dyn ClientStore,
    existing: &Client,
    keep_old_until: Option<i64>,
    expected: Option<i64>,
    who: &Who,
) -> Result<(Client, String), ChangeError> {
    let (mut rotated, secret) =
        ClientRegistration::rotate_secret(existing, keep_old_until, who.now).map_err(ChangeError::from)?;
    let event = who
        .event(kind::CLIENT_SECRET_ROTATED)
        .client(&rotated.client_id)
        .detail(serde_json::json!({ "previous_secret_expires_at": rotated.previous_secret_expires_at }));
    rotated.revision = written(store, &rotated, expected, &event).await?;
    Ok((rotated, secret))
}

/// Writes `client` (if still at `expected`); its new revision.
async fn written(
    store: &dyn ClientStore,
    client: &Client,
    expected: Option<i64>,
    event: &Event,
) -> Result<i64, ChangeError> {
    match store.update_client(client, expected, event).await.map_err(ChangeError::Store)? {
        Updated::Done(revision) => Ok(revision),
        Updated::Missing => Err(ChangeError::NotFound),
        Updated::Stale => Err(ChangeError::Stale),
    }
}

/// Deletes a client; `false` when there was none (nothing recorded then).
pub async fn delete(store: &dyn ClientStore, client_id: &str, who: &Who) -> Result<bool, ChangeError> {
    let before = store.client(client_id).await.map_err(ChangeError::Store)?;
    let Some(before) = before else { return Ok(false) };
    let event = who
        .event(kind::CLIENT_DELETED)
        .client(client_id)
        .detail(serde_json::json!({ "changes": audit::changes(&audited(&before), &serde_json::json!({})) }));
    store.delete_client(client_id, &event).await.map_err(ChangeError::Store)
}
