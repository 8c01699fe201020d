//! Plugins and pipelines through the facade.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::Broker;
use crate::blocking::blocking;
use crate::cluster::Cluster;
use crate::cluster::state::{Command, Metadata, Outcome, PluginEntry};
use crate::error::BrokerError;
use crate::metrics;
use crate::pipelines::{PipelineDef, PipelineEnv, PipelineView, Start};
use crate::plugins::{Plugin, PluginInfo, PluginKind, PluginLimits, module_sha256};
use crate::types::now_ms;

/// How long a use of a plugin waits for a module still on its way to this member.
pub const PLUGIN_LOAD_WAIT: Duration = Duration::from_secs(10);
/// How long putting or fetching one module on another member may take (16 MiB at most).
const MODULE_TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two attempts to fetch the modules a member is missing.
const MODULE_RETRY: Duration = Duration::from_secs(1);
/// A module no plugin uses is dropped once it is this old: one just put here for a
/// registration still being proposed is kept.
const MODULE_PRUNE_AGE: Duration = Duration::from_secs(600);

/// A metadata entry as the registry lists it.
fn plugin_info(name: &str, e: &PluginEntry) -> Result<PluginInfo, BrokerError> {
    let kind = PluginKind::from_code(i32::from(e.kind)).ok_or_else(|| {
        BrokerError::Storage(format!("plugin {name:?} has unknown kind code {}", e.kind))
    })?;
    Ok(PluginInfo {
        name: name.to_string(),
        kind,
        size_bytes: e.size_bytes,
        created_ms: e.created_ms,
        limits: PluginLimits {
            memory_bytes: usize::try_from(e.memory_bytes).unwrap_or(usize::MAX),
            call_timeout_ms: e.call_timeout_ms,
            output_bytes: usize::try_from(e.output_bytes).unwrap_or(usize::MAX),
        },
        sha256: e.sha256.clone(),
        version: e.version,
    })
}

impl Broker {
    /// Validates, compiles and stores a plugin module (on the blocking pool: compiling takes
    /// a while). In a cluster the module goes to the other members and the registration
    /// into the replicated metadata ([`Self::register_in_cluster`]).
    pub async fn register_plugin(
        self: &Arc<Self>,
        name: String,
        wasm: Bytes,
        replace: bool,
        limits: PluginLimits,
    ) -> Result<PluginInfo, BrokerError> {
        if let Some(cluster) = self.cluster() {
            return self
                .register_in_cluster(Arc::clone(cluster), name, wasm, replace, limits)
                .await;
        }
        let this = Arc::clone(self);
        blocking(move || this.plugins.register(&name, &wasm, replace, limits)).await
    }

    /// Cluster mode: compiles the module here (so a bad one is refused before anything is
    /// proposed), keeps it, puts it on the other members, and proposes the registration
    /// once a majority of the members hold it, so the loss of a minority cannot lose the
    /// module of an acknowledged registration. Members that did not get it fetch it by
    /// SHA-256 when they apply the registration ([`Self::follow_plugins`]).
    async fn register_in_cluster(
        self: &Arc<Self>,
        cluster: Arc<Cluster>,
        name: String,
        wasm: Bytes,
        replace: bool,
        limits: PluginLimits,
    ) -> Result<PluginInfo, BrokerError> {
        let exists = cluster.metadata().borrow().plugins.contains_key(&name);
        if exists && !replace {
            return Err(BrokerError::PluginExists(name));
        }
        if !exists && replace {
            return Err(BrokerError::PluginNotFound(name));
        }
        let sha256 = module_sha256(&wasm);
        let this = Arc::clone(self);
        let (n, w, sha) = (name.clone(), wasm.clone(), sha256.clone());
        let plugin = blocking(move || {
            let plugin = this.plugins.compile(&n, &w, limits)?;
            this.plugins.put_module(&sha, &w)?;
            Ok(plugin)
        })
        .await?;
        self.spread_module(&cluster, &sha256, &wasm).await?;
        let mut entry = PluginEntry {
            sha256,
            kind: plugin.kind.code(),
            size_bytes: wasm.len() as u64,
            created_ms: now_ms(),
            memory_bytes: limits.memory_bytes as u64,
            call_timeout_ms: limits.call_timeout_ms,
            output_bytes: limits.output_bytes as u64,
            version: 0,
        };
        let cmd = Command::PutPlugin {
            name: name.clone(),
            entry: entry.clone(),
            replace,
        };
        entry.version = match cluster.propose(cmd).await? {
            Outcome::PluginRegistered { version } => version,
            Outcome::PluginExists => return Err(BrokerError::PluginExists(name)),
            Outcome::PluginNotFound => return Err(BrokerError::PluginNotFound(name)),
            other => {
                return Err(BrokerError::Storage(format!(
                    "the cluster did not take the plugin: {other:?}"
                )));
            }
        };
        let info = plugin_info(&name, &entry)?;
        // Read your writes: a list through this member right after shows the registration.
        let version = entry.version;
        self.await_metadata(|m, _| m.plugins.get(&name).is_some_and(|e| e.version >= version))
            .await;
        self.plugins.install(info.clone(), plugin);
        tracing::info!(plugin = %name, kind = info.kind.as_str(), bytes = wasm.len(), replace, version = info.version, "registered plugin in the cluster");
        Ok(info)
    }

    /// Puts a module on every other member at once; succeeds when, with this one, a
    /// majority of the members hold it.
    async fn spread_module(
        &self,
        cluster: &Cluster,
        sha256: &str,
        wasm: &Bytes,
    ) -> Result<(), BrokerError> {
        let me = cluster.node_id();
        let puts = cluster.peers().iter().filter(|(id, _)| **id != me).map(|(id, addr)| {
            let wasm = wasm.clone();
            async move {
                let put = cluster
                    .peer_channels()
                    .put_plugin_module(addr, sha256, wasm, MODULE_TRANSFER_TIMEOUT)
                    .await;
                if let Err(e) = &put {
                    tracing::warn!(node = id, sha256, error = %e, "could not put a plugin module on a member; it fetches it later");
                }
                put.is_ok()
            }
        });
        let holders = 1 + futures::future::join_all(puts)
            .await
            .into_iter()
            .filter(|ok| *ok)
            .count();
        let members = cluster.peers().len();
        if holders < members / 2 + 1 {
            return Err(BrokerError::ClusterUnavailable(format!(
                "the plugin module reached {holders} of {members} members; a majority must hold it before it is registered"
            )));
        }
        Ok(())
    }

    pub fn list_plugins(&self) -> Vec<PluginInfo> {
        match self.cluster() {
            // The metadata's registry: the same answer on every member.
            Some(cluster) => cluster
                .metadata()
                .borrow()
                .plugins
                .iter()
                .filter_map(|(name, entry)| plugin_info(name, entry).ok())
                .collect(),
            None => self.plugins.list(),
        }
    }

    /// The plugin `name` to run. In a cluster, the version the metadata names as this member
    /// applied it: a module still on its way (a registration or replacement just applied, or
    /// this member catching up after a restart) is waited for up to [`PLUGIN_LOAD_WAIT`].
    pub async fn plugin(&self, name: &str) -> Result<Plugin, BrokerError> {
        let Some(cluster) = self.cluster() else {
            return self.plugins.get(name);
        };
        let mut changes = self.plugins.changes();
        let deadline = tokio::time::Instant::now() + PLUGIN_LOAD_WAIT;
        loop {
            let Some(sha) = cluster
                .metadata()
                .borrow()
                .plugins
                .get(name)
                .map(|e| e.sha256.clone())
            else {
                return Err(BrokerError::PluginNotFound(name.to_string()));
            };
            if let Some(p) = self.plugins.get_version(name, &sha) {
                return Ok(p);
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                return Err(BrokerError::ClusterUnavailable(format!(
                    "plugin {name:?} is registered but its module has not reached this broker yet; try again"
                )));
            }
        }
    }

    /// Deletes a plugin unless a pipeline uses it.
    pub async fn delete_plugin(self: &Arc<Self>, name: String) -> Result<(), BrokerError> {
        if let Some(cluster) = self.cluster() {
            match cluster
                .propose(Command::DeletePlugin { name: name.clone() })
                .await?
            {
                Outcome::Done => {}
                Outcome::PluginNotFound => return Err(BrokerError::PluginNotFound(name)),
                Outcome::PluginInUse { pipeline } => {
                    return Err(BrokerError::PluginInUse {
                        plugin: name,
                        pipeline,
                    });
                }
                Outcome::InUseByViews { views } => {
                    return Err(BrokerError::PluginUsedByViews {
                        plugin: name,
                        views,
                    });
                }
                other => {
                    return Err(BrokerError::Storage(format!(
                        "the cluster did not delete the plugin: {other:?}"
                    )));
                }
            }
            self.await_metadata(|m, _| !m.plugins.contains_key(&name))
                .await;
            self.plugins.uninstall(&name);
        } else {
            let views: Vec<String> = (self.topics.views().into_iter())
                .filter(|v| v.uses_plugin(&name))
                .map(|v| v.name)
                .collect();
            if !views.is_empty() {
                return Err(BrokerError::PluginUsedByViews {
                    plugin: name,
                    views,
                });
            }
            let this = Arc::clone(self);
            let n = name.clone();
            self.pipelines
                .unless_plugin_used(&name, blocking(move || this.plugins.delete(&n)))
                .await?;
        }
        metrics::global().forget_plugin(&name);
        Ok(())
    }

    /// Cluster mode: keeps a module another member put here (its registration follows).
    pub async fn put_plugin_module(
        self: &Arc<Self>,
        sha256: String,
        wasm: Bytes,
    ) -> Result<(), BrokerError> {
        let this = Arc::clone(self);
        blocking(move || this.plugins.put_module(&sha256, &wasm)).await
    }

    /// Cluster mode: the module `sha256`, if this member holds it.
    pub async fn plugin_module(
        self: &Arc<Self>,
        sha256: String,
    ) -> Result<Option<Vec<u8>>, BrokerError> {
        let this = Arc::clone(self);
        blocking(move || this.plugins.module(&sha256)).await
    }

    /// Cluster mode: installs the plugins the metadata names, as it changes: a module this
    /// member does not hold is fetched by SHA-256 from the others (retried every
    /// [`MODULE_RETRY`] until one answers), then compiled; plugins the metadata no longer
    /// names are removed, and modules no plugin uses dropped.
    pub(super) fn follow_plugins(self: &Arc<Self>, cluster: &Arc<Cluster>) {
        let this = Arc::clone(self);
        let cluster = Arc::clone(cluster);
        self.spawn_background(async move {
            let mut metadata = cluster.metadata();
            loop {
                let m = Arc::clone(&metadata.borrow_and_update());
                let missing = this.install_plugins(&cluster, &m).await;
                if missing == 0 {
                    if metadata.changed().await.is_err() {
                        return;
                    }
                } else {
                    tokio::select! {
                        changed = metadata.changed() => if changed.is_err() { return },
                        _ = tokio::time::sleep(MODULE_RETRY) => {}
                    }
                }
            }
        });
    }

    /// One pass of [`Self::follow_plugins`]; answers how many plugins are still missing.
    async fn install_plugins(self: &Arc<Self>, cluster: &Cluster, m: &Metadata) -> usize {
        for name in self.plugins.names() {
            if !m.plugins.contains_key(&name) {
                self.plugins.uninstall(&name);
                tracing::info!(plugin = %name, "deleted plugin (cluster metadata)");
            }
        }
        let mut missing = 0;
        for (name, entry) in &m.plugins {
            let installed = self.plugins.info(name);
            if installed
                .as_ref()
                .is_some_and(|i| i.sha256 == entry.sha256 && i.version == entry.version)
            {
                continue;
            }
            if let Err(e) = self.install_plugin(cluster, name, entry).await {
                tracing::warn!(plugin = %name, sha256 = %entry.sha256, error = %e, "cannot install plugin yet");
                missing += 1;
            }
        }
        if missing == 0 {
            let this = Arc::clone(self);
            let keep: Vec<String> = m.plugins.values().map(|e| e.sha256.clone()).collect();
            let before = now_ms() - MODULE_PRUNE_AGE.as_millis() as i64;
            let pruned = blocking(move || {
                this.plugins
                    .prune_modules(&keep.iter().map(String::as_str).collect(), before)
            })
            .await;
            if let Err(e) = pruned {
                tracing::warn!(error = %e, "cannot drop unused plugin modules");
            }
        }
        missing
    }

    /// Installs one plugin the metadata names: its module from this member's store or
    /// another member's, compiled with the registered limits.
    async fn install_plugin(
        self: &Arc<Self>,
        cluster: &Cluster,
        name: &str,
        entry: &PluginEntry,
    ) -> Result<(), BrokerError> {
        let info = plugin_info(name, entry)?;
        let this = Arc::clone(self);
        let sha = entry.sha256.clone();
        let wasm = match blocking(move || this.plugins.module(&sha)).await? {
            Some(wasm) => wasm,
            None => self.fetch_module(cluster, &entry.sha256).await?,
        };
        let this = Arc::clone(self);
        let limits = info.limits;
        let n = name.to_string();
        let plugin = blocking(move || this.plugins.compile(&n, &wasm, limits)).await?;
        self.plugins.install(info, plugin);
        tracing::info!(plugin = %name, sha256 = %entry.sha256, version = entry.version, "installed plugin (cluster metadata)");
        Ok(())
    }

    /// A module from the first other member that holds it (checked against its SHA-256,
    /// then kept here).
    async fn fetch_module(
        self: &Arc<Self>,
        cluster: &Cluster,
        sha256: &str,
    ) -> Result<Vec<u8>, BrokerError> {
        let me = cluster.node_id();
        let mut tried = Vec::new();
        for (id, addr) in cluster.peers().iter().filter(|(id, _)| **id != me) {
            match cluster
                .peer_channels()
                .get_plugin_module(addr, sha256, MODULE_TRANSFER_TIMEOUT)
                .await
            {
                Ok(Some(wasm)) => {
                    let this = Arc::clone(self);
                    let sha = sha256.to_string();
                    let w = wasm.clone();
                    match blocking(move || this.plugins.put_module(&sha, &w)).await {
                        Ok(()) => return Ok(wasm.to_vec()),
                        Err(e) => tried.push(format!("member {id}: {e}")),
                    }
                }
                Ok(None) => tried.push(format!("member {id} does not hold it")),
                Err(e) => tried.push(format!("member {id}: {e}")),
            }
        }
        Err(BrokerError::ClusterUnavailable(format!(
            "no member gave plugin module {sha256} ({})",
            tried.join("; ")
        )))
    }

    pub(super) fn deps(&self) -> PipelineEnv<'_> {
        PipelineEnv {
            topics: &self.topics,
            plugins: &self.plugins,
            max_record_bytes: self.max_record_bytes,
        }
    }

    pub async fn create_pipeline(
        self: &Arc<Self>,
        def: PipelineDef,
        start: Start,
    ) -> Result<PipelineView, BrokerError> {
        if let Some(c) = self.cluster() {
            return self.create_pipeline_in_cluster(c, def, start).await;
        }
        self.pipelines.create(&self.deps(), def, start).await
    }

    pub async fn list_pipelines(&self) -> Vec<PipelineView> {
        let Some(c) = self.cluster() else {
            return self.pipelines.list(&self.topics).await;
        };
        let m = Arc::clone(&c.metadata().borrow());
        let mut out = Vec::with_capacity(m.pipelines.len());
        for p in m.pipelines.values() {
            out.push(self.pipeline_view_in_cluster(&m, p, false).await);
        }
        out
    }

    pub async fn describe_pipeline(&self, name: &str) -> Result<PipelineView, BrokerError> {
        let Some(c) = self.cluster() else {
            return self.pipelines.describe(name, &self.topics).await;
        };
        let m = Arc::clone(&c.metadata().borrow());
        let p = m
            .pipelines
            .get(name)
            .ok_or_else(|| BrokerError::PipelineNotFound(name.to_string()))?;
        Ok(self.pipeline_view_in_cluster(&m, p, true).await)
    }

    pub async fn delete_pipeline(&self, name: &str) -> Result<(), BrokerError> {
        if let Some(c) = self.cluster() {
            return self.delete_pipeline_in_cluster(c, name).await;
        }
        self.pipelines.delete(name).await
    }

    pub async fn resume_pipeline(&self, name: &str) -> Result<PipelineView, BrokerError> {
        if let Some(c) = self.cluster() {
            return self.resume_pipeline_in_cluster(c, name).await;
        }
        self.pipelines.resume(name, &self.deps()).await
    }
}
