//! Unit-test a plugin through the real ABI, natively: records are encoded as the broker's
//! batches, handed to the plugin's generated `weir_process` code, and its output decoded as
//! the host decodes it — so a test sees what a consumer would, aggregate state included.
//!
//! ```ignore
//! use weir_plugin::testing::Harness;
//!
//! #[test]
//! fn keeps_errors() {
//!     let mut h = Harness::new(crate::WEIR_PLUGIN, r#"{"substring":"ERROR"}"#).unwrap();
//!     let out = h.run(&[Record::new("ERROR disk"), Record::new("ok")]).unwrap();
//!     assert_eq!(out, [Record::new("ERROR disk")]);
//! }
//! ```

use crate::abi::{
    self, ENTRY_BATCH, ENTRY_KEEP, ENTRY_KEEP_TO, ENTRY_NEW, ENTRY_NEW_TO, KIND_AGGREGATE, Plugin,
    STATUS_OK,
};
use crate::{Header, Record};

/// One instance of a plugin with its params, as the broker keeps one per partition: inputs
/// are numbered like a partition's records (offsets 0, 1, … across calls) and an aggregate's
/// state carries from one [`run`](Harness::run) to the next.
pub struct Harness {
    plugin: Plugin,
    state: Vec<u8>,
    next_offset: u64,
}

impl Harness {
    /// Initializes the plugin with its params JSON (`""`: none); bad params are the error.
    pub fn new(plugin: Plugin, params: &str) -> Result<Self, String> {
        if (plugin.init)(params.as_bytes()) != STATUS_OK {
            return Err(String::from_utf8_lossy(&abi::result()).into_owned());
        }
        Ok(Self {
            plugin,
            state: Vec::new(),
            next_offset: 0,
        })
    }

    /// Runs `records` as one batch (one call, as the broker makes per batch): their offsets
    /// are set to the next ones of this harness, timestamps, keys, values and headers are
    /// kept. Returns the outputs (output 0's: what a consumer gets), each with the offset of
    /// the input it came from, or the plugin's error message.
    pub fn run(&mut self, records: &[Record]) -> Result<Vec<Record>, String> {
        Ok(self
            .run_routed(records)?
            .into_iter()
            .filter(|(k, _)| *k == 0)
            .map(|(_, r)| r)
            .collect())
    }

    /// [`Harness::run`], with every output: each record with the output it was sent to (0:
    /// the main one; others from a `#[route]` plugin), in the order the plugin emitted them.
    pub fn run_routed(&mut self, records: &[Record]) -> Result<Vec<(u8, Record)>, String> {
        let inputs: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, r)| Record {
                offset: self.next_offset + i as u64,
                ..r.clone()
            })
            .collect();
        self.next_offset += records.len() as u64;
        let batches = if inputs.is_empty() {
            Vec::new()
        } else {
            vec![abi::encode_batch(&inputs)]
        };
        let input = abi::encode_input(&self.state, 0, &batches);
        let status = (self.plugin.process)(&input);
        let result = abi::result();
        if status != STATUS_OK {
            return Err(String::from_utf8_lossy(&result).into_owned());
        }
        let (state, out) = decode_output(&result, &inputs)?;
        if self.plugin.kind == KIND_AGGREGATE {
            self.state = state;
        }
        Ok(out)
    }

    /// The aggregate state after the last run (the SDK's JSON; empty before the first).
    pub fn state(&self) -> &[u8] {
        &self.state
    }

    /// The aggregate state as `S`.
    pub fn state_as<S: serde::de::DeserializeOwned>(&self) -> Result<S, String> {
        serde_json::from_slice(&self.state).map_err(|e| e.to_string())
    }
}

/// Output records, each with the output it was sent to.
type Routed = Vec<(u8, Record)>;

/// Reads an output (ABI.md, "Output") as the host does: KEEP runs name inputs, NEW records
/// take their source's offset, BATCH records carry it; the `_TO` entries and BATCH name their
/// output.
fn decode_output(buf: &[u8], inputs: &[Record]) -> Result<(Vec<u8>, Routed), String> {
    let mut r = Cursor { buf };
    let state = r.bytes()?.to_vec();
    let count = r.u32()?;
    let mut out = Vec::new();
    for _ in 0..count {
        let tag = r.take(1)?[0];
        let k = match tag {
            ENTRY_KEEP_TO | ENTRY_NEW_TO | ENTRY_BATCH => r.take(1)?[0],
            _ => 0,
        };
        if tag == ENTRY_BATCH {
            // The batch read as the host hands batches over: through the SDK's own decoder.
            let batch = r.bytes()?;
            let one = abi::encode_input(&[], 0, &[batch.to_vec()]);
            let (_, mut records) = abi::Records::open(&one).map_err(|e| e.to_string())?;
            while let Some((_, view)) = records.next_view().map_err(|e| e.to_string())? {
                if !inputs.iter().any(|i| i.offset == view.offset) {
                    return Err(format!(
                        "a new record at offset {} has no source",
                        view.offset
                    ));
                }
                out.push((k, view.to_record()));
            }
            continue;
        }
        match tag {
            ENTRY_KEEP | ENTRY_KEEP_TO => {
                let (first, n) = (r.u32()? as usize, r.u32()? as usize);
                let kept = inputs
                    .get(first..first + n)
                    .ok_or("a KEEP entry names records outside the input")?;
                out.extend(kept.iter().map(|r| (k, r.clone())));
            }
            ENTRY_NEW | ENTRY_NEW_TO => {
                let source = inputs
                    .get(r.u32()? as usize)
                    .ok_or("a NEW entry names a record outside the input")?;
                let timestamp = i64::from_le_bytes(array(r.take(8)?));
                let key = match r.u32()? {
                    u32::MAX => None,
                    n => Some(r.take(n as usize)?.to_vec()),
                };
                let value = r.bytes()?.to_vec();
                let mut headers = Vec::new();
                for _ in 0..r.u32()? {
                    let key = String::from_utf8(r.bytes()?.to_vec())
                        .map_err(|_| "a header key is not UTF-8")?;
                    headers.push(Header {
                        key,
                        value: r.bytes()?.to_vec(),
                    });
                }
                let rec = Record {
                    offset: source.offset,
                    timestamp,
                    key,
                    value,
                    headers,
                };
                out.push((k, rec));
            }
            tag => return Err(format!("unknown output entry tag {tag}")),
        }
    }
    if !r.buf.is_empty() {
        return Err("bytes left over after the output's entries".into());
    }
    Ok((state, out))
}

fn array(b: &[u8]) -> [u8; 8] {
    let mut a = [0; 8];
    a.copy_from_slice(b);
    a
}

struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let (head, rest) = self
            .buf
            .split_at_checked(n)
            .ok_or("truncated plugin output")?;
        self.buf = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}
