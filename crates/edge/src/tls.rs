//! TLS server configuration: each served domain's configured certificate, chosen by the name the
//! client asks for (SNI), or a self-signed one generated into the data directory on first run (and
//! reused after), loudly logged since clients will warn about it.
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

/// Where a served domain's certificate comes from: its files, or both empty for a self-signed
/// one generated into the data directory.
#[derive(Debug, Clone, Copy)]
pub struct CertificateSource<'a> {
    pub domain: &'a str,
    pub cert_file: &'a str,
    pub key_file: &'a str,
}

/// The TLS configuration serving each domain's certificate to clients that name it (SNI), the
/// first domain's to those that name none or another; with the [`Certificates`] to reload.
pub fn server_config(sources: &[CertificateSource<'_>], data_dir: &Path) -> Result<(Arc<ServerConfig>, Arc<Certificates>), TlsSetupError> {
    let provider = Arc::new(provider());
    let mut by_domain = Vec::with_capacity(sources.len());
    for (index, source) in sources.iter().enumerate() {
        let (cert_path, key_path) = if source.cert_file.is_empty() && source.key_file.is_empty() {
            // The primary domain keeps the generated pair's original name.
            ensure_self_signed(data_dir, source.domain, index == 0)?
        } else {
            (Path::new(source.cert_file).to_path_buf(), Path::new(source.key_file).to_path_buf())
        };
        by_domain.push((source.domain.to_ascii_lowercase(), Certificate::load(cert_path, key_path, provider.clone())?));
    }
    let certificates = Arc::new(Certificates { by_domain });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(certificates.clone());
    config.alpn_protocols = vec![b"xmpp-client".to_vec()];
    config.ignore_client_order = true;
    Ok((Arc::new(config), certificates))
}

/// Every served domain's certificate, the first the default.
#[derive(Debug)]
pub struct Certificates {
    by_domain: Vec<(String, Certificate)>,
}

impl Certificates {
    /// The certificate for the name a client asked for: its domain's, or that of the domain it
    /// is a subdomain of (`upload.b.example` → `b.example`), or the default.
    fn for_name(&self, name: Option<&str>) -> &Certificate {
        let chosen = name.and_then(|name| {
            self.by_domain.iter().find(|(domain, _)| name.eq_ignore_ascii_case(domain) || name.len() > domain.len() && name.to_ascii_lowercase().ends_with(&format!(".{domain}")))
        });
        &chosen.unwrap_or(&self.by_domain[0]).1
    }

    /// The certificate and key served for `name` now: what federation presents as this domain's
    /// client certificate on its outgoing streams.
    pub fn certified_key(&self, name: &str) -> Arc<CertifiedKey> {
        self.for_name(Some(name)).current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).pair.clone()
    }

    /// Reads every pair whose files changed again; the certificates now served anew.
    pub fn reload(&self) -> Vec<Result<&Path, (&Path, TlsSetupError)>> {
        self.by_domain
            .iter()
            .filter_map(|(_, certificate)| match certificate.reload() {
                Ok(true) => Some(Ok(certificate.path())),
                Ok(false) => None,
                Err(error) => Some(Err((certificate.path(), error))),
            })
            .collect()
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.for_name(hello.server_name()).current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).pair.clone())
    }
}

/// The cryptography of every TLS session the server makes (c2s, and federation's both ways).
pub fn provider() -> CryptoProvider {
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

fn ensure_self_signed(data_dir: &Path, domain: &str, primary: bool) -> Result<(std::path::PathBuf, std::path::PathBuf), TlsSetupError> {
    let dir = data_dir.join("tls");
    let name = if primary { "self-signed".to_owned() } else { format!("self-signed-{domain}") };
    let (cert_path, key_path) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
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
