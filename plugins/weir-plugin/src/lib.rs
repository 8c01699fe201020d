//! Guest SDK for Weir plugins: write one function, annotate it, build it to WebAssembly.
//!
//! ```ignore
//! use weir_plugin::{Record, filter};
//!
//! #[derive(serde::Deserialize)]
//! struct Params { substring: String }
//!
//! #[filter]
//! fn keep(record: &Record, params: &Params) -> Result<bool, String> {
//!     Ok(record.value_str().is_some_and(|v| v.contains(&params.substring)))
//! }
//! ```
//!
//! Kinds (one attribute per plugin):
//! - `#[filter] fn(&Record [, &P]) -> Result<bool, E>`: keep the record or drop it.
//! - `#[map] fn(Record [, &P]) -> Result<Record, E>`: replace it.
//! - `#[filter_map] fn(Record [, &P]) -> Result<Option<Record>, E>`: replace or drop.
//! - `#[flat_map] fn(Record [, &P]) -> Result<Vec<Record>, E>`: zero or more records.
//!
//! The four take a [`RecordView<'_>`] instead of the `Record` (`fn(RecordView<'_> [, &P])`)
//! to read the record where it lies in the batch the host handed over: no key, value or header
//! is copied, so a filter costs little more than its test (`examples/filter-contains`) and a
//! map pays only for the value it builds: [`RecordView::with_value`] returns a [`Mapped`] that
//! keeps the key and headers borrowed (`examples/uppercase`). A map or flat_map may return
//! either a `Mapped` or a `Record` (anything [`NewRecord`]). Build a new value in
//! [`value_buffer()`] and the buffer of each output value is reused for the next: a map then
//! allocates nothing per record.
//! - `#[aggregate] fn(&mut S, Record [, &P]) -> Result<Option<Record>, E>`: fold into state
//!   `S` (`Default + Serialize + Deserialize`), which the host keeps between batches (and, in a
//!   pipeline, persists atomically with the outputs).
//! - `#[route] fn(&Record | RecordView<'_> [, &P]) -> Result<Option<u8>, E>`: send the record,
//!   unchanged, to one of a pipeline's outputs (`Some(k)`: its `k`-th `--to` topic, from 0, at
//!   most 7) or drop it (`None`); a consumer gets output 0's records
//!   (`examples/route-contains`).
//!
//! `P` is any `serde::Deserialize` type, parsed once from the JSON params given at use time
//! (`--plugin NAME={"substring":"x"}`); `E` is anything `Display` — the message reaches the
//! consumer or the pipeline's status. The host calls the plugin once per **batch**; the
//! generated exports decode the batch, call your function per record and encode the output.
//! The ABI is documented in `plugins/ABI.md`. Plugins import nothing: they cannot do I/O.
//!
//! Plugin logic is plain Rust: unit-test the function natively with `cargo test`, or the whole
//! plugin through the real ABI with [`testing::Harness`] and the `WEIR_PLUGIN` constant the
//! attribute defines next to your function. A panic in a plugin reaches the user as
//! `plugin "x" panicked at offset 42: <message> (<file:line:col>)`.

pub mod abi;
pub mod testing;

pub use abi::{HeadersView, Mapped, NewRecord, RecordView, value_buffer};

pub use weir_plugin_macros::{aggregate, filter, filter_map, flat_map, map, route};

/// Re-exported for the generated code and for params/state types.
pub use serde;
pub use serde_json;

/// A record header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Vec<u8>,
}

/// A record as a plugin sees it. On output, `offset` is ignored (outputs keep the offset of
/// the input record they came from); `timestamp`, `key`, `value` and `headers` are taken.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub offset: u64,
    /// Unix ms.
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<Header>,
}

impl Record {
    /// A record with this value, no key and no headers (timestamp and offset 0).
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Self {
            value: value.into(),
            ..Self::default()
        }
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the value, keeping everything else (offset, timestamp, key, headers).
    pub fn with_value(mut self, value: impl Into<Vec<u8>>) -> Self {
        self.value = value.into();
        self
    }

    /// The value as UTF-8, if it is.
    pub fn value_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }

    /// The key as UTF-8, if there is one and it is.
    pub fn key_str(&self) -> Option<&str> {
        self.key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
    }

    /// The first header named `key`.
    pub fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.key == key)
            .map(|h| h.value.as_slice())
    }
}
