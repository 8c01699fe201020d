//! A record read from outside, before plugins: what sources produce and transforms take.

use bytes::Bytes;

/// A record read from outside, before plugins.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRecord {
    pub key: Option<Bytes>,
    pub value: Bytes,
}
