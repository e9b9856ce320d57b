//! https on the public listener (`tls.cert` / `tls.key`), for a deployment without a
//! reverse proxy. The certificate is read again whenever its files change, so a
//! renewal (certbot, an ACME client, a secret mount) needs no restart; a pair that
//! does not load (a half-written renewal, a key that does not match) is logged and the
//! certificate in use is kept.

use crate::settings::TlsFiles;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls.cert {path}: {message}")]
    Cert { path: String, message: String },
    #[error("tls.key {path}: {message}")]
    Key { path: String, message: String },
    #[error("tls.key {key} does not belong to the certificate in tls.cert {cert}")]
    Mismatch { cert: String, key: String },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads the chain and key and checks that they belong together.
pub fn load(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let cert_path = files.cert.display().to_string();
    let key_path = files.key.display().to_string();
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Cert { path: cert_path.clone(), message: e.to_string() })?;
    if chain.is_empty() {
        return Err(TlsError::Cert { path: cert_path, message: "no CERTIFICATE block in the file".into() });
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| TlsError::Key { path: key_path.clone(), message: e.to_string() })?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::Mismatch { cert: cert_path, key: key_path },
        other => TlsError::Key { path: key_path, message: other.to_string() },
    })
}

/// What identifies a version of the files: each one's modification time and length.
type Stamp = [Option<(SystemTime, u64)>; 2];

fn stamp(files: &TlsFiles) -> Stamp {
    let of = |p: &std::path::Path| std::fs::metadata(p).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
    [of(&files.cert), of(&files.key)]
}

/// The certificate in use, replaced when the files change.
#[derive(Debug)]
pub struct Certificates {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
    seen: RwLock<Stamp>,
}

impl Certificates {
    /// Loads the files once; an error here stops the start.
    pub fn new(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let seen = stamp(&files);
        let key = load(&files)?;
        Ok(Arc::new(Self { files, current: RwLock::new(Arc::new(key)), seen: RwLock::new(seen) }))
    }

    /// Loads the files again if they changed since last looked at. `Ok(true)`: a new
    /// certificate is in use.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = stamp(&self.files);
        if self.seen.read().map(|s| *s == now).unwrap_or(false) {
            return Ok(false);
        }
        if let Ok(mut seen) = self.seen.write() {
            *seen = now;
        }
        let key = load(&self.files)?;
        if let Ok(mut current) = self.current.write() {
            *current = Arc::new(key);
        }
        Ok(true)
    }

    /// The rustls configuration serving these certificates (HTTP/1.1 only).
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.clone())
    }
}

/// Looks at the files every `interval` until `stop`.
pub fn spawn_reload(certificates: Arc<Certificates>, interval: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            match certificates.reload_if_changed() {
                Ok(true) => tracing::info!(cert = %certificates.files.cert.display(), "TLS certificate reloaded"),
                Ok(false) => {}
                // Logged once per version of the files; the certificate in use stays.
                Err(e) => tracing::warn!(error = %e, "TLS certificate not reloaded: keeping the one in use"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let cert = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        (cert.cert.pem(), cert.key_pair.serialize_pem())
    }

    fn write(dir: &std::path::Path, cert: &str, key: &str) -> TlsFiles {
        let files = TlsFiles { cert: dir.join("cert.pem"), key: dir.join("key.pem") };
        std::fs::write(&files.cert, cert).unwrap();
        std::fs::write(&files.key, key).unwrap();
        files
    }

    #[test]
    fn files_that_do_not_load_are_named_and_the_certificate_in_use_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_a, key_a) = pair("a.example");
        let (cert_b, key_b) = pair("b.example");
        let files = write(dir.path(), &cert_a, &key_a);
        let certs = Certificates::new(files.clone()).unwrap();
        let first = certs.current.read().unwrap().cert[0].clone();
        assert!(!certs.reload_if_changed().unwrap(), "unchanged files are not read again");

        // A renewal half written: the new certificate with the old key.
        std::fs::write(&files.cert, format!("{cert_b}\n")).unwrap();
        let e = certs.reload_if_changed().unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "tls.key {} does not belong to the certificate in tls.cert {}",
                files.key.display(),
                files.cert.display()
            )
        );
        assert_eq!(certs.current.read().unwrap().cert[0], first, "kept");
        // Then the key: the new pair is in use.
        std::fs::write(&files.key, &key_b).unwrap();
        assert!(certs.reload_if_changed().unwrap());
        assert_ne!(certs.current.read().unwrap().cert[0], first);

        std::fs::write(&files.cert, "not a certificate").unwrap();
        assert!(certs.reload_if_changed().unwrap_err().to_string().contains("no CERTIFICATE block"));
        std::fs::write(&files.key, "").unwrap();
        std::fs::write(&files.cert, &cert_a).unwrap();
        assert!(certs.reload_if_changed().unwrap_err().to_string().starts_with("tls.key"));
        let missing = TlsFiles { cert: dir.path().join("none.pem"), key: files.key.clone() };
        assert!(Certificates::new(missing).unwrap_err().to_string().starts_with("tls.cert"));
    }
}
