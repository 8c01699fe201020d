//! Building a batch record by record (the producer side, and plugin output with explicit
//! offsets).

use super::*;

/// Builds a batch record by record (producer side).
#[derive(Debug)]
pub struct BatchBuilder {
    buf: Vec<u8>,
    /// Explicit offsets (plugin output): the offset delta of each record.
    explicit_offsets: bool,
    count: u32,
    base_timestamp: Option<i64>,
    max_timestamp: i64,
    timestamp_type: TimestampType,
    /// Written into the header by `finish` (0 unless [`BatchBuilder::set_base_offset`]).
    base_offset: u64,
    /// Idempotent producer id and first sequence written by `finish` (0, 0: none).
    producer: (u64, u32),
}

impl BatchBuilder {
    pub fn new(timestamp_type: TimestampType) -> Self {
        Self::with_capacity(timestamp_type, 0)
    }

    pub fn with_capacity(timestamp_type: TimestampType, bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(HEADER_LEN + bytes);
        buf.resize(HEADER_LEN, 0);
        Self {
            buf,
            explicit_offsets: false,
            count: 0,
            base_timestamp: None,
            max_timestamp: 0,
            timestamp_type,
            base_offset: 0,
            producer: (0, 0),
        }
    }

    /// The idempotent producer id and the sequence number of the first record `finish`
    /// writes into the header.
    pub fn set_producer(&mut self, producer_id: u64, base_sequence: u32) {
        self.producer = (producer_id, base_sequence);
    }

    /// The base offset `finish` writes into the header (saves stamping, and copying, the
    /// finished batch).
    pub fn set_base_offset(&mut self, base_offset: u64) {
        self.base_offset = base_offset;
    }

    /// A batch whose records carry their own offsets relative to a base the caller stamps
    /// with [`set_base_offset`] (the broker's plugin output; use [`BatchBuilder::push_at`]).
    pub fn with_explicit_offsets(timestamp_type: TimestampType, bytes: usize) -> Self {
        let mut b = Self::with_capacity(timestamp_type, bytes);
        b.explicit_offsets = true;
        b
    }

    /// Appends a record at `base + offset_delta` (explicit-offset batches; deltas must not
    /// decrease).
    pub fn push_at<'h, H>(
        &mut self,
        offset_delta: u64,
        timestamp: i64,
        key: Option<&[u8]>,
        value: &[u8],
        headers: H,
    ) where
        H: IntoIterator<Item = (&'h str, &'h [u8])> + Clone,
    {
        debug_assert!(self.explicit_offsets, "push_at needs with_explicit_offsets");
        self.push_inner(Some(offset_delta), timestamp, key, value, headers);
    }

    /// The base offset `finish` writes (see [`BatchBuilder::set_base_offset`]).
    pub fn base_offset(&self) -> u64 {
        self.base_offset
    }

    /// Encoded size so far (header included).
    pub fn len_bytes(&self) -> usize {
        self.buf.len()
    }

    pub fn record_count(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn timestamp_type(&self) -> TimestampType {
        self.timestamp_type
    }

    /// Bytes a record adds to a batch (framing included).
    pub fn encoded_record_len<'h>(
        key: Option<&[u8]>,
        value: &[u8],
        headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
    ) -> usize {
        let (body, _) = Self::body_len(0, key, value, headers);
        encoded_len_varint(body as u64) + body
    }

    fn body_len<'h>(
        timestamp_delta: i64,
        key: Option<&[u8]>,
        value: &[u8],
        headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
    ) -> (usize, u64) {
        let key_len = match key {
            None => encoded_len_varint(zigzag_encode(-1)),
            Some(k) => encoded_len_varint(zigzag_encode(k.len() as i64)) + k.len(),
        };
        let mut count = 0u64;
        let mut header_bytes = 0;
        for (k, v) in headers {
            count += 1;
            header_bytes += encoded_len_varint(k.len() as u64)
                + k.len()
                + encoded_len_varint(v.len() as u64)
                + v.len();
        }
        let len = encoded_len_varint(zigzag_encode(timestamp_delta))
            + key_len
            + encoded_len_varint(value.len() as u64)
            + value.len()
            + encoded_len_varint(count)
            + header_bytes;
        (len, count)
    }

    /// Appends a record. `timestamp` is ignored for log-append-time batches.
    pub fn push<'h, H>(&mut self, timestamp: i64, key: Option<&[u8]>, value: &[u8], headers: H)
    where
        H: IntoIterator<Item = (&'h str, &'h [u8])> + Clone,
    {
        let delta = self.explicit_offsets.then_some(u64::from(self.count));
        self.push_inner(delta, timestamp, key, value, headers);
    }

    fn push_inner<'h, H>(
        &mut self,
        offset_delta: Option<u64>,
        timestamp: i64,
        key: Option<&[u8]>,
        value: &[u8],
        headers: H,
    ) where
        H: IntoIterator<Item = (&'h str, &'h [u8])> + Clone,
    {
        let timestamp = match self.timestamp_type {
            TimestampType::LogAppendTime => 0,
            TimestampType::CreateTime => timestamp,
        };
        let base = *self.base_timestamp.get_or_insert(timestamp);
        // Saturating: timestamps far apart (which `validate` refuses anyway, being negative)
        // must not overflow the builder.
        let delta = timestamp.saturating_sub(base);
        self.max_timestamp = if self.count == 0 {
            timestamp
        } else {
            self.max_timestamp.max(timestamp)
        };
        let (mut body, header_count) = Self::body_len(delta, key, value, headers.clone());
        body += offset_delta.map_or(0, encoded_len_varint);
        let buf = &mut self.buf;
        buf.reserve(encoded_len_varint(body as u64) + body);
        put_varint(buf, body as u64);
        if let Some(d) = offset_delta {
            put_varint(buf, d);
        }
        put_varint(buf, zigzag_encode(delta));
        match key {
            None => put_varint(buf, zigzag_encode(-1)),
            Some(k) => {
                put_varint(buf, zigzag_encode(k.len() as i64));
                buf.extend_from_slice(k);
            }
        }
        put_varint(buf, value.len() as u64);
        buf.extend_from_slice(value);
        put_varint(buf, header_count);
        for (k, v) in headers {
            put_varint(buf, k.len() as u64);
            buf.extend_from_slice(k.as_bytes());
            put_varint(buf, v.len() as u64);
            buf.extend_from_slice(v);
        }
        self.count += 1;
    }

    /// Seals the batch uncompressed: writes the header and returns the bytes.
    pub fn finish(self) -> Bytes {
        self.finish_compressed(Compression::None)
    }

    /// Seals the batch, compressing its records with `compression` (kept uncompressed when
    /// that would not make it smaller).
    pub fn finish_compressed(mut self, compression: Compression) -> Bytes {
        let mut attributes = match self.timestamp_type {
            TimestampType::CreateTime => 0,
            TimestampType::LogAppendTime => LOG_APPEND_TIME_BIT,
        };
        if self.explicit_offsets {
            attributes |= EXPLICIT_OFFSETS_BIT;
        }
        if compression != Compression::None {
            let packed = compression.compress(&self.buf[HEADER_LEN..]);
            if packed.len() < self.buf.len() - HEADER_LEN {
                self.buf.truncate(HEADER_LEN);
                self.buf.extend_from_slice(&packed);
                attributes |= compression.code();
            }
        }
        let header = BatchHeader {
            attributes,
            record_count: self.count,
            base_offset: self.base_offset,
            base_timestamp: self.base_timestamp.unwrap_or(0),
            max_timestamp: self.max_timestamp,
            producer_id: self.producer.0,
            base_sequence: self.producer.1,
            records_len: (self.buf.len() - HEADER_LEN) as u32,
        };
        header.write_to(&mut self.buf);
        Bytes::from(self.buf)
    }
}

/// `prost::encoding::encode_varint` with the one-byte case (lengths under 128, small deltas:
/// most fields of most records) inlined; the generic loop showed up as 4 % of a plugin map's
/// per-record cost (wasm/benches/plugin_call.rs).
#[inline(always)]
fn put_varint(buf: &mut Vec<u8>, v: u64) {
    if v < 0x80 {
        buf.push(v as u8);
    } else {
        encode_varint(v, buf);
    }
}
