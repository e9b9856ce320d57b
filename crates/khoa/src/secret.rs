//! The master key: from `KHOA_SECRET`, or from a key file that is generated (mode 0600)
//! for the embedded SQLite default.

use crate::config::{Config, SecretSource};
use anyhow::{bail, Context};
use khoa_core::sealing::MasterKey;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

pub fn master_key(config: &Config) -> anyhow::Result<MasterKey> {
    match &config.secret {
        SecretSource::Secret(s) => Ok(MasterKey::from_secret(s)?),
        SecretSource::File(path) if path.exists() => read_key_file(path),
        SecretSource::File(path) if config.is_sqlite() => create_key_file(path),
        SecretSource::File(path) => bail!(
            "no master key: set KHOA_SECRET (or secret_file) to the same value for every khoa process on this \
             PostgreSQL database ({} does not exist)",
            path.display()
        ),
    }
}

fn read_key_file(path: &Path) -> anyhow::Result<MasterKey> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read key file {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "key file {} is accessible to other users (mode {mode:o}); run: chmod 600 {}",
            path.display(),
            path.display()
        );
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read key file {}", path.display()))?;
    MasterKey::from_key_file(&text).with_context(|| format!("key file {}", path.display()))
}

fn create_key_file(path: &Path) -> anyhow::Result<MasterKey> {
    let (key, text) = MasterKey::generate();
    let mut file = match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(f) => f,
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::thread::sleep(std::time::Duration::from_millis(100));
            return read_key_file(path);
        }
        Err(e) => return Err(e).with_context(|| format!("cannot create key file {}", path.display())),
    };
    file.write_all(text.as_bytes())
        .and_then(|_| file.sync_all())
        .with_context(|| format!("cannot write key file {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated master key file (mode 0600); back it up with the database");
    Ok(key)
}
