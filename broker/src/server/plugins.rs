//! `weir.v1.Plugins`: register, list, delete WebAssembly plugins.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use weir_proto::v1 as pb;

use super::status_of;
use crate::broker::Broker;
use crate::error::BrokerError;
use crate::plugins::{PluginInfo, PluginLimits};

pub struct PluginsService {
    broker: Arc<Broker>,
}

impl PluginsService {
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker }
    }
}

fn info_pb(p: &PluginInfo) -> pb::PluginInfo {
    pb::PluginInfo {
        name: p.name.clone(),
        kind: p.kind.as_str().to_string(),
        size_bytes: p.size_bytes,
        created_ms: p.created_ms,
        memory_limit_bytes: p.limits.memory_bytes as u64,
        call_timeout_ms: p.limits.call_timeout_ms,
        max_output_bytes: p.limits.output_bytes as u64,
    }
}

#[tonic::async_trait]
impl pb::plugins_server::Plugins for PluginsService {
    async fn register_plugin(
        &self,
        req: Request<pb::RegisterPluginRequest>,
    ) -> Result<Response<pb::RegisterPluginResponse>, Status> {
        let r = req.into_inner();
        let limits =
            PluginLimits::from_request(r.memory_limit_bytes, r.call_timeout_ms, r.max_output_bytes)
                .map_err(|m| status_of(BrokerError::InvalidArgument(m)))?;
        let info = self
            .broker
            .register_plugin(r.name, r.wasm, r.replace, limits)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::RegisterPluginResponse {
            plugin: Some(info_pb(&info)),
        }))
    }

    async fn list_plugins(
        &self,
        _req: Request<pb::ListPluginsRequest>,
    ) -> Result<Response<pb::ListPluginsResponse>, Status> {
        let plugins = self.broker.list_plugins().iter().map(info_pb).collect();
        Ok(Response::new(pb::ListPluginsResponse { plugins }))
    }

    async fn delete_plugin(
        &self,
        req: Request<pb::DeletePluginRequest>,
    ) -> Result<Response<pb::DeletePluginResponse>, Status> {
        self.broker
            .delete_plugin(req.into_inner().name)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::DeletePluginResponse {}))
    }
}
