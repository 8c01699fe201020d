//! SASL for Kafka clients when the broker runs with `--auth` (SaslHandshake v1, then
//! SaslAuthenticate): PLAIN, checked against Weir's users exactly as gRPC's `Basic`
//! credentials are (the same argon2id hashes, cache and limits). Until a connection has
//! authenticated, it may send only ApiVersions and these two; anything else closes it, as
//! Kafka's broker does. A failed authentication is answered with SASL_AUTHENTICATION_FAILED
//! and the connection closed.
//!
//! SCRAM is not offered: Weir keeps argon2id hashes of passwords, and SCRAM needs its own
//! salted keys computed from the password when it is set (docs/kafka.md).

use base64::Engine;
use bytes::Bytes;
use kafka_protocol::messages::{SaslHandshakeRequest, SaslHandshakeResponse};
use kafka_protocol::protocol::StrBytes;

use crate::error::BrokerError;
use crate::security::{Principal, Security};

/// The mechanisms offered.
pub const MECHANISMS: &[&str] = &["PLAIN"];

/// Where a connection stands in its authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslState {
    /// `--auth` is off: nothing to do.
    NotRequired,
    /// Waiting for SaslHandshake.
    Handshake,
    /// The mechanism is agreed; waiting for SaslAuthenticate.
    Authenticate,
    Done,
}

impl SaslState {
    pub fn new(required: bool) -> Self {
        if required {
            SaslState::Handshake
        } else {
            SaslState::NotRequired
        }
    }

    /// Whether requests other than ApiVersions and SASL's may be served.
    pub fn authenticated(self) -> bool {
        matches!(self, SaslState::NotRequired | SaslState::Done)
    }
}

/// Answers a SaslHandshake; returns the state the connection moves to.
pub fn handshake(
    state: SaslState,
    req: &SaslHandshakeRequest,
) -> (SaslHandshakeResponse, SaslState, &'static str) {
    let mut resp = SaslHandshakeResponse::default();
    resp.mechanisms = MECHANISMS
        .iter()
        .map(|m| StrBytes::from_static_str(m))
        .collect();
    match state {
        SaslState::NotRequired => {
            // This broker does not authenticate: no mechanism is enabled.
            resp.mechanisms.clear();
            resp.error_code = kafka_protocol::ResponseError::UnsupportedSaslMechanism.code();
            (resp, state, "UNSUPPORTED_SASL_MECHANISM")
        }
        SaslState::Handshake if MECHANISMS.contains(&req.mechanism.as_str()) => {
            (resp, SaslState::Authenticate, "NONE")
        }
        SaslState::Handshake => {
            resp.error_code = kafka_protocol::ResponseError::UnsupportedSaslMechanism.code();
            (resp, state, "UNSUPPORTED_SASL_MECHANISM")
        }
        SaslState::Authenticate | SaslState::Done => {
            resp.error_code = kafka_protocol::ResponseError::IllegalSaslState.code();
            (resp, state, "ILLEGAL_SASL_STATE")
        }
    }
}

/// A PLAIN message (RFC 4616): `authzid NUL authcid NUL password`; the authorization id
/// must be empty or the user's own (Kafka's rule).
fn plain(bytes: &[u8]) -> Result<(&str, &str), BrokerError> {
    let bad = || BrokerError::Unauthenticated("malformed SASL/PLAIN message".into());
    let mut parts = bytes.split(|&b| b == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let user = std::str::from_utf8(user).map_err(|_| bad())?;
    let password = std::str::from_utf8(password).map_err(|_| bad())?;
    if !authzid.is_empty() && authzid != user.as_bytes() {
        return Err(BrokerError::Unauthenticated(
            "SASL/PLAIN authorization id must be empty or the user's own".into(),
        ));
    }
    if user.is_empty() || user.contains(':') {
        return Err(bad());
    }
    Ok((user, password))
}

/// Checks a SaslAuthenticate's PLAIN message against Weir's users.
pub async fn authenticate(
    security: &Security,
    auth_bytes: &Bytes,
) -> Result<Principal, BrokerError> {
    let (user, password) = plain(auth_bytes)?;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    security.authenticate(Some(&format!("Basic {basic}"))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_messages_are_read_strictly() {
        assert_eq!(plain(b"\0alice\0secret").unwrap(), ("alice", "secret"));
        assert_eq!(plain(b"alice\0alice\0secret").unwrap(), ("alice", "secret"));
        assert!(
            plain(b"bob\0alice\0secret").is_err(),
            "acting as another user"
        );
        assert!(plain(b"\0alice").is_err());
        assert!(plain(b"\0alice\0secret\0more").is_err());
        assert!(plain(b"\0\0secret").is_err());
        assert!(plain(b"\0a:b\0secret").is_err());
        assert!(plain(b"\0\xff\0secret").is_err());
    }

    #[test]
    fn the_handshake_offers_plain_once() {
        let mut req = SaslHandshakeRequest::default();
        req.mechanism = StrBytes::from_static_str("PLAIN");
        let (resp, next, _) = handshake(SaslState::Handshake, &req);
        assert_eq!((resp.error_code, next), (0, SaslState::Authenticate));
        let (resp, next, _) = handshake(next, &req);
        assert_ne!(resp.error_code, 0);
        assert_eq!(next, SaslState::Authenticate);
        req.mechanism = StrBytes::from_static_str("SCRAM-SHA-256");
        let (resp, next, _) = handshake(SaslState::Handshake, &req);
        assert_eq!(resp.mechanisms.len(), 1);
        assert_ne!(resp.error_code, 0);
        assert_eq!(next, SaslState::Handshake);
        let (resp, _, _) = handshake(SaslState::NotRequired, &req);
        assert!(resp.mechanisms.is_empty());
    }
}
