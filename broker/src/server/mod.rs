//! gRPC edge: tonic services that translate protocol messages to domain calls and domain
//! errors to statuses.
//!
//! Architecture invariant: this is the only broker module that knows generated proto types
//! and `tonic::Status`; it holds no logic beyond translation and request-shape checks.

mod admin;
mod cluster;
mod edge;
mod groups;
mod health;
mod log;
pub mod metrics;
mod pipelines;
mod plugins;
mod replication;
mod security;
mod topics;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::Status;
use tonic::metadata::MetadataValue;
use tonic::server::NamedService;
use tonic::transport::server::{ServerTlsConfig, TcpIncoming};
use tonic::transport::{Certificate, Identity};
use tonic_health::ServingStatus;
use weir_common::limits::MAX_REQUEST_BYTES;
use weir_proto::v1::admin_server::AdminServer;
use weir_proto::v1::cluster_server::ClusterServer;
use weir_proto::v1::groups_server::GroupsServer;
use weir_proto::v1::log_server::LogServer;
use weir_proto::v1::pipelines_server::PipelinesServer;
use weir_proto::v1::plugins_server::PluginsServer;
use weir_proto::v1::raft_server::RaftServer;
use weir_proto::v1::replication_server::ReplicationServer;
use weir_proto::v1::security_server::SecurityServer;
use weir_proto::v1::topics_server::TopicsServer;

use crate::broker::Broker;
use crate::cluster::Cluster;
use crate::config::{RequestLimits, TlsPem};
use crate::error::BrokerError;
use crate::security::member::Members;
use crate::security::{Operation, Principal, Resource};

/// The caller, as the edge authenticated it ([`Principal::Anonymous`], which `--auth` refuses
/// everything, if the edge did not).
pub(crate) fn principal<T>(req: &tonic::Request<T>) -> Principal {
    req.extensions()
        .get::<Principal>()
        .cloned()
        .unwrap_or(Principal::Anonymous)
}

/// The permission checks every client-facing service makes before it serves a call (each
/// holds the broker). Asked before anything is looked up, so a denied call learns nothing about
/// the resource it named.
pub(crate) trait Guarded {
    fn broker(&self) -> &Broker;

    /// Ok if the caller may do `op` on `resource`; PERMISSION_DENIED (or UNAUTHENTICATED) if
    /// not.
    fn allow(&self, who: &Principal, resource: Resource<'_>, op: Operation) -> Result<(), Status> {
        self.broker()
            .security()
            .authorize(who, resource, op)
            .map_err(status_of)
    }

    /// Ok if the caller holds some permission on `resource` (describing it needs no more).
    fn allow_any(&self, who: &Principal, resource: Resource<'_>) -> Result<(), Status> {
        self.broker()
            .security()
            .require_visible(who, resource)
            .map_err(status_of)
    }
}

/// HTTP/2 flow-control windows: large enough that one connection can stream batches at
/// hundreds of MB/s without waiting for window updates.
const STREAM_WINDOW_BYTES: u32 = 8 * 1024 * 1024;
const CONNECTION_WINDOW_BYTES: u32 = 32 * 1024 * 1024;

/// Metadata key naming the error kind, so clients can tell errors apart without parsing
/// messages (e.g. `topic_not_found`, `offset_out_of_range`).
pub const ERROR_KIND_KEY: &str = "weir-error-kind";
/// The error kind of load shedding (RESOURCE_EXHAUSTED): retriable after a backoff.
pub const BUSY_KIND: &str = "busy";
/// For `offset_out_of_range`: the partition's earliest and latest offsets.
pub const EARLIEST_KEY: &str = "weir-earliest";
pub const LATEST_KEY: &str = "weir-latest";
/// For `not_leader`: the address of the broker that leads the partition, when known.
pub const LEADER_KEY: &str = "weir-leader";
/// For `not_coordinator`: the address of the group's coordinator, when known.
pub const COORDINATOR_KEY: &str = "weir-coordinator";

/// The one mapping from domain errors to gRPC statuses.
pub fn status_of(e: BrokerError) -> Status {
    let message = e.to_string();
    let (mut status, kind) = match &e {
        BrokerError::TopicNotFound(_) => (Status::not_found(message), "topic_not_found"),
        BrokerError::PartitionNotFound { .. } => {
            (Status::not_found(message), "partition_not_found")
        }
        BrokerError::TopicExists(_) => (Status::already_exists(message), "topic_exists"),
        BrokerError::ViewNotFound(_) => (Status::not_found(message), "view_not_found"),
        BrokerError::ReadOnlyView { .. } => {
            (Status::failed_precondition(message), "read_only_view")
        }
        BrokerError::TopicHasViews { .. } => {
            (Status::failed_precondition(message), "topic_has_views")
        }
        BrokerError::InvalidName(_) | BrokerError::InvalidArgument(_) => {
            (Status::invalid_argument(message), "invalid_argument")
        }
        BrokerError::InvalidBatch { .. } => (Status::invalid_argument(message), "invalid_batch"),
        BrokerError::OffsetOutOfRange { .. } => {
            (Status::out_of_range(message), "offset_out_of_range")
        }
        BrokerError::OutOfOrderSequence { .. } => (
            Status::failed_precondition(message),
            "out_of_order_sequence",
        ),
        BrokerError::GroupNotFound(_) => (Status::not_found(message), "group_not_found"),
        BrokerError::UnknownMember { .. } => {
            (Status::failed_precondition(message), "unknown_member")
        }
        BrokerError::StaleMemberEpoch { .. } => {
            (Status::failed_precondition(message), "stale_member_epoch")
        }
        BrokerError::NotPartitionOwner { .. } => {
            (Status::failed_precondition(message), "not_partition_owner")
        }
        BrokerError::GroupNotEmpty { .. } => {
            (Status::failed_precondition(message), "group_not_empty")
        }
        BrokerError::InconsistentGroupProtocol { .. } => (
            Status::failed_precondition(message),
            "inconsistent_group_protocol",
        ),
        BrokerError::IllegalGeneration { .. } => {
            (Status::failed_precondition(message), "illegal_generation")
        }
        BrokerError::RebalanceInProgress { .. } => (
            Status::failed_precondition(message),
            "rebalance_in_progress",
        ),
        BrokerError::PluginNotFound(_) => (Status::not_found(message), "plugin_not_found"),
        BrokerError::PluginExists(_) => (Status::already_exists(message), "plugin_exists"),
        BrokerError::InvalidPlugin(_) => (Status::invalid_argument(message), "invalid_plugin"),
        BrokerError::PluginFailed(_) => (Status::failed_precondition(message), "plugin_failed"),
        BrokerError::PluginInUse { .. } | BrokerError::PluginUsedByViews { .. } => {
            (Status::failed_precondition(message), "plugin_in_use")
        }
        BrokerError::PipelineNotFound(_) => (Status::not_found(message), "pipeline_not_found"),
        BrokerError::PipelineExists(_) => (Status::already_exists(message), "pipeline_exists"),
        BrokerError::ShuttingDown => (Status::unavailable(message), "shutting_down"),
        BrokerError::Busy(_) => (Status::resource_exhausted(message), BUSY_KIND),
        BrokerError::ClusterUnavailable(_) => (Status::unavailable(message), "cluster_unavailable"),
        BrokerError::NotLeader { .. } => (Status::failed_precondition(message), "not_leader"),
        BrokerError::StaleLeaderEpoch { .. } => {
            (Status::failed_precondition(message), "stale_epoch")
        }
        BrokerError::NotEnoughReplicas(_) => (Status::unavailable(message), "not_enough_replicas"),
        BrokerError::NotCoordinator { .. } => {
            (Status::failed_precondition(message), "not_coordinator")
        }
        BrokerError::CoordinatorNotAvailable { .. } => {
            (Status::unavailable(message), "coordinator_not_available")
        }
        BrokerError::Storage(_) => (Status::internal(message), "storage"),
        BrokerError::Unauthenticated(_) => (Status::unauthenticated(message), "unauthenticated"),
        BrokerError::PermissionDenied(_) => {
            (Status::permission_denied(message), "permission_denied")
        }
        BrokerError::UserExists(_) => (Status::already_exists(message), "user_exists"),
        BrokerError::UserNotFound(_) => (Status::not_found(message), "user_not_found"),
        BrokerError::LastSuperuser(_) => (Status::failed_precondition(message), "last_superuser"),
        BrokerError::AclNotFound => (Status::not_found(message), "acl_not_found"),
    };
    let md = status.metadata_mut();
    md.insert(ERROR_KIND_KEY, MetadataValue::from_static(kind));
    if let BrokerError::NotLeader {
        leader: Some(addr), ..
    } = &e
        && let Ok(v) = MetadataValue::try_from(addr.as_str())
    {
        md.insert(LEADER_KEY, v);
    }
    if let BrokerError::NotCoordinator {
        coordinator: Some(addr),
        ..
    } = &e
        && let Ok(v) = MetadataValue::try_from(addr.as_str())
    {
        md.insert(COORDINATOR_KEY, v);
    }
    if let BrokerError::OffsetOutOfRange {
        earliest, latest, ..
    } = e
    {
        md.insert(EARLIEST_KEY, MetadataValue::from(earliest));
        md.insert(LATEST_KEY, MetadataValue::from(latest));
    }
    status
}

/// What the health service reports on: the server as a whole (`""`) and each client-facing
/// service.
pub const HEALTH_SERVICES: &[&str] = &[
    "",
    <TopicsServer<topics::TopicsService> as NamedService>::NAME,
    <LogServer<log::LogService> as NamedService>::NAME,
    <GroupsServer<groups::GroupsService> as NamedService>::NAME,
    <PluginsServer<plugins::PluginsService> as NamedService>::NAME,
    <PipelinesServer<pipelines::PipelinesService> as NamedService>::NAME,
    <ClusterServer<cluster::ClusterService> as NamedService>::NAME,
    <SecurityServer<security::SecurityService> as NamedService>::NAME,
    <AdminServer<admin::AdminService> as NamedService>::NAME,
];

/// How long a client may take to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The server side of TLS. Client certificates are checked against `--tls-client-ca` (and
/// then required) and, in a cluster, `--tls-peer-ca` (the other members present theirs:
/// asked for, optional unless `--tls-client-ca` requires one).
fn tls_config(pem: &TlsPem) -> ServerTlsConfig {
    let mut c = ServerTlsConfig::new()
        .identity(Identity::from_pem(&pem.cert, &pem.key))
        .timeout(TLS_HANDSHAKE_TIMEOUT);
    let roots: Vec<u8> = [&pem.client_ca, &pem.peer_ca]
        .into_iter()
        .flatten()
        .flat_map(|ca| ca.iter().copied().chain(*b"\n"))
        .collect();
    if !roots.is_empty() {
        c = c
            .client_ca_root(Certificate::from_pem(roots))
            .client_auth_optional(pem.client_ca.is_none());
    }
    c
}

/// Checks that the TLS material makes a server configuration (a certificate and a key that
/// parse), so a broker with bad files fails at start rather than at its first connection.
pub fn check_tls(pem: &TlsPem) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .tls_config(tls_config(pem))
        .map(drop)
}

/// The services probes and the cluster itself call: never shed under load (a probe must see
/// an overloaded broker as alive; raft and replication keep the cluster whole).
const INTERNAL_SERVICES: &[&str] = &[
    "grpc.health.v1.Health",
    <RaftServer<cluster::RaftService> as NamedService>::NAME,
    <ReplicationServer<replication::ReplicationService> as NamedService>::NAME,
];

/// With `--auth`, the services only the other members may call (their certificate proves
/// them): the metadata quorum's messages and forwarded changes, and replica fetches.
const MEMBER_SERVICES: &[&str] = &[
    <RaftServer<cluster::RaftService> as NamedService>::NAME,
    <ReplicationServer<replication::ReplicationService> as NamedService>::NAME,
];

/// Serves the Weir services on `listener` until `shutdown` resolves, then stops accepting,
/// ends open subscriptions and waits for in-flight requests. In cluster mode it also serves
/// the metadata quorum's raft messages and replica fetches; `members` recognises the other
/// members by their certificates (with `--auth`, only they may call those).
pub async fn serve(
    broker: Arc<Broker>,
    cluster: Option<Arc<Cluster>>,
    listener: TcpListener,
    limits: RequestLimits,
    tls: Option<&TlsPem>,
    members: Option<Arc<Members>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (stop_tx, stop_rx) = watch::channel(false);
    // grpc.health.v1: SERVING for the server as a whole ("") and each Weir service while it
    // serves; NOT_SERVING from the moment shutdown begins, so load balancers stop sending
    // (open `Watch` streams get it, then end).
    let health_reporter = tonic_health::server::HealthReporter::new();
    let health = tonic_health::pb::health_server::HealthServer::new(health::StoppingHealth::new(
        tonic_health::server::HealthService::from_health_reporter(health_reporter.clone()),
        stop_rx.clone(),
    ));
    for service in HEALTH_SERVICES {
        health_reporter
            .set_service_status(*service, ServingStatus::Serving)
            .await;
    }
    let signal = async move {
        shutdown.await;
        for service in HEALTH_SERVICES {
            health_reporter
                .set_service_status(*service, ServingStatus::NotServing)
                .await;
        }
        // Subscriptions never finish on their own, and a follower's fetch may wait up to
        // 30 s: tell them to end, or the graceful shutdown would wait for them.
        let _ = stop_tx.send(true);
    };
    let topics = TopicsServer::new(topics::TopicsService::new(Arc::clone(&broker)))
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        .max_encoding_message_size(MAX_REQUEST_BYTES);
    let groups = GroupsServer::new(groups::GroupsService::new(Arc::clone(&broker)));
    let plugins = PluginsServer::new(plugins::PluginsService::new(Arc::clone(&broker)))
        .max_decoding_message_size(MAX_REQUEST_BYTES);
    let pipelines = PipelinesServer::new(pipelines::PipelinesService::new(Arc::clone(&broker)));
    let security = SecurityServer::new(security::SecurityService::new(Arc::clone(&broker)));
    let admin = AdminServer::new(admin::AdminService::new(Arc::clone(&broker)));
    let log = LogServer::new(log::LogService::new(Arc::clone(&broker), stop_rx.clone()))
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        .max_encoding_message_size(MAX_REQUEST_BYTES);
    // `Server::tcp_nodelay` applies only to listeners tonic binds itself: set it on the
    // incoming connections. Without it, Nagle held each small response (acks, headers) until
    // the client's delayed ACK, ~40 ms later (measured: a lone produce took 45 ms, not 3).
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let status = ClusterServer::new(cluster::ClusterService::new(
        Arc::clone(&broker),
        cluster.clone(),
        addr,
    ));
    let replication = cluster.is_some().then(|| {
        ReplicationServer::new(replication::ReplicationService::new(
            Arc::clone(&broker),
            stop_rx.clone(),
        ))
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        .max_encoding_message_size(MAX_REQUEST_BYTES)
    });
    let raft = cluster.map(|c| {
        RaftServer::new(cluster::RaftService::new(c))
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(MAX_REQUEST_BYTES)
    });
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut builder = tonic::transport::Server::builder();
    if let Some(pem) = tls {
        builder = builder.tls_config(tls_config(pem))?;
    }
    builder
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .max_concurrent_streams(Some(limits.streams_per_connection))
        .layer(
            edge::EdgeLayer::new(
                HEALTH_SERVICES,
                INTERNAL_SERVICES,
                limits.in_flight_requests,
                Arc::clone(broker.security()),
            )
            .members(members, MEMBER_SERVICES),
        )
        .add_service(topics)
        .add_service(groups)
        .add_service(plugins)
        .add_service(pipelines)
        .add_service(log)
        .add_service(status)
        .add_service(security)
        .add_service(admin)
        .add_service(health)
        .add_optional_service(raft)
        .add_optional_service(replication)
        .serve_with_incoming_shutdown(incoming, signal)
        .await
}
