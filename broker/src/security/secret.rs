//! Secrets (pure, no I/O but the OS random source): passwords hashed with argon2id (PHC
//! strings), tokens stored as SHA-256 digests (they are 256 random bits: a slow hash adds
//! nothing), and the `authorization` metadata a client presents.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use weir_common::limits::{MAX_AUTHORIZATION_BYTES, MAX_PASSWORD_BYTES};

/// What every token starts with, so a leaked one is easy to recognise (and to scan for).
pub const TOKEN_PREFIX: &str = "weir_";
/// Random bytes in a token.
const TOKEN_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the OS random source failed: {0}")]
    Random(String),
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// Credentials as presented in the `authorization` metadata.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented<'a> {
    /// `Basic base64(NAME:PASSWORD)`.
    Password { user: String, password: String },
    /// `Bearer TOKEN`.
    Token(&'a str),
}

fn random<const N: usize>() -> Result<[u8; N], SecretError> {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes).map_err(|e| SecretError::Random(e.to_string()))?;
    Ok(bytes)
}

/// The argon2id hash of `password` with a fresh random salt, as a PHC string (parameters
/// included, so they can be raised later without breaking stored hashes). Slow on purpose
/// (~19 MiB and tens of ms): run it off the async threads.
pub fn hash_password(password: &str) -> Result<String, SecretError> {
    let salt =
        SaltString::encode_b64(&random::<16>()?).map_err(|e| SecretError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| SecretError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `phc`. Slow, like [`hash_password`].
pub fn verify_password(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A new token: the prefix and 256 random bits, URL-safe base64.
pub fn new_token() -> Result<String, SecretError> {
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(random::<TOKEN_BYTES>()?)
    ))
}

/// What is stored of a token: its SHA-256, hex.
pub fn token_digest(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// A keyed digest of presented credentials (the cache of verified ones is keyed by it, so it
/// holds no secret in the clear).
pub fn credential_digest(key: &[u8; 32], authorization: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(key);
    h.update(authorization.as_bytes());
    h.finalize().into()
}

/// A random key for [`credential_digest`].
pub fn random_key() -> Result<[u8; 32], SecretError> {
    random::<32>()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Reads an `authorization` value: `Basic base64(NAME:PASSWORD)` or `Bearer TOKEN` (scheme
/// names are case-insensitive, as in HTTP). `None` for anything else.
pub fn parse_authorization(value: &str) -> Option<Presented<'_>> {
    if value.len() > MAX_AUTHORIZATION_BYTES {
        return None;
    }
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return (!rest.is_empty()).then_some(Presented::Token(rest));
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(rest).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    (!user.is_empty() && password.len() <= MAX_PASSWORD_BYTES).then(|| Presented::Password {
        user: user.to_string(),
        password: password.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `authorization` value for a user and password, as clients send it.
    fn basic_authorization(user: &str, password: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
    }

    #[test]
    fn passwords_verify_only_against_their_own_hash() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password(&h, "correct horse"));
        assert!(!verify_password(&h, "correct hors"));
        assert!(!verify_password("not a phc string", "correct horse"));
        // A fresh salt each time: the same password never hashes the same.
        assert_ne!(h, hash_password("correct horse").unwrap());
    }

    #[test]
    fn tokens_are_random_prefixed_and_stored_as_digests() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert!(
            a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 43,
            "{a}"
        );
        assert_ne!(a, b);
        // SHA-256 of the whole token, hex (the vector from `printf weir_abc | sha256sum`).
        assert_eq!(
            token_digest("weir_abc"),
            "299b31987dfddb9af3fb2a947a6f74f01e899ccbea7b7a14fcc7554473765150"
        );
        assert_ne!(token_digest(&a), token_digest(&b));
        assert_eq!(token_digest(&a).len(), 64);
        assert!(!token_digest(&a).contains(&a[TOKEN_PREFIX.len()..]));
    }

    #[test]
    fn authorization_values_are_parsed_strictly() {
        assert_eq!(
            parse_authorization(&basic_authorization("alice", "pa:ss word")),
            Some(Presented::Password {
                user: "alice".into(),
                password: "pa:ss word".into()
            })
        );
        assert_eq!(
            parse_authorization("bearer weir_abc"),
            Some(Presented::Token("weir_abc"))
        );
        for bad in [
            "",
            "Bearer",
            "Bearer ",
            "Basic !!!",
            "Basic YWxpY2U=", // "alice": no colon
            "Basic OnB3",     // ":pw": no user
            "Digest abc",
            "weir_abc",
        ] {
            assert_eq!(parse_authorization(bad), None, "{bad}");
        }
        let long = format!("Bearer {}", "x".repeat(MAX_AUTHORIZATION_BYTES));
        assert_eq!(parse_authorization(&long), None);
    }

    #[test]
    fn credential_digests_depend_on_the_key() {
        let k1 = [1u8; 32];
        let k2 = [2u8; 32];
        // SHA-256 of the key, then the value (`(head -c32 ones; printf x) | sha256sum`).
        assert_eq!(
            hex(&credential_digest(&k1, "x")),
            "6798ee39be051d0ae8c9afa7538a7248bc3430b9b59e491f49ad7eac92037593"
        );
        assert_ne!(credential_digest(&k1, "x"), credential_digest(&k2, "x"));
        assert_ne!(credential_digest(&k1, "x"), credential_digest(&k1, "y"));
    }
}
