//! The record-batch format: the unit of network transfer, storage and (later) plugin calls.
//!
//! A producer encodes records into one batch; the broker validates it, stamps the base offset
//! (and, for log-append time, the timestamp) into the fixed header, and stores the bytes as
//! they are. Consumers receive the very same bytes. Nothing re-encodes records on the way.
//!
//! Layout (little-endian fixed header, then the records; full spec in docs/batch-format.md):
//!
//! ```text
//! 0   u8   magic = 1
//! 1   u8   attributes: bits 0-2 compression (0 none, 1 lz4, 2 zstd), bit 3 timestamp type
//!          (1 = log-append)
//! 2   u16  reserved, 0
//! 4   u32  record_count (> 0)
//! 8   u64  base_offset (written by the broker)
//! 16  i64  base_timestamp (unix ms)
//! 24  i64  max_timestamp
//! 32  u64  producer_id (0 = not idempotent)
//! 40  u32  base_sequence
//! 44  u32  records_len (bytes after the header)
//! 48  ...  records (compressed as one block when the compression code is not 0)
//!
//! record := varint body_len, then body_len bytes:
//!   zigzag-varint timestamp_delta   (vs base_timestamp)
//!   zigzag-varint key_len (-1 = no key), key
//!   varint value_len, value
//!   varint header_count, then per header: varint key_len, key (UTF-8), varint value_len, value
//! ```
//! A record's offset is `base_offset + its index`.

use bytes::{Buf, Bytes};
use prost::encoding::{decode_varint, encode_varint, encoded_len_varint};

use crate::compression::{Compression, CompressionError};
use crate::limits::{MAX_HEADERS_PER_RECORD, MAX_RECORDS_PER_BATCH};
use crate::record::{Header, Record};

mod build;
#[cfg(test)]
mod tests;

pub use build::BatchBuilder;

/// Format version in byte 0.
pub const MAGIC: u8 = 1;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 48;

const COMPRESSION_MASK: u8 = 0b0000_0111;
const LOG_APPEND_TIME_BIT: u8 = 0b0000_1000;
/// Set only on batches the broker builds from plugin output (consume-time chains): every
/// record body starts with `varint offset_delta` (non-decreasing; several records may share an
/// offset, e.g. the outputs of a flat_map). Producers may not set it.
pub const EXPLICIT_OFFSETS_BIT: u8 = 0b0001_0000;

/// Who chose the record timestamps of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// The producer set each record's timestamp.
    CreateTime,
    /// The broker stamps the whole batch with its clock when it appends it.
    LogAppendTime,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch is {0} bytes, shorter than its {HEADER_LEN}-byte header")]
    TooShort(usize),
    #[error("unknown batch format (magic byte {0}; this broker speaks {MAGIC})")]
    BadMagic(u8),
    #[error("unsupported batch compression code {0}")]
    UnsupportedCompression(u8),
    #[error("cannot decompress the records: {0}")]
    Compression(#[from] CompressionError),
    #[error("batch header says {declared} record bytes but {actual} follow")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("batch holds no records")]
    Empty,
    #[error("batch holds {0} records; the limit is {MAX_RECORDS_PER_BATCH}")]
    TooManyRecords(u32),
    #[error("batch header says {declared} records but {actual} were found")]
    CountMismatch { declared: u32, actual: u32 },
    #[error("record {index} is malformed: {reason}")]
    Malformed { index: u32, reason: &'static str },
    #[error("record {index} is {size} bytes; the limit is {limit} bytes")]
    RecordTooLarge {
        index: u32,
        size: usize,
        limit: usize,
    },
    #[error("record {index} has {count} headers; the limit is {MAX_HEADERS_PER_RECORD}")]
    TooManyHeaders { index: u32, count: u64 },
    #[error("record {index} has a negative timestamp ({timestamp})")]
    NegativeTimestamp { index: u32, timestamp: i64 },
    #[error("produced batches may not carry explicit offsets (attribute bit 4)")]
    ExplicitOffsets,
}

/// The fixed header of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub attributes: u8,
    pub record_count: u32,
    pub base_offset: u64,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: u64,
    pub base_sequence: u32,
    pub records_len: u32,
}

impl BatchHeader {
    /// Parses the fixed header; checks magic and compression, not the records.
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        if buf.len() < HEADER_LEN {
            return Err(BatchError::TooShort(buf.len()));
        }
        let mut b = &buf[..HEADER_LEN];
        let magic = b.get_u8();
        if magic != MAGIC {
            return Err(BatchError::BadMagic(magic));
        }
        let attributes = b.get_u8();
        if Compression::from_code(attributes & COMPRESSION_MASK).is_err() {
            return Err(BatchError::UnsupportedCompression(
                attributes & COMPRESSION_MASK,
            ));
        }
        let _reserved = b.get_u16_le();
        Ok(Self {
            attributes,
            record_count: b.get_u32_le(),
            base_offset: b.get_u64_le(),
            base_timestamp: b.get_i64_le(),
            max_timestamp: b.get_i64_le(),
            producer_id: b.get_u64_le(),
            base_sequence: b.get_u32_le(),
            records_len: b.get_u32_le(),
        })
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `out`.
    pub fn write_to(&self, out: &mut [u8]) {
        let out = &mut out[..HEADER_LEN];
        out[0] = MAGIC;
        out[1] = self.attributes;
        out[2..4].copy_from_slice(&0u16.to_le_bytes());
        out[4..8].copy_from_slice(&self.record_count.to_le_bytes());
        out[8..16].copy_from_slice(&self.base_offset.to_le_bytes());
        out[16..24].copy_from_slice(&self.base_timestamp.to_le_bytes());
        out[24..32].copy_from_slice(&self.max_timestamp.to_le_bytes());
        out[32..40].copy_from_slice(&self.producer_id.to_le_bytes());
        out[40..44].copy_from_slice(&self.base_sequence.to_le_bytes());
        out[44..48].copy_from_slice(&self.records_len.to_le_bytes());
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & LOG_APPEND_TIME_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// How the records section is compressed.
    pub fn compression(&self) -> Compression {
        // `parse` rejected unknown codes.
        Compression::from_code(self.attributes & COMPRESSION_MASK).unwrap_or_default()
    }

    /// Whether records carry their own offset deltas (broker-built plugin output).
    pub fn explicit_offsets(&self) -> bool {
        self.attributes & EXPLICIT_OFFSETS_BIT != 0
    }

    /// Sequence number of the batch's last record (idempotent producers).
    pub fn last_sequence(&self) -> u32 {
        self.base_sequence
            .wrapping_add(self.record_count.saturating_sub(1))
    }

    /// Offset after the batch's last record (saturating: a header read from untrusted bytes
    /// may claim a base offset near `u64::MAX`; found by `fuzz/` target `batch`).
    pub fn next_offset(&self) -> u64 {
        self.base_offset
            .saturating_add(u64::from(self.record_count))
    }
}

/// The offset after the last record of consecutive stored batches (`None` when there are
/// none): where a reader continues.
pub fn next_offset_after(batches: &[Bytes]) -> Result<Option<u64>, BatchError> {
    batches
        .last()
        .map(|b| BatchHeader::parse(b).map(|h| h.next_offset()))
        .transpose()
}

/// As [`next_offset_after`], reading the last batch's records when they carry explicit
/// offsets (a plugin chain's output, whose header does not say where its records end).
pub fn next_offset_after_records(batches: &[Bytes]) -> Result<Option<u64>, BatchError> {
    batches
        .last()
        .map(|b| RecordCursor::new(b)?.next_offset())
        .transpose()
}

/// How many records stored batches hold (from their headers; a header that does not parse
/// counts none).
pub fn records_in(batches: &[Bytes]) -> u64 {
    batches
        .iter()
        .filter_map(|b| BatchHeader::parse(b).ok())
        .map(|h| u64::from(h.record_count))
        .sum()
}

/// Stamps the broker-assigned base offset into an encoded batch.
pub fn set_base_offset(batch: &mut [u8], base_offset: u64) {
    batch[8..16].copy_from_slice(&base_offset.to_le_bytes());
}

/// Stamps the idempotent producer's id and the sequence number of the batch's first record.
pub fn set_producer(batch: &mut [u8], producer_id: u64, base_sequence: u32) {
    batch[32..40].copy_from_slice(&producer_id.to_le_bytes());
    batch[40..44].copy_from_slice(&base_sequence.to_le_bytes());
}

/// Stamps the broker's clock as base and max timestamp (log-append time).
pub fn set_log_append_time(batch: &mut [u8], timestamp: i64) {
    batch[16..24].copy_from_slice(&timestamp.to_le_bytes());
    batch[24..32].copy_from_slice(&timestamp.to_le_bytes());
}

/// One record's fields as slices of the batch buffer.
struct RawRecord<'a> {
    /// Offset relative to the base (explicit-offset batches only; else 0).
    offset_delta: u64,
    timestamp_delta: i64,
    key: Option<&'a [u8]>,
    value: &'a [u8],
    /// The header section (already checked), and how many headers it holds.
    headers: &'a [u8],
    header_count: u32,
    /// Header names + values, in bytes.
    headers_len: usize,
}

fn zigzag_encode(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn zigzag_decode(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[inline(always)]
fn take<'a>(
    buf: &mut &'a [u8],
    n: u64,
    index: u32,
    what: &'static str,
) -> Result<&'a [u8], BatchError> {
    let n = usize::try_from(n).map_err(|_| BatchError::Malformed {
        index,
        reason: what,
    })?;
    if n > buf.len() {
        return Err(BatchError::Malformed {
            index,
            reason: what,
        });
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Ok(head)
}

#[inline(always)]
fn varint(buf: &mut &[u8], index: u32, what: &'static str) -> Result<u64, BatchError> {
    // One byte (lengths under 128, small deltas) without prost's generic decoder, which was a
    // sixth of checking a plugin's output batch (wasm/benches/plugin_call.rs).
    if let [b, rest @ ..] = *buf
        && *b < 0x80
    {
        *buf = rest;
        return Ok(u64::from(*b));
    }
    decode_varint(buf).map_err(|_| BatchError::Malformed {
        index,
        reason: what,
    })
}

/// Parses one record body, checking every length and header name; allocates nothing.
fn parse_body(
    mut body: &[u8],
    index: u32,
    explicit_offsets: bool,
) -> Result<RawRecord<'_>, BatchError> {
    let offset_delta = if explicit_offsets {
        varint(&mut body, index, "bad offset delta")?
    } else {
        0
    };
    let timestamp_delta = zigzag_decode(varint(&mut body, index, "bad timestamp")?);
    let key_len = zigzag_decode(varint(&mut body, index, "bad key length")?);
    let key = match key_len {
        -1 => None,
        n if n >= 0 => Some(take(
            &mut body,
            n as u64,
            index,
            "key runs past the record",
        )?),
        _ => {
            return Err(BatchError::Malformed {
                index,
                reason: "bad key length",
            });
        }
    };
    let value_len = varint(&mut body, index, "bad value length")?;
    let value = take(&mut body, value_len, index, "value runs past the record")?;
    let header_count = varint(&mut body, index, "bad header count")?;
    if header_count > MAX_HEADERS_PER_RECORD as u64 {
        return Err(BatchError::TooManyHeaders {
            index,
            count: header_count,
        });
    }
    let headers = body;
    let mut headers_len = 0;
    for _ in 0..header_count {
        let klen = varint(&mut body, index, "bad header key length")?;
        let k = take(&mut body, klen, index, "header key runs past the record")?;
        if std::str::from_utf8(k).is_err() {
            return Err(BatchError::Malformed {
                index,
                reason: "header key is not UTF-8",
            });
        }
        let vlen = varint(&mut body, index, "bad header value length")?;
        let v = take(&mut body, vlen, index, "header value runs past the record")?;
        headers_len += k.len() + v.len();
    }
    if !body.is_empty() {
        return Err(BatchError::Malformed {
            index,
            reason: "trailing bytes in record",
        });
    }
    Ok(RawRecord {
        offset_delta,
        timestamp_delta,
        key,
        value,
        headers,
        header_count: header_count as u32,
        headers_len,
    })
}

/// The headers of a record as `(name, value)` slices of its batch. Only built over header
/// sections [`parse_body`] has checked, so it cannot meet a malformed one (it would stop).
#[derive(Debug, Clone)]
pub struct RawHeaders<'a> {
    buf: &'a [u8],
    left: u32,
}

impl<'a> Iterator for RawHeaders<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let mut field = || {
            let n = decode_varint(&mut self.buf).ok()? as usize;
            let (head, tail) = self.buf.split_at_checked(n)?;
            self.buf = tail;
            Some(head)
        };
        let k = std::str::from_utf8(field()?).ok()?;
        let v = field()?;
        Some((k, v))
    }
}

/// One record of an uncompressed batch, as slices of it: what the broker reads to pass records
/// on without building [`Record`]s.
#[derive(Debug, Clone)]
pub struct RecordRef<'a> {
    pub offset: u64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    headers: RawHeaders<'a>,
}

impl<'a> RecordRef<'a> {
    pub fn headers(&self) -> RawHeaders<'a> {
        self.headers.clone()
    }
}

/// The records of one uncompressed batch, checked as they are read ([`record_refs`]).
pub struct RecordRefs<'a> {
    records: &'a [u8],
    walk: Walk,
}

impl<'a> RecordRefs<'a> {
    pub fn header(&self) -> &BatchHeader {
        &self.walk.header
    }
}

impl<'a> Iterator for RecordRefs<'a> {
    type Item = Result<RecordRef<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.walk.next(&mut self.records)
    }
}

/// Where a walk over a batch's records stands (the records themselves are passed in, so the
/// walk can also run over an owned batch: [`RecordCursor`]).
#[derive(Debug, Clone)]
struct Walk {
    header: BatchHeader,
    index: u32,
    last_delta: u64,
    /// After the last record or the first error.
    done: bool,
}

impl Walk {
    fn new(header: BatchHeader) -> Self {
        Self {
            header,
            index: 0,
            last_delta: 0,
            done: false,
        }
    }

    /// The next record of `records` (the rest of the records section), which it advances.
    fn next<'a>(&mut self, records: &mut &'a [u8]) -> Option<Result<RecordRef<'a>, BatchError>> {
        if self.done {
            return None;
        }
        let r = if records.is_empty() {
            self.done = true;
            if self.index == self.header.record_count {
                return None;
            }
            Err(BatchError::CountMismatch {
                declared: self.header.record_count,
                actual: self.index,
            })
        } else {
            self.next_record(records)
        };
        self.done |= r.is_err();
        Some(r)
    }

    fn next_record<'a>(&mut self, records: &mut &'a [u8]) -> Result<RecordRef<'a>, BatchError> {
        let index = self.index;
        let h = &self.header;
        let body = next_body(records, index)?;
        let raw = parse_body(body, index, h.explicit_offsets())?;
        let delta = if h.explicit_offsets() {
            if raw.offset_delta < self.last_delta {
                return Err(BatchError::Malformed {
                    index,
                    reason: "offsets go backwards",
                });
            }
            self.last_delta = raw.offset_delta;
            raw.offset_delta
        } else {
            u64::from(index)
        };
        self.index += 1;
        Ok(RecordRef {
            offset: h.base_offset.saturating_add(delta),
            timestamp: match h.timestamp_type() {
                TimestampType::LogAppendTime => h.base_timestamp,
                TimestampType::CreateTime => h.base_timestamp.saturating_add(raw.timestamp_delta),
            },
            key: raw.key,
            value: raw.value,
            headers: RawHeaders {
                buf: raw.headers,
                left: raw.header_count,
            },
        })
    }
}

/// The records section `header` announces (checked to be there).
fn records_section<'a>(batch: &'a [u8], header: &BatchHeader) -> Result<&'a [u8], BatchError> {
    batch
        .get(HEADER_LEN..HEADER_LEN + header.records_len as usize)
        .ok_or(BatchError::LengthMismatch {
            declared: header.records_len as usize,
            actual: batch.len() - HEADER_LEN,
        })
}

/// Reads the records of an uncompressed batch (see [`uncompressed`]) one by one, without
/// allocating.
pub fn record_refs(batch: &[u8]) -> Result<RecordRefs<'_>, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if header.compression() != Compression::None {
        return Err(BatchError::UnsupportedCompression(
            header.compression().code(),
        ));
    }
    let records = records_section(batch, &header)?;
    Ok(RecordRefs {
        records,
        walk: Walk::new(header),
    })
}

/// The batch with its records section decompressed (the same bytes when it is not compressed):
/// what plugins read.
pub fn uncompressed(batch: &Bytes) -> Result<Bytes, BatchError> {
    let mut header = BatchHeader::parse(batch)?;
    let section = records_section(batch, &header)?;
    match header.compression() {
        Compression::None => Ok(batch.slice(..HEADER_LEN + section.len())),
        c => {
            let records = c.decompress(section)?;
            let mut out = vec![0; HEADER_LEN + records.len()];
            out[HEADER_LEN..].copy_from_slice(&records);
            header.attributes &= !COMPRESSION_MASK;
            header.records_len = records.len() as u32;
            header.write_to(&mut out);
            Ok(Bytes::from(out))
        }
    }
}

/// Splits the next record body off `records`.
fn next_body<'a>(records: &mut &'a [u8], index: u32) -> Result<&'a [u8], BatchError> {
    let len = varint(records, index, "bad record length")?;
    take(records, len, index, "record runs past the batch")
}

/// What validation learnt about a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidBatch {
    pub header: BatchHeader,
    /// Largest record timestamp (for create-time batches; the header's may not be trusted).
    pub max_timestamp: i64,
}

/// Checks a whole batch as it arrives from a producer: header, lengths, every record's framing,
/// UTF-8 header keys, record size against `max_record_bytes`, timestamps. No allocation for an
/// uncompressed batch; a compressed one is decompressed (bounded) into a scratch buffer.
pub fn validate(batch: &[u8], max_record_bytes: usize) -> Result<ValidBatch, BatchError> {
    check(batch, |body, index| {
        let raw = parse_body(body, index, false)?;
        let size = raw.key.map_or(0, <[u8]>::len) + raw.value.len() + raw.headers_len;
        if size > max_record_bytes {
            return Err(BatchError::RecordTooLarge {
                index,
                size,
                limit: max_record_bytes,
            });
        }
        Ok(raw.timestamp_delta)
    })
}

/// Checks a batch a replica copies from its leader, which ran [`validate`] on it when it
/// was produced: the header, the lengths, the record count and every record's length and
/// timestamp (what a replica's log and time index use), not the inside of each record (key,
/// value, header names). About a third of [`validate`]'s cost for uncompressed batches; a
/// compressed batch is checked whole by [`validate`] with no record size limit.
pub fn validate_replica(batch: &[u8]) -> Result<ValidBatch, BatchError> {
    if BatchHeader::parse(batch)?.compression() != Compression::None {
        return validate(batch, usize::MAX);
    }
    check(batch, |mut body, index| {
        Ok(zigzag_decode(varint(&mut body, index, "bad timestamp")?))
    })
}

/// What [`validate`] and [`validate_replica`] share: the header, the lengths, the record
/// count, and each record's framing and timestamp; `record` checks one record's body
/// (`index`-th) and returns its timestamp delta.
#[inline(always)]
fn check(
    batch: &[u8],
    mut record: impl FnMut(&[u8], u32) -> Result<i64, BatchError>,
) -> Result<ValidBatch, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if header.explicit_offsets() {
        return Err(BatchError::ExplicitOffsets);
    }
    let section = &batch[HEADER_LEN..];
    if header.records_len as usize != section.len() {
        return Err(BatchError::LengthMismatch {
            declared: header.records_len as usize,
            actual: section.len(),
        });
    }
    let decompressed;
    let mut records = match header.compression() {
        Compression::None => section,
        c => {
            decompressed = c.decompress(section)?;
            &decompressed[..]
        }
    };
    if header.record_count == 0 {
        return Err(BatchError::Empty);
    }
    if header.record_count > MAX_RECORDS_PER_BATCH {
        return Err(BatchError::TooManyRecords(header.record_count));
    }
    let create_time = header.timestamp_type() == TimestampType::CreateTime;
    let mut max_timestamp = i64::MIN;
    let mut index = 0u32;
    while !records.is_empty() {
        if index >= header.record_count {
            return Err(BatchError::CountMismatch {
                declared: header.record_count,
                actual: index + 1,
            });
        }
        let body = next_body(&mut records, index)?;
        let timestamp = header.base_timestamp.saturating_add(record(body, index)?);
        if create_time && timestamp < 0 {
            return Err(BatchError::NegativeTimestamp { index, timestamp });
        }
        max_timestamp = max_timestamp.max(timestamp);
        index += 1;
    }
    if index != header.record_count {
        return Err(BatchError::CountMismatch {
            declared: header.record_count,
            actual: index,
        });
    }
    Ok(ValidBatch {
        header,
        max_timestamp,
    })
}

/// Decodes every record of a stored batch. `batch` must be a whole batch (header included);
/// the records' byte fields are zero-copy slices of it (of the decompressed records, for a
/// compressed batch).
pub fn decode(batch: &Bytes) -> Result<(BatchHeader, Vec<Record>), BatchError> {
    let header = BatchHeader::parse(batch)?;
    let plain = uncompressed(batch)?;
    let mut records = Vec::with_capacity(header.record_count as usize);
    for r in record_refs(&plain)? {
        records.push(owned(&plain, r?));
    }
    Ok((header, records))
}

/// A record of `plain` as an owned [`Record`] whose byte fields are slices of `plain`.
#[inline]
fn owned(plain: &Bytes, r: RecordRef<'_>) -> Record {
    Record {
        offset: r.offset,
        timestamp: r.timestamp,
        key: r.key.map(|k| plain.slice_ref(k)),
        value: plain.slice_ref(r.value),
        headers: r
            .headers()
            .map(|(k, v)| Header {
                key: k.to_owned(),
                value: plain.slice_ref(v),
            })
            .collect(),
    }
}

/// The records of one stored batch as owned [`Record`]s (zero-copy slices of it), decoded one
/// at a time as they are taken: what a consumer buffers instead of a `Vec<Record>` per batch
/// (decoding into a Vec, then moving each record into a buffer, was a third of a consuming
/// client's CPU). Checked like [`record_refs`]; an error ends it.
#[derive(Debug, Clone)]
pub struct RecordCursor {
    /// The batch with its records decompressed.
    plain: Bytes,
    /// Where the records not taken yet start in `plain`, and where they end.
    at: usize,
    end: usize,
    walk: Walk,
}

impl RecordCursor {
    pub fn new(batch: &Bytes) -> Result<Self, BatchError> {
        let plain = uncompressed(batch)?;
        let header = BatchHeader::parse(&plain)?;
        let end = HEADER_LEN + records_section(&plain, &header)?.len();
        Ok(Self {
            plain,
            at: HEADER_LEN,
            end,
            walk: Walk::new(header),
        })
    }

    /// The batch's header (as stored, but for the compression, which is undone).
    pub fn header(&self) -> &BatchHeader {
        &self.walk.header
    }

    /// The offset after the batch's last record. The header says it, except for a batch with
    /// explicit offsets (plugin output: records may share or skip offsets), whose records are
    /// read for it (without building them).
    pub fn next_offset(&self) -> Result<u64, BatchError> {
        let header = &self.walk.header;
        if !header.explicit_offsets() {
            return Ok(header.next_offset());
        }
        let mut last = None;
        for r in record_refs(&self.plain)? {
            last = Some(r?.offset);
        }
        Ok(last.map_or(header.base_offset, |o| o + 1))
    }
}

impl Iterator for RecordCursor {
    type Item = Result<Record, BatchError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let plain = &self.plain;
        let mut records = plain.get(self.at..self.end)?;
        let item = self.walk.next(&mut records);
        self.at = self.end - records.len();
        Some(item?.map(|r| owned(plain, r)))
    }
}
