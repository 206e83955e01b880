//! TLS between servers. Both sides present their domain's certificate (the c2s ones, chosen by
//! name) and accept the other's whatever it is, checking its signature over the handshake; whether
//! it *verifies* for the domain the other side claims is decided after the handshake
//! ([`Trust::verifies`]), since that decides the authentication: SASL EXTERNAL (XEP-0178) when it
//! does, Server Dialback (XEP-0220) or refusal, by policy, when it does not.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};
use starling_edge::Certificates;

/// ALPN of s2s over direct TLS (XEP-0368).
const ALPN_XMPP_SERVER: &[u8] = b"xmpp-server";

#[derive(Debug, thiserror::Error)]
pub enum S2sTlsError {
    #[error("reading [s2s] ca_file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The trust anchors other servers' certificates are verified against.
pub(crate) struct Trust {
    /// `None` when there is no anchor at all: nothing verifies.
    verifier: Option<Arc<WebPkiServerVerifier>>,
}

impl Trust {
    /// The operating system's anchors and those in `ca_file`.
    pub(crate) fn new(ca_file: &str, provider: &Arc<CryptoProvider>) -> Result<Trust, S2sTlsError> {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if !ca_file.is_empty() {
            let error = |reason: String| S2sTlsError::CaFile { path: ca_file.to_owned(), reason };
            let certs = CertificateDer::pem_file_iter(ca_file).map_err(|e| error(e.to_string()))?.collect::<Result<Vec<_>, _>>().map_err(|e| error(e.to_string()))?;
            if certs.is_empty() {
                return Err(error("no certificate".into()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| error(e.to_string()))?;
            }
        }
        if roots.is_empty() {
            tracing::warn!("no trust anchors for other servers' certificates: every server is authenticated by dialback (or refused)");
            return Ok(Trust { verifier: None });
        }
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().map_err(|e| rustls::Error::General(e.to_string()))?;
        Ok(Trust { verifier: Some(verifier) })
    }

    /// Whether `chain` (end entity first) is a certificate for `domain` from a trusted anchor.
    pub(crate) fn verifies(&self, chain: &[CertificateDer<'static>], domain: &str) -> bool {
        let (Some(verifier), Some((end_entity, intermediates))) = (&self.verifier, chain.split_first()) else { return false };
        let Ok(name) = ServerName::try_from(domain.to_owned()) else { return false };
        verifier.verify_server_cert(end_entity, intermediates, &name, &[], UnixTime::now()).is_ok()
    }
}

/// What both sides of s2s TLS are configured from.
pub(crate) struct S2sTls {
    provider: Arc<CryptoProvider>,
    certificates: Arc<Certificates>,
    /// For incoming streams: STARTTLS (no ALPN) and direct TLS (`xmpp-server`).
    pub server: Arc<ServerConfig>,
    pub direct_server: Arc<ServerConfig>,
}

impl S2sTls {
    pub(crate) fn new(certificates: Arc<Certificates>) -> Result<S2sTls, S2sTlsError> {
        let provider = Arc::new(starling_edge::tls_provider());
        let accept = Arc::new(AcceptAny(provider.signature_verification_algorithms));
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(accept)
            .with_cert_resolver(certificates.clone());
        server.ignore_client_order = true;
        let mut direct_server = server.clone();
        direct_server.alpn_protocols = vec![ALPN_XMPP_SERVER.to_vec()];
        Ok(S2sTls { provider, certificates, server: Arc::new(server), direct_server: Arc::new(direct_server) })
    }

    pub(crate) fn provider(&self) -> &Arc<CryptoProvider> {
        &self.provider
    }

    /// For a stream from `local` (whose certificate is presented) to another server.
    pub(crate) fn client(&self, local: &str, direct_tls: bool) -> Result<Arc<ClientConfig>, S2sTlsError> {
        let ours = Arc::new(Ours(self.certificates.certified_key(local)));
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(self.provider.signature_verification_algorithms)))
            .with_client_cert_resolver(ours);
        if direct_tls {
            config.alpn_protocols = vec![ALPN_XMPP_SERVER.to_vec()];
        }
        Ok(Arc::new(config))
    }
}

/// Accepts the other side's certificate during the handshake, checking only that it signed the
/// handshake; [`Trust::verifies`] judges it afterwards.
#[derive(Debug)]
struct AcceptAny(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(&self, _: &CertificateDer<'_>, _: &[CertificateDer<'_>], _: &ServerName<'_>, _: &[u8], _: UnixTime) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

impl ClientCertVerifier for AcceptAny {
    /// Asked for, not required: a server without a certificate may still use dialback.
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(&self, _: &CertificateDer<'_>, _: &[CertificateDer<'_>], _: UnixTime) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// Our certificate, presented as a client certificate on outgoing streams.
#[derive(Debug)]
struct Ours(Arc<CertifiedKey>);

impl ResolvesClientCert for Ours {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
