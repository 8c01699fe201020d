//! `weir.v1.Cluster` (status for clients) and `weir.v1.Raft` (the metadata quorum's messages
//! between brokers).

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};
use weir_proto::v1 as pb;
use weir_proto::v1::cluster_client::ClusterClient;

use crate::broker::Broker;
use crate::cluster::Cluster;
use crate::cluster::network::{ForwardError, peer_endpoint, reply, request};
use crate::cluster::peers::NodeId;
use crate::security::Resource;

/// How long `ClusterStatus` waits for each member's answer.
const MEMBER_STATUS_TIMEOUT: Duration = Duration::from_millis(1000);

pub struct ClusterService {
    broker: Arc<Broker>,
    cluster: Option<Arc<Cluster>>,
    /// This broker's address (what a standalone broker reports).
    addr: String,
}

impl ClusterService {
    pub fn new(broker: Arc<Broker>, cluster: Option<Arc<Cluster>>, addr: String) -> Self {
        Self {
            broker,
            cluster,
            addr,
        }
    }

    /// Metadata of a standalone broker: itself (node 0) leading every local partition.
    fn standalone_metadata(&self, wanted: &[String]) -> pb::MetadataResponse {
        let topics = self
            .broker
            .list_topics_and_views()
            .iter()
            .filter(|t| wanted.is_empty() || wanted.contains(&t.meta.name))
            .map(|t| pb::TopicPlacement {
                name: t.meta.name.clone(),
                partitions: (0..t.meta.config.partitions)
                    .map(|p| pb::PartitionPlacement {
                        partition: p,
                        leader: Some(0),
                        leader_epoch: 0,
                        replicas: vec![0],
                        isr: vec![0],
                    })
                    .collect(),
            })
            .collect();
        pb::MetadataResponse {
            brokers: vec![pb::BrokerAddress {
                node_id: 0,
                addr: self.addr.clone(),
            }],
            topics,
            controller: 0,
        }
    }

    /// What a broker started without `--cluster` reports about itself.
    fn standalone(&self) -> pb::NodeStatus {
        pb::NodeStatus {
            addr: self.addr.clone(),
            role: "standalone".into(),
            version: self.broker.build().to_string(),
            ..Default::default()
        }
    }
}

/// This member's own view.
fn own_status(broker: &Broker, c: &Cluster) -> pb::NodeStatus {
    let v = c.view();
    pb::NodeStatus {
        version: broker.build().to_string(),
        node_id: v.node_id,
        addr: c.peers().get(&c.node_id()).cloned().unwrap_or_default(),
        role: v.role.into(),
        controller: v.controller.unwrap_or(0),
        term: v.term,
        applied_index: v.applied_index,
        cluster_id: c.cluster_id().unwrap_or_default(),
        joined: c.metadata().borrow().joined.iter().copied().collect(),
    }
}

/// Asks one member for its own view.
async fn member_status(id: NodeId, addr: String) -> pb::NodeStatus {
    let unreachable = pb::NodeStatus {
        node_id: id,
        addr: addr.clone(),
        role: "unreachable".into(),
        ..Default::default()
    };
    let Ok(endpoint) = peer_endpoint(&addr, MEMBER_STATUS_TIMEOUT) else {
        return unreachable;
    };
    let ask = async {
        let channel = endpoint.connect().await.ok()?;
        let r = ClusterClient::new(channel)
            .get_node_status(pb::NodeStatusRequest {})
            .await
            .ok()?;
        Some(r.into_inner())
    };
    match tokio::time::timeout(MEMBER_STATUS_TIMEOUT, ask).await {
        Ok(Some(mut s)) => {
            s.addr = addr;
            s
        }
        _ => unreachable,
    }
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterService {
    async fn cluster_status(
        &self,
        _req: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let Some(c) = &self.cluster else {
            let nodes = vec![self.standalone()];
            return Ok(Response::new(pb::ClusterStatusResponse { nodes }));
        };
        let asks = c.peers().iter().map(|(id, addr)| {
            let (id, addr) = (*id, addr.clone());
            let local = (id == c.node_id()).then(|| own_status(&self.broker, c));
            async move {
                match local {
                    Some(s) => s,
                    None => member_status(id, addr).await,
                }
            }
        });
        let nodes = futures::future::join_all(asks).await;
        Ok(Response::new(pb::ClusterStatusResponse { nodes }))
    }

    async fn get_node_status(
        &self,
        _req: Request<pb::NodeStatusRequest>,
    ) -> Result<Response<pb::NodeStatus>, Status> {
        Ok(Response::new(match &self.cluster {
            Some(c) => own_status(&self.broker, c),
            None => self.standalone(),
        }))
    }

    async fn get_metadata(
        &self,
        req: Request<pb::MetadataRequest>,
    ) -> Result<Response<pb::MetadataResponse>, Status> {
        let who = super::principal(&req);
        let security = self.broker.security();
        let wanted = req.into_inner().topics;
        let Some(c) = &self.cluster else {
            let mut m = self.standalone_metadata(&wanted);
            m.topics
                .retain(|t| security.visible(&who, Resource::topic(&t.name)));
            return Ok(Response::new(m));
        };
        let m = c.metadata();
        let m = m.borrow();
        let brokers = m
            .brokers
            .iter()
            .map(|(id, b)| pb::BrokerAddress {
                node_id: *id,
                addr: b.addr.clone(),
            })
            .collect();
        // A view is placed as its source is: its partitions are read at the source's leaders.
        let views = m
            .views
            .values()
            .filter_map(|v| Some((&v.name, m.topics.get(&v.source)?)));
        let topics = m
            .topics
            .iter()
            .chain(views)
            .filter(|(name, _)| wanted.is_empty() || wanted.contains(name))
            .filter(|(name, _)| security.visible(&who, Resource::topic(name)))
            .map(|(name, t)| pb::TopicPlacement {
                name: name.clone(),
                partitions: t
                    .partitions
                    .iter()
                    .enumerate()
                    .map(|(i, p)| pb::PartitionPlacement {
                        partition: i as u32,
                        leader: p.leader,
                        leader_epoch: p.leader_epoch,
                        replicas: p.replicas.clone(),
                        isr: p.isr.clone(),
                    })
                    .collect(),
            })
            .collect();
        Ok(Response::new(pb::MetadataResponse {
            brokers,
            topics,
            controller: c.view().controller.unwrap_or(0),
        }))
    }
}

/// Hands peers' raft messages to this node's raft member.
pub struct RaftService {
    cluster: Arc<Cluster>,
}

impl RaftService {
    pub fn new(cluster: Arc<Cluster>) -> Self {
        Self { cluster }
    }
}

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        req: Request<pb::RaftMessage>,
    ) -> Result<Response<pb::RaftMessage>, Status> {
        let rpc = request(req.get_ref())?;
        let r = self.cluster.raft().append_entries(rpc).await;
        Ok(Response::new(reply(&r)))
    }

    async fn install_snapshot(
        &self,
        req: Request<pb::RaftMessage>,
    ) -> Result<Response<pb::RaftMessage>, Status> {
        let rpc = request(req.get_ref())?;
        let r = self.cluster.raft().install_snapshot(rpc).await;
        Ok(Response::new(reply(&r)))
    }

    async fn vote(
        &self,
        req: Request<pb::RaftMessage>,
    ) -> Result<Response<pb::RaftMessage>, Status> {
        let rpc = request(req.get_ref())?;
        let r = self.cluster.raft().vote(rpc).await;
        Ok(Response::new(reply(&r)))
    }

    async fn propose(
        &self,
        req: Request<pb::RaftMessage>,
    ) -> Result<Response<pb::RaftMessage>, Status> {
        let cmd = request(req.get_ref())?;
        // No forwarding from here: the sender asks the controller it knows of again.
        let r = match self.cluster.propose_here(cmd).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(e)) => Err(ForwardError::Failed(e.to_string())),
            Err(_) => Err(ForwardError::NotController),
        };
        Ok(Response::new(reply(&r)))
    }
}
