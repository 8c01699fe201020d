//! Plugins: register (or replace), list, delete; in a cluster, the same registry on every
//! member.

use super::*;

/// A registered WebAssembly plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// Name it was registered under.
    pub name: String,
    /// `filter`, `map`, `filter_map`, `flat_map` or `aggregate`.
    pub kind: String,
    /// Size of the module.
    pub size_bytes: u64,
    /// When it was registered (unix ms).
    pub created_ms: i64,
    /// Linear memory one instance may use.
    pub memory_limit_bytes: u64,
    /// CPU budget of one call (one batch).
    pub call_timeout_ms: u64,
    /// Largest output of one call.
    pub max_output_bytes: u64,
    /// SHA-256 of the module, lowercase hex.
    pub sha256: String,
    /// 1 when registered, +1 on each replacement.
    pub version: u64,
}

/// Sandbox limits of a plugin, set when it is registered; `None` takes the broker's default
/// (64 MiB of memory, 2000 ms of CPU per batch, 64 MiB of output per call).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PluginLimits {
    /// Linear memory one instance may grow to (at most 1 GiB).
    pub memory_bytes: Option<u64>,
    /// CPU (wall-clock) budget of one call, 10..=60000 ms.
    pub call_timeout_ms: Option<u64>,
    /// Largest output of one call (at most 64 MiB).
    pub max_output_bytes: Option<u64>,
}

fn plugin_of(p: pb::PluginInfo) -> PluginInfo {
    PluginInfo {
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

impl Admin {
    /// Registers a WebAssembly plugin module (the bytes of a `.wasm` file). The broker
    /// validates and compiles it; fails with
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for invalid modules.
    pub async fn register_plugin(
        &self,
        name: &str,
        wasm: impl Into<bytes::Bytes>,
    ) -> Result<PluginInfo> {
        self.register_plugin_with(name, wasm, PluginLimits::default(), false)
            .await
    }

    /// Replaces the module of an existing plugin (fails with
    /// [`Error::PluginNotFound`](crate::Error::PluginNotFound) if there is none) and bumps
    /// its version. Subscriptions already using it keep the old module until they end; new
    /// ones, and pipelines when they start or are resumed, take the new one.
    pub async fn replace_plugin(
        &self,
        name: &str,
        wasm: impl Into<bytes::Bytes>,
    ) -> Result<PluginInfo> {
        self.register_plugin_with(name, wasm, PluginLimits::default(), true)
            .await
    }

    /// Registers (or, with `replace`, replaces) a plugin with its own sandbox limits.
    /// Limits out of range are [`Error::InvalidArgument`](crate::Error::InvalidArgument).
    /// In a cluster any member takes the call: the registry is replicated metadata and the
    /// module reaches every member by its SHA-256 (docs/cluster.md, "Plugins").
    pub async fn register_plugin_with(
        &self,
        name: &str,
        wasm: impl Into<bytes::Bytes>,
        limits: PluginLimits,
        replace: bool,
    ) -> Result<PluginInfo> {
        let req = pb::RegisterPluginRequest {
            name: name.to_string(),
            wasm: wasm.into(),
            replace,
            memory_limit_bytes: limits.memory_bytes.unwrap_or(0),
            call_timeout_ms: limits.call_timeout_ms.unwrap_or(0),
            max_output_bytes: limits.max_output_bytes.unwrap_or(0),
        };
        let resp = self
            .client
            .plugins_rpc()
            .register_plugin(req)
            .await?
            .into_inner();
        Ok(plugin_of(resp.plugin.unwrap_or_default()))
    }

    /// Every registered plugin, by name.
    pub async fn list_plugins(&self) -> Result<Vec<PluginInfo>> {
        let resp = self
            .client
            .plugins_rpc()
            .list_plugins(pb::ListPluginsRequest {})
            .await?
            .into_inner();
        Ok(resp.plugins.into_iter().map(plugin_of).collect())
    }

    /// Deletes a plugin. Fails with [`Error::PluginInUse`](crate::Error::PluginInUse) while
    /// a pipeline uses it.
    pub async fn delete_plugin(&self, name: &str) -> Result<()> {
        let req = pb::DeletePluginRequest {
            name: name.to_string(),
        };
        self.client.plugins_rpc().delete_plugin(req).await?;
        Ok(())
    }
}
