//! WebAssembly plugins: the registry of compiled modules and the sandboxed runtime.
//!
//! - `abi`: host side of the plugin ABI (`plugins/ABI.md`): batch encoding, strict output
//!   decoding.
//! - `runtime`: wasmtime engine, compiled [`Plugin`]s, per-partition [`Stage`]s with memory,
//!   CPU-time and output limits.
//! - `chain`: a consume-time chain: stages per partition, plugin output as explicit-offset
//!   batches.
//! - this module: the registry — validated at registration, stored in RocksDB, compiled once
//!   (at registration and at start-up) and shared.

pub use weir_codec::abi;
pub mod chain;
pub mod runtime;
pub mod store;

use std::collections::BTreeMap;
use std::sync::{Mutex, RwLock};

use weir_common::PluginName;
use weir_common::limits::MAX_PLUGIN_MODULE_BYTES;

use crate::error::BrokerError;
use crate::storage::Store;
use crate::types::now_ms;
pub use abi::PluginKind;
pub use chain::Chain;
pub use runtime::{Plugin, PluginError, PluginLimits, Runtime, Stage, Staged};

/// A registered plugin as listed.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    pub name: String,
    pub kind: PluginKind,
    pub size_bytes: u64,
    pub created_ms: i64,
    pub limits: PluginLimits,
}

/// A registered plugin as stored.
#[derive(Debug, Clone)]
pub struct StoredPlugin {
    pub kind: PluginKind,
    pub created_ms: i64,
    pub limits: PluginLimits,
    pub wasm: Vec<u8>,
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
}

impl PluginRegistry {
    /// Compiles every stored plugin (blocking). A module that no longer compiles is logged
    /// and skipped, not fatal: the broker's data stays reachable.
    pub fn recover(store: Store) -> Result<Self, BrokerError> {
        let runtime = Runtime::new()?;
        let mut plugins = BTreeMap::new();
        for (name, stored) in store::load_plugins(&store)? {
            match runtime.compile(&name, &stored.wasm, stored.limits) {
                Ok(plugin) => {
                    let info = PluginInfo {
                        name: name.clone(),
                        kind: plugin.kind,
                        size_bytes: stored.wasm.len() as u64,
                        created_ms: stored.created_ms,
                        limits: stored.limits,
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
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Registered>> {
        self.plugins.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Validates, compiles and stores a module with its sandbox limits (blocking). With
    /// `replace`, swaps the module of an existing plugin (users already running keep their
    /// instances of the old one).
    pub fn register(
        &self,
        name: &str,
        wasm: &[u8],
        replace: bool,
        limits: PluginLimits,
    ) -> Result<PluginInfo, BrokerError> {
        let name = PluginName::new(name)?;
        if wasm.len() > MAX_PLUGIN_MODULE_BYTES {
            return Err(BrokerError::InvalidArgument(format!(
                "plugin module is {} bytes; the limit is {MAX_PLUGIN_MODULE_BYTES}",
                wasm.len()
            )));
        }
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        let exists = self.read().contains_key(name.as_str());
        if exists && !replace {
            return Err(BrokerError::PluginExists(name.to_string()));
        }
        if !exists && replace {
            return Err(BrokerError::PluginNotFound(name.to_string()));
        }
        let plugin = self.runtime.compile(name.as_str(), wasm, limits)?;
        let stored = StoredPlugin {
            kind: plugin.kind,
            created_ms: now_ms(),
            limits,
            wasm: wasm.to_vec(),
        };
        store::put_plugin(&self.store, name.as_str(), &stored)?;
        let info = PluginInfo {
            name: name.to_string(),
            kind: plugin.kind,
            size_bytes: wasm.len() as u64,
            created_ms: stored.created_ms,
            limits,
        };
        self.plugins
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                name.to_string(),
                Registered {
                    plugin,
                    info: info.clone(),
                },
            );
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

    /// Forgets a plugin (blocking). Consumers already using it keep their instances.
    pub fn delete(&self, name: &str) -> Result<(), BrokerError> {
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        if !self.read().contains_key(name) {
            return Err(BrokerError::PluginNotFound(name.to_string()));
        }
        store::delete_plugin(&self.store, name)?;
        self.plugins
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        tracing::info!(plugin = %name, "deleted plugin");
        Ok(())
    }
}
