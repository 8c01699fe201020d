//! TLS on the Kafka listener when the broker has `--tls-cert`: the broker's own certificate
//! and key, and with `--tls-client-ca` a client certificate signed by that CA is required,
//! as on the gRPC port (Kafka's `SSL`, or `SASL_SSL` with `--auth`). rustls on ring, as
//! tonic's.

use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsPem;

/// Longest a client may take over its TLS handshake; then the connection is dropped.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum KafkaTlsError {
    #[error("bad --tls-cert: {0}")]
    Cert(String),
    #[error("bad --tls-key: {0}")]
    Key(String),
    #[error("bad --tls-client-ca: {0}")]
    ClientCa(String),
    #[error("cannot use the certificate and key: {0}")]
    Config(String),
}

/// The acceptor for `pem`.
pub fn acceptor(pem: &TlsPem) -> Result<TlsAcceptor, KafkaTlsError> {
    let certs = CertificateDer::pem_slice_iter(&pem.cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| KafkaTlsError::Cert(e.to_string()))?;
    if certs.is_empty() {
        return Err(KafkaTlsError::Cert("no certificate in the file".into()));
    }
    let key =
        PrivateKeyDer::from_pem_slice(&pem.key).map_err(|e| KafkaTlsError::Key(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| KafkaTlsError::Config(e.to_string()))?;
    let builder = match &pem.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca) {
                let cert = cert.map_err(|e| KafkaTlsError::ClientCa(e.to_string()))?;
                roots
                    .add(cert)
                    .map_err(|e| KafkaTlsError::ClientCa(e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| KafkaTlsError::ClientCa(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| KafkaTlsError::Config(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
