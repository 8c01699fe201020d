//! Credentials for brokers run with `--auth` (see [`crate::ClientOptions::credentials`]), put
//! on every call by an interceptor. The users and ACLs a superuser manages are `users.rs`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::error::{Error, Result};

/// Who a client is to a broker run with `--auth`. Sent with every call (use TLS, or the
/// secret crosses the network in the clear).
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A user with a password (`weir user add NAME --password-stdin`).
    Password {
        /// The user's name.
        user: String,
        /// Its password.
        password: String,
    },
    /// A user's token (`weir user add NAME` prints it).
    Token(String),
}

impl std::fmt::Debug for Credentials {
    /// Secrets stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Password { user, .. } => f
                .debug_struct("Password")
                .field("user", user)
                .finish_non_exhaustive(),
            Credentials::Token(_) => f.write_str("Token(..)"),
        }
    }
}

impl Credentials {
    /// A user and its password.
    pub fn password(user: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials::Password {
            user: user.into(),
            password: password.into(),
        }
    }

    /// A token.
    pub fn token(token: impl Into<String>) -> Self {
        Credentials::Token(token.into())
    }

    /// The `authorization` metadata value.
    fn header(&self) -> Result<MetadataValue<Ascii>> {
        let text = match self {
            Credentials::Password { user, password } => {
                if user.contains(':') {
                    return Err(Error::InvalidArgument {
                        message: "a user name cannot contain ':'".into(),
                    });
                }
                format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
            }
            Credentials::Token(t) => format!("Bearer {}", t.trim()),
        };
        let mut v = MetadataValue::try_from(text).map_err(|_| Error::InvalidArgument {
            message: "a token may not contain control characters".into(),
        })?;
        v.set_sensitive(true);
        Ok(v)
    }
}

/// Puts the credentials (if any) on every call.
#[derive(Clone, Debug, Default)]
pub(crate) struct Auth(Option<MetadataValue<Ascii>>);

impl Auth {
    pub(crate) fn new(credentials: Option<&Credentials>) -> Result<Self> {
        Ok(Self(credentials.map(Credentials::header).transpose()?))
    }
}

impl Interceptor for Auth {
    fn call(&mut self, mut req: Request<()>) -> std::result::Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_become_authorization_metadata_and_stay_out_of_debug() {
        let p = Credentials::password("alice", "s3cret:x");
        let h = p.header().unwrap();
        assert_eq!(h.to_str().unwrap(), "Basic YWxpY2U6czNjcmV0Ong=");
        assert!(h.is_sensitive());
        assert!(!format!("{p:?}").contains("s3cret"));
        let t = Credentials::token("weir_abc");
        assert_eq!(t.header().unwrap().to_str().unwrap(), "Bearer weir_abc");
        assert_eq!(format!("{t:?}"), "Token(..)");
        assert!(Credentials::password("a:b", "pw").header().is_err());
        assert!(Credentials::token("weir_\n").header().is_ok());
        assert!(Credentials::token("we\nir").header().is_err());
    }
}
