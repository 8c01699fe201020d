//! Cluster mode (`--node-id`, `--cluster`; design in docs/cluster.md).
//!
//! - [`peers`]: the `--cluster` list.
//! - [`state`]: the replicated metadata as a deterministic state machine (no I/O).
//! - [`store`]: openraft's log storage and state machine over RocksDB.
//! - [`network`]: raft messages between brokers over gRPC.
//! - [`controller`]: the controller's failover duty (probing brokers, electing leaders).
//! - [`isr`]: a partition leader's view of its followers (high watermark, ISR changes).
//! - [`replica`]: a follower's fetchers.
//! - [`identity`]: the cluster id; founding a cluster, joining it, refusing wiped data dirs.
//! - this module: [`Cluster`], the running quorum member: start-up, this node's view, and
//!   proposing metadata changes (forwarded to the controller when this node is not it).

pub mod controller;
pub mod identity;
pub mod isr;
pub mod network;
pub mod peers;
pub mod raft_log;
pub mod replica;
pub mod state;
pub mod store;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::{Raft, ServerState};
use tokio::sync::watch;

use crate::error::BrokerError;
use crate::storage::Store;
use network::Network;
use peers::{ClusterSpec, NodeId};
use state::{Command, Metadata, Outcome};
use store::{LogStore, StateMachine, TypeConfig};

/// Raft timing: a leader heartbeats every 250 ms and followers start an election after 1–2 s
/// without one, so a dead controller is replaced within about 2 s.
const HEARTBEAT_MS: u64 = 250;
const ELECTION_TIMEOUT_MIN_MS: u64 = 1000;
const ELECTION_TIMEOUT_MAX_MS: u64 = 2000;

/// Log entries in one raft message: an entry holds at most about 1 MiB (the users and ACLs
/// document, `limits::MAX_USERS`), so a message stays well under `MAX_REQUEST_BYTES`.
const MAX_ENTRIES_PER_MESSAGE: u64 = 32;

/// How long a metadata change waits for a controller (an election takes 1–4 s).
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to another broker may take.
const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between two attempts while there is no controller.
const PROPOSE_RETRY: Duration = Duration::from_millis(100);
/// A change forwarded to the controller that gets no answer this long is asked again, of
/// whichever node leads by then: a controller that is paused or cut off still accepts TCP
/// connections and answers nothing, and without a limit the change (an ISR shrink, say)
/// waited for it forever. Only for changes safe to apply twice; the others wait out
/// `PROPOSE_TIMEOUT`.
const FORWARD_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster start-up: {0}")]
    Start(String),
    #[error("the metadata quorum has no controller right now; try again")]
    NoController,
    #[error("metadata write failed: {0}")]
    Write(String),
}

impl From<ClusterError> for BrokerError {
    fn from(e: ClusterError) -> Self {
        BrokerError::ClusterUnavailable(e.to_string())
    }
}

/// Where a change has to go when this node is not the controller.
#[derive(Debug)]
pub enum Forward {
    To(String),
    /// No controller is known (an election is under way).
    Nowhere,
}

/// This broker's role as the metadata quorum sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub node_id: NodeId,
    pub role: &'static str,
    pub controller: Option<NodeId>,
    pub term: u64,
    pub applied_index: u64,
}

/// A running member of the metadata quorum.
pub struct Cluster {
    node_id: NodeId,
    peers: BTreeMap<NodeId, String>,
    raft: Raft<TypeConfig>,
    metadata: watch::Receiver<Arc<Metadata>>,
    /// One lazily connected channel per broker address, for broker-to-broker requests.
    channels: network::calls::PeerChannels,
    store: Store,
    /// The cluster id in this member's data dir (none before it founded or joined one).
    cluster_id: RwLock<Option<String>>,
    /// Set when this member must stop serving ([`identity::maintain`] failed).
    failed: watch::Sender<Option<String>>,
}

impl Cluster {
    /// Starts this node's raft member on `store`, after asking the other members whether
    /// this data dir may join them ([`identity`]); founding or joining the cluster goes on in
    /// the background.
    pub async fn start(spec: ClusterSpec, store: Store) -> Result<Arc<Self>, ClusterError> {
        let start = |e: String| ClusterError::Start(e);
        let config = openraft::Config {
            cluster_name: "weir".into(),
            heartbeat_interval: HEARTBEAT_MS,
            election_timeout_min: ELECTION_TIMEOUT_MIN_MS,
            election_timeout_max: ELECTION_TIMEOUT_MAX_MS,
            max_payload_entries: MAX_ENTRIES_PER_MESSAGE,
            ..Default::default()
        }
        .validate()
        .map_err(|e| start(e.to_string()))?;
        let local_id = identity::local_id(&raft_log::RaftLog::new(store.clone()))?;
        identity::check_at_start(spec.node_id, &spec.peers, local_id.as_deref()).await?;
        let (sm, metadata) = StateMachine::open(store.clone()).map_err(start)?;
        let raft = Raft::new(
            spec.node_id,
            Arc::new(config),
            Network,
            LogStore::new(store.clone()),
            sm,
        )
        .await
        .map_err(|e| start(e.to_string()))?;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| start(e.to_string()))?;
        // Members need no registering: applying the membership entry makes them brokers.
        let cluster = Arc::new(Self {
            node_id: spec.node_id,
            peers: spec.peers,
            raft,
            metadata,
            channels: network::calls::PeerChannels::new(PEER_CONNECT_TIMEOUT),
            store,
            cluster_id: RwLock::new(local_id),
            failed: watch::channel(None).0,
        });
        let c = Arc::clone(&cluster);
        tokio::spawn(async move {
            if let Err(e) = identity::maintain(Arc::clone(&c), initialized).await {
                tracing::error!(error = %e, "this member cannot serve");
                c.failed.send_replace(Some(e.to_string()));
            }
        });
        Ok(cluster)
    }

    /// The cluster id in this member's data dir, once it founded or joined the cluster.
    pub fn cluster_id(&self) -> Option<String> {
        self.cluster_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_cluster_id(&self, id: String) {
        *self.cluster_id.write().unwrap_or_else(|e| e.into_inner()) = Some(id);
    }

    /// Resolves with the reason when this member must stop serving: its data dir turned out
    /// to be wiped or another cluster's ([`identity`]).
    pub async fn failed(&self) -> String {
        let mut rx = self.failed.subscribe();
        loop {
            if let Some(why) = rx.borrow_and_update().clone() {
                return why;
            }
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Calls to other brokers, over one shared channel per broker.
    pub fn peer_channels(&self) -> &network::calls::PeerChannels {
        &self.channels
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Every member by id, as `--cluster` listed them.
    pub fn peers(&self) -> &BTreeMap<NodeId, String> {
        &self.peers
    }

    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// The metadata as last applied here (changes are published as they apply).
    pub fn metadata(&self) -> watch::Receiver<Arc<Metadata>> {
        self.metadata.clone()
    }

    /// This node's role, the controller it knows of, and how far it applied.
    pub fn view(&self) -> NodeView {
        let m = self.raft.metrics().borrow().clone();
        NodeView {
            node_id: self.node_id,
            role: match m.state {
                ServerState::Leader => "controller",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            },
            controller: m.current_leader,
            term: m.current_term,
            applied_index: m.last_applied.map_or(0, |l| l.index),
        }
    }

    /// Proposes a metadata change and waits until the controller committed and applied it:
    /// here when this node is the controller, else forwarded to it. Waits out elections (up
    /// to [`PROPOSE_TIMEOUT`]).
    pub async fn propose(&self, cmd: Command) -> Result<Outcome, ClusterError> {
        let deadline = tokio::time::Instant::now() + PROPOSE_TIMEOUT;
        loop {
            let attempt = match self.propose_here(cmd.clone()).await {
                Err(Forward::To(addr)) => {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    let limit = match cmd.safe_to_repeat() {
                        true => left.min(FORWARD_ATTEMPT_TIMEOUT),
                        false => left,
                    };
                    match tokio::time::timeout(limit, network::forward(&addr, &cmd)).await {
                        Ok(r) => r,
                        Err(_) => {
                            tracing::debug!(%addr, ?limit, "the controller did not answer a forwarded change");
                            Err(ClusterError::NoController)
                        }
                    }
                }
                Err(Forward::Nowhere) => Err(ClusterError::NoController),
                Ok(r) => r,
            };
            match attempt {
                Err(ClusterError::NoController) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(PROPOSE_RETRY).await;
                }
                done => return done,
            }
        }
    }

    /// Proposes a change only if this node is the controller; else says where to go.
    pub async fn propose_here(
        &self,
        cmd: Command,
    ) -> Result<Result<Outcome, ClusterError>, Forward> {
        match self.raft.client_write(cmd).await {
            Ok(r) => Ok(Ok(r.data)),
            Err(openraft::error::RaftError::APIError(
                openraft::error::ClientWriteError::ForwardToLeader(f),
            )) => Err(match f.leader_node {
                Some(node) if f.leader_id != Some(self.node_id) => Forward::To(node.addr),
                _ => Forward::Nowhere,
            }),
            Err(e) => Ok(Err(ClusterError::Write(e.to_string()))),
        }
    }

    /// Before a controller stops (a controlled shutdown): waits until every other member holds
    /// each entry this node applied, then sends a heartbeat, which carries the commit index, so
    /// the others apply them without waiting for the next controller's first commit (an
    /// election away). A member that does not catch up by `deadline` is left to learn them from
    /// that next controller. Does nothing on a member that is not the controller.
    pub async fn share_commits_before_leaving(&self, deadline: tokio::time::Instant) {
        let mut metrics = self.raft.metrics();
        loop {
            let (held, applied) = {
                let m = metrics.borrow_and_update();
                if m.state != ServerState::Leader {
                    return;
                }
                let applied = m.last_applied.map(|l| l.index);
                let held = m.replication.as_ref().is_none_or(|r| {
                    r.values()
                        .all(|matched| matched.as_ref().map(|l| l.index) >= applied)
                });
                (held, applied)
            };
            if held {
                break;
            }
            if tokio::time::timeout_at(deadline, metrics.changed())
                .await
                .is_err()
            {
                tracing::warn!(
                    ?applied,
                    "controlled shutdown: a member did not take the last changes before this controller left"
                );
                break;
            }
        }
        if let Err(e) = self.raft.trigger().heartbeat().await {
            tracing::debug!(error = %e, "controlled shutdown: no last heartbeat");
        }
    }

    /// Leaves the quorum (at broker shutdown).
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not shut down cleanly");
        }
    }
}
