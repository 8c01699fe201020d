//! Access-control lists (pure): what a grant covers and whether a principal may act on a
//! resource. Grants only allow (there are no deny rules); `admin` implies `read` and `write`.

use std::fmt;

use serde::{Deserialize, Serialize};
use weir_common::UserName;

/// The kinds of things permissions are granted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceType {
    Topic,
    Group,
    Plugin,
    Pipeline,
}

/// What a permission allows on a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Read,
    Write,
    /// Create, delete and reconfigure; implies `Read` and `Write`.
    Admin,
}

/// The principal that stands for every authenticated user in an ACL.
pub const ANY_PRINCIPAL: &str = "*";

/// One grant: `principal` may do `operation` on every `resource_type` matching `pattern`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Acl {
    pub principal: String,
    pub resource_type: ResourceType,
    pub pattern: String,
    pub operation: Operation,
}

/// A resource a call acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource<'a> {
    pub kind: ResourceType,
    pub name: &'a str,
}

impl<'a> Resource<'a> {
    pub fn topic(name: &'a str) -> Self {
        Self {
            kind: ResourceType::Topic,
            name,
        }
    }
    pub fn group(name: &'a str) -> Self {
        Self {
            kind: ResourceType::Group,
            name,
        }
    }
    pub fn plugin(name: &'a str) -> Self {
        Self {
            kind: ResourceType::Plugin,
            name,
        }
    }
    pub fn pipeline(name: &'a str) -> Self {
        Self {
            kind: ResourceType::Pipeline,
            name,
        }
    }
}

impl ResourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Topic => "topic",
            ResourceType::Group => "group",
            ResourceType::Plugin => "plugin",
            ResourceType::Pipeline => "pipeline",
        }
    }

    pub fn parse(s: &str) -> Result<Self, AclError> {
        match s {
            "topic" => Ok(ResourceType::Topic),
            "group" => Ok(ResourceType::Group),
            "plugin" => Ok(ResourceType::Plugin),
            "pipeline" => Ok(ResourceType::Pipeline),
            _ => Err(AclError(format!(
                "unknown resource type {s:?}: topic, group, plugin or pipeline"
            ))),
        }
    }
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Write => "write",
            Operation::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Self, AclError> {
        match s {
            "read" => Ok(Operation::Read),
            "write" => Ok(Operation::Write),
            "admin" => Ok(Operation::Admin),
            _ => Err(AclError(format!(
                "unknown operation {s:?}: read, write or admin"
            ))),
        }
    }

    /// Whether holding `self` allows `wanted`.
    fn covers(self, wanted: Operation) -> bool {
        self == Operation::Admin || self == wanted
    }
}

impl fmt::Display for Resource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.kind.as_str(), self.name)
    }
}

/// A malformed ACL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AclError(String);

impl Acl {
    /// An ACL from its parts, checked: the principal is a user name or `*`; the pattern is a
    /// valid name, a valid name prefix followed by `*`, or `*`.
    pub fn new(
        principal: &str,
        resource_type: &str,
        pattern: &str,
        operation: &str,
    ) -> Result<Self, AclError> {
        if principal != ANY_PRINCIPAL {
            UserName::new(principal).map_err(|e| AclError(format!("principal: {e}")))?;
        }
        let resource_type = ResourceType::parse(resource_type)?;
        let operation = Operation::parse(operation)?;
        let prefix = pattern.strip_suffix('*').unwrap_or(pattern);
        let valid_prefix = prefix.is_empty()
            || prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if pattern.is_empty()
            || !valid_prefix
            || prefix.len() > weir_common::limits::MAX_NAME_LEN
            || (prefix == pattern && (prefix == "." || prefix == ".."))
        {
            return Err(AclError(format!(
                "pattern {pattern:?} is not a {} name, a name prefix followed by `*`, or `*`",
                resource_type.as_str()
            )));
        }
        Ok(Self {
            principal: principal.to_string(),
            resource_type,
            pattern: pattern.to_string(),
            operation,
        })
    }

    /// Whether this ACL's pattern matches `name`.
    fn matches(&self, name: &str) -> bool {
        match self.pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => self.pattern == name,
        }
    }

    /// Whether this ACL gives `principal` any permission on `resource` (what listing shows).
    pub fn touches(&self, principal: &str, resource: Resource<'_>) -> bool {
        (self.principal == principal || self.principal == ANY_PRINCIPAL)
            && self.resource_type == resource.kind
            && self.matches(resource.name)
    }

    /// Whether this ACL lets `principal` do `operation` on `resource`.
    pub fn allows(&self, principal: &str, resource: Resource<'_>, operation: Operation) -> bool {
        self.touches(principal, resource) && self.operation.covers(operation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(p: &str, t: &str, pat: &str, op: &str) -> Acl {
        Acl::new(p, t, pat, op).unwrap()
    }

    #[test]
    fn a_grant_covers_its_operation_and_admin_covers_all() {
        let read = acl("alice", "topic", "orders", "read");
        let t = Resource::topic("orders");
        assert!(read.allows("alice", t, Operation::Read));
        assert!(!read.allows("alice", t, Operation::Write));
        assert!(!read.allows("alice", t, Operation::Admin));
        let write = acl("alice", "topic", "orders", "write");
        assert!(!write.allows("alice", t, Operation::Read));
        assert!(write.allows("alice", t, Operation::Write));
        let admin = acl("alice", "topic", "orders", "admin");
        for op in [Operation::Read, Operation::Write, Operation::Admin] {
            assert!(admin.allows("alice", t, op));
        }
    }

    #[test]
    fn grants_apply_to_their_principal_type_and_names_only() {
        let a = acl("alice", "topic", "orders", "read");
        assert!(!a.allows("bob", Resource::topic("orders"), Operation::Read));
        assert!(!a.allows("alice", Resource::group("orders"), Operation::Read));
        assert!(!a.allows("alice", Resource::topic("orders2"), Operation::Read));
        assert!(!a.allows("alice", Resource::topic("order"), Operation::Read));
        assert!(!a.touches("bob", Resource::topic("orders")));
        assert!(a.touches("alice", Resource::topic("orders")));
    }

    #[test]
    fn prefixes_wildcards_and_any_principal() {
        let p = acl("alice", "topic", "orders.*", "write");
        assert!(p.allows("alice", Resource::topic("orders.eu"), Operation::Write));
        assert!(p.allows("alice", Resource::topic("orders."), Operation::Write));
        assert!(!p.allows("alice", Resource::topic("orders"), Operation::Write));
        let all = acl("alice", "group", "*", "read");
        assert!(all.allows("alice", Resource::group("anything"), Operation::Read));
        let anyone = acl("*", "plugin", "redact", "read");
        assert!(anyone.allows("bob", Resource::plugin("redact"), Operation::Read));
        assert!(anyone.allows("carol", Resource::plugin("redact"), Operation::Read));
    }

    #[test]
    fn malformed_acls_are_refused() {
        for (p, t, pat, op) in [
            ("", "topic", "x", "read"),
            ("a b", "topic", "x", "read"),
            ("alice", "cluster", "x", "read"),
            ("alice", "topic", "x", "delete"),
            ("alice", "topic", "", "read"),
            ("alice", "topic", "a*b", "read"),
            ("alice", "topic", "**", "read"),
            ("alice", "topic", "a/b", "read"),
            ("alice", "topic", "..", "read"),
        ] {
            assert!(Acl::new(p, t, pat, op).is_err(), "{p} {t} {pat} {op}");
        }
        assert!(Acl::new("*", "pipeline", "etl-*", "admin").is_ok());
    }
}
