//! The calls a member makes to another besides raft's: a status probe (the controller's
//! failure detector), partition offsets asked of their leader, a follower's replica fetch,
//! plugin modules, and a pipeline worker's output to a destination partition's leader. Everything here speaks domain types to the rest of the broker; only this module and
//! raft's network (its parent) know the wire.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use tonic::transport::Channel;
use weir_common::limits::MAX_REQUEST_BYTES;
use weir_proto::v1 as pb;
use weir_proto::v1::cluster_client::ClusterClient;
use weir_proto::v1::log_client::LogClient;
use weir_proto::v1::replication_client::ReplicationClient;

use super::peer_endpoint;
use crate::cluster::peers::NodeId;
use crate::types::{EpochStart, OffsetQuery, PartitionOffsets};

/// One lazily connected channel per broker address, shared by every call to it.
pub struct PeerChannels {
    channels: Mutex<HashMap<String, Channel>>,
    connect_timeout: Duration,
}

impl PeerChannels {
    pub fn new(connect_timeout: Duration) -> Self {
        Self {
            channels: Mutex::default(),
            connect_timeout,
        }
    }

    /// The channel to the broker at `addr` (connects on first use).
    fn channel(&self, addr: &str) -> Result<Channel, String> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let c = peer_endpoint(addr, self.connect_timeout)
            .map_err(|e| format!("bad broker address {addr:?}: {e}"))?
            .connect_lazy();
        channels.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Asks the leader at `addr` for `query` on each of `partitions` of `topic`, waiting at
    /// most `timeout`.
    pub async fn list_offsets(
        &self,
        addr: &str,
        topic: &str,
        partitions: &[u32],
        query: OffsetQuery,
        timeout: Duration,
    ) -> Result<Vec<(u32, PartitionOffsets)>, String> {
        let (spec, timestamp) = match query {
            OffsetQuery::Earliest => (pb::OffsetSpec::Earliest, 0),
            OffsetQuery::Latest => (pb::OffsetSpec::Latest, 0),
            OffsetQuery::Timestamp(ts) => (pb::OffsetSpec::Timestamp, ts),
        };
        let req = pb::ListOffsetsRequest {
            topic: topic.to_string(),
            queries: partitions
                .iter()
                .map(|&partition| pb::OffsetQuery {
                    partition,
                    spec: spec as i32,
                    timestamp,
                })
                .collect(),
        };
        let mut client = LogClient::new(self.channel(addr)?);
        let resp = tokio::time::timeout(timeout, client.list_offsets(req))
            .await
            .map_err(|_| "no answer about partition offsets".to_string())?
            .map_err(|s| s.message().to_string())?;
        Ok(resp
            .into_inner()
            .offsets
            .into_iter()
            .map(|o| {
                let offsets = PartitionOffsets {
                    offset: o.offset,
                    earliest: o.earliest_offset,
                    latest: o.latest_offset,
                };
                (o.partition, offsets)
            })
            .collect())
    }
}

impl PeerChannels {
    fn replication(&self, addr: &str) -> Result<ReplicationClient<Channel>, String> {
        Ok(ReplicationClient::new(self.channel(addr)?)
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(MAX_REQUEST_BYTES))
    }

    /// Puts a plugin module on the broker at `addr`, waiting at most `timeout`.
    pub async fn put_plugin_module(
        &self,
        addr: &str,
        sha256: &str,
        wasm: Bytes,
        timeout: Duration,
    ) -> Result<(), String> {
        let req = pb::PluginModule {
            sha256: sha256.to_string(),
            wasm,
        };
        let mut client = self.replication(addr)?;
        tokio::time::timeout(timeout, client.put_plugin_module(req))
            .await
            .map_err(|_| "no answer".to_string())?
            .map_err(|s| s.message().to_string())?;
        Ok(())
    }

    /// The plugin module `sha256` as the broker at `addr` holds it (`None`: it does not),
    /// waiting at most `timeout`. The bytes are not checked here.
    pub async fn get_plugin_module(
        &self,
        addr: &str,
        sha256: &str,
        timeout: Duration,
    ) -> Result<Option<Bytes>, String> {
        let req = pb::GetPluginModuleRequest {
            sha256: sha256.to_string(),
        };
        let mut client = self.replication(addr)?;
        match tokio::time::timeout(timeout, client.get_plugin_module(req))
            .await
            .map_err(|_| "no answer".to_string())?
        {
            Ok(m) => Ok(Some(m.into_inner().wasm)),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(s.message().to_string()),
        }
    }
}

/// Why a call to another member did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No answer, or one that says to try again (unavailable, busy, not the leader any more).
    #[error("{0}")]
    Transient(String),
    /// Refused for good (a bad batch, a topic that is gone).
    #[error("{0}")]
    Refused(String),
}

impl CallError {
    fn of(s: &tonic::Status) -> Self {
        use tonic::Code;
        let message = s.message().to_string();
        match s.code() {
            Code::Unavailable
            | Code::ResourceExhausted
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::Aborted
            | Code::FailedPrecondition => Self::Transient(message),
            _ => Self::Refused(message),
        }
    }
}

impl PeerChannels {
    /// On the leader at `addr` of `topic`'s `partition`: the sequence it expects next from
    /// `producer_id`, once the in-sync replicas hold what that producer wrote (see
    /// `Replication.PipelineSequence`), waiting at most `timeout`.
    pub async fn pipeline_sequence(
        &self,
        addr: &str,
        topic: &str,
        partition: u32,
        producer_id: u64,
        timeout: Duration,
    ) -> Result<u32, CallError> {
        let req = pb::PipelineSequenceRequest {
            topic: topic.to_string(),
            partition,
            producer_id,
        };
        let mut client = self.replication(addr).map_err(CallError::Transient)?;
        let resp = tokio::time::timeout(timeout, client.pipeline_sequence(req))
            .await
            .map_err(|_| CallError::Transient(format!("no answer from {addr}")))?
            .map_err(|s| CallError::of(&s))?;
        Ok(resp.into_inner().expected_sequence)
    }

    /// Appends a pipeline worker's `batches` on the leader at `addr` with acks=all; `Some`
    /// expected sequence when they were refused as out of order.
    pub async fn pipeline_produce(
        &self,
        addr: &str,
        topic: &str,
        partition: u32,
        batches: Vec<Bytes>,
        timeout: Duration,
    ) -> Result<Option<u32>, CallError> {
        let req = pb::PipelineProduceRequest {
            topic: topic.to_string(),
            partition,
            batches,
        };
        let mut client = self.replication(addr).map_err(CallError::Transient)?;
        let resp = tokio::time::timeout(timeout, client.pipeline_produce(req))
            .await
            .map_err(|_| CallError::Transient(format!("no answer from {addr}")))?
            .map_err(|s| CallError::of(&s))?;
        Ok(resp.into_inner().expected_sequence)
    }
}

/// The controller's probe of one broker: does it answer a status request in time?
#[derive(Clone)]
pub struct StatusProbe {
    client: ClusterClient<Channel>,
}

impl StatusProbe {
    pub fn new(addr: &str, connect_timeout: Duration) -> Result<Self, String> {
        let endpoint = peer_endpoint(addr, connect_timeout).map_err(|e| e.to_string())?;
        Ok(Self {
            client: ClusterClient::new(endpoint.connect_lazy()),
        })
    }

    /// Whether the broker answered within `timeout`.
    pub async fn answers(&self, timeout: Duration) -> bool {
        self.status(timeout).await.is_some()
    }

    /// Which cluster the broker belongs to, if it answered within `timeout`.
    pub async fn identity(&self, timeout: Duration) -> Option<MemberIdentity> {
        self.status(timeout).await.map(|s| MemberIdentity {
            cluster_id: s.cluster_id,
            joined: s.joined,
        })
    }

    async fn status(&self, timeout: Duration) -> Option<pb::NodeStatus> {
        let mut client = self.client.clone();
        match tokio::time::timeout(timeout, client.get_node_status(pb::NodeStatusRequest {})).await
        {
            Ok(Ok(r)) => Some(r.into_inner()),
            _ => None,
        }
    }
}

/// What a member says of the cluster it belongs to (`identity.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberIdentity {
    /// Empty before it founded or joined a cluster.
    pub cluster_id: String,
    /// The members that have joined the cluster, as it knows them.
    pub joined: Vec<u64>,
}

/// Where a follower's copy of a partition stands, sent with each fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPosition {
    pub topic: String,
    pub partition: u32,
    /// This copy's log end: the first offset wanted.
    pub fetch_offset: u64,
    /// The leader epoch the follower follows the partition in.
    pub leader_epoch: u32,
    /// The epoch of this copy's last batch, if any.
    pub last_epoch: Option<u32>,
}

/// What the leader answered for one partition.
#[derive(Debug)]
pub enum Fetched {
    /// The leader refused it (typically: not its leader any more).
    Refused { reason: String },
    /// The copy diverged: the leader's history ends `epoch` at `end_offset`.
    Diverging { epoch: u32, end_offset: u64 },
    /// Batches from the fetch offset on, the leader's epoch history and high watermark.
    Batches {
        batches: Vec<Bytes>,
        epochs: Vec<EpochStart>,
        high_watermark: u64,
    },
}

/// A follower's fetches from one leader.
pub struct ReplicaFetcher {
    client: ReplicationClient<Channel>,
}

impl ReplicaFetcher {
    pub fn new(addr: &str, connect_timeout: Duration) -> Result<Self, String> {
        let endpoint = peer_endpoint(addr, connect_timeout).map_err(|e| e.to_string())?;
        let client = ReplicationClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(MAX_REQUEST_BYTES);
        Ok(Self { client })
    }

    /// Fetches `positions` for follower `me`: at most `max_bytes` in all, waiting up to
    /// `max_wait` at the leader when there is nothing new. Per partition: (topic, partition,
    /// what came back).
    pub async fn fetch(
        &mut self,
        me: NodeId,
        positions: Vec<FetchPosition>,
        max_bytes: u32,
        max_wait: Duration,
    ) -> Result<Vec<(String, u32, Fetched)>, String> {
        let req = pb::ReplicaFetchRequest {
            follower: me,
            partitions: positions
                .into_iter()
                .map(|p| pb::ReplicaPosition {
                    topic: p.topic,
                    partition: p.partition,
                    fetch_offset: p.fetch_offset,
                    leader_epoch: p.leader_epoch,
                    last_epoch: p.last_epoch,
                })
                .collect(),
            max_bytes,
            max_wait_ms: u32::try_from(max_wait.as_millis()).unwrap_or(u32::MAX),
        };
        let resp = self
            .client
            .replica_fetch(req)
            .await
            .map_err(|s| s.message().to_string())?;
        Ok(resp
            .into_inner()
            .partitions
            .into_iter()
            .map(|d| {
                let fetched = if let Some(e) = d.error {
                    Fetched::Refused { reason: e.message }
                } else if let Some(div) = d.diverging {
                    Fetched::Diverging {
                        epoch: div.epoch,
                        end_offset: div.end_offset,
                    }
                } else {
                    Fetched::Batches {
                        batches: d.batches,
                        epochs: d
                            .epochs
                            .iter()
                            .map(|e| EpochStart {
                                epoch: e.epoch,
                                start_offset: e.start_offset,
                            })
                            .collect(),
                        high_watermark: d.high_watermark,
                    }
                };
                (d.topic, d.partition, fetched)
            })
            .collect())
    }
}
