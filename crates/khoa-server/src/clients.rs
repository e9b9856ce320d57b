//! Read-through cache of registered clients, emptied whenever the store's change epoch
//! moves (see the watcher), so a change made by the command line or another process is
//! seen within one watch interval.

use khoa_core::client::Client;
use khoa_store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Cached entries, including "no such client" answers.
const MAX_ENTRIES: usize = 10_000;

#[derive(Default)]
pub struct ClientCache {
    entries: RwLock<HashMap<String, Option<Arc<Client>>>>,
}

impl ClientCache {
    pub async fn get(&self, store: &dyn Store, client_id: &str) -> Result<Option<Arc<Client>>, StoreError> {
        if let Some(hit) = self.entries.read().ok().and_then(|m| m.get(client_id).cloned()) {
            return Ok(hit);
        }
        let loaded = store.client(client_id).await?.map(Arc::new);
        if let Ok(mut m) = self.entries.write() {
            if m.len() >= MAX_ENTRIES {
                m.clear();
            }
            m.insert(client_id.to_string(), loaded.clone());
        }
        Ok(loaded)
    }

    pub fn clear(&self) {
        if let Ok(mut m) = self.entries.write() {
            m.clear();
        }
    }
}
