//! `weir.v1.Security`: who am I, users and ACLs (superusers only, but WhoAmI).

use std::sync::Arc;

use tonic::{Request, Response, Status};
use weir_proto::v1 as pb;

use super::{principal, status_of};
use crate::broker::Broker;
use crate::error::BrokerError;
use crate::security::acl::ANY_PRINCIPAL;
use crate::security::{Acl, Principal};

pub struct SecurityService {
    broker: Arc<Broker>,
}

impl SecurityService {
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker }
    }

    /// The caller, if it is a superuser.
    fn superuser<T>(&self, req: &Request<T>) -> Result<Principal, Status> {
        let who = principal(req);
        self.broker
            .security()
            .require_superuser(&who)
            .map_err(status_of)?;
        Ok(who)
    }
}

fn acl_of(a: Option<pb::Acl>) -> Result<Acl, Status> {
    let a = a.ok_or_else(|| status_of(BrokerError::InvalidArgument("no ACL given".into())))?;
    Acl::new(&a.principal, &a.resource_type, &a.pattern, &a.operation)
        .map_err(|e| status_of(BrokerError::InvalidArgument(e.to_string())))
}

fn acl_pb(a: Acl) -> pb::Acl {
    pb::Acl {
        principal: a.principal,
        resource_type: a.resource_type.as_str().to_string(),
        pattern: a.pattern,
        operation: a.operation.as_str().to_string(),
    }
}

#[tonic::async_trait]
impl pb::security_server::Security for SecurityService {
    async fn who_am_i(
        &self,
        req: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let security = self.broker.security();
        let (name, superuser) = security.whoami(&principal(&req));
        let acls = if superuser || name.is_empty() {
            Vec::new()
        } else {
            let mut acls = security.list_acls(Some(&name));
            acls.extend(security.list_acls(Some(ANY_PRINCIPAL)));
            acls.into_iter().map(acl_pb).collect()
        };
        Ok(Response::new(pb::WhoAmIResponse {
            name,
            superuser,
            auth_enabled: security.enabled(),
            acls,
        }))
    }

    async fn create_user(
        &self,
        req: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        self.superuser(&req)?;
        let r = req.into_inner();
        let token = self
            .broker
            .security()
            .create_user(&r.name, r.password, r.superuser)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::CreateUserResponse { token }))
    }

    async fn list_users(
        &self,
        req: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        self.superuser(&req)?;
        let users = self
            .broker
            .security()
            .list_users()
            .into_iter()
            .map(|u| pb::UserInfo {
                name: u.name,
                credential: u.credential.to_string(),
                superuser: u.superuser,
                created_ms: u.created_ms,
            })
            .collect();
        Ok(Response::new(pb::ListUsersResponse { users }))
    }

    async fn delete_user(
        &self,
        req: Request<pb::DeleteUserRequest>,
    ) -> Result<Response<pb::DeleteUserResponse>, Status> {
        self.superuser(&req)?;
        let removed = self
            .broker
            .security()
            .delete_user(&req.into_inner().name)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::DeleteUserResponse {
            acls_removed: removed as u32,
        }))
    }

    async fn grant_acl(
        &self,
        req: Request<pb::GrantAclRequest>,
    ) -> Result<Response<pb::GrantAclResponse>, Status> {
        self.superuser(&req)?;
        let acl = acl_of(req.into_inner().acl)?;
        self.broker.security().grant(acl).await.map_err(status_of)?;
        Ok(Response::new(pb::GrantAclResponse {}))
    }

    async fn revoke_acl(
        &self,
        req: Request<pb::RevokeAclRequest>,
    ) -> Result<Response<pb::RevokeAclResponse>, Status> {
        self.superuser(&req)?;
        let acl = acl_of(req.into_inner().acl)?;
        self.broker
            .security()
            .revoke(&acl)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::RevokeAclResponse {}))
    }

    async fn list_acls(
        &self,
        req: Request<pb::ListAclsRequest>,
    ) -> Result<Response<pb::ListAclsResponse>, Status> {
        self.superuser(&req)?;
        let principal = req.into_inner().principal;
        let acls = self
            .broker
            .security()
            .list_acls((!principal.is_empty()).then_some(principal.as_str()))
            .into_iter()
            .map(acl_pb)
            .collect();
        Ok(Response::new(pb::ListAclsResponse { acls }))
    }
}
