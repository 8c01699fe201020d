//! Kafka record batches (magic 2) ⇄ Weir batches, for the broker's Kafka listener.
//!
//! One log, two front doors: the log stores Weir batches only (`docs/batch-format.md`).
//! A Kafka producer's batch is decoded (CRC-32C checked, decompressed within a bound), and
//! its records are written into one Weir batch with the same timestamps, keys, values and
//! headers, compressed with the nearest Weir codec (lz4 for lz4 and snappy, zstd for zstd and
//! gzip); a Kafka consumer gets each stored Weir batch as one uncompressed Kafka batch with
//! the same offsets. Record batches are parsed and written by the `kafka-protocol` crate
//! (generated from Kafka's own message specs); decompression is done here because the crate's
//! is unbounded (a gzip bomb would take the broker's memory).
//!
//! What does not survive the trip (docs/kafka.md): a null value reads back as an empty one,
//! and so does a null header value (Weir records always have a value; there is no compaction,
//! so tombstones mean nothing to the log); transactional and control batches are refused.

use std::io::Read;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression as KafkaCompression, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID,
    RecordBatchDecoder, TimestampType as KafkaTimestampType,
};
use weir_common::batch::{self, BatchBuilder, TimestampType};
use weir_common::compression::Compression;
use weir_common::limits::{MAX_RECORDS_PER_BATCH, MAX_UNCOMPRESSED_BATCH_BYTES};

/// The batch format version (`magic`) this codec reads and writes; older message sets (v0, v1)
/// are refused, as Kafka 4 does.
pub const KAFKA_MAGIC: i8 = 2;

/// Bytes before a Kafka batch's `magic` (base offset, length, partition leader epoch).
const MAGIC_OFFSET: usize = 16;

/// Bytes of a Kafka batch before its records (the v2 header).
pub const KAFKA_BATCH_HEADER_LEN: usize = 61;

/// Why a Kafka client's records were refused; each maps onto one Kafka error code at the edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KafkaRecordsError {
    /// Bad framing, a CRC mismatch or records that do not decode (CORRUPT_MESSAGE).
    #[error("corrupt record batch: {0}")]
    Corrupt(String),
    /// A message set older than v2 (UNSUPPORTED_FOR_MESSAGE_FORMAT).
    #[error("record batch magic {0} is not supported; only v2 batches (magic 2) are")]
    OldFormat(i8),
    /// Transactions are not supported (UNSUPPORTED_FOR_MESSAGE_FORMAT).
    #[error("transactional and control batches are not supported (Weir has no transactions)")]
    Transactional,
    /// More than the broker decompresses for one batch (RECORD_LIST_TOO_LARGE).
    #[error(
        "a batch's records decompress to more than {MAX_UNCOMPRESSED_BATCH_BYTES} bytes or hold \
         more than {MAX_RECORDS_PER_BATCH} records"
    )]
    TooLarge,
    /// No records at all (INVALID_RECORD).
    #[error("the produce request carries no records for this partition")]
    Empty,
}

/// One Kafka batch as a Weir batch, with the idempotence fields the Kafka producer set.
#[derive(Debug, Clone)]
pub struct IncomingBatch {
    /// The Weir batch (base offset 0: the log stamps it), with the producer's id and base
    /// sequence when it is idempotent (a Kafka producer id of 0 counts as none: Weir's ids
    /// start at 1).
    pub batch: Bytes,
    pub records: u32,
    /// `(producer id, epoch, base sequence)` of an idempotent producer's batch.
    pub producer: Option<(i64, i16, i32)>,
}

fn corrupt(e: impl std::fmt::Display) -> KafkaRecordsError {
    KafkaRecordsError::Corrupt(e.to_string())
}

/// Reads all of `r` unless it holds more than [`MAX_UNCOMPRESSED_BATCH_BYTES`].
fn read_bounded(r: impl Read, what: &str) -> anyhow::Result<Bytes> {
    let mut out = Vec::new();
    r.take(MAX_UNCOMPRESSED_BATCH_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| anyhow::anyhow!("cannot decompress {what}: {e}"))?;
    if out.len() > MAX_UNCOMPRESSED_BATCH_BYTES {
        anyhow::bail!(TOO_LARGE);
    }
    Ok(Bytes::from(out))
}

/// The marker [`read_bounded`] fails with, told apart from corruption by [`decode_error`].
const TOO_LARGE: &str = "decompressed records exceed the limit";

/// The header Java's snappy framing (xerial) starts with; librdkafka writes plain snappy.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";

/// Plain snappy, or xerial's blocks (`u32 BE length, snappy block`, after a 16-byte header).
fn snappy(data: &[u8]) -> anyhow::Result<Bytes> {
    let mut out = Vec::new();
    let block = |b: &[u8], out: &mut Vec<u8>| -> anyhow::Result<()> {
        let n = snap::raw::decompress_len(b)?;
        if out.len() + n > MAX_UNCOMPRESSED_BATCH_BYTES {
            anyhow::bail!(TOO_LARGE);
        }
        let start = out.len();
        out.resize(start + n, 0);
        snap::raw::Decoder::new().decompress(b, &mut out[start..])?;
        Ok(())
    };
    if data.starts_with(XERIAL_MAGIC) && data.len() >= 16 {
        let mut rest = &data[16..];
        while !rest.is_empty() {
            let (len, tail) = rest
                .split_first_chunk::<4>()
                .ok_or_else(|| anyhow::anyhow!("truncated xerial snappy block length"))?;
            let len = u32::from_be_bytes(*len) as usize;
            let (b, tail) = tail
                .split_at_checked(len)
                .ok_or_else(|| anyhow::anyhow!("truncated xerial snappy block"))?;
            block(b, &mut out)?;
            rest = tail;
        }
    } else {
        block(data, &mut out)?;
    }
    Ok(Bytes::from(out))
}

/// The records section of a Kafka batch, decompressed within the bound.
fn decompress(data: &mut Bytes, codec: KafkaCompression) -> anyhow::Result<Bytes> {
    let data = std::mem::take(data);
    match codec {
        KafkaCompression::None => Ok(data),
        KafkaCompression::Gzip => {
            read_bounded(flate2::read::MultiGzDecoder::new(&data[..]), "gzip")
        }
        KafkaCompression::Snappy => snappy(&data),
        KafkaCompression::Lz4 => read_bounded(lz4_flex::frame::FrameDecoder::new(&data[..]), "lz4"),
        KafkaCompression::Zstd => {
            read_bounded(zstd::stream::read::Decoder::new(&data[..])?, "zstd")
        }
    }
}

fn decode_error(e: anyhow::Error) -> KafkaRecordsError {
    if e.chain().any(|c| c.to_string() == TOO_LARGE) {
        KafkaRecordsError::TooLarge
    } else {
        KafkaRecordsError::Corrupt(format!("{e:#}"))
    }
}

/// The Weir codec a Kafka codec's records are stored with.
pub fn weir_codec(codec: KafkaCompression) -> Compression {
    match codec {
        KafkaCompression::None => Compression::None,
        KafkaCompression::Lz4 | KafkaCompression::Snappy => Compression::Lz4,
        KafkaCompression::Zstd | KafkaCompression::Gzip => Compression::Zstd,
    }
}

/// Translates the records of one partition of a Kafka Produce request (one batch or several)
/// into Weir batches, one per Kafka batch. Nothing about the records is checked here that
/// `batch::validate` checks again when the broker appends them (sizes, header counts,
/// timestamps); what is checked is the Kafka framing, CRC and decompression bound.
pub fn to_weir(mut records: Bytes) -> Result<Vec<IncomingBatch>, KafkaRecordsError> {
    let mut out = Vec::new();
    while !records.is_empty() {
        let magic = *records
            .get(MAGIC_OFFSET)
            .ok_or_else(|| corrupt("shorter than a record batch header"))?
            as i8;
        if magic != KAFKA_MAGIC {
            return Err(KafkaRecordsError::OldFormat(magic));
        }
        let set =
            RecordBatchDecoder::decode_with_custom_compression(&mut records, Some(decompress))
                .map_err(decode_error)?;
        let Some(first) = set.records.first() else {
            return Err(KafkaRecordsError::Empty);
        };
        if first.transactional || first.control {
            return Err(KafkaRecordsError::Transactional);
        }
        if set.records.len() > MAX_RECORDS_PER_BATCH as usize {
            return Err(KafkaRecordsError::TooLarge);
        }
        let timestamp_type = match first.timestamp_type {
            KafkaTimestampType::Creation => TimestampType::CreateTime,
            KafkaTimestampType::LogAppend => TimestampType::LogAppendTime,
        };
        // The batch's base sequence is its first record's (producers number a batch's
        // records from offset delta 0).
        let producer = (first.producer_id >= 0).then_some((
            first.producer_id,
            first.producer_epoch,
            first.sequence,
        ));
        let bytes: usize = set
            .records
            .iter()
            .map(|r| {
                r.key.as_ref().map_or(0, Bytes::len)
                    + r.value.as_ref().map_or(0, Bytes::len)
                    + r.headers
                        .iter()
                        .map(|(k, v)| k.len() + v.as_ref().map_or(0, Bytes::len) + 4)
                        .sum::<usize>()
                    + 16
            })
            .sum();
        let mut b = BatchBuilder::with_capacity(timestamp_type, bytes);
        if let Some((id, _, sequence)) = producer.filter(|p| p.0 > 0) {
            b.set_producer(id as u64, sequence as u32);
        }
        for r in &set.records {
            b.push(
                r.timestamp,
                r.key.as_deref(),
                r.value.as_deref().unwrap_or_default(),
                r.headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_deref().unwrap_or_default())),
            );
        }
        let count = b.record_count();
        out.push(IncomingBatch {
            batch: b.finish_compressed(weir_codec(set.compression)),
            records: count,
            producer,
        });
    }
    if out.is_empty() {
        return Err(KafkaRecordsError::Empty);
    }
    Ok(out)
}

/// Why stored batches could not be served to a Kafka client (a damaged store).
#[derive(Debug, thiserror::Error)]
#[error("stored batch cannot be served as a Kafka batch: {0}")]
pub struct KafkaFetchError(String);

/// Appends each stored Weir batch to `out` as one uncompressed Kafka v2 batch with the same
/// base offset, record offsets, timestamps and producer fields. Batches whose records carry
/// explicit offsets (plugin output) keep those offsets.
///
/// Written in one pass directly from the stored records' slices (kafka-protocol's encoder
/// would build an owned `Record` per record first), on the Fetch path's largest cost
/// (docs/benchmarks.md). The tests check every field against the crate's decoder.
pub fn to_kafka(stored: &[Bytes], out: &mut BytesMut) -> Result<(), KafkaFetchError> {
    use bytes::BufMut;
    let bad = |e: &dyn std::fmt::Display| KafkaFetchError(e.to_string());
    for stored in stored {
        let plain = batch::uncompressed(stored).map_err(|e| bad(&e))?;
        let mut records = batch::record_refs(&plain).map_err(|e| bad(&e))?;
        let h = *records.header();
        let Some(first) = records.next().transpose().map_err(|e| bad(&e))? else {
            continue;
        };
        // One pass: the header goes out first with the first record's offset and timestamp
        // as Kafka's base (offsets never go backwards in a stored batch; timestamp deltas may
        // be negative), and the fields only the last record settles are filled in after.
        let (base_offset, base_ts) = (first.offset, first.timestamp);
        let attributes: i16 = match h.timestamp_type() {
            TimestampType::CreateTime => 0,
            TimestampType::LogAppendTime => LOG_APPEND_TIME_ATTRIBUTE,
        };
        // Sequences follow offsets from the producer's base sequence (none: -1).
        let (producer_id, producer_epoch, base_sequence) = match h.producer_id {
            0 => (NO_PRODUCER_ID, NO_PRODUCER_EPOCH, -1),
            id => (
                id as i64,
                0,
                (h.base_sequence as i32)
                    .wrapping_add(base_offset.wrapping_sub(h.base_offset) as i32),
            ),
        };
        let start = out.len();
        out.reserve(KAFKA_BATCH_HEADER_LEN + plain.len() + 8 * h.record_count as usize);
        out.put_i64(base_offset as i64);
        out.put_i32(0); // length, below
        out.put_i32(NO_PARTITION_LEADER_EPOCH);
        out.put_i8(KAFKA_MAGIC);
        out.put_u32(0); // CRC, below
        out.put_i16(attributes);
        out.put_i32(0); // last offset delta, below
        out.put_i64(base_ts);
        out.put_i64(0); // max timestamp, below
        out.put_i64(producer_id);
        out.put_i16(producer_epoch);
        out.put_i32(base_sequence);
        out.put_i32(0); // record count, below
        let (mut last_offset, mut max_ts, mut count) = (base_offset, base_ts, 0i32);
        let mut next = Some(first);
        while let Some(r) = next {
            put_kafka_record(out, &r, base_offset, base_ts);
            last_offset = r.offset;
            max_ts = max_ts.max(r.timestamp);
            count += 1;
            next = records.next().transpose().map_err(|e| bad(&e))?;
        }
        let length = i32::try_from(out.len() - start - 12)
            .map_err(|_| KafkaFetchError("batch too large for Kafka".into()))?;
        let delta = last_offset.wrapping_sub(base_offset) as i32;
        out[start + 8..start + 12].copy_from_slice(&length.to_be_bytes());
        out[start + 23..start + 27].copy_from_slice(&delta.to_be_bytes());
        out[start + 35..start + 43].copy_from_slice(&max_ts.to_be_bytes());
        out[start + 57..start + 61].copy_from_slice(&count.to_be_bytes());
        let crc = crc32c::crc32c(&out[start + CRC_END..]);
        out[start + CRC_END - 4..start + CRC_END].copy_from_slice(&crc.to_be_bytes());
    }
    Ok(())
}

/// One record in Kafka's v2 record format, relative to its batch's base offset and timestamp.
#[inline]
fn put_kafka_record(out: &mut BytesMut, r: &batch::RecordRef<'_>, base_offset: u64, base_ts: i64) {
    use bytes::BufMut;
    let ts_delta = r.timestamp.wrapping_sub(base_ts);
    let offset_delta = r.offset.wrapping_sub(base_offset) as i64;
    let mut body = 1 + varint_len(ts_delta) + varint_len(offset_delta);
    body += match r.key {
        Some(k) => varint_len(k.len() as i64) + k.len(),
        None => varint_len(-1),
    };
    body += varint_len(r.value.len() as i64) + r.value.len();
    let mut count = 0i64;
    for (k, v) in r.headers() {
        count += 1;
        body += varint_len(k.len() as i64) + k.len() + varint_len(v.len() as i64) + v.len();
    }
    body += varint_len(count);
    put_varint(out, body as i64);
    out.put_i8(0); // record attributes
    put_varint(out, ts_delta);
    put_varint(out, offset_delta);
    match r.key {
        Some(k) => {
            put_varint(out, k.len() as i64);
            out.put_slice(k);
        }
        None => put_varint(out, -1),
    }
    put_varint(out, r.value.len() as i64);
    out.put_slice(r.value);
    put_varint(out, count);
    for (k, v) in r.headers() {
        put_varint(out, k.len() as i64);
        out.put_slice(k.as_bytes());
        put_varint(out, v.len() as i64);
        out.put_slice(v);
    }
}

/// Where a Kafka batch's CRC ends (and what it covers begins: the attributes).
const CRC_END: usize = 21;

/// Kafka's log-append-time attribute bit.
const LOG_APPEND_TIME_ATTRIBUTE: i16 = 0x08;

/// Bytes of `n` as Kafka's zig-zag varint.
fn varint_len(n: i64) -> usize {
    let z = ((n << 1) ^ (n >> 63)) as u64;
    (64 - (z | 1).leading_zeros() as usize).div_ceil(7)
}

/// Writes `n` as Kafka's zig-zag varint.
fn put_varint(out: &mut BytesMut, n: i64) {
    use bytes::BufMut;
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    out.put_u8(z as u8);
}

/// Kafka's control-batch attribute bit.
const CONTROL_ATTRIBUTE: i16 = 0x20;

/// Appends an empty control batch covering offsets `first..=last` to `out`: what a Kafka
/// client reads to move past offsets that hold nothing for it (a view's records its chain
/// left out, as compaction leaves gaps). Clients set their next fetch offset after a batch's
/// last offset, with or without records in it; being a control batch, it is never handed to
/// the application, and librdkafka does not take it for a record too large to fetch.
pub fn skipped(first: u64, last: u64, out: &mut BytesMut) {
    use bytes::BufMut;
    let delta = i32::try_from(last.saturating_sub(first)).unwrap_or(i32::MAX);
    out.reserve(KAFKA_BATCH_HEADER_LEN);
    out.put_i64(first as i64);
    out.put_i32((KAFKA_BATCH_HEADER_LEN - 12) as i32);
    out.put_i32(NO_PARTITION_LEADER_EPOCH);
    out.put_i8(KAFKA_MAGIC);
    let crc_at = out.len();
    out.put_u32(0);
    let body_at = out.len();
    out.put_i16(CONTROL_ATTRIBUTE);
    out.put_i32(delta);
    out.put_i64(-1); // first timestamp: none
    out.put_i64(-1); // max timestamp
    out.put_i64(NO_PRODUCER_ID);
    out.put_i16(NO_PRODUCER_EPOCH);
    out.put_i32(-1); // base sequence
    out.put_i32(0); // records
    let crc = crc32c::crc32c(&out[body_at..]);
    out[crc_at..crc_at + 4].copy_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions};

    fn record(offset: i64, key: Option<&str>, value: Option<&str>) -> Record {
        let mut headers = kafka_protocol::indexmap::IndexMap::new();
        headers.insert(
            kafka_protocol::protocol::StrBytes::from_static_str("h"),
            Some(Bytes::from_static(b"v")),
        );
        Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: 7,
            producer_epoch: 0,
            timestamp_type: KafkaTimestampType::Creation,
            offset,
            sequence: 40 + offset as i32,
            timestamp: 1_700_000_000_000 + offset,
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers,
        }
    }

    fn kafka_batch(records: &[Record], compression: KafkaCompression) -> Bytes {
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut buf, records.iter(), &options).unwrap();
        buf.freeze()
    }

    #[test]
    fn a_kafka_batch_round_trips_through_a_weir_batch_with_every_codec() {
        let records = vec![
            record(0, Some("k0"), Some("v0")),
            record(1, None, Some("v1")),
            record(2, Some("k2"), None),
        ];
        for codec in [
            KafkaCompression::None,
            KafkaCompression::Gzip,
            KafkaCompression::Snappy,
            KafkaCompression::Lz4,
            KafkaCompression::Zstd,
        ] {
            let incoming = to_weir(kafka_batch(&records, codec)).unwrap();
            assert_eq!(incoming.len(), 1, "{codec:?}");
            assert_eq!(incoming[0].records, 3);
            assert_eq!(incoming[0].producer, Some((7, 0, 40)));
            let mut stored = BytesMut::from(&incoming[0].batch[..]);
            batch::validate(&stored, 1 << 20).unwrap();
            batch::set_base_offset(&mut stored, 100);
            let mut out = BytesMut::new();
            to_kafka(&[stored.freeze()], &mut out).unwrap();
            let back = RecordBatchDecoder::decode(&mut out.freeze()).unwrap();
            assert_eq!(back.records.len(), 3);
            for (i, (a, b)) in records.iter().zip(&back.records).enumerate() {
                assert_eq!(b.offset, 100 + i as i64);
                assert_eq!(b.timestamp, a.timestamp);
                assert_eq!(b.key, a.key);
                // A null value comes back empty (module docs).
                assert_eq!(b.value, Some(a.value.clone().unwrap_or_default()));
                assert_eq!(b.headers, a.headers);
                assert_eq!(b.producer_id, 7);
                assert_eq!(b.sequence, 40 + i as i32);
            }
        }
    }

    #[test]
    fn batches_without_a_producer_stay_one_kafka_batch() {
        let mut b = BatchBuilder::new(TimestampType::CreateTime);
        for i in 0..100 {
            b.push(i, None, b"value", std::iter::empty());
        }
        let mut stored = BytesMut::from(&b.finish()[..]);
        batch::set_base_offset(&mut stored, 5);
        let mut out = BytesMut::new();
        to_kafka(&[stored.freeze()], &mut out).unwrap();
        let mut bytes = out.freeze();
        let sets = RecordBatchDecoder::decode_all(&mut bytes).unwrap();
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].records.len(), 100);
        assert_eq!(sets[0].records[99].offset, 104);
        assert_eq!(sets[0].records[0].producer_id, NO_PRODUCER_ID);
    }

    #[test]
    fn corrupt_old_transactional_and_oversized_batches_are_refused() {
        let records = vec![record(0, Some("k"), Some("v"))];
        let good = kafka_batch(&records, KafkaCompression::None);
        let mut flipped = BytesMut::from(&good[..]);
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        assert!(matches!(
            to_weir(flipped.freeze()),
            Err(KafkaRecordsError::Corrupt(_))
        ));
        let mut old = BytesMut::from(&good[..]);
        old[MAGIC_OFFSET] = 1;
        assert_eq!(
            to_weir(old.freeze()).unwrap_err(),
            KafkaRecordsError::OldFormat(1)
        );
        assert!(matches!(
            to_weir(good.slice(..30)),
            Err(KafkaRecordsError::Corrupt(_))
        ));
        assert_eq!(to_weir(Bytes::new()).unwrap_err(), KafkaRecordsError::Empty);
        let mut tx = records.clone();
        tx[0].transactional = true;
        assert_eq!(
            to_weir(kafka_batch(&tx, KafkaCompression::None)).unwrap_err(),
            KafkaRecordsError::Transactional
        );
        // 80 MiB of zeros gzip to ~80 KiB: refused, not inflated.
        let big = "0".repeat(MAX_UNCOMPRESSED_BATCH_BYTES + (16 << 20));
        let bomb = vec![record(0, None, Some(&big))];
        assert_eq!(
            to_weir(kafka_batch(&bomb, KafkaCompression::Gzip)).unwrap_err(),
            KafkaRecordsError::TooLarge
        );
    }

    #[test]
    fn skipped_is_an_empty_control_batch_that_checks() {
        let mut out = BytesMut::new();
        skipped(100, 149, &mut out);
        assert_eq!(out.len(), KAFKA_BATCH_HEADER_LEN);
        // Framing and CRC-32C check in the crate's decoder; no records.
        let set = RecordBatchDecoder::decode(&mut out.clone().freeze()).unwrap();
        assert!(set.records.is_empty());
        assert_eq!(&out[..8], &100i64.to_be_bytes());
        // Attributes: control; last offset delta 49.
        assert_eq!(&out[21..23], &0x20i16.to_be_bytes());
        assert_eq!(&out[23..27], &49i32.to_be_bytes());
    }

    #[test]
    fn explicit_offsets_log_append_time_and_headers_go_out_as_kafka_reads_them() {
        // A view's output: offsets with gaps and a repeat (flat_map), log-append time.
        let mut b = BatchBuilder::with_explicit_offsets(TimestampType::LogAppendTime, 1024);
        let h: &[(&str, &[u8])] = &[("trace", b"t1"), ("empty", b"")];
        b.push_at(0, 5_000, Some(b"k0"), b"v0", h.iter().copied());
        b.push_at(7, 5_000, None, b"", std::iter::empty());
        b.push_at(7, 5_000, Some(b"k7"), &[0xff; 300], h.iter().copied());
        b.push_at(200, 5_000, Some(b""), b"last", std::iter::empty());
        b.set_base_offset(1_000);
        let mut stored = BytesMut::from(&b.finish()[..]);
        batch::set_log_append_time(&mut stored, 5_000); // as the log stamps it
        let mut out = BytesMut::new();
        to_kafka(&[stored.freeze()], &mut out).unwrap();
        let back = RecordBatchDecoder::decode(&mut out.freeze()).unwrap();
        let got: Vec<_> = back
            .records
            .iter()
            .map(|r| (r.offset, r.key.clone(), r.value.clone(), r.headers.len()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    1000,
                    Some(Bytes::from_static(b"k0")),
                    Some(Bytes::from_static(b"v0")),
                    2
                ),
                (1007, None, Some(Bytes::new()), 0),
                (
                    1007,
                    Some(Bytes::from_static(b"k7")),
                    Some(Bytes::from(vec![0xff; 300])),
                    2
                ),
                (
                    1200,
                    Some(Bytes::new()),
                    Some(Bytes::from_static(b"last")),
                    0
                ),
            ]
        );
        for r in &back.records {
            assert_eq!(r.timestamp_type, KafkaTimestampType::LogAppend);
            assert_eq!(r.timestamp, 5_000);
            assert_eq!(r.producer_id, NO_PRODUCER_ID);
        }
        let headers: Vec<(&str, Option<Bytes>)> = back.records[2]
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        assert_eq!(
            headers,
            vec![
                ("trace", Some(Bytes::from_static(b"t1"))),
                ("empty", Some(Bytes::new()))
            ]
        );
    }
}
