//! Credentials for brokers run with `--auth` (see [`crate::ClientOptions::credentials`]), and
//! the users and ACLs a superuser manages through [`crate::Admin`].

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};
use weir_proto::v1 as pb;

use crate::admin::Admin;
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

/// Who the broker takes this client for ([`Admin::whoami`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WhoAmI {
    /// The user's name; empty when the broker runs without `--auth`.
    pub name: String,
    /// Whether the user is a superuser (everyone is, without `--auth`).
    pub superuser: bool,
    /// Whether the broker runs with `--auth`.
    pub auth_enabled: bool,
}

/// A user as listed by [`Admin::list_users`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    /// Its name.
    pub name: String,
    /// How it authenticates: `"password"` or `"token"`.
    pub credential: String,
    /// Whether it may do everything.
    pub superuser: bool,
    /// When it was made (Unix ms).
    pub created_ms: i64,
}

/// A permission: `principal` may do `operation` on the resources of `resource_type` whose
/// names match `pattern`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Acl {
    /// A user name, or `*` for every authenticated user.
    pub principal: String,
    /// `topic`, `group`, `plugin` or `pipeline`.
    pub resource_type: String,
    /// A name, a prefix followed by `*` (`orders.*`), or `*` for all.
    pub pattern: String,
    /// `read`, `write` or `admin` (which implies both).
    pub operation: String,
}

impl Acl {
    /// An ACL (checked by the broker when granted).
    pub fn new(
        principal: impl Into<String>,
        operation: impl Into<String>,
        resource_type: impl Into<String>,
        pattern: impl Into<String>,
    ) -> Self {
        Self {
            principal: principal.into(),
            resource_type: resource_type.into(),
            pattern: pattern.into(),
            operation: operation.into(),
        }
    }

    fn to_pb(&self) -> pb::Acl {
        pb::Acl {
            principal: self.principal.clone(),
            resource_type: self.resource_type.clone(),
            pattern: self.pattern.clone(),
            operation: self.operation.clone(),
        }
    }
}

impl Admin {
    /// Who the broker takes this client for.
    pub async fn whoami(&self) -> Result<WhoAmI> {
        let r = self
            .client
            .security_rpc()
            .who_am_i(pb::WhoAmIRequest {})
            .await?
            .into_inner();
        Ok(WhoAmI {
            name: r.name,
            superuser: r.superuser,
            auth_enabled: r.auth_enabled,
        })
    }

    /// Adds a user (superusers only) with `password`, or, without one, with a new token that
    /// is returned (the broker keeps only its digest: this is the one time it is seen).
    pub async fn create_user(
        &self,
        name: &str,
        password: Option<&str>,
        superuser: bool,
    ) -> Result<Option<String>> {
        let req = pb::CreateUserRequest {
            name: name.to_string(),
            password: password.map(str::to_string),
            superuser,
        };
        let r = self.client.security_rpc().create_user(req).await?;
        Ok(r.into_inner().token)
    }

    /// Every user (superusers only).
    pub async fn list_users(&self) -> Result<Vec<UserInfo>> {
        let r = self
            .client
            .security_rpc()
            .list_users(pb::ListUsersRequest {})
            .await?;
        Ok(r.into_inner()
            .users
            .into_iter()
            .map(|u| UserInfo {
                name: u.name,
                credential: u.credential,
                superuser: u.superuser,
                created_ms: u.created_ms,
            })
            .collect())
    }

    /// Removes a user and its ACLs (superusers only); returns how many ACLs went.
    pub async fn delete_user(&self, name: &str) -> Result<u32> {
        let req = pb::DeleteUserRequest { name: name.into() };
        let r = self.client.security_rpc().delete_user(req).await?;
        Ok(r.into_inner().acls_removed)
    }

    /// Grants an ACL (superusers only).
    pub async fn grant_acl(&self, acl: &Acl) -> Result<()> {
        let req = pb::GrantAclRequest {
            acl: Some(acl.to_pb()),
        };
        self.client.security_rpc().grant_acl(req).await?;
        Ok(())
    }

    /// Revokes an ACL (superusers only); [`Error::AclNotFound`] if it was not granted.
    pub async fn revoke_acl(&self, acl: &Acl) -> Result<()> {
        let req = pb::RevokeAclRequest {
            acl: Some(acl.to_pb()),
        };
        self.client.security_rpc().revoke_acl(req).await?;
        Ok(())
    }

    /// Every ACL, or `principal`'s (superusers only).
    pub async fn list_acls(&self, principal: Option<&str>) -> Result<Vec<Acl>> {
        let req = pb::ListAclsRequest {
            principal: principal.unwrap_or_default().to_string(),
        };
        let r = self.client.security_rpc().list_acls(req).await?;
        Ok(r.into_inner()
            .acls
            .into_iter()
            .map(|a| Acl {
                principal: a.principal,
                resource_type: a.resource_type,
                pattern: a.pattern,
                operation: a.operation,
            })
            .collect())
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
