//! TLS server configuration: the configured certificate, or a self-signed one generated into the
//! data directory on first run (and reused after), loudly logged since clients will warn about it.
//! The pair is read again when its files change ([`Certificate::reload`]): a renewed certificate
//! (cert-manager rewriting a Secret) is served without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::crypto::hash::HashAlgorithm;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SupportedCipherSuite};

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("parsing PEM in {path}: {reason}")]
    Pem { path: String, reason: String },
    #[error("generating a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("writing the generated certificate: {0}")]
    Write(std::io::Error),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Loads `cert_file`/`key_file`, or when both are empty uses (creating if needed)
/// `data_dir/tls/self-signed.{crt,key}` for `domain`; with the [`Certificate`] to reload.
pub fn server_config(cert_file: &str, key_file: &str, data_dir: &Path, domain: &str) -> Result<(Arc<ServerConfig>, Arc<Certificate>), TlsSetupError> {
    let (cert_path, key_path) = if cert_file.is_empty() && key_file.is_empty() {
        ensure_self_signed(data_dir, domain)?
    } else {
        (Path::new(cert_file).to_path_buf(), Path::new(key_file).to_path_buf())
    };
    let provider = Arc::new(provider());
    let certificate = Arc::new(Certificate::load(cert_path, key_path, provider.clone())?);
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(certificate.clone());
    config.alpn_protocols = vec![b"xmpp-client".to_vec()];
    config.ignore_client_order = true;
    Ok((Arc::new(config), certificate))
}

fn provider() -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    // Suites hashing with SHA-256 first, chosen over the client's order: the TLS 1.3 key schedule
    // is a few dozen HMACs, and SHA-384's software rounds were ~7 % of a login's CPU where SHA-256
    // runs on the CPU's SHA extensions. AES-128-GCM is as safe a choice as AES-256-GCM here.
    provider.cipher_suites.sort_by_key(|suite| {
        let hash = match suite {
            SupportedCipherSuite::Tls13(suite) => suite.common.hash_provider,
            SupportedCipherSuite::Tls12(suite) => suite.common.hash_provider,
        };
        hash.algorithm() != HashAlgorithm::SHA256
    });
    provider
}

/// The certificate chain and key served, from their files.
pub struct Certificate {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Loaded>,
}

struct Loaded {
    pair: Arc<CertifiedKey>,
    /// When the two files were last modified, as loaded.
    modified: (Option<SystemTime>, Option<SystemTime>),
}

impl Certificate {
    fn load(cert: PathBuf, key: PathBuf, provider: Arc<CryptoProvider>) -> Result<Certificate, TlsSetupError> {
        let modified = (modified(&cert), modified(&key));
        let pair = Arc::new(read_pair(&cert, &key, &provider)?);
        Ok(Certificate { cert, key, provider, current: RwLock::new(Loaded { pair, modified }) })
    }

    /// Reads the pair again if either file changed since it was loaded; true when a new pair is
    /// now served. A pair that does not load (a file half written, a key that does not match)
    /// leaves the current one served, and is tried again at the next call.
    pub fn reload(&self) -> Result<bool, TlsSetupError> {
        let modified = (modified(&self.cert), modified(&self.key));
        if self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).modified == modified {
            return Ok(false);
        }
        let pair = Arc::new(read_pair(&self.cert, &self.key, &self.provider)?);
        *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Loaded { pair, modified };
        Ok(true)
    }

    pub fn path(&self) -> &Path {
        &self.cert
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).pair.clone())
    }
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate").field("cert", &self.cert).field("key", &self.key).finish_non_exhaustive()
    }
}

/// A file's modification time (following symlinks, as Kubernetes' Secret volumes swap them).
fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|metadata| metadata.modified()).ok()
}

fn read_pair(cert_path: &Path, key_path: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsSetupError> {
    let certs = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| pem_error(cert_path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert_path, e))?;
    if certs.is_empty() {
        return Err(pem_error(cert_path, "no certificate"));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| pem_error(key_path, e))?;
    Ok(CertifiedKey::from_der(certs, key, provider)?)
}

fn pem_error(path: &Path, error: impl std::fmt::Display) -> TlsSetupError {
    TlsSetupError::Pem { path: path.display().to_string(), reason: error.to_string() }
}

fn ensure_self_signed(data_dir: &Path, domain: &str) -> Result<(std::path::PathBuf, std::path::PathBuf), TlsSetupError> {
    let dir = data_dir.join("tls");
    let cert_path = dir.join("self-signed.crt");
    let key_path = dir.join("self-signed.key");
    if cert_path.exists() && key_path.exists() {
        tracing::warn!(cert = %cert_path.display(), "using the self-signed certificate generated earlier; configure [tls] for production");
        return Ok((cert_path, key_path));
    }
    std::fs::create_dir_all(&dir).map_err(TlsSetupError::Write)?;
    let certified = rcgen::generate_simple_self_signed(vec![domain.to_owned(), format!("*.{domain}")])?;
    std::fs::write(&cert_path, certified.cert.pem()).map_err(TlsSetupError::Write)?;
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).map_err(TlsSetupError::Write)?;
    tracing::warn!(cert = %cert_path.display(), %domain, "generated a SELF-SIGNED certificate; clients will not trust it — configure [tls] cert_file/key_file for production");
    Ok((cert_path, key_path))
}
