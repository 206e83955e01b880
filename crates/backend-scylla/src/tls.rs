//! TLS to the CQL nodes (managed ScyllaDB/Cassandra): rustls, trusting the CA certificates of one
//! PEM file. The driver names each node by its IP address, so the nodes' certificates must carry
//! their addresses (as ScyllaDB Cloud's and the test CA's do).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use starling_cluster::store::StoreError;

pub(crate) fn client_config(ca_file: &Path) -> Result<Arc<ClientConfig>, StoreError> {
    let unusable = |why: String| StoreError::Corrupt(format!("CQL TLS CA file {}: {why}", ca_file.display()));
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca_file).map_err(|error| unusable(error.to_string()))? {
        roots.add(certificate.map_err(|error| unusable(error.to_string()))?).map_err(|error| unusable(error.to_string()))?;
    }
    if roots.is_empty() {
        return Err(unusable("no certificate in it".into()));
    }
    // Named, not the process default: the tree has two providers (object_store brings aws-lc-rs).
    let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|error| unusable(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
