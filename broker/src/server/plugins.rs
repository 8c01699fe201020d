//! `weir.v1.Plugins`: register, list, delete WebAssembly plugins.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use weir_common::batch;
use weir_common::limits::MAX_BATCH_BYTES;
use weir_proto::v1 as pb;

use super::log::chain_of;
use super::{Guarded, principal, status_of};
use crate::broker::Broker;
use crate::error::BrokerError;
use crate::plugins::{Chain, PluginInfo, PluginLimits};
use crate::security::{Operation, Resource};

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
        sha256: p.sha256.clone(),
        version: p.version,
    }
}

/// Checks one `Transform` request's batch (empty: no records).
fn transform_input(
    req: pb::TransformRequest,
    max_record_bytes: usize,
) -> Result<Vec<Bytes>, BrokerError> {
    if req.batch.is_empty() {
        return Ok(Vec::new());
    }
    if req.batch.len() > MAX_BATCH_BYTES {
        return Err(BrokerError::InvalidArgument(format!(
            "a transform batch is {} bytes; the limit is {MAX_BATCH_BYTES}",
            req.batch.len()
        )));
    }
    batch::validate(&req.batch, max_record_bytes)
        .map_err(|e| BrokerError::InvalidArgument(format!("transform batch: {e}")))?;
    Ok(vec![req.batch])
}

/// Serves one `Transform` stream: one chain, one response per request, until the caller
/// ends the stream or something fails (the error ends it).
async fn transform_stream(
    broker: Arc<Broker>,
    mut chain: Chain,
    first: pb::TransformRequest,
    mut inbound: Streaming<pb::TransformRequest>,
    out: mpsc::Sender<Result<pb::TransformResponse, Status>>,
) {
    let mut next = Some(first);
    loop {
        let req = match next.take() {
            Some(r) => r,
            None => match inbound.message().await {
                Ok(Some(r)) if !r.plugins.is_empty() => {
                    let e = BrokerError::InvalidArgument(
                        "only the first transform request names the plugins".into(),
                    );
                    let _ = out.send(Err(status_of(e))).await;
                    return;
                }
                Ok(Some(r)) => r,
                Ok(None) | Err(_) => return,
            },
        };
        let batches = match transform_input(req, broker.max_record_bytes()) {
            Ok(b) => b,
            Err(e) => {
                let _ = out.send(Err(status_of(e))).await;
                return;
            }
        };
        if batches.is_empty() {
            if out
                .send(Ok(pb::TransformResponse::default()))
                .await
                .is_err()
            {
                return;
            }
            continue;
        }
        let done = tokio::task::spawn_blocking(move || {
            let r = chain
                .apply(0, batches, 0)
                .map(|s| (s.batches, chain.states(0)));
            (chain, r)
        })
        .await;
        let resp = match done {
            Ok((c, Ok((batches, states)))) => {
                chain = c;
                pb::TransformResponse { batches, states }
            }
            Ok((_, Err(e))) => {
                let _ = out.send(Err(status_of(e.into()))).await;
                return;
            }
            Err(e) => {
                let e = BrokerError::Storage(format!("plugin task failed: {e}"));
                let _ = out.send(Err(status_of(e))).await;
                return;
            }
        };
        if out.send(Ok(resp)).await.is_err() {
            return;
        }
    }
}

impl Guarded for PluginsService {
    fn broker(&self) -> &Broker {
        &self.broker
    }
}

#[tonic::async_trait]
impl pb::plugins_server::Plugins for PluginsService {
    type TransformStream = ReceiverStream<Result<pb::TransformResponse, Status>>;

    async fn transform(
        &self,
        req: Request<Streaming<pb::TransformRequest>>,
    ) -> Result<Response<Self::TransformStream>, Status> {
        let who = principal(&req);
        let mut inbound = req.into_inner();
        let first = inbound.message().await?.ok_or_else(|| {
            Status::invalid_argument("the transform stream ended before its first request")
        })?;
        let uses = first.plugins.clone();
        if uses.is_empty() {
            return Err(status_of(BrokerError::InvalidArgument(
                "a transform names at least one plugin".into(),
            )));
        }
        let chain = chain_of(&self.broker, &who, uses, 0)
            .await
            .map_err(status_of)?;
        let (tx, rx) = mpsc::channel(2);
        tokio::spawn(transform_stream(
            Arc::clone(&self.broker),
            chain,
            first,
            inbound,
            tx,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn register_plugin(
        &self,
        req: Request<pb::RegisterPluginRequest>,
    ) -> Result<Response<pb::RegisterPluginResponse>, Status> {
        let who = principal(&req);
        let r = req.into_inner();
        self.allow(&who, Resource::plugin(&r.name), Operation::Admin)?;
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
        req: Request<pb::ListPluginsRequest>,
    ) -> Result<Response<pb::ListPluginsResponse>, Status> {
        let who = principal(&req);
        let security = self.broker.security();
        let plugins = self
            .broker
            .list_plugins()
            .iter()
            .filter(|p| security.visible(&who, Resource::plugin(&p.name)))
            .map(info_pb)
            .collect();
        Ok(Response::new(pb::ListPluginsResponse { plugins }))
    }

    async fn delete_plugin(
        &self,
        req: Request<pb::DeletePluginRequest>,
    ) -> Result<Response<pb::DeletePluginResponse>, Status> {
        let who = principal(&req);
        let name = req.into_inner().name;
        self.allow(&who, Resource::plugin(&name), Operation::Admin)?;
        self.broker.delete_plugin(name).await.map_err(status_of)?;
        Ok(Response::new(pb::DeletePluginResponse {}))
    }
}
