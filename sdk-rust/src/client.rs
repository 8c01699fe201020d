//! Connections to brokers: one HTTP/2 channel per broker, shared by admin, producers and
//! consumers, and the cluster metadata requests are routed by.
//!
//! Admin requests go to the bootstrap broker (in a cluster any broker forwards them to the
//! controller). Produce and read requests go to the leader of their partition, found in the
//! metadata from `Cluster.GetMetadata`; a standalone broker leads everything, so there they
//! all use the bootstrap channel. On `not_leader` or a lost connection the producer and
//! consumers ask for fresh metadata (`refresh_routes`) and retry.
//!
//! Group requests go to the group's coordinator (`Groups.FindCoordinator`, cached per group;
//! the bootstrap broker when standalone), found again when it moved or stopped answering.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::Endpoint;
use weir_common::error::with_causes;
use weir_common::limits::MAX_REQUEST_BYTES;
use weir_proto::v1 as pb;
use weir_proto::v1::admin_client::AdminClient;
use weir_proto::v1::cluster_client::ClusterClient;
use weir_proto::v1::groups_client::GroupsClient;
use weir_proto::v1::log_client::LogClient;
use weir_proto::v1::pipelines_client::PipelinesClient;
use weir_proto::v1::plugins_client::PluginsClient;
use weir_proto::v1::security_client::SecurityClient;
use weir_proto::v1::topics_client::TopicsClient;

use crate::auth::Auth;
use crate::error::{Error, Result};
use crate::tls::{ClientOptions, TlsConfig};

/// Default broker address.
pub const DEFAULT_BROKER: &str = "127.0.0.1:9292";
/// How long requests routed to partition leaders keep retrying through leader changes.
pub const ROUTE_RETRY_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// While requests are open on a connection, it is pinged this often (HTTP/2 PING)...
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
/// ...and closed when a ping goes unanswered this long: a broker cut off by the network
/// answers nothing and resets nothing, and without it every request waited out its own
/// timeout (the producer's 30 s) before the client looked for the partition's new leader.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one broker may take to answer a metadata request before the next is asked.
const METADATA_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
const STREAM_WINDOW_BYTES: u32 = 8 * 1024 * 1024;
const CONNECTION_WINDOW_BYTES: u32 = 32 * 1024 * 1024;

/// A connection to one broker that puts the client's credentials on every call.
pub(crate) type Channel = InterceptedService<tonic::transport::Channel, Auth>;

/// A connection to Weir. Cheap to clone; clones share the connections.
#[derive(Clone, Debug)]
pub struct Client {
    /// The broker admin requests go to: the first bootstrap address that answered, replaced
    /// by another broker when it stops answering (see [`Client::fetch_metadata`]).
    bootstrap: Arc<Mutex<Route>>,
    routes: Arc<Routes>,
    /// Every bootstrap address given (metadata is asked of them too when the one connected
    /// to is gone).
    seeds: Arc<[String]>,
    /// Each group's coordinator, as last found.
    coordinators: Arc<Mutex<HashMap<String, Route>>>,
    /// TLS for every broker, when they serve it.
    tls: Option<Arc<TlsConfig>>,
    /// Credentials for every call, when the brokers run with `--auth`.
    auth: Auth,
}

/// Where requests for one partition go: its leader's address and channel.
#[derive(Clone, Debug)]
pub(crate) struct Route {
    pub addr: Arc<str>,
    pub channel: Channel,
}

/// The metadata requests are routed by, and a channel per broker.
#[derive(Debug, Default)]
struct Routes {
    state: Mutex<RouteState>,
    /// One metadata request at a time; callers that waited find it refreshed.
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct RouteState {
    /// `None` until the first metadata arrives.
    meta: Option<Arc<Placement>>,
    /// Bumped by every refresh.
    version: u64,
    channels: HashMap<String, Channel>,
}

/// Brokers and partition leaders, as the last metadata said.
#[derive(Debug, Default)]
struct Placement {
    /// A standalone broker (or one too old to know the metadata RPC): it serves everything.
    standalone: bool,
    brokers: HashMap<u64, String>,
    leaders: HashMap<String, Vec<Option<u64>>>,
}

fn lock(m: &Mutex<RouteState>) -> std::sync::MutexGuard<'_, RouteState> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn endpoint(addr: &str, tls: Option<&TlsConfig>) -> Result<Endpoint> {
    let uri = match (addr.contains("://"), tls) {
        (true, _) => addr.to_string(),
        (false, None) => format!("http://{addr}"),
        (false, Some(_)) => format!("https://{addr}"),
    };
    let bad = |e: &dyn std::fmt::Display| Error::Connect {
        addr: addr.into(),
        message: e.to_string(),
    };
    let mut ep = Endpoint::from_shared(uri).map_err(|e| bad(&e))?;
    if let Some(tls) = tls {
        ep = ep.tls_config(tls.client_config()).map_err(|e| bad(&e))?;
    }
    Ok(ep
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES))
}

/// Whether `e` says a broker could not be reached (or did not answer in time).
fn unreachable(e: &Error) -> bool {
    matches!(
        e,
        Error::Connect { .. } | Error::Unavailable(_) | Error::Timeout(_)
    )
}

/// The topics service on `channel`.
pub(crate) fn topics_rpc(channel: Channel) -> TopicsClient<Channel> {
    TopicsClient::new(channel)
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        .max_encoding_message_size(MAX_REQUEST_BYTES)
}

/// The plugins service on `channel` (modules are large messages).
pub(crate) fn plugins_rpc(channel: Channel) -> PluginsClient<Channel> {
    PluginsClient::new(channel)
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        .max_encoding_message_size(MAX_REQUEST_BYTES)
}

/// The log service on `channel`.
pub(crate) fn log_rpc(channel: Channel) -> LogClient<Channel> {
    LogClient::new(channel)
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        .max_encoding_message_size(MAX_REQUEST_BYTES)
}

impl Client {
    /// Connects to the first reachable broker of `addrs`, a comma-separated list of
    /// `HOST:PORT` (bootstrap addresses).
    pub async fn connect(addrs: impl AsRef<str>) -> Result<Self> {
        Self::connect_with(addrs, ClientOptions::default()).await
    }

    /// [`Client::connect`] with options: TLS (brokers served with `--tls-cert`).
    pub async fn connect_with(addrs: impl AsRef<str>, options: ClientOptions) -> Result<Self> {
        let auth = Auth::new(options.credentials.as_ref())?;
        let tls = options.tls.map(Arc::new);
        let mut last = Error::Connect {
            addr: addrs.as_ref().into(),
            message: "no address given".into(),
        };
        let seeds: Arc<[String]> = addrs
            .as_ref()
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
        for addr in seeds.iter() {
            match endpoint(addr, tls.as_deref())?.connect().await {
                Ok(channel) => {
                    return Ok(Self {
                        bootstrap: Arc::new(Mutex::new(Route {
                            addr: Arc::from(addr.as_str()),
                            channel: InterceptedService::new(channel, auth.clone()),
                        })),
                        routes: Arc::default(),
                        seeds: Arc::clone(&seeds),
                        coordinators: Arc::default(),
                        tls,
                        auth,
                    });
                }
                Err(e) => {
                    last = Error::Connect {
                        addr: addr.to_string(),
                        message: with_causes(&e),
                    };
                }
            }
        }
        Err(last)
    }

    /// The address of the broker this client sends admin requests to: the first bootstrap
    /// address that answered, or another broker once that one stopped answering.
    pub fn addr(&self) -> String {
        self.bootstrap_route().addr.to_string()
    }

    /// Where requests for `partition` of `topic` go, by the metadata known so far; `None`
    /// before the first metadata (ask with [`Client::refresh_routes`]). A partition the
    /// metadata does not place (unknown topic, no leader right now) goes to the bootstrap
    /// broker, whose answer (`topic_not_found`, `not_leader`) says what to do next.
    pub(crate) fn route(&self, topic: &str, partition: u32) -> Option<Route> {
        let meta = Arc::clone(lock(&self.routes.state).meta.as_ref()?);
        let leader = match meta.standalone {
            true => None,
            false => meta
                .leaders
                .get(topic)
                .and_then(|l| l.get(partition as usize).copied().flatten()),
        };
        Some(
            leader
                .and_then(|id| meta.brokers.get(&id))
                .and_then(|addr| self.route_to_addr(addr))
                .unwrap_or_else(|| self.bootstrap_route()),
        )
    }

    /// A route to the broker at `addr`, sharing one channel per address.
    fn route_to_addr(&self, addr: &str) -> Option<Route> {
        let bootstrap = self.bootstrap_route();
        if *bootstrap.addr == *addr {
            return Some(bootstrap);
        }
        let mut st = lock(&self.routes.state);
        let channel = match st.channels.get(addr) {
            Some(c) => c.clone(),
            None => {
                let c = endpoint(addr, self.tls.as_deref()).ok()?.connect_lazy();
                let c = InterceptedService::new(c, self.auth.clone());
                st.channels.insert(addr.to_string(), c.clone());
                c
            }
        };
        Some(Route {
            addr: Arc::from(addr),
            channel,
        })
    }

    /// The bootstrap broker as a route.
    pub(crate) fn bootstrap_route(&self) -> Route {
        self.bootstrap
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many times the metadata was fetched (pass it to [`Client::refresh_routes`]).
    pub(crate) fn routes_version(&self) -> u64 {
        lock(&self.routes.state).version
    }

    /// Fetches fresh metadata unless it was fetched since version `seen` (by another caller
    /// that hit the same stale route).
    pub(crate) async fn refresh_routes(&self, seen: u64) -> Result<()> {
        let _one = self.routes.refreshing.lock().await;
        if lock(&self.routes.state).version > seen {
            return Ok(());
        }
        let resp = self.fetch_metadata().await?;
        let placement = match resp {
            None => Placement {
                standalone: true,
                ..Placement::default()
            },
            Some(m) => Placement {
                standalone: m.brokers.len() == 1 && m.brokers[0].node_id == 0,
                brokers: m.brokers.into_iter().map(|b| (b.node_id, b.addr)).collect(),
                leaders: m
                    .topics
                    .into_iter()
                    .map(|t| {
                        let mut leaders = vec![None; t.partitions.len()];
                        for p in t.partitions {
                            if let Some(slot) = leaders.get_mut(p.partition as usize) {
                                *slot = p.leader;
                            }
                        }
                        (t.name, leaders)
                    })
                    .collect(),
            },
        };
        let mut st = lock(&self.routes.state);
        st.meta = Some(Arc::new(placement));
        st.version += 1;
        Ok(())
    }

    /// The cluster metadata from the bootstrap broker or, when it does not answer, from any
    /// other broker known (the other bootstrap addresses, the brokers of the last metadata),
    /// as Kafka clients ask any node. `None`: a broker too old to know the metadata RPC.
    /// The broker that answers becomes the bootstrap broker when the current one did not.
    async fn fetch_metadata(&self) -> Result<Option<pb::MetadataResponse>> {
        let bootstrap = self.bootstrap_route();
        let mut candidates = vec![bootstrap.addr.to_string()];
        candidates.extend(self.seeds.iter().cloned());
        if let Some(m) = &lock(&self.routes.state).meta {
            let mut known: Vec<&String> = m.brokers.values().collect();
            known.sort();
            candidates.extend(known.into_iter().cloned());
        }
        let mut tried = std::collections::HashSet::new();
        let mut last = None;
        for addr in candidates {
            if !tried.insert(addr.clone()) {
                continue;
            }
            let Some(route) = self.route_to_addr(&addr) else {
                continue;
            };
            let mut rpc = ClusterClient::new(route.channel.clone());
            let ask = rpc.get_metadata(pb::MetadataRequest { topics: Vec::new() });
            match tokio::time::timeout(METADATA_ATTEMPT_TIMEOUT, ask).await {
                Ok(Ok(r)) => {
                    if *route.addr != *bootstrap.addr {
                        tracing::info!(from = %bootstrap.addr, to = %route.addr, "the bootstrap broker does not answer; using another");
                        *self.bootstrap.lock().unwrap_or_else(|p| p.into_inner()) = route;
                    }
                    return Ok(Some(r.into_inner()));
                }
                Ok(Err(s)) if s.code() == tonic::Code::Unimplemented => return Ok(None),
                Ok(Err(s)) => last = Some(Error::from(s)),
                Err(_) => last = Some(Error::Timeout(METADATA_ATTEMPT_TIMEOUT)),
            }
        }
        Err(last.unwrap_or_else(|| Error::Connect {
            addr: bootstrap.addr.to_string(),
            message: "no broker to ask for metadata".into(),
        }))
    }

    /// Groups `partitions` by the route to their leader, fetching metadata first if there is
    /// none yet. Groups come in the order of their first partition.
    pub(crate) async fn routes_for(
        &self,
        topic: &str,
        partitions: impl IntoIterator<Item = u32>,
    ) -> Result<Vec<(Route, Vec<u32>)>> {
        if lock(&self.routes.state).meta.is_none() {
            self.refresh_routes(self.routes_version()).await?;
        }
        let mut out: Vec<(Route, Vec<u32>)> = Vec::new();
        for p in partitions {
            let route = self
                .route(topic, p)
                .unwrap_or_else(|| self.bootstrap_route());
            match out.iter_mut().find(|(r, _)| r.addr == route.addr) {
                Some((_, ps)) => ps.push(p),
                None => out.push((route, vec![p])),
            }
        }
        Ok(out)
    }

    /// The route to broker `node` (cluster mode), by the metadata known so far.
    pub(crate) fn route_to_node(&self, node: u64) -> Option<Route> {
        let addr = lock(&self.routes.state)
            .meta
            .as_ref()?
            .brokers
            .get(&node)?
            .clone();
        self.route_to_addr(&addr)
    }

    /// Runs `call` for each leader of `partitions` (one call per leader with the partitions
    /// it leads), retrying the calls that fail because leadership moved or a broker is
    /// unreachable, with fresh metadata, for up to [`ROUTE_RETRY_TIMEOUT`]. Answers come in
    /// the order of the groups.
    pub(crate) async fn on_leaders<T, F, Fut>(
        &self,
        topic: &str,
        partitions: &[u32],
        call: F,
    ) -> Result<Vec<T>>
    where
        F: Fn(Route, Vec<u32>) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let deadline = tokio::time::Instant::now() + ROUTE_RETRY_TIMEOUT;
        let mut backoff = Duration::from_millis(50);
        let mut out = Vec::new();
        let mut todo = partitions.to_vec();
        while !todo.is_empty() {
            let seen = self.routes_version();
            let mut failed = Vec::new();
            let mut last = None;
            for (route, ps) in self.routes_for(topic, todo.iter().copied()).await? {
                match call(route, ps.clone()).await {
                    Ok(t) => out.push(t),
                    Err(e) if e.is_retriable() && tokio::time::Instant::now() < deadline => {
                        failed.extend(ps);
                        last = Some(e);
                    }
                    Err(e) => return Err(e),
                }
            }
            if let Some(e) = last {
                tracing::debug!(error = %e, ?backoff, "leader unreachable or moved; retrying with fresh metadata");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                self.refresh_routes(seen).await?;
            }
            todo = failed;
        }
        Ok(out)
    }

    pub(crate) fn topics_rpc(&self) -> TopicsClient<Channel> {
        topics_rpc(self.bootstrap_route().channel)
    }

    pub(crate) fn bootstrap_channel(&self) -> Channel {
        self.bootstrap_route().channel
    }

    pub(crate) fn cluster_rpc(&self) -> ClusterClient<Channel> {
        ClusterClient::new(self.bootstrap_route().channel)
    }

    pub(crate) fn admin_rpc(&self) -> AdminClient<Channel> {
        AdminClient::new(self.bootstrap_route().channel)
    }

    pub(crate) fn log_rpc(&self) -> LogClient<Channel> {
        log_rpc(self.bootstrap_route().channel)
    }

    pub(crate) fn groups_rpc(&self) -> GroupsClient<Channel> {
        GroupsClient::new(self.bootstrap_route().channel)
    }

    pub(crate) fn plugins_rpc(&self) -> PluginsClient<Channel> {
        plugins_rpc(self.bootstrap_route().channel)
    }

    pub(crate) fn security_rpc(&self) -> SecurityClient<Channel> {
        SecurityClient::new(self.bootstrap_route().channel)
    }

    pub(crate) fn pipelines_rpc(&self) -> PipelinesClient<Channel> {
        PipelinesClient::new(self.bootstrap_route().channel)
    }

    /// The route to `group`'s coordinator: cached, or asked of the bootstrap broker (the
    /// bootstrap broker itself when standalone).
    pub(crate) async fn coordinator(&self, group: &str) -> Result<Route> {
        if let Some(r) = self.cached_coordinator(group) {
            return Ok(r);
        }
        if lock(&self.routes.state).meta.is_none() {
            self.refresh_routes(self.routes_version()).await?;
        }
        let standalone = lock(&self.routes.state)
            .meta
            .as_ref()
            .is_none_or(|m| m.standalone);
        let route = if standalone {
            self.bootstrap_route()
        } else {
            let req = pb::FindCoordinatorRequest {
                group: group.to_string(),
            };
            let found = match self.groups_rpc().find_coordinator(req.clone()).await {
                Ok(r) => Ok(r),
                Err(s) => {
                    let e = Error::from(s);
                    if !self.bootstrap_unreachable(&e).await {
                        return Err(e);
                    }
                    self.groups_rpc().find_coordinator(req).await
                }
            }?
            .into_inner();
            match found.addr.is_empty() {
                true => self.bootstrap_route(),
                false => self
                    .route_to_addr(&found.addr)
                    .ok_or_else(|| Error::Connect {
                        addr: found.addr.clone(),
                        message: "not a valid broker address".into(),
                    })?,
            }
        };
        self.coordinators
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(group.to_string(), route.clone());
        Ok(route)
    }

    fn cached_coordinator(&self, group: &str) -> Option<Route> {
        self.coordinators
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(group)
            .cloned()
    }

    /// The groups service at `group`'s coordinator.
    pub(crate) async fn coordinator_rpc(&self, group: &str) -> Result<GroupsClient<Channel>> {
        Ok(GroupsClient::new(self.coordinator(group).await?.channel))
    }

    /// After a group request failed with `e`: forgets the group's coordinator when `e` says
    /// it moved or cannot be reached, so the next request finds it again.
    pub(crate) fn coordinator_failed(&self, group: &str, e: &Error) {
        if matches!(e, Error::NotCoordinator(_)) || unreachable(e) {
            self.coordinators
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(group);
        }
    }

    /// Runs `call` at `group`'s coordinator, finding it again and retrying while it moves or
    /// cannot be reached, for up to [`ROUTE_RETRY_TIMEOUT`].
    pub(crate) async fn on_coordinator<T, F, Fut>(&self, group: &str, call: F) -> Result<T>
    where
        F: Fn(GroupsClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = tokio::time::Instant::now() + ROUTE_RETRY_TIMEOUT;
        let mut backoff = Duration::from_millis(50);
        loop {
            let result = match self.coordinator_rpc(group).await {
                Ok(rpc) => call(rpc).await.map(|r| r.into_inner()).map_err(Error::from),
                Err(e) => Err(e),
            };
            match result {
                Ok(t) => return Ok(t),
                Err(e) if e.is_retriable() && tokio::time::Instant::now() < deadline => {
                    tracing::debug!(group, error = %e, ?backoff, "group coordinator moved or unreachable; finding it again");
                    self.coordinator_failed(group, &e);
                    if matches!(e, Error::Connect { .. } | Error::Unavailable(_)) {
                        let _ = self.refresh_routes(self.routes_version()).await;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Every broker's address by the metadata (just the bootstrap broker when standalone).
    pub(crate) async fn broker_routes(&self) -> Result<Vec<Route>> {
        if lock(&self.routes.state).meta.is_none() {
            self.refresh_routes(self.routes_version()).await?;
        }
        let addrs: Vec<String> = match lock(&self.routes.state).meta.as_ref() {
            Some(m) if !m.standalone => {
                let mut a: Vec<String> = m.brokers.values().cloned().collect();
                a.sort();
                a
            }
            _ => Vec::new(),
        };
        if addrs.is_empty() {
            return Ok(vec![self.bootstrap_route()]);
        }
        Ok(addrs.iter().filter_map(|a| self.route_to_addr(a)).collect())
    }

    /// Whether `e` says the bootstrap broker could not be reached; then fresh metadata (asked
    /// of any broker known) moves admin requests to one that answers. Returns whether the
    /// bootstrap broker changed, so the call can be tried once more.
    pub(crate) async fn bootstrap_unreachable(&self, e: &Error) -> bool {
        if !unreachable(e) {
            return false;
        }
        let before = self.bootstrap_route().addr;
        let _ = self.refresh_routes(self.routes_version()).await;
        *self.bootstrap_route().addr != *before
    }
}
