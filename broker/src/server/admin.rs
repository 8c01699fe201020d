//! `weir.v1.Admin`: operating this broker's host (superusers only): backups.

use std::path::PathBuf;
use std::sync::Arc;

use tonic::{Request, Response, Status};
use weir_proto::v1 as pb;

use super::{principal, status_of};
use crate::broker::Broker;

pub struct AdminService {
    broker: Arc<Broker>,
}

impl AdminService {
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker }
    }
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn backup(
        &self,
        req: Request<pb::BackupRequest>,
    ) -> Result<Response<pb::BackupResponse>, Status> {
        self.broker
            .security()
            .require_superuser(&principal(&req))
            .map_err(status_of)?;
        let path = PathBuf::from(req.into_inner().path);
        let done = self.broker.backup(path).await.map_err(status_of)?;
        Ok(Response::new(pb::BackupResponse {
            path: done.path.display().to_string(),
            files: done.files,
            bytes: done.bytes,
            millis: done.millis,
            node_id: self.broker.node_id().unwrap_or(0),
        }))
    }
}
