use crate::app::clients::{ClientCache, UserCache};
use crate::app::clock::{Clock, SystemClock};
use crate::app::keys::{load_snapshot, KeyRing, KeysError};
use crate::app::metrics::Metrics;
use crate::app::settings::Settings;
use khoa_core::discovery::ProviderMetadata;
use khoa_core::sealing::MasterKey;
use khoa_store::Store;
use std::sync::Arc;

/// Shared by every handler; cheap to clone (one reference count: axum clones the state
/// for every request).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What the [`AppState`] holds.
pub struct Shared {
    pub settings: Settings,
    pub store: Arc<dyn Store>,
    pub master: MasterKey,
    pub keys: KeyRing,
    pub clients: ClientCache,
    pub users: UserCache,
    /// Clients whose failed authentications are throttled (`client_authn.rs`).
    pub client_auth_blocks: crate::app::caches::ClientAuthBlocks,
    /// Every origin some client allows (CORS preflights, `cors.rs`).
    pub origins: crate::app::caches::OriginIndex,
    /// JWT access tokens whose signature has been checked (`tokens.rs`).
    pub verified: crate::app::caches::VerifiedAccessTokens,
    pub metrics: Metrics,
    /// The time every rule is decided at (`clock.rs`).
    pub clock: Arc<dyn Clock>,
    /// The discovery document, serialised once.
    pub discovery_json: String,
    /// Where mails go, when `smtp` is configured.
    pub outbox: Option<crate::app::mail::Outbox>,
    /// Every password hash and verification, in bounded slots (`passwords.rs`).
    pub passwords: crate::app::passwords::Passwords,
    /// The WebAuthn relying party; `None` where passkeys cannot be offered (an
    /// IP-address issuer: `passkeys.rs`).
    pub passkeys: Option<Arc<webauthn_rs::Webauthn>>,
}

impl AppState {
    /// Loads and opens the signing keys. Fails when a stored key cannot be opened with
    /// this master key.
    pub async fn new(settings: Settings, store: Arc<dyn Store>, master: MasterKey) -> Result<Self, KeysError> {
        Self::with_clock(settings, store, master, Arc::new(SystemClock)).await
    }

    /// As [`AppState::new`], on the given clock.
    pub async fn with_clock(
        settings: Settings,
        store: Arc<dyn Store>,
        master: MasterKey,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, KeysError> {
        let snapshot = load_snapshot(store.as_ref(), &master, &settings, clock.now()).await?;
        let passkeys = match crate::app::passkeys::relying_party(&settings.issuer, &settings.branding.product_name) {
            Ok(rp) => Some(Arc::new(rp)),
            Err(why) => {
                tracing::warn!("passkeys are not offered: {why}");
                None
            }
        };
        let discovery = ProviderMetadata::new(&settings.issuer, &settings.algorithms)
            .with_attribute_claims(&settings.attribute_claims)
            .with_passkeys(passkeys.is_some());
        // The settings were checked when they were read (`khoa::config`).
        let outbox = match settings.smtp.as_ref().map(crate::app::mail::SmtpMailer::new) {
            Some(Ok(mailer)) => Some(crate::app::mail::Outbox::new(Arc::new(mailer))),
            Some(Err(e)) => {
                tracing::error!(target: "khoa::mail", error = %e, "smtp settings unusable: no mail will be sent");
                None
            }
            None => None,
        };
        Ok(Self(Arc::new(Shared {
            discovery_json: serde_json::to_string(&discovery).unwrap_or_default(),
            outbox,
            settings,
            store,
            master,
            keys: KeyRing::new(snapshot),
            clients: ClientCache::default(),
            users: UserCache::default(),
            origins: crate::app::caches::OriginIndex::default(),
            verified: crate::app::caches::VerifiedAccessTokens::default(),
            client_auth_blocks: crate::app::caches::ClientAuthBlocks::default(),
            metrics: Metrics::default(),
            clock,
            passwords: crate::app::passwords::Passwords::default(),
            passkeys,
        })))
    }

    /// Sends mail through `mailer` instead (tests); only before the state is shared.
    pub fn set_mailer(&mut self, mailer: Arc<dyn crate::app::mail::Mailer>) -> bool {
        match Arc::get_mut(&mut self.0) {
            Some(shared) => {
                shared.outbox = Some(crate::app::mail::Outbox::new(mailer));
                true
            }
            None => false,
        }
    }

    /// The current time, from the state's clock.
    pub fn now(&self) -> khoa_core::UnixTime {
        self.clock.now()
    }
}
