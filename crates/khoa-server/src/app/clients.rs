//! Read-through caches of registered clients and of users, emptied whenever the
//! store's change epoch moves (see the watcher), so a change made by the command line
//! or another process is seen within one watch interval. Every change to a client or
//! a user moves the epoch in the transaction that makes it.

use khoa_core::client::Client;
use khoa_core::user::User;
use khoa_store::{ClientStore, StoreError, UserStore};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, RwLock};

/// Cached entries per cache, including "no such row" answers.
const MAX_ENTRIES: usize = 10_000;

/// The entries and a generation that every `clear` moves, so that a load which
/// started before a clear never stores its (possibly stale) answer after it.
struct Entries<K, V> {
    map: HashMap<K, Option<Arc<V>>>,
    generation: u64,
}

pub struct EpochCache<K, V> {
    entries: RwLock<Entries<K, V>>,
}

impl<K, V> Default for EpochCache<K, V> {
    fn default() -> Self {
        Self { entries: RwLock::new(Entries { map: HashMap::new(), generation: 0 }) }
    }
}

impl<K: Hash + Eq + Clone, V> EpochCache<K, V> {
    async fn get_or_load<F, Fut>(&self, key: &K, load: F) -> Result<Option<Arc<V>>, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Option<V>, StoreError>>,
    {
        let generation = match self.entries.read() {
            Ok(e) => {
                if let Some(hit) = e.map.get(key) {
                    return Ok(hit.clone());
                }
                e.generation
            }
            Err(_) => u64::MAX,
        };
        let loaded = load().await?.map(Arc::new);
        if let Ok(mut e) = self.entries.write() {
            if e.generation == generation {
                if e.map.len() >= MAX_ENTRIES {
                    e.map.clear();
                }
                e.map.insert(key.clone(), loaded.clone());
            }
        }
        Ok(loaded)
    }

    pub fn clear(&self) {
        if let Ok(mut e) = self.entries.write() {
            e.map.clear();
            e.generation += 1;
        }
    }
}

pub type ClientCache = EpochCache<String, Client>;
pub type UserCache = EpochCache<i64, User>;

impl EpochCache<String, Client> {
    pub async fn get(&self, store: &dyn ClientStore, client_id: &str) -> Result<Option<Arc<Client>>, StoreError> {
        self.get_or_load(&client_id.to_string(), || store.client(client_id)).await
    }
}

impl EpochCache<i64, User> {
    pub async fn get(&self, store: &dyn UserStore, user_id: i64) -> Result<Option<Arc<User>>, StoreError> {
        self.get_or_load(&user_id, || store.user_by_id(user_id)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_load_that_straddles_a_clear_is_not_kept() {
        let cache: EpochCache<i64, String> = EpochCache::default();
        let first = cache
            .get_or_load(&1, || async {
                // The row changes while it is being read: the watcher clears the cache.
                cache.clear();
                Ok(Some("old".to_string()))
            })
            .await
            .unwrap();
        assert_eq!(first.as_deref().map(String::as_str), Some("old"));
        let second = cache.get_or_load(&1, || async { Ok(Some("new".to_string())) }).await.unwrap();
        assert_eq!(second.as_deref().map(String::as_str), Some("new"), "the stale answer was not cached");
        let third = cache.get_or_load(&1, || async { Ok(Some("newer".to_string())) }).await.unwrap();
        assert_eq!(third.as_deref().map(String::as_str), Some("new"), "a load after the clear is cached");
    }
}
