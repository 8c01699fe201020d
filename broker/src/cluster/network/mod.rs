//! Raft messages between brokers: openraft's requests as serde JSON inside the internal
//! `weir.v1.Raft` gRPC service, over one lazily connected channel per peer; the other calls
//! between members are in [`calls`]. The only part of `cluster/` that knows the wire.

pub mod calls;

use std::sync::OnceLock;
use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::RPCTypes;
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use weir_proto::v1 as pb;
use weir_proto::v1::raft_client::RaftClient;

use super::peers::NodeId;
use super::store::TypeConfig;

/// How long a connection attempt to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// How this broker reaches the others over TLS (`--tls-cert` in cluster mode), set once at
/// start; unset: plain text.
static PEER_TLS: OnceLock<ClientTlsConfig> = OnceLock::new();

/// Makes every connection to another member TLS: trusting `peer_ca`, presenting this
/// broker's own certificate chain and key (for members that ask, `--tls-client-ca`). Fails
/// on PEM that does not parse, so a bad file stops the broker at start.
pub fn use_peer_tls(
    peer_ca: &[u8],
    cert: &[u8],
    key: &[u8],
) -> Result<(), tonic::transport::Error> {
    let config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(peer_ca))
        .identity(Identity::from_pem(cert, key));
    Endpoint::from_static("https://127.0.0.1").tls_config(config.clone())?;
    let _ = PEER_TLS.set(config);
    Ok(())
}

/// HTTP/2 flow-control windows of a channel to another member: a replica fetch's answer
/// (up to `REPLICA_FETCH_MAX_BYTES`, 8 MiB) arrives without a window update on the way.
/// hyper's defaults (2 MiB a stream) made the leader wait for the follower mid-answer.
const PEER_STREAM_WINDOW_BYTES: u32 = 16 * 1024 * 1024;
const PEER_CONNECTION_WINDOW_BYTES: u32 = 64 * 1024 * 1024;
/// The largest HTTP/2 frame another member may send on such a channel (the default, 16 KiB,
/// cut an 8 MiB answer into 512 frames).
const PEER_MAX_FRAME_BYTES: u32 = 1024 * 1024;

/// The endpoint of another broker at `addr` (`HOST:PORT`).
pub fn peer_endpoint(
    addr: &str,
    connect_timeout: Duration,
) -> Result<Endpoint, tonic::transport::Error> {
    let endpoint = match PEER_TLS.get() {
        None => Endpoint::from_shared(format!("http://{addr}"))?,
        Some(tls) => Endpoint::from_shared(format!("https://{addr}"))?.tls_config(tls.clone())?,
    };
    Ok(endpoint
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .initial_stream_window_size(PEER_STREAM_WINDOW_BYTES)
        .initial_connection_window_size(PEER_CONNECTION_WINDOW_BYTES)
        .max_frame_size(PEER_MAX_FRAME_BYTES))
}

/// Makes a client per peer.
#[derive(Clone, Default)]
pub struct Network;

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        let channel = peer_endpoint(&node.addr, CONNECT_TIMEOUT).map(|e| e.connect_lazy());
        PeerClient {
            target,
            client: channel.map(RaftClient::new).map_err(|e| e.to_string()),
        }
    }
}

/// Raft messages to one peer.
pub struct PeerClient {
    target: NodeId,
    /// An address that is not a valid URI leaves the peer unreachable.
    client: Result<RaftClient<Channel>, String>,
}

type Rpc<E> = RPCError<NodeId, BasicNode, E>;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Message(String);

impl PeerClient {
    /// Sends `req` with `call`, decoding the peer's `Result<Resp, E>`.
    async fn send<Req, Resp, E>(
        &mut self,
        action: RPCTypes,
        req: &Req,
        option: &RPCOption,
        call: impl AsyncFnOnce(
            RaftClient<Channel>,
            pb::RaftMessage,
        ) -> Result<tonic::Response<pb::RaftMessage>, tonic::Status>,
    ) -> Result<Resp, Rpc<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &self.client {
            Ok(c) => c.clone(),
            Err(e) => return Err(RPCError::Unreachable(Unreachable::new(&Message(e.clone())))),
        };
        let payload =
            serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let msg = pb::RaftMessage {
            payload: payload.into(),
        };
        let ttl = option.hard_ttl();
        let reply = match tokio::time::timeout(ttl, call(client, msg)).await {
            Err(_) => {
                return Err(RPCError::Timeout(Timeout {
                    action,
                    id: 0,
                    target: self.target,
                    timeout: ttl,
                }));
            }
            Ok(Err(status)) => {
                let e = Message(status.message().to_string());
                return Err(match status.code() {
                    tonic::Code::Unavailable => RPCError::Unreachable(Unreachable::new(&e)),
                    _ => RPCError::Network(NetworkError::new(&e)),
                });
            }
            Ok(Ok(reply)) => reply.into_inner(),
        };
        let decoded: Result<Resp, E> = serde_json::from_slice(&reply.payload)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        decoded.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, Rpc<RaftError<NodeId>>> {
        self.send(RPCTypes::AppendEntries, &rpc, &option, async |mut c, m| {
            c.append_entries(m).await
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, Rpc<RaftError<NodeId, InstallSnapshotError>>> {
        self.send(
            RPCTypes::InstallSnapshot,
            &rpc,
            &option,
            async |mut c, m| c.install_snapshot(m).await,
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, Rpc<RaftError<NodeId>>> {
        self.send(RPCTypes::Vote, &rpc, &option, async |mut c, m| {
            c.vote(m).await
        })
        .await
    }
}

/// Sends a metadata change to the controller at `addr` (see [`super::Cluster::propose`]).
pub async fn forward(
    addr: &str,
    cmd: &super::state::Command,
) -> Result<super::state::Outcome, super::ClusterError> {
    use super::ClusterError;
    let unreachable = |e: String| {
        tracing::debug!(%addr, error = %e, "forwarding a metadata change failed");
        ClusterError::NoController
    };
    let channel = peer_endpoint(addr, CONNECT_TIMEOUT)
        .map_err(|e| unreachable(e.to_string()))?
        .connect()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let payload = serde_json::to_vec(cmd).map_err(|e| ClusterError::Write(e.to_string()))?;
    let reply = RaftClient::new(channel)
        .propose(pb::RaftMessage {
            payload: payload.into(),
        })
        .await
        .map_err(|s| unreachable(s.message().to_string()))?
        .into_inner();
    let r: Result<super::state::Outcome, ForwardError> = serde_json::from_slice(&reply.payload)
        .map_err(|e| ClusterError::Write(format!("controller's reply: {e}")))?;
    match r {
        Ok(o) => Ok(o),
        Err(ForwardError::NotController) => Err(ClusterError::NoController),
        Err(ForwardError::Failed(m)) => Err(ClusterError::Write(m)),
    }
}

/// Why a forwarded change was not applied.
#[derive(Debug, Serialize, serde::Deserialize)]
pub enum ForwardError {
    /// The receiver is not (or no longer) the controller: ask again.
    NotController,
    Failed(String),
}

/// Encodes a handler's result for the reply payload.
pub fn reply<T: Serialize, E: Serialize>(r: &Result<T, E>) -> pb::RaftMessage {
    let payload = serde_json::to_vec(r).unwrap_or_else(|e| {
        // Our own types always serialize; say so to the peer if they ever do not.
        format!("{{\"Err\":\"cannot encode the reply: {e}\"}}").into_bytes()
    });
    pb::RaftMessage {
        payload: payload.into(),
    }
}

/// Decodes a peer's request.
pub fn request<T: DeserializeOwned>(m: &pb::RaftMessage) -> Result<T, tonic::Status> {
    serde_json::from_slice(&m.payload)
        .map_err(|e| tonic::Status::invalid_argument(format!("malformed raft message: {e}")))
}
