//! Users and ACLs, managed by a superuser through [`crate::Admin`], and who the broker
//! takes this client for.

use weir_proto::v1 as pb;

use crate::admin::Admin;
use crate::error::Result;

/// Who the broker takes this client for ([`Admin::whoami`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WhoAmI {
    /// The user's name; empty when the broker runs without `--auth`.
    pub name: String,
    /// Whether the user is a superuser (everyone is, without `--auth`).
    pub superuser: bool,
    /// Whether the broker runs with `--auth`.
    pub auth_enabled: bool,
    /// What a user who is not a superuser may do: the ACLs granted to its name and to `*`
    /// (empty for superusers and without `--auth`).
    pub acls: Vec<Acl>,
}

impl WhoAmI {
    /// Whether this user may do `operation` (`read`, `write` or `admin`) on the
    /// `resource_type` named `name` (`*`: on every one, as when creating something new),
    /// by the broker's rules: superusers (everyone without `--auth`) may do everything; an
    /// ACL's `admin` implies `read` and `write`; a pattern is a name, `prefix*`, or `*`.
    pub fn may(&self, operation: &str, resource_type: &str, name: &str) -> bool {
        if self.superuser || !self.auth_enabled {
            return true;
        }
        self.acls.iter().any(|a| {
            a.resource_type == resource_type
                && (a.operation == operation || a.operation == "admin")
                && match a.pattern.strip_suffix('*') {
                    Some(prefix) => name != "*" && name.starts_with(prefix) || a.pattern == "*",
                    None => a.pattern == name,
                }
        })
    }
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

    fn of_pb(a: pb::Acl) -> Self {
        Self {
            principal: a.principal,
            resource_type: a.resource_type,
            pattern: a.pattern,
            operation: a.operation,
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
            acls: r.acls.into_iter().map(Acl::of_pb).collect(),
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
        Ok(r.into_inner().acls.into_iter().map(Acl::of_pb).collect())
    }
}
