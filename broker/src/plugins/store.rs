//! Plugins in storage. Standalone: [`Cf::Plugins`], keyed by plugin name, valued by
//! [`encode_plugin`] (kind, registration time, limits, version, the module). Cluster mode:
//! [`Cf::Modules`], keyed by the module's SHA-256 (hex), valued by the time it was stored and
//! the module (the registry itself is in the replicated metadata). Every write is fsynced.

use super::{PluginKind, PluginLimits, StoredPlugin};
use crate::storage::{Cf, Durability, StorageError, Store};

/// Every registered plugin module, by name.
pub fn load_plugins(store: &Store) -> Result<Vec<(String, StoredPlugin)>, StorageError> {
    let mut out = Vec::new();
    for item in store.scan(Cf::Plugins, &[], None) {
        let (k, v) = item?;
        let corrupt = || StorageError::corrupt(Cf::Plugins, &k, "bad plugin record");
        let name = String::from_utf8(k.to_vec()).map_err(|_| corrupt())?;
        out.push((name, decode_plugin(&v).ok_or_else(corrupt)?));
    }
    Ok(out)
}

pub fn put_plugin(store: &Store, name: &str, p: &StoredPlugin) -> Result<(), StorageError> {
    let mut set = store.write_set();
    set.put(Cf::Plugins, name.as_bytes(), encode_plugin(p));
    store.write(set, Durability::Synced)
}

pub fn delete_plugin(store: &Store, name: &str) -> Result<(), StorageError> {
    let mut set = store.write_set();
    set.delete(Cf::Plugins, name.as_bytes());
    store.write(set, Durability::Synced)
}

/// Cluster mode: stores a module under its SHA-256 (hex), with the time it was stored.
pub fn put_module(
    store: &Store,
    sha256: &str,
    wasm: &[u8],
    now_ms: i64,
) -> Result<(), StorageError> {
    let mut v = Vec::with_capacity(8 + wasm.len());
    v.extend_from_slice(&now_ms.to_le_bytes());
    v.extend_from_slice(wasm);
    let mut set = store.write_set();
    set.put(Cf::Modules, sha256.as_bytes(), v);
    store.write(set, Durability::Synced)
}

/// Cluster mode: the module stored under `sha256`, if this broker holds it.
pub fn get_module(store: &Store, sha256: &str) -> Result<Option<Vec<u8>>, StorageError> {
    match store.get(Cf::Modules, sha256.as_bytes())? {
        None => Ok(None),
        Some(v) => match v.get(8..) {
            Some(wasm) => Ok(Some(wasm.to_vec())),
            None => Err(StorageError::corrupt(
                Cf::Modules,
                sha256.as_bytes(),
                "bad module record",
            )),
        },
    }
}

/// Cluster mode: every stored module's SHA-256 with the time it was stored.
pub fn module_times(store: &Store) -> Result<Vec<(String, i64)>, StorageError> {
    let mut out = Vec::new();
    for item in store.scan(Cf::Modules, &[], None) {
        let (k, v) = item?;
        let corrupt = || StorageError::corrupt(Cf::Modules, &k, "bad module record");
        let sha = String::from_utf8(k.to_vec()).map_err(|_| corrupt())?;
        let at = v.get(..8).ok_or_else(corrupt)?;
        out.push((
            sha,
            i64::from_le_bytes(at.try_into().map_err(|_| corrupt())?),
        ));
    }
    Ok(out)
}

pub fn delete_module(store: &Store, sha256: &str) -> Result<(), StorageError> {
    let mut set = store.write_set();
    set.delete(Cf::Modules, sha256.as_bytes());
    store.write(set, Durability::Synced)
}

/// First byte of a plugin record with limits (version 1 records start with the kind, 1..=5).
const PLUGIN_RECORD_V2: u8 = 0x80;
/// First byte of a plugin record with limits and a version.
const PLUGIN_RECORD_V3: u8 = 0x81;

/// `0x81 | kind u8 | created_ms i64 | memory u64 | call timeout ms u64 | output u64 |
/// version u64 | wasm` (integers LE). Version 2 (`0x80`, no version field: version 1) and
/// version 1 (`kind u8 | created_ms i64 | wasm`: default limits) still decode.
pub fn encode_plugin(p: &StoredPlugin) -> Vec<u8> {
    let mut v = Vec::with_capacity(42 + p.wasm.len());
    v.push(PLUGIN_RECORD_V3);
    v.push(p.kind.code());
    v.extend_from_slice(&p.created_ms.to_le_bytes());
    v.extend_from_slice(&(p.limits.memory_bytes as u64).to_le_bytes());
    v.extend_from_slice(&p.limits.call_timeout_ms.to_le_bytes());
    v.extend_from_slice(&(p.limits.output_bytes as u64).to_le_bytes());
    v.extend_from_slice(&p.version.to_le_bytes());
    v.extend_from_slice(&p.wasm);
    v
}

pub fn decode_plugin(v: &[u8]) -> Option<StoredPlugin> {
    let u64_at = |b: &[u8], i: usize| -> Option<u64> {
        Some(u64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?))
    };
    let (&first, rest) = v.split_first()?;
    if first != PLUGIN_RECORD_V2 && first != PLUGIN_RECORD_V3 {
        let (created, wasm) = rest.split_at_checked(8)?;
        return Some(StoredPlugin {
            kind: PluginKind::from_code(i32::from(first))?,
            created_ms: i64::from_le_bytes(created.try_into().ok()?),
            limits: PluginLimits::default(),
            version: 1,
            wasm: wasm.to_vec(),
        });
    }
    let (&kind, rest) = rest.split_first()?;
    let head_len = if first == PLUGIN_RECORD_V3 { 40 } else { 32 };
    let (head, wasm) = rest.split_at_checked(head_len)?;
    let version = if first == PLUGIN_RECORD_V3 {
        u64_at(head, 32)?
    } else {
        1
    };
    Some(StoredPlugin {
        version,
        kind: PluginKind::from_code(i32::from(kind))?,
        created_ms: u64_at(head, 0)? as i64,
        limits: PluginLimits {
            memory_bytes: usize::try_from(u64_at(head, 8)?).ok()?,
            call_timeout_ms: u64_at(head, 16)?,
            output_bytes: usize::try_from(u64_at(head, 24)?).ok()?,
        },
        wasm: wasm.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_records_round_trip_and_version_1_still_decodes() {
        let p = StoredPlugin {
            kind: PluginKind::Aggregate,
            created_ms: 1_700_000_000_000,
            limits: PluginLimits {
                memory_bytes: 8 << 20,
                call_timeout_ms: 100,
                output_bytes: 1 << 20,
            },
            version: 3,
            wasm: b"\0asm\x01\0\0\0".to_vec(),
        };
        let back = decode_plugin(&encode_plugin(&p)).unwrap();
        assert_eq!(
            (
                back.kind,
                back.created_ms,
                back.limits,
                back.version,
                back.wasm.clone()
            ),
            (p.kind, p.created_ms, p.limits, 3, p.wasm.clone())
        );
        // Version 2: the same without the version field.
        let mut v2 = encode_plugin(&p);
        v2[0] = PLUGIN_RECORD_V2;
        v2.drain(34..42);
        let back = decode_plugin(&v2).unwrap();
        assert_eq!(
            (back.limits, back.version, back.wasm),
            (p.limits, 1, p.wasm.clone())
        );
        let mut v1 = vec![PluginKind::Map.code()];
        v1.extend_from_slice(&42i64.to_le_bytes());
        v1.extend_from_slice(b"wasm");
        let old = decode_plugin(&v1).unwrap();
        assert_eq!(old.kind, PluginKind::Map);
        assert_eq!(old.limits, PluginLimits::default());
        assert_eq!(old.wasm, b"wasm");
        assert!(decode_plugin(&encode_plugin(&p)[..20]).is_none());
    }
}
