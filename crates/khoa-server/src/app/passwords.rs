//! Every password hash and verification of the process, in a bounded number of slots
//! (one per core): a login, a sign-up, a reset, an operator's create or set-password.
//! Each takes up to 19 MiB (or what an imported hash asks, bounded by
//! `khoa_core::hashes`) and tens of milliseconds of a core, so an unbounded number at
//! once would be a memory and CPU exhaustion attack; extra ones wait their turn.
//!
//! A slot's permit is owned by the blocking work itself, not by the request that asked
//! for it: a request that times out (408) or whose client goes away stops waiting, but
//! the work it started keeps its slot until it has really finished, so abandoned work
//! can never pile up beyond the slots. The argon2 buffers are reused, one per slot.

use khoa_core::password::{PasswordError, PasswordParams, VerifyMemory};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Passwords {
    slots: Arc<Semaphore>,
    size: u32,
    memory: Arc<Mutex<Vec<VerifyMemory>>>,
    params: PasswordParams,
    /// An argon2id hash of nothing, verified against when there is no hash to verify
    /// (an unknown user, an account without a password, a hash that cannot be
    /// verified), so that every wrong password costs the same.
    dummy: tokio::sync::OnceCell<String>,
    /// Hashes and verifications computed so far.
    computed: Arc<std::sync::atomic::AtomicU64>,
    /// The most computed at once so far, and how many run now.
    peak: Arc<std::sync::atomic::AtomicUsize>,
    running: Arc<std::sync::atomic::AtomicUsize>,
}

impl Default for Passwords {
    /// One slot per core.
    fn default() -> Self {
        Self::new(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2), PasswordParams::default())
    }
}

impl Passwords {
    pub fn new(slots: usize, params: PasswordParams) -> Self {
        let size = slots.clamp(1, 1024);
        Self {
            slots: Arc::new(Semaphore::new(size)),
            size: size as u32,
            memory: Arc::new(Mutex::new(Vec::new())),
            params,
            dummy: tokio::sync::OnceCell::new(),
            computed: Arc::default(),
            peak: Arc::default(),
            running: Arc::default(),
        }
    }

    /// Runs `work` on the blocking pool with a slot and a reused buffer; `None` when
    /// the process is stopping (the slots are closed).
    async fn run<T: Send + 'static>(&self, work: impl FnOnce(&mut VerifyMemory) -> T + Send + 'static) -> Option<T> {
        let permit: OwnedSemaphorePermit = self.slots.clone().acquire_owned().await.ok()?;
        let (pool, computed) = (self.memory.clone(), self.computed.clone());
        let (peak, running) = (self.peak.clone(), self.running.clone());
        tokio::task::spawn_blocking(move || {
            use std::sync::atomic::Ordering::Relaxed;
            // Held until the work is done, whatever became of the request.
            let _permit = permit;
            peak.fetch_max(running.fetch_add(1, Relaxed) + 1, Relaxed);
            let mut memory = pool.lock().ok().and_then(|mut p| p.pop()).unwrap_or_default();
            let out = work(&mut memory);
            running.fetch_sub(1, Relaxed);
            computed.fetch_add(1, Relaxed);
            if let Ok(mut p) = pool.lock() {
                p.push(memory);
            }
            out
        })
        .await
        .ok()
    }

    /// Verifies `password` against khoa's argon2id or any hash an import brought
    /// (`khoa_core::hashes`), in constant time; `false` for anything unverifiable.
    pub async fn verify(&self, password: String, hash: String) -> bool {
        self.run(move |memory| khoa_core::hashes::verify_any(&password, &hash, memory)).await.unwrap_or(false)
    }

    /// Verifies `password` against `hash`, or (`None`, or a hash that cannot be
    /// verified) against the dummy hash and answers `false`: the same work either way.
    pub async fn verify_or_pretend(&self, password: &str, hash: Option<&str>) -> bool {
        match hash.filter(|h| khoa_core::hashes::scheme_of(h).is_ok()) {
            Some(hash) => self.verify(password.to_string(), hash.to_string()).await,
            None => {
                let dummy = self.dummy_hash().await;
                let _ = self.verify(password.to_string(), dummy).await;
                false
            }
        }
    }

    /// An argon2id hash of a new password with khoa's parameters.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let params = self.params;
        self.run(move |memory| khoa_core::password::hash_password_reusing(&password, params, memory))
            .await
            .unwrap_or_else(|| Err(PasswordError::Hashing("the server is stopping".into())))
    }

    async fn dummy_hash(&self) -> String {
        self.dummy
            .get_or_init(|| async {
                let random = khoa_core::random::random_token::<16>();
                self.hash(random).await.unwrap_or_default()
            })
            .await
            .clone()
    }

    /// How many hashes and verifications were computed so far.
    pub fn computed(&self) -> u64 {
        self.computed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The most hashes and verifications that ran at once so far, and how many argon2
    /// buffers exist (at most one per slot).
    pub fn peak(&self) -> (usize, usize) {
        let buffers = self.memory.lock().map(|p| p.len()).unwrap_or(0);
        (self.peak.load(std::sync::atomic::Ordering::Relaxed), buffers)
    }

    /// How many slots there are.
    pub fn slots(&self) -> usize {
        self.size as usize
    }

    /// How many slots are busy now.
    pub fn busy(&self) -> usize {
        (self.size as usize).saturating_sub(self.slots.available_permits())
    }

    /// At shutdown: no new work starts; waits up to `deadline` for the work under way.
    /// How many were still running at the deadline (abandoned: the process may exit,
    /// and each is bounded by `khoa_core::hashes` anyway).
    pub async fn drain(&self, deadline: Duration) -> usize {
        let all = tokio::time::timeout(deadline, self.slots.acquire_many(self.size)).await;
        let left = match all {
            Ok(Ok(permits)) => {
                permits.forget();
                0
            }
            _ => self.busy(),
        };
        self.slots.close();
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> PasswordParams {
        PasswordParams { memory_kib: 64, iterations: 1, parallelism: 1 }
    }

    /// A request that stops waiting (a 408) does not free its slot: the work keeps it
    /// until it is done, so abandoned work never runs beyond the slots.
    #[tokio::test]
    async fn abandoned_work_keeps_its_slot_until_it_is_done() {
        let passwords = Arc::new(Passwords::new(2, cheap()));
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        for _ in 0..2 {
            let (p, gate) = (passwords.clone(), gate.clone());
            // Each request gives up at once; its work waits for the gate.
            let request = tokio::spawn(async move {
                p.run(move |_| {
                    let _ = gate.lock().map(|g| g.recv());
                })
                .await
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
            request.abort();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(passwords.busy(), 2, "both slots are still held by their work");
        let third = tokio::time::timeout(Duration::from_millis(200), passwords.verify("x".into(), "y".into())).await;
        assert!(third.is_err(), "a third waits: nothing runs beyond the slots");
        release.send(()).unwrap();
        release.send(()).unwrap();
        let third = tokio::time::timeout(Duration::from_secs(5), passwords.verify("x".into(), "y".into())).await;
        assert_eq!(third, Ok(false), "and runs once a slot is free");
        for _ in 0..100 {
            if passwords.busy() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(passwords.busy(), 0, "every slot back once the work is done");
    }

    #[tokio::test]
    async fn hashes_verify_and_the_dummy_never_does() {
        let passwords = Passwords::new(1, cheap());
        let hash = passwords.hash("a long password".into()).await.unwrap();
        assert!(passwords.verify("a long password".into(), hash.clone()).await);
        assert!(passwords.verify_or_pretend("a long password", Some(&hash)).await);
        assert!(!passwords.verify_or_pretend("a long password", None).await);
        assert!(!passwords.verify_or_pretend("a long password", Some("")).await);
        let bomb = "$argon2id$v=19$m=8,t=4294967295,p=1$c2FsdHNhbHQ$aGFzaA";
        assert!(!passwords.verify_or_pretend("a long password", Some(bomb)).await);
    }

    /// Shutdown waits for the work under way, up to its deadline, then refuses more.
    #[tokio::test]
    async fn drain_waits_then_closes() {
        let passwords = Arc::new(Passwords::new(1, cheap()));
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let p = passwords.clone();
        tokio::spawn(async move { p.run(move |_| gate.recv()).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(passwords.drain(Duration::from_millis(100)).await, 1, "one abandoned at the deadline");
        release.send(()).unwrap();
        assert!(passwords.hash("a long password".into()).await.is_err(), "nothing new starts");
        let idle = Passwords::new(2, cheap());
        assert_eq!(idle.drain(Duration::from_secs(1)).await, 0);
    }
}
