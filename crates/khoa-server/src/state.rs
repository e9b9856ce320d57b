use crate::clients::ClientCache;
use crate::keys::{load_snapshot, KeyRing, KeysError};
use crate::metrics::Metrics;
use crate::settings::Settings;
use khoa_core::discovery::ProviderMetadata;
use khoa_core::sealing::MasterKey;
use khoa_store::Store;
use std::sync::Arc;

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub store: Arc<dyn Store>,
    pub master: Arc<MasterKey>,
    pub keys: Arc<KeyRing>,
    pub clients: Arc<ClientCache>,
    pub metrics: Arc<Metrics>,
    /// The discovery document, serialised once.
    pub discovery_json: Arc<str>,
    /// An argon2id hash of nothing, verified against for unknown usernames so that
    /// they take as long as wrong passwords.
    dummy_hash: Arc<tokio::sync::OnceCell<String>>,
}

impl AppState {
    /// Loads and opens the signing keys. Fails when a stored key cannot be opened with
    /// this master key.
    pub async fn new(settings: Settings, store: Arc<dyn Store>, master: MasterKey) -> Result<Self, KeysError> {
        let snapshot = load_snapshot(store.as_ref(), &master, &settings, crate::now()).await?;
        let discovery = ProviderMetadata::new(&settings.issuer, &settings.algorithms);
        Ok(Self {
            discovery_json: serde_json::to_string(&discovery).unwrap_or_default().into(),
            settings: Arc::new(settings),
            store,
            master: Arc::new(master),
            keys: Arc::new(KeyRing::new(snapshot)),
            clients: Arc::new(ClientCache::default()),
            metrics: Arc::new(Metrics::default()),
            dummy_hash: Arc::new(tokio::sync::OnceCell::new()),
        })
    }

    pub async fn dummy_password_hash(&self) -> String {
        self.dummy_hash
            .get_or_init(|| async {
                let random = khoa_core::random::random_token::<16>();
                tokio::task::spawn_blocking(move || {
                    khoa_core::password::hash_password(&random, khoa_core::password::PasswordParams::default())
                        .unwrap_or_default()
                })
                .await
                .unwrap_or_default()
            })
            .await
            .clone()
    }
}
