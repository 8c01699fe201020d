//! Plugins in storage: [`Cf::Plugins`], keyed by plugin name, valued by
//! [`encode_plugin`] (kind, registration time, limits, the module). Every write is fsynced.

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

/// First byte of a plugin record with limits (version 1 records start with the kind, 1..=5).
const PLUGIN_RECORD_V2: u8 = 0x80;

/// `0x80 | kind u8 | created_ms i64 | memory u64 | call timeout ms u64 | output u64 | wasm`
/// (integers LE). Version 1 (`kind u8 | created_ms i64 | wasm`) still decodes, with the
/// default limits.
pub fn encode_plugin(p: &StoredPlugin) -> Vec<u8> {
    let mut v = Vec::with_capacity(34 + p.wasm.len());
    v.push(PLUGIN_RECORD_V2);
    v.push(p.kind.code());
    v.extend_from_slice(&p.created_ms.to_le_bytes());
    v.extend_from_slice(&(p.limits.memory_bytes as u64).to_le_bytes());
    v.extend_from_slice(&p.limits.call_timeout_ms.to_le_bytes());
    v.extend_from_slice(&(p.limits.output_bytes as u64).to_le_bytes());
    v.extend_from_slice(&p.wasm);
    v
}

pub fn decode_plugin(v: &[u8]) -> Option<StoredPlugin> {
    let u64_at = |b: &[u8], i: usize| -> Option<u64> {
        Some(u64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?))
    };
    let (&first, rest) = v.split_first()?;
    if first != PLUGIN_RECORD_V2 {
        let (created, wasm) = rest.split_at_checked(8)?;
        return Some(StoredPlugin {
            kind: PluginKind::from_code(i32::from(first))?,
            created_ms: i64::from_le_bytes(created.try_into().ok()?),
            limits: PluginLimits::default(),
            wasm: wasm.to_vec(),
        });
    }
    let (&kind, rest) = rest.split_first()?;
    let (head, wasm) = rest.split_at_checked(32)?;
    Some(StoredPlugin {
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
            wasm: b"\0asm\x01\0\0\0".to_vec(),
        };
        let back = decode_plugin(&encode_plugin(&p)).unwrap();
        assert_eq!(
            (back.kind, back.created_ms, back.limits, back.wasm.clone()),
            (p.kind, p.created_ms, p.limits, p.wasm.clone())
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
