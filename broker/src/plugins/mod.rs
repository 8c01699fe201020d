//! WebAssembly plugins: the registry of compiled modules and the sandboxed runtime.
//!
//! - `abi`: host side of the plugin ABI (`plugins/ABI.md`): batch encoding, strict output
//!   decoding.
//! - `runtime` (crate `weir-wasm`): wasmtime engine, compiled [`Plugin`]s, per-partition
//!   [`Stage`]s with memory, CPU-time and output limits.
//! - `chain`: a consume-time chain: stages per partition, plugin output as explicit-offset
//!   batches.
//! - this module: the registry — validated at registration, stored in RocksDB, compiled once
//!   (at registration and at start-up) and shared. Standalone, the registry is its own
//!   record of plugins; in a cluster it holds what the replicated metadata names (the facade
//!   installs and removes plugins as the metadata changes) and keeps modules by SHA-256.

pub use weir_codec::abi;
pub mod chain;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, RwLock};

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use weir_common::PluginName;
use weir_common::limits::MAX_PLUGIN_MODULE_BYTES;

use crate::error::BrokerError;
use crate::storage::Store;
use crate::types::now_ms;
pub use abi::PluginKind;
pub use chain::Chain;
/// The sandbox (crate `weir-wasm`, shared with `weir plugin test`).
pub use weir_wasm as runtime;
pub use weir_wasm::{Plugin, PluginError, PluginLimits, Runtime, Stage, Staged};

impl From<PluginError> for BrokerError {
    fn from(e: PluginError) -> Self {
        match e {
            PluginError::Invalid(m) => BrokerError::InvalidPlugin(m),
            e @ PluginError::Failed { .. } => BrokerError::PluginFailed(e.to_string()),
        }
    }
}

/// A registered plugin as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    pub name: String,
    pub kind: PluginKind,
    pub size_bytes: u64,
    pub created_ms: i64,
    pub limits: PluginLimits,
    /// Lowercase hex SHA-256 of the module.
    pub sha256: String,
    /// 1 when registered, one more with each replacement.
    pub version: u64,
}

/// A registered plugin as stored (standalone).
#[derive(Debug, Clone)]
pub struct StoredPlugin {
    pub kind: PluginKind,
    pub created_ms: i64,
    pub limits: PluginLimits,
    pub version: u64,
    pub wasm: Vec<u8>,
}

/// Lowercase hex SHA-256 of a module: its identity between cluster members.
pub fn module_sha256(wasm: &[u8]) -> String {
    Sha256::digest(wasm)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Refuses a module past [`MAX_PLUGIN_MODULE_BYTES`].
pub fn check_module_size(wasm: &[u8]) -> Result<(), BrokerError> {
    if wasm.len() > MAX_PLUGIN_MODULE_BYTES {
        return Err(BrokerError::InvalidArgument(format!(
            "plugin module is {} bytes; the limit is {MAX_PLUGIN_MODULE_BYTES}",
            wasm.len()
        )));
    }
    Ok(())
}

struct Registered {
    plugin: Plugin,
    info: PluginInfo,
}

pub struct PluginRegistry {
    runtime: Runtime,
    store: Store,
    plugins: RwLock<BTreeMap<String, Registered>>,
    /// Serialises register/delete.
    admin: Mutex<()>,
    /// Bumped whenever a plugin is installed or removed (cluster mode: a use waits on it for
    /// a module still being fetched).
    changed: watch::Sender<u64>,
}

impl PluginRegistry {
    /// Compiles every stored plugin (blocking). A module that no longer compiles is logged
    /// and skipped, not fatal: the broker's data stays reachable. In a cluster
    /// (`clustered`) the registry starts empty: the metadata says what to install.
    pub fn recover(store: Store, clustered: bool) -> Result<Self, BrokerError> {
        let runtime = Runtime::observed(|plugin, took, ok| {
            crate::metrics::global().plugin_called(plugin, took, ok)
        })?;
        let mut plugins = BTreeMap::new();
        let stored = if clustered {
            Vec::new()
        } else {
            store::load_plugins(&store)?
        };
        for (name, stored) in stored {
            match runtime.compile(&name, &stored.wasm, stored.limits) {
                Ok(plugin) => {
                    let info = PluginInfo {
                        name: name.clone(),
                        kind: plugin.kind,
                        size_bytes: stored.wasm.len() as u64,
                        created_ms: stored.created_ms,
                        limits: stored.limits,
                        sha256: module_sha256(&stored.wasm),
                        version: stored.version,
                    };
                    plugins.insert(name, Registered { plugin, info });
                }
                Err(e) => tracing::error!(plugin = %name, error = %e, "cannot load plugin"),
            }
        }
        tracing::info!(plugins = plugins.len(), "loaded plugins");
        Ok(Self {
            runtime,
            store,
            plugins: RwLock::new(plugins),
            admin: Mutex::new(()),
            changed: watch::Sender::new(0),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Registered>> {
        self.plugins.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Registered>> {
        self.plugins.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Validates the name and size and compiles a module with its limits (blocking).
    pub fn compile(
        &self,
        name: &str,
        wasm: &[u8],
        limits: PluginLimits,
    ) -> Result<Plugin, BrokerError> {
        let name = PluginName::new(name)?;
        check_module_size(wasm)?;
        Ok(self.runtime.compile(name.as_str(), wasm, limits)?)
    }

    /// Standalone: validates, compiles and stores a module with its sandbox limits
    /// (blocking). With `replace`, swaps the module of an existing plugin (users already
    /// running keep their instances of the old one).
    pub fn register(
        &self,
        name: &str,
        wasm: &[u8],
        replace: bool,
        limits: PluginLimits,
    ) -> Result<PluginInfo, BrokerError> {
        let name = PluginName::new(name)?;
        check_module_size(wasm)?;
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        let version = self.read().get(name.as_str()).map(|r| r.info.version);
        match (version, replace) {
            (Some(_), false) => return Err(BrokerError::PluginExists(name.to_string())),
            (None, true) => return Err(BrokerError::PluginNotFound(name.to_string())),
            _ => {}
        }
        let plugin = self.runtime.compile(name.as_str(), wasm, limits)?;
        let stored = StoredPlugin {
            kind: plugin.kind,
            created_ms: now_ms(),
            limits,
            version: version.map_or(1, |v| v + 1),
            wasm: wasm.to_vec(),
        };
        store::put_plugin(&self.store, name.as_str(), &stored)?;
        let info = PluginInfo {
            name: name.to_string(),
            kind: plugin.kind,
            size_bytes: wasm.len() as u64,
            created_ms: stored.created_ms,
            limits,
            sha256: module_sha256(wasm),
            version: stored.version,
        };
        self.install(info.clone(), plugin);
        tracing::info!(plugin = %name, kind = info.kind.as_str(), bytes = wasm.len(), replace, "registered plugin");
        Ok(info)
    }

    pub fn list(&self) -> Vec<PluginInfo> {
        self.read().values().map(|r| r.info.clone()).collect()
    }

    pub fn get(&self, name: &str) -> Result<Plugin, BrokerError> {
        self.read()
            .get(name)
            .map(|r| r.plugin.clone())
            .ok_or_else(|| BrokerError::PluginNotFound(name.to_string()))
    }

    /// The installed plugin `name`, if its module is `sha256`.
    pub fn get_version(&self, name: &str, sha256: &str) -> Option<Plugin> {
        self.read()
            .get(name)
            .filter(|r| r.info.sha256 == sha256)
            .map(|r| r.plugin.clone())
    }

    /// What is installed under `name`.
    pub fn info(&self, name: &str) -> Option<PluginInfo> {
        self.read().get(name).map(|r| r.info.clone())
    }

    /// Every installed plugin's name.
    pub fn names(&self) -> BTreeSet<String> {
        self.read().keys().cloned().collect()
    }

    /// Installs a compiled plugin under `info.name` (replacing what was there).
    pub fn install(&self, info: PluginInfo, plugin: Plugin) {
        self.write()
            .insert(info.name.clone(), Registered { plugin, info });
        self.changed.send_modify(|n| *n += 1);
    }

    /// Cluster mode: forgets an installed plugin (users already running keep theirs).
    pub fn uninstall(&self, name: &str) {
        if self.write().remove(name).is_some() {
            self.changed.send_modify(|n| *n += 1);
        }
    }

    /// Tells of every install and removal.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Standalone: forgets a plugin (blocking). Consumers already using it keep their
    /// instances.
    pub fn delete(&self, name: &str) -> Result<(), BrokerError> {
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        if !self.read().contains_key(name) {
            return Err(BrokerError::PluginNotFound(name.to_string()));
        }
        store::delete_plugin(&self.store, name)?;
        self.uninstall(name);
        tracing::info!(plugin = %name, "deleted plugin");
        Ok(())
    }

    /// Cluster mode: keeps a module (blocking), after checking that its bytes are `sha256`.
    pub fn put_module(&self, sha256: &str, wasm: &[u8]) -> Result<(), BrokerError> {
        check_module_size(wasm)?;
        if module_sha256(wasm) != sha256 {
            return Err(BrokerError::InvalidArgument(format!(
                "plugin module bytes do not match their SHA-256 {sha256}"
            )));
        }
        Ok(store::put_module(&self.store, sha256, wasm, now_ms())?)
    }

    /// Cluster mode: the module `sha256`, if this broker holds it (blocking).
    pub fn module(&self, sha256: &str) -> Result<Option<Vec<u8>>, BrokerError> {
        Ok(store::get_module(&self.store, sha256)?)
    }

    /// Cluster mode: drops the modules no longer in `keep` that were stored before
    /// `stored_before_ms` (a module put on this broker for a registration still being
    /// proposed is younger than that) (blocking).
    pub fn prune_modules(
        &self,
        keep: &BTreeSet<&str>,
        stored_before_ms: i64,
    ) -> Result<(), BrokerError> {
        for (sha, at) in store::module_times(&self.store)? {
            if !keep.contains(sha.as_str()) && at < stored_before_ms {
                store::delete_module(&self.store, &sha)?;
                tracing::info!(sha256 = %sha, "dropped a plugin module no plugin uses");
            }
        }
        Ok(())
    }
}
