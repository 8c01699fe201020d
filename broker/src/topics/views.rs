//! Views (docs/views.md): read-only virtual topics whose records are a source topic's records
//! through a chain of stateless plugins, at the source's offsets. A view has no log of its
//! own: reading one reads the source's partition and runs the chain over what was read, so
//! every reader (gRPC or Kafka, any offset, any group) sees the same record at an offset.
//!
//! Standalone, each definition is JSON under `view/NAME` in [`Cf::Meta`]; in a cluster the
//! replicated metadata holds them and the registry follows it.

use std::sync::Mutex;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use weir_codec::keys::{VIEW_PREFIX, view_key};

use crate::error::BrokerError;
use crate::plugins::{Chain, PluginError};
use crate::storage::{Cf, Durability, StorageError, Store};
use crate::types::TopicId;

/// Chains kept per view between reads (each holds one instance per stage): reads of a view
/// at once beyond this instantiate a chain of their own and drop it afterwards.
pub const VIEW_CHAIN_POOL: usize = 4;

/// One plugin of a view's chain, with the JSON its init gets (may be empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewPlugin {
    pub name: String,
    #[serde(default)]
    pub params: String,
}

/// A view's definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewDef {
    pub name: String,
    /// The topic it reads (never another view).
    pub source: String,
    pub plugins: Vec<ViewPlugin>,
    pub created_ms: i64,
    /// Standalone: its id among topic ids (committed offsets are stored under it). In a
    /// cluster, where committed offsets are stored by name, each member numbers views itself.
    #[serde(default)]
    pub id: TopicId,
}

impl ViewDef {
    /// Whether its chain runs plugin `name`.
    pub fn uses_plugin(&self, name: &str) -> bool {
        self.plugins.iter().any(|p| p.name == name)
    }
}

/// A view as the registry holds it: the definition and the chains that served earlier reads.
pub struct View {
    pub def: ViewDef,
    pool: Mutex<Pool>,
}

struct Pool {
    /// The plugins' change count the chains were built at: any plugin change empties the
    /// pool, so a replaced plugin serves every read after its replacement.
    generation: u64,
    chains: Vec<Chain>,
}

impl View {
    pub fn new(def: ViewDef) -> Self {
        Self {
            def,
            pool: Mutex::new(Pool {
                generation: 0,
                chains: Vec::new(),
            }),
        }
    }

    /// A chain built at plugin change count `generation`, if one is free.
    pub fn take_chain(&self, generation: u64) -> Option<Chain> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.generation != generation {
            pool.generation = generation;
            pool.chains.clear();
        }
        pool.chains.pop()
    }

    /// Hands a chain back after a read that succeeded.
    pub fn give_chain(&self, chain: Chain, generation: u64) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.generation == generation && pool.chains.len() < VIEW_CHAIN_POOL {
            pool.chains.push(chain);
        }
    }
}

/// The error for view `name` given where a topic is needed (`why` says what needs one).
pub fn not_a_topic(name: &str, why: &str) -> BrokerError {
    BrokerError::InvalidArgument(format!("{name:?} is a view: {why}, not views"))
}

/// Runs stored batches of a source partition through a view's chain (blocking: wasm). The
/// output is explicit-offset batches at the source's offsets (or the input itself when the
/// chain kept everything); records below `skip_below` are left out.
pub fn apply(
    chain: &mut Chain,
    batches: Vec<Bytes>,
    skip_below: u64,
) -> Result<Vec<Bytes>, PluginError> {
    // Views run stateless stages only, so one set of instances serves every partition.
    Ok(chain.apply_quietly(0, batches, skip_below)?.batches)
}

pub fn load_views(store: &Store) -> Result<Vec<ViewDef>, StorageError> {
    let mut out = Vec::new();
    for item in store.scan_prefix(Cf::Meta, VIEW_PREFIX) {
        let (k, v) = item?;
        let def: ViewDef = serde_json::from_slice(&v)
            .map_err(|e| StorageError::corrupt(Cf::Meta, &k, e.to_string()))?;
        out.push(def);
    }
    Ok(out)
}

/// Persists a view (and the next topic id, which its id took) in one fsynced write.
pub fn put_view(store: &Store, def: &ViewDef, next_id_key: &[u8]) -> Result<(), StorageError> {
    let mut set = store.write_set();
    let json = serde_json::to_vec(def).expect("ViewDef always serialises");
    set.put(Cf::Meta, view_key(&def.name), json);
    set.put(Cf::Meta, next_id_key, (def.id + 1).to_be_bytes());
    store.write(set, Durability::Synced)
}

pub fn delete_view(store: &Store, name: &str) -> Result<(), StorageError> {
    let mut set = store.write_set();
    set.delete(Cf::Meta, view_key(name));
    store.write(set, Durability::Synced)
}
