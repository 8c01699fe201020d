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

/// Bytes a record counts against the record-size limit: key + value + header names and values.
pub fn payload_len(key: Option<&[u8]>, value: &[u8], headers: &[Header]) -> usize {
    key.map_or(0, <[u8]>::len)
        + value.len()
        + headers
            .iter()
            .map(|h| h.key.len() + h.value.len())
            .sum::<usize>()
}

impl Record {
    /// See [`payload_len`].
    pub fn payload_len(&self) -> usize {
        payload_len(self.key.as_deref(), &self.value, &self.headers)
    }
}

/// Current unix time in milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
