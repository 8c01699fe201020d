//! The host side of the plugin ABI (version 1, `plugins/ABI.md`): encodes a batch of records
//! for `weir_process` and decodes — strictly, since the guest is untrusted — what comes back.

use weir_common::record::Record;

/// Exported constants the host checks.
pub const ABI_VERSION: i32 = 1;

const NO_KEY: u32 = u32::MAX;
const OUTPUT_UNCHANGED: u8 = 0;
const OUTPUT_NEW: u8 = 1;

/// The kind a module declares (`weir_kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    Filter,
    Map,
    FilterMap,
    FlatMap,
    Aggregate,
}

impl PluginKind {
    pub fn from_code(code: i32) -> Option<Self> {
        Some(match code {
            1 => PluginKind::Filter,
            2 => PluginKind::Map,
            3 => PluginKind::FilterMap,
            4 => PluginKind::FlatMap,
            5 => PluginKind::Aggregate,
            _ => return None,
        })
    }

    pub fn code(self) -> u8 {
        match self {
            PluginKind::Filter => 1,
            PluginKind::Map => 2,
            PluginKind::FilterMap => 3,
            PluginKind::FlatMap => 4,
            PluginKind::Aggregate => 5,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Filter => "filter",
            PluginKind::Map => "map",
            PluginKind::FilterMap => "filter_map",
            PluginKind::FlatMap => "flat_map",
            PluginKind::Aggregate => "aggregate",
        }
    }
}

fn put_bytes(b: &mut Vec<u8>, bytes: &[u8]) {
    b.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    b.extend_from_slice(bytes);
}

/// `u32 state_len | state | u32 count | record*`.
pub fn encode_input(state: &[u8], records: &[Record]) -> Vec<u8> {
    let size: usize = records
        .iter()
        .map(|r| 32 + r.key.as_ref().map_or(0, |k| k.len()) + r.value.len())
        .sum();
    let mut b = Vec::with_capacity(8 + state.len() + size);
    put_bytes(&mut b, state);
    b.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for r in records {
        b.extend_from_slice(&r.offset.to_le_bytes());
        b.extend_from_slice(&r.timestamp.to_le_bytes());
        match &r.key {
            None => b.extend_from_slice(&NO_KEY.to_le_bytes()),
            Some(k) => put_bytes(&mut b, k),
        }
        put_bytes(&mut b, &r.value);
        b.extend_from_slice(&(r.headers.len() as u32).to_le_bytes());
        for h in &r.headers {
            put_bytes(&mut b, h.key.as_bytes());
            put_bytes(&mut b, &h.value);
        }
    }
    b
}

/// One output record: an input passed through, or a new record with its source's offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Unchanged(u32),
    New { source: u32, record: Record },
}

impl Output {
    pub fn source(&self) -> u32 {
        match self {
            Output::Unchanged(i) => *i,
            Output::New { source, .. } => *source,
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if self.buf.len() < n {
            return Err(format!("output truncated in {what}"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i64(&mut self, what: &str) -> Result<i64, String> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_le_bytes(a))
    }

    fn bytes(&mut self, what: &str) -> Result<&'a [u8], String> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }
}

/// Decodes `u32 state_len | state | u32 count | output*`, checking every length against the
/// buffer and every source index against the input (`inputs` records, non-decreasing).
pub fn decode_output(buf: &[u8], inputs: usize) -> Result<(Vec<u8>, Vec<Output>), String> {
    let mut r = Reader { buf };
    let state = r.bytes("state")?.to_vec();
    let count = r.u32("record count")? as usize;
    // Each output takes at least 5 bytes: a count beyond that is a lie.
    if count > r.buf.len() / 5 {
        return Err(format!(
            "output claims {count} records in {} bytes",
            r.buf.len()
        ));
    }
    let mut out = Vec::with_capacity(count);
    let mut last = 0u32;
    for n in 0..count {
        let source = r.u32("source index")?;
        if source as usize >= inputs || source < last {
            return Err(format!(
                "output record {n} names input {source} (inputs: {inputs}, in order)"
            ));
        }
        last = source;
        let flag = r.take(1, "flag")?[0];
        match flag {
            OUTPUT_UNCHANGED => out.push(Output::Unchanged(source)),
            OUTPUT_NEW => {
                let timestamp = r.i64("timestamp")?;
                let key_len = r.u32("key")?;
                let key = if key_len == NO_KEY {
                    None
                } else {
                    Some(bytes::Bytes::copy_from_slice(
                        r.take(key_len as usize, "key")?,
                    ))
                };
                let value = bytes::Bytes::copy_from_slice(r.bytes("value")?);
                let header_count = r.u32("header count")? as usize;
                if header_count > weir_common::limits::MAX_HEADERS_PER_RECORD {
                    return Err(format!("output record {n} has {header_count} headers"));
                }
                let mut headers = Vec::with_capacity(header_count);
                for _ in 0..header_count {
                    let key = std::str::from_utf8(r.bytes("header key")?)
                        .map_err(|_| format!("output record {n}: header key is not UTF-8"))?
                        .to_string();
                    let value = bytes::Bytes::copy_from_slice(r.bytes("header value")?);
                    headers.push(weir_common::record::Header { key, value });
                }
                out.push(Output::New {
                    source,
                    record: Record {
                        offset: 0,
                        timestamp,
                        key,
                        value,
                        headers,
                    },
                });
            }
            f => return Err(format!("output record {n} has unknown flag {f}")),
        }
    }
    if !r.buf.is_empty() {
        return Err(format!("{} bytes left over after the output", r.buf.len()));
    }
    Ok((state, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn record(offset: u64, value: &str) -> Record {
        Record {
            offset,
            timestamp: 5,
            key: Some(Bytes::from_static(b"k")),
            value: Bytes::copy_from_slice(value.as_bytes()),
            headers: vec![weir_common::record::Header {
                key: "h".into(),
                value: Bytes::from_static(b"v"),
            }],
        }
    }

    /// An output as the guest SDK encodes it.
    fn output(state: &[u8], outs: &[(u32, Option<&Record>)]) -> Vec<u8> {
        let mut b = Vec::new();
        put_bytes(&mut b, state);
        b.extend_from_slice(&(outs.len() as u32).to_le_bytes());
        for (i, r) in outs {
            b.extend_from_slice(&i.to_le_bytes());
            match r {
                None => b.push(OUTPUT_UNCHANGED),
                Some(r) => {
                    b.push(OUTPUT_NEW);
                    // The record part of an output is laid out like an input record minus
                    // the offset: reuse the input encoder and drop its framing.
                    let enc = encode_input(&[], std::slice::from_ref(*r));
                    b.extend_from_slice(&enc[8 + 8..]);
                }
            }
        }
        b
    }

    #[test]
    fn outputs_decode_with_their_sources() {
        let r = record(0, "new");
        let buf = output(b"S", &[(0, None), (1, Some(&r)), (1, Some(&r))]);
        let (state, outs) = decode_output(&buf, 2).unwrap();
        assert_eq!(state, b"S");
        assert_eq!(outs[0], Output::Unchanged(0));
        match &outs[2] {
            Output::New { source, record } => {
                assert_eq!(*source, 1);
                assert_eq!(record.value, r.value);
                assert_eq!(record.key, r.key);
                assert_eq!(record.headers, r.headers);
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn malformed_outputs_are_errors_never_panics() {
        let r = record(0, "x");
        let good = output(&[], &[(0, Some(&r)), (1, None)]);
        for cut in 0..good.len() {
            assert!(decode_output(&good[..cut], 2).is_err(), "cut at {cut}");
        }
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0xff;
            let _ = decode_output(&bad, 2);
        }
        // Source out of range, out of order, lying count.
        assert!(decode_output(&output(&[], &[(2, None)]), 2).is_err());
        assert!(decode_output(&output(&[], &[(1, None), (0, None)]), 2).is_err());
        let mut lie = output(&[], &[]);
        lie[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_output(&lie, 2).is_err());
    }
}
