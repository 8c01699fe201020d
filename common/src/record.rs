//! The owned record type: what a consumer yields. Byte fields are `Bytes` slices of the batch
//! they came from, so decoding copies nothing.

use bytes::Bytes;

/// One header: a UTF-8 name and a byte value. Names may repeat (Kafka semantics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Bytes,
}

/// A record as stored: its offset, timestamp (unix ms), optional key, value and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: u64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<Header>,
}

impl Record {
    /// Bytes the record counts against the record-size limit: key + value + headers.
    pub fn payload_len(&self) -> usize {
        self.key.as_ref().map_or(0, |k| k.len())
            + self.value.len()
            + self
                .headers
                .iter()
                .map(|h| h.key.len() + h.value.len())
                .sum::<usize>()
    }
}
