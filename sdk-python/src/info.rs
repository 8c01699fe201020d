//! What admin calls answer: read-only Python objects (`weir.TopicDescription`,
//! `weir.PluginInfo`, ...) built from the Rust SDK's types, one field per attribute.
//!
//! They hold plain Rust values (nested ones by value, copied out on access), so they are made
//! on the runtime's threads without the GIL and turned into Python objects where the result
//! is handed over.

use pyo3::prelude::*;

/// `repr()` of a frozen info class: `Name(field=value, ...)` from its Rust `Debug` form.
macro_rules! debug_repr {
    ($($t:ty),* $(,)?) => {$(
        #[pymethods]
        impl $t {
            fn __repr__(&self) -> String {
                format!("{self:?}")
            }
        }
    )*};
}

/// A plugin use in a chain: its name and JSON params (as the broker keeps them).
pub(crate) type ChainLink = (String, Option<String>);

fn chain_of(plugins: Vec<weir::PluginUse>) -> Vec<ChainLink> {
    plugins.into_iter().map(|u| (u.name, u.params)).collect()
}

/// `[(name, params)]` with the params parsed back from JSON (None without params).
fn chain_to_py<'py>(py: Python<'py>, chain: &[ChainLink]) -> PyResult<Vec<(String, Py<PyAny>)>> {
    let json = py.import("json")?;
    chain
        .iter()
        .map(|(name, params)| {
            let params = match params {
                None => py.None(),
                Some(p) => json.call_method1("loads", (p,))?.unbind(),
            };
            Ok((name.clone(), params))
        })
        .collect()
}

/// One partition of a topic: offsets, size and, in a cluster, where it lives.
#[pyclass(module = "weir._weir", frozen, get_all)]
#[derive(Debug, Clone)]
pub(crate) struct PartitionInfo {
    partition: u32,
    earliest_offset: u64,
    latest_offset: u64,
    size_bytes: u64,
    segments: u32,
    leader: Option<u64>,
    leader_epoch: u32,
    replicas: Vec<u64>,
    isr: Vec<u64>,
}

/// A topic's settings and partitions (`Client.describe_topic`).
#[pyclass(module = "weir._weir", frozen, get_all)]
#[derive(Debug)]
pub(crate) struct TopicDescription {
    name: String,
    retention_ms: Option<i64>,
    retention_bytes: Option<u64>,
    segment_bytes: u64,
    segment_ms: i64,
    min_insync_replicas: u32,
    view_of: Option<String>,
    partitions: Vec<PartitionInfo>,
}

impl TopicDescription {
    pub(crate) fn new(d: weir::TopicDescription) -> Self {
        let partitions = d
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let place = d.placement.get(i);
                PartitionInfo {
                    partition: p.partition,
                    earliest_offset: p.earliest_offset,
                    latest_offset: p.latest_offset,
                    size_bytes: p.size_bytes,
                    segments: p.segments,
                    leader: place.and_then(|p| p.leader),
                    leader_epoch: place.map_or(0, |p| p.leader_epoch),
                    replicas: place.map(|p| p.replicas.clone()).unwrap_or_default(),
                    isr: place.map(|p| p.isr.clone()).unwrap_or_default(),
                }
            })
            .collect();
        let t = d.topic;
        Self {
            name: t.name,
            retention_ms: t.retention_ms,
            retention_bytes: t.retention_bytes,
            segment_bytes: t.segment_bytes,
            segment_ms: t.segment_ms,
            min_insync_replicas: t.min_insync_replicas,
            view_of: t.view_of,
            partitions,
        }
    }
}

/// A registered plugin.
#[pyclass(module = "weir._weir", frozen, get_all)]
#[derive(Debug)]
pub(crate) struct PluginInfo {
    name: String,
    kind: String,
    size_bytes: u64,
    created_ms: i64,
    memory_limit_bytes: u64,
    call_timeout_ms: u64,
    max_output_bytes: u64,
    sha256: String,
    version: u64,
}

impl From<weir::PluginInfo> for PluginInfo {
    fn from(p: weir::PluginInfo) -> Self {
        Self {
            name: p.name,
            kind: p.kind,
            size_bytes: p.size_bytes,
            created_ms: p.created_ms,
            memory_limit_bytes: p.memory_limit_bytes,
            call_timeout_ms: p.call_timeout_ms,
            max_output_bytes: p.max_output_bytes,
            sha256: p.sha256,
            version: p.version,
        }
    }
}

/// One source partition of a pipeline.
#[pyclass(module = "weir._weir", frozen, get_all)]
#[derive(Debug, Clone)]
pub(crate) struct PipelinePartition {
    partition: u32,
    position: u64,
    end_offset: u64,
    lag: u64,
    records_in: u64,
    records_out: u64,
    worker: Option<u64>,
}

/// A pipeline's definition, status and counters.
#[pyclass(module = "weir._weir", frozen)]
#[derive(Debug)]
pub(crate) struct PipelineInfo {
    #[pyo3(get)]
    name: String,
    #[pyo3(get)]
    source: String,
    /// Output 0 first, then the outputs a `route` stage may send to.
    #[pyo3(get)]
    destinations: Vec<String>,
    chain: Vec<ChainLink>,
    #[pyo3(get)]
    status: String,
    #[pyo3(get)]
    error: Option<String>,
    #[pyo3(get)]
    created_ms: i64,
    #[pyo3(get)]
    lag: u64,
    #[pyo3(get)]
    records_in: u64,
    #[pyo3(get)]
    records_out: u64,
    #[pyo3(get)]
    partitions: Vec<PipelinePartition>,
}

impl PipelineInfo {
    pub(crate) fn new(p: weir::PipelineInfo) -> Self {
        let partitions = p
            .partitions
            .into_iter()
            .map(|q| PipelinePartition {
                partition: q.partition,
                position: q.position,
                end_offset: q.end_offset,
                lag: q.lag,
                records_in: q.records_in,
                records_out: q.records_out,
                worker: q.worker,
            })
            .collect();
        let mut destinations = vec![p.to_topic];
        destinations.extend(p.extra_to_topics);
        Self {
            name: p.name,
            source: p.from_topic,
            destinations,
            chain: chain_of(p.plugins),
            status: p.status.to_string(),
            error: p.error,
            created_ms: p.created_ms,
            lag: p.lag,
            records_in: p.records_in,
            records_out: p.records_out,
            partitions,
        }
    }
}

#[pymethods]
impl PipelineInfo {
    /// Output 0, where records go unless a `route` stage sends them elsewhere.
    #[getter]
    fn destination(&self) -> &str {
        self.destinations.first().map_or("", String::as_str)
    }

    /// The chain: `[(plugin name, params or None)]`.
    #[getter]
    fn plugins(&self, py: Python<'_>) -> PyResult<Vec<(String, Py<PyAny>)>> {
        chain_to_py(py, &self.chain)
    }
}

/// A view: a read-only topic through a chain of plugins.
#[pyclass(module = "weir._weir", frozen)]
#[derive(Debug)]
pub(crate) struct ViewInfo {
    #[pyo3(get)]
    name: String,
    #[pyo3(get)]
    source: String,
    chain: Vec<ChainLink>,
    #[pyo3(get)]
    created_ms: i64,
}

impl From<weir::ViewInfo> for ViewInfo {
    fn from(v: weir::ViewInfo) -> Self {
        Self {
            name: v.name,
            source: v.source,
            chain: chain_of(v.plugins),
            created_ms: v.created_ms,
        }
    }
}

#[pymethods]
impl ViewInfo {
    /// The chain: `[(plugin name, params or None)]`.
    #[getter]
    fn plugins(&self, py: Python<'_>) -> PyResult<Vec<(String, Py<PyAny>)>> {
        chain_to_py(py, &self.chain)
    }
}

/// A consumer group in a listing.
#[pyclass(module = "weir._weir", frozen, get_all)]
#[derive(Debug)]
pub(crate) struct GroupSummary {
    name: String,
    state: String,
    members: u32,
    epoch: u64,
}

impl From<weir::GroupSummary> for GroupSummary {
    fn from(g: weir::GroupSummary) -> Self {
        Self {
            name: g.name,
            state: g.state,
            members: g.members,
            epoch: g.epoch,
        }
    }
}

/// A live member of a group.
#[pyclass(module = "weir._weir", frozen, get_all)]
#[derive(Debug, Clone)]
pub(crate) struct GroupMember {
    member_id: String,
    client_id: String,
    member_epoch: i64,
    topics: Vec<String>,
    assignment: Vec<(String, u32)>,
    revoking: Vec<(String, u32)>,
    session_timeout_ms: u64,
    since_heartbeat_ms: u64,
}

/// A group's partition: committed offset, end offset, lag and owner.
#[pyclass(module = "weir._weir", frozen, get_all)]
#[derive(Debug, Clone)]
pub(crate) struct GroupPartition {
    topic: String,
    partition: u32,
    committed_offset: Option<u64>,
    end_offset: u64,
    lag: Option<u64>,
    member_id: Option<String>,
}

/// A group's members and partitions (`Client.describe_group`).
#[pyclass(module = "weir._weir", frozen, get_all)]
#[derive(Debug)]
pub(crate) struct GroupDescription {
    name: String,
    state: String,
    epoch: u64,
    members: Vec<GroupMember>,
    partitions: Vec<GroupPartition>,
}

impl GroupDescription {
    pub(crate) fn new(d: weir::GroupDescription) -> Self {
        let members = d
            .members
            .into_iter()
            .map(|m| GroupMember {
                member_id: m.member_id,
                client_id: m.client_id,
                member_epoch: m.member_epoch,
                topics: m.topics,
                assignment: m.assignment,
                revoking: m.revoking,
                session_timeout_ms: m.session_timeout.as_millis() as u64,
                since_heartbeat_ms: m.since_heartbeat.as_millis() as u64,
            })
            .collect();
        let partitions = d
            .partitions
            .into_iter()
            .map(|p| GroupPartition {
                topic: p.topic,
                partition: p.partition,
                committed_offset: p.committed_offset,
                end_offset: p.end_offset,
                lag: p.lag,
                member_id: p.member_id,
            })
            .collect();
        Self {
            name: d.group.name,
            state: d.group.state,
            epoch: d.group.epoch,
            members,
            partitions,
        }
    }
}

/// A user (`Client.list_users`).
#[pyclass(module = "weir._weir", frozen, get_all)]
#[derive(Debug)]
pub(crate) struct UserInfo {
    name: String,
    credential: String,
    superuser: bool,
    created_ms: i64,
}

impl From<weir::UserInfo> for UserInfo {
    fn from(u: weir::UserInfo) -> Self {
        Self {
            name: u.name,
            credential: u.credential,
            superuser: u.superuser,
            created_ms: u.created_ms,
        }
    }
}

/// A permission: `principal` may do `operation` on resources of `resource_type` matching
/// `pattern`.
#[pyclass(module = "weir._weir", frozen, get_all)]
#[derive(Debug)]
pub(crate) struct Acl {
    principal: String,
    operation: String,
    resource_type: String,
    pattern: String,
}

impl From<weir::Acl> for Acl {
    fn from(a: weir::Acl) -> Self {
        Self {
            principal: a.principal,
            operation: a.operation,
            resource_type: a.resource_type,
            pattern: a.pattern,
        }
    }
}

/// Who the broker takes this client for (`Client.whoami`).
#[pyclass(module = "weir._weir", frozen, get_all)]
#[derive(Debug)]
pub(crate) struct WhoAmI {
    name: String,
    superuser: bool,
    auth_enabled: bool,
}

impl From<weir::WhoAmI> for WhoAmI {
    fn from(w: weir::WhoAmI) -> Self {
        Self {
            name: w.name,
            superuser: w.superuser,
            auth_enabled: w.auth_enabled,
        }
    }
}

debug_repr!(
    PartitionInfo,
    TopicDescription,
    PluginInfo,
    PipelinePartition,
    PipelineInfo,
    ViewInfo,
    GroupSummary,
    GroupMember,
    GroupPartition,
    GroupDescription,
    UserInfo,
    Acl,
    WhoAmI,
);

/// Adds the classes to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PartitionInfo>()?;
    m.add_class::<TopicDescription>()?;
    m.add_class::<PluginInfo>()?;
    m.add_class::<PipelinePartition>()?;
    m.add_class::<PipelineInfo>()?;
    m.add_class::<ViewInfo>()?;
    m.add_class::<GroupSummary>()?;
    m.add_class::<GroupMember>()?;
    m.add_class::<GroupPartition>()?;
    m.add_class::<GroupDescription>()?;
    m.add_class::<UserInfo>()?;
    m.add_class::<Acl>()?;
    m.add_class::<WhoAmI>()?;
    Ok(())
}
