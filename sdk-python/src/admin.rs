//! Admin calls, each written once for both APIs: [`admin_calls!`] turns every declaration
//! below into a blocking method of `Client` (waits with the GIL released) and a coroutine of
//! `AsyncClient` (`weir.aio`). A declaration converts its Python arguments (with the GIL),
//! then returns the future that makes the call; the two APIs differ only in how they wait
//! for it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pyo3::prelude::*;

use crate::errors::{InvalidArgument, to_py};
use crate::info::{
    Acl, GroupDescription, GroupSummary, PipelineInfo, PluginInfo, TopicDescription, UserInfo,
    ViewInfo, WhoAmI,
};
use crate::options::{self, PluginArg};

/// For each `fn NAME(admin, py, ARGS) -> T BODY`: `Client.NAME(ARGS) -> T` and
/// `AsyncClient.NAME(ARGS) -> Awaitable[T]`. `BODY` runs at the call with the GIL held, with
/// `admin` (a `weir::Admin`) and `py` in scope; it returns `PyResult` of a `Send` future of
/// `PyResult<T>`. Attributes (docs, `#[pyo3(signature = ...)]`) apply to both methods.
macro_rules! admin_calls {
    ($(
        $(#[$attr:meta])*
        fn $name:ident($admin:ident, $py:ident $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty $body:block
    )*) => {
        #[pymethods]
        impl crate::blocking::Client {
            $(
                $(#[$attr])*
                #[allow(clippy::too_many_arguments)] // one per Python argument
                fn $name(&self, $py: Python<'_>, $($arg: $ty),*) -> PyResult<$ret> {
                    let $admin = self.inner.admin();
                    let call = crate::admin::prepared::<_, $ret>($body)?;
                    crate::blocking::block_on($py, call)?
                }
            )*
        }

        #[pymethods]
        impl crate::aio::AsyncClient {
            $(
                $(#[$attr])*
                #[allow(clippy::too_many_arguments)] // one per Python argument
                fn $name<'py>(
                    &self,
                    $py: Python<'py>,
                    $($arg: $ty),*
                ) -> PyResult<Bound<'py, PyAny>> {
                    let $admin = self.inner.admin();
                    let call = crate::admin::prepared::<_, $ret>($body)?;
                    crate::future_into_py($py, call)
                }
            )*
        }
    };
}

/// A declaration's body as what it must be (it names the error type for `Ok(...)`).
pub(crate) fn prepared<F, T>(call: PyResult<F>) -> PyResult<F>
where
    F: std::future::Future<Output = PyResult<T>>,
{
    call
}

/// A `.wasm` module given as its bytes or as a path to the file.
#[derive(FromPyObject)]
pub(crate) enum Module {
    Bytes(Vec<u8>),
    Path(PathBuf),
}

impl Module {
    fn into_bytes(self) -> PyResult<Vec<u8>> {
        match self {
            Module::Bytes(b) => Ok(b),
            Module::Path(p) => std::fs::read(&p)
                .map_err(|e| InvalidArgument::new_err(format!("cannot read {}: {e}", p.display()))),
        }
    }
}

/// One topic or several.
#[derive(FromPyObject)]
pub(crate) enum Topics {
    One(String),
    Many(Vec<String>),
}

fn pipeline_start(start: &str) -> PyResult<weir::PipelineStart> {
    match start {
        "earliest" => Ok(weir::PipelineStart::Earliest),
        "latest" => Ok(weir::PipelineStart::Latest),
        other => Err(InvalidArgument::new_err(format!(
            "start must be \"earliest\" or \"latest\", not {other:?}"
        ))),
    }
}

admin_calls! {
    /// Creates a topic; `retention_ms=-1` keeps records forever, None the broker default.
    /// In a cluster, `replication_factor` copies of each partition (None: 1), and
    /// `min_insync_replicas` of them in sync for an acks="all" produce (None: 1).
    #[pyo3(signature = (name, partitions = 1, retention_ms = None, retention_bytes = None, replication_factor = None, min_insync_replicas = None))]
    fn create_topic(
        admin,
        py,
        name: String,
        partitions: u32,
        retention_ms: Option<i64>,
        retention_bytes: Option<i64>,
        replication_factor: Option<u32>,
        min_insync_replicas: Option<u32>,
    ) -> () {
        let topic = options::new_topic(
            name,
            partitions,
            retention_ms,
            retention_bytes,
            replication_factor,
            min_insync_replicas,
        );
        Ok(async move { admin.create_topic(topic).await.map(drop).map_err(to_py) })
    }

    /// Names of all topics.
    fn list_topics(admin, py) -> Vec<String> {
        Ok(async move {
            let topics = admin.list_topics().await.map_err(to_py)?;
            Ok(topics.into_iter().map(|t| t.name).collect())
        })
    }

    /// A topic's settings and, per partition, earliest and latest offsets, size and (in a
    /// cluster) leader, replicas and in-sync replicas.
    fn describe_topic(admin, py, name: String) -> TopicDescription {
        Ok(async move {
            let d = admin.describe_topic(&name).await.map_err(to_py)?;
            Ok(TopicDescription::new(d))
        })
    }

    /// Deletes a topic and its records.
    fn delete_topic(admin, py, name: String) -> () {
        Ok(async move { admin.delete_topic(&name).await.map_err(to_py) })
    }

    /// Per partition, the first offset whose record's timestamp is at or after the time given
    /// for it (unix ms or a datetime), or the log end if there is none:
    /// `{partition: offset}`.
    fn offsets_for_times(admin, py, topic: String, timestamps: BTreeMap<u32, Bound<'_, PyAny>>) -> BTreeMap<u32, u64> {
        let queries = options::time_queries(&timestamps)?;
        Ok(async move {
            let found = admin.list_offsets(&topic, &queries).await.map_err(to_py)?;
            Ok(found.into_iter().collect())
        })
    }

    /// Registers a WebAssembly plugin: `module` is the `.wasm` file's bytes or its path. The
    /// broker validates and compiles it (`InvalidArgument` if it is not a plugin). `replace`
    /// swaps the module of an existing plugin. Limits: None takes the broker's default.
    #[pyo3(signature = (name, module, *, replace = false, memory_bytes = None, call_timeout_ms = None, max_output_bytes = None))]
    fn register_plugin(
        admin,
        py,
        name: String,
        module: Module,
        replace: bool,
        memory_bytes: Option<u64>,
        call_timeout_ms: Option<u64>,
        max_output_bytes: Option<u64>,
    ) -> PluginInfo {
        let wasm = module.into_bytes()?;
        let limits = weir::PluginLimits {
            memory_bytes,
            call_timeout_ms,
            max_output_bytes,
        };
        Ok(async move {
            let info = admin
                .register_plugin_with(&name, wasm, limits, replace)
                .await
                .map_err(to_py)?;
            Ok(PluginInfo::from(info))
        })
    }

    /// Every registered plugin, by name.
    fn list_plugins(admin, py) -> Vec<PluginInfo> {
        Ok(async move {
            let plugins = admin.list_plugins().await.map_err(to_py)?;
            Ok(plugins.into_iter().map(PluginInfo::from).collect())
        })
    }

    /// Deletes a plugin (`PluginError` while a pipeline or view uses it).
    fn delete_plugin(admin, py, name: String) -> () {
        Ok(async move { admin.delete_plugin(&name).await.map_err(to_py) })
    }

    /// Creates and starts a pipeline: `source` → `plugins` (`[(name, params or None)]`, in
    /// order) → `destination` (a topic, or several: a `route` stage picks among them), exactly
    /// once. `start`: "earliest" (every record kept) or "latest" (new records only).
    #[pyo3(signature = (name, source, destination, plugins, start = "earliest"))]
    fn create_pipeline(
        admin,
        py,
        name: String,
        source: String,
        destination: Topics,
        plugins: Vec<PluginArg<'_>>,
        start: &str,
    ) -> PipelineInfo {
        let mut outputs = match destination {
            Topics::One(t) => vec![t],
            Topics::Many(ts) => ts,
        }
        .into_iter();
        let first = outputs
            .next()
            .ok_or_else(|| InvalidArgument::new_err("a pipeline needs a destination topic"))?;
        let mut new = weir::NewPipeline::new(name, source, first).start(pipeline_start(start)?);
        for t in outputs {
            new = new.also_to(t);
        }
        for (plugin, params) in options::chain(py, plugins)? {
            new = new.plugin(plugin, params.as_deref());
        }
        Ok(async move {
            let info = admin.create_pipeline(new).await.map_err(to_py)?;
            Ok(PipelineInfo::new(info))
        })
    }

    /// Every pipeline, by name, with totals (`partitions` is empty: see `describe_pipeline`).
    fn list_pipelines(admin, py) -> Vec<PipelineInfo> {
        Ok(async move {
            let all = admin.list_pipelines().await.map_err(to_py)?;
            Ok(all.into_iter().map(PipelineInfo::new).collect())
        })
    }

    /// A pipeline with, per source partition, position, lag, counters and (in a cluster) the
    /// broker whose worker runs it.
    fn describe_pipeline(admin, py, name: String) -> PipelineInfo {
        Ok(async move {
            let info = admin.describe_pipeline(&name).await.map_err(to_py)?;
            Ok(PipelineInfo::new(info))
        })
    }

    /// Stops and deletes a pipeline (what it wrote stays in its destinations).
    fn delete_pipeline(admin, py, name: String) -> () {
        Ok(async move { admin.delete_pipeline(&name).await.map_err(to_py) })
    }

    /// Restarts a failed pipeline from where it stopped (a running one is left alone).
    fn resume_pipeline(admin, py, name: String) -> PipelineInfo {
        Ok(async move {
            let info = admin.resume_pipeline(&name).await.map_err(to_py)?;
            Ok(PipelineInfo::new(info))
        })
    }

    /// Creates a view: a read-only topic whose records are `source`'s through `plugins`
    /// (stateless kinds), at the source's offsets.
    fn create_view(admin, py, name: String, source: String, plugins: Vec<PluginArg<'_>>) -> ViewInfo {
        let chain: Vec<weir::PluginUse> = options::chain(py, plugins)?
            .into_iter()
            .map(|(name, params)| weir::PluginUse { name, params })
            .collect();
        Ok(async move {
            let info = admin.create_view(&name, &source, &chain).await.map_err(to_py)?;
            Ok(ViewInfo::from(info))
        })
    }

    /// Every view, by name.
    fn list_views(admin, py) -> Vec<ViewInfo> {
        Ok(async move {
            let views = admin.list_views().await.map_err(to_py)?;
            Ok(views.into_iter().map(ViewInfo::from).collect())
        })
    }

    /// Deletes a view (its source is untouched).
    fn delete_view(admin, py, name: String) -> () {
        Ok(async move { admin.delete_view(&name).await.map_err(to_py) })
    }

    /// Every consumer group (live members or committed offsets), by name.
    fn list_groups(admin, py) -> Vec<GroupSummary> {
        Ok(async move {
            let groups = admin.list_groups().await.map_err(to_py)?;
            Ok(groups.into_iter().map(GroupSummary::from).collect())
        })
    }

    /// A group's members and, per partition, committed offset, end offset, lag and owner
    /// (`GroupError` for an unknown group).
    fn describe_group(admin, py, group: String) -> GroupDescription {
        Ok(async move {
            let d = admin.describe_group(&group).await.map_err(to_py)?;
            Ok(GroupDescription::new(d))
        })
    }

    /// A group's committed offset per partition of `topic` (None: never committed).
    fn committed_offsets(admin, py, group: String, topic: String) -> BTreeMap<u32, Option<u64>> {
        Ok(async move {
            let offsets = admin.committed_offsets(&group, &topic).await.map_err(to_py)?;
            Ok(offsets.into_iter().collect())
        })
    }

    /// Moves a group's committed offsets in every partition of `topic` to `to` ("earliest",
    /// "latest", an offset or a datetime); only while the group has no live members
    /// (`GroupError` otherwise). Returns `{partition: new offset}`.
    #[pyo3(signature = (group, topic, to = None))]
    fn reset_group(admin, py, group: String, topic: String, to: Option<Bound<'_, PyAny>>) -> BTreeMap<u32, u64> {
        let to = options::start_from(to.as_ref())?;
        Ok(async move {
            let offsets = admin.reset_group(&group, &topic, to).await.map_err(to_py)?;
            Ok(offsets.into_iter().collect())
        })
    }

    /// Deletes a group and its committed offsets; only while it has no live members.
    fn delete_group(admin, py, group: String) -> () {
        Ok(async move { admin.delete_group(&group).await.map_err(to_py) })
    }

    /// Who the broker takes this client for.
    fn whoami(admin, py) -> WhoAmI {
        Ok(async move { Ok(WhoAmI::from(admin.whoami().await.map_err(to_py)?)) })
    }

    /// Adds a user (superusers only) with `password`, or without one with a new token, which
    /// is returned: the broker keeps only its digest, so this is the one time it is seen.
    #[pyo3(signature = (name, password = None, superuser = false))]
    fn add_user(admin, py, name: String, password: Option<String>, superuser: bool) -> Option<String> {
        Ok(async move {
            admin
                .create_user(&name, password.as_deref(), superuser)
                .await
                .map_err(to_py)
        })
    }

    /// Removes a user and its ACLs (superusers only); returns how many ACLs went.
    fn remove_user(admin, py, name: String) -> u32 {
        Ok(async move { admin.delete_user(&name).await.map_err(to_py) })
    }

    /// Every user (superusers only).
    fn list_users(admin, py) -> Vec<UserInfo> {
        Ok(async move {
            let users = admin.list_users().await.map_err(to_py)?;
            Ok(users.into_iter().map(UserInfo::from).collect())
        })
    }

    /// Lets `principal` (a user, or "*" for every user) do `operation` ("read", "write" or
    /// "admin") on the resources of `resource_type` ("topic", "group", "plugin" or
    /// "pipeline") whose names match `pattern` (a name, a prefix and "*", or "*").
    fn grant_acl(admin, py, principal: String, operation: String, resource_type: String, pattern: String) -> () {
        let acl = weir::Acl::new(principal, operation, resource_type, pattern);
        Ok(async move { admin.grant_acl(&acl).await.map_err(to_py) })
    }

    /// Takes back a grant (the same arguments as it was granted with).
    fn revoke_acl(admin, py, principal: String, operation: String, resource_type: String, pattern: String) -> () {
        let acl = weir::Acl::new(principal, operation, resource_type, pattern);
        Ok(async move { admin.revoke_acl(&acl).await.map_err(to_py) })
    }

    /// Every ACL, or `principal`'s (superusers only).
    #[pyo3(signature = (principal = None))]
    fn list_acls(admin, py, principal: Option<String>) -> Vec<Acl> {
        Ok(async move {
            let acls = admin.list_acls(principal.as_deref()).await.map_err(to_py)?;
            Ok(acls.into_iter().map(Acl::from).collect())
        })
    }
}
