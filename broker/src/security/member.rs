//! Cluster members recognised by their TLS certificates: with `--auth` in a cluster, a call
//! whose connection presented a certificate chain that verifies against `--tls-peer-ca` comes
//! from another member ([`super::Principal::Member`]), with no user credentials.
//!
//! The TLS handshake already checked the chain against every CA the server trusts for client
//! certificates (`--tls-client-ca` and `--tls-peer-ca`); this checks it against the members'
//! CA alone, so a client certificate from `--tls-client-ca` never passes for a member.
//! Answers are remembered per leaf certificate for [`RECHECK_AFTER`] (every raft message and
//! replica fetch asks).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use sha2::{Digest, Sha256};

/// How long a verified (or refused) certificate is taken at its word (so an expired one stops
/// passing within this long).
pub const RECHECK_AFTER: Duration = Duration::from_secs(60);
/// Certificates remembered; past it the memory starts over.
const MAX_REMEMBERED: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum MemberCaError {
    #[error("no certificate in the members' CA file")]
    Empty,
    #[error("{0}")]
    Invalid(String),
}

/// Tells the members' certificates from the others.
pub struct Members {
    verifier: Arc<dyn ClientCertVerifier>,
    /// SHA-256 of a leaf certificate → whether it verified, and when.
    seen: Mutex<HashMap<[u8; 32], (bool, Instant)>>,
}

impl std::fmt::Debug for Members {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Members").finish_non_exhaustive()
    }
}

impl Members {
    /// Members are those whose certificates `peer_ca` (PEM, one or more CA certificates)
    /// signed.
    pub fn new(peer_ca: &[u8]) -> Result<Self, MemberCaError> {
        let certs = CertificateDer::pem_slice_iter(peer_ca)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| MemberCaError::Invalid(e.to_string()))?;
        let mut roots = RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(MemberCaError::Empty);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| MemberCaError::Invalid(e.to_string()))?;
        Ok(Self {
            verifier,
            seen: Mutex::new(HashMap::new()),
        })
    }

    /// Whether `chain` (leaf first, as the client presented it) is a member's.
    pub fn recognises(&self, chain: &[CertificateDer<'_>]) -> bool {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(leaf.as_ref()).into();
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((member, at)) = seen.get(&digest)
            && now.duration_since(*at) < RECHECK_AFTER
        {
            return *member;
        }
        let member = self
            .verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .is_ok();
        if seen.len() >= MAX_REMEMBERED {
            seen.clear();
        }
        seen.insert(digest, (member, now));
        member
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
        KeyPair,
    };

    use super::*;

    fn ca() -> CertifiedIssuer<'static, KeyPair> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    }

    fn leaf(issuer: &CertifiedIssuer<'static, KeyPair>) -> CertificateDer<'static> {
        let mut params = CertificateParams::new(vec!["127.0.0.1".into()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        params.signed_by(&key, issuer).unwrap().der().clone()
    }

    #[test]
    fn only_certificates_from_the_members_ca_are_members() {
        let (members_ca, clients_ca) = (ca(), ca());
        let members = Members::new(members_ca.pem().as_bytes()).unwrap();
        let member = leaf(&members_ca);
        assert!(members.recognises(std::slice::from_ref(&member)));
        // Asked again: remembered, same answer.
        assert!(members.recognises(std::slice::from_ref(&member)));
        assert!(!members.recognises(&[leaf(&clients_ca)]));
        assert!(!members.recognises(&[]));
        assert!(!members.recognises(&[CertificateDer::from(vec![1, 2, 3])]));
        assert!(matches!(
            Members::new(b"nothing"),
            Err(MemberCaError::Empty)
        ));
    }
}
