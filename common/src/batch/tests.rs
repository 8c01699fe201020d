//! The batch format: build, validate, decode and their edge cases.

use super::*;

const NO_HEADERS: [(&str, &[u8]); 0] = [];

fn sample() -> Bytes {
    let mut b = BatchBuilder::new(TimestampType::CreateTime);
    b.push(
        1_000,
        Some(b"k1"),
        "héllo wörld ✓".as_bytes(),
        [("trace", &b"abc"[..]), ("n", &[0xff, 0][..])],
    );
    b.push(900, None, b"", NO_HEADERS);
    b.push(1_500, Some(b""), &[0u8; 300], NO_HEADERS);
    b.finish()
}

#[test]
fn round_trip_keeps_every_field() {
    let batch = sample();
    let valid = validate(&batch, 1024).unwrap();
    assert_eq!(valid.header.record_count, 3);
    assert_eq!(valid.max_timestamp, 1_500);
    let mut stored = batch.to_vec();
    set_base_offset(&mut stored, 42);
    let (header, records) = decode(&Bytes::from(stored)).unwrap();
    assert_eq!(header.base_offset, 42);
    assert_eq!(header.next_offset(), 45);
    assert_eq!(records.len(), 3);
    assert_eq!(records[0].offset, 42);
    assert_eq!(records[0].timestamp, 1_000);
    assert_eq!(records[0].key.as_deref(), Some(&b"k1"[..]));
    assert_eq!(records[0].value, "héllo wörld ✓".as_bytes());
    assert_eq!(records[0].headers.len(), 2);
    assert_eq!(records[0].headers[1].key, "n");
    assert_eq!(records[0].headers[1].value, &[0xff, 0][..]);
    assert_eq!(records[1].key, None);
    assert_eq!(records[1].timestamp, 900);
    assert_eq!(records[1].value.len(), 0);
    assert_eq!(records[2].key.as_deref(), Some(&b""[..]));
    assert_eq!(records[2].offset, 44);
}

#[test]
fn log_append_time_uses_the_broker_stamp() {
    let mut b = BatchBuilder::new(TimestampType::LogAppendTime);
    b.push(123, None, b"a", NO_HEADERS);
    b.push(456, None, b"b", NO_HEADERS);
    let mut stored = b.finish().to_vec();
    validate(&stored, 10).unwrap();
    set_log_append_time(&mut stored, 777);
    let (_, records) = decode(&Bytes::from(stored)).unwrap();
    assert!(records.iter().all(|r| r.timestamp == 777));
}

#[test]
fn record_size_limit_counts_key_value_and_headers() {
    let mut b = BatchBuilder::new(TimestampType::CreateTime);
    b.push(1, Some(b"kk"), &[1u8; 6], [("hh", &b"vv"[..])]);
    let batch = b.finish();
    assert!(validate(&batch, 12).is_ok());
    assert_eq!(
        validate(&batch, 11),
        Err(BatchError::RecordTooLarge {
            index: 0,
            size: 12,
            limit: 11
        })
    );
}

#[test]
fn encoded_record_len_matches_what_push_adds() {
    let mut b = BatchBuilder::new(TimestampType::CreateTime);
    let before = b.len_bytes();
    b.push(0, Some(b"key"), &[7u8; 200], [("a", &b"b"[..])]);
    let want = BatchBuilder::encoded_record_len(Some(b"key"), &[7u8; 200], [("a", &b"b"[..])]);
    assert_eq!(b.len_bytes() - before, want);
}

#[test]
fn a_base_offset_near_the_end_of_u64_does_not_overflow() {
    // Found by the `batch` fuzz target: next_offset overflowed.
    let mut b = sample().to_vec();
    set_base_offset(&mut b, u64::MAX - 1);
    let b = Bytes::from(b);
    assert_eq!(BatchHeader::parse(&b).unwrap().next_offset(), u64::MAX);
    assert_eq!(
        next_offset_after(std::slice::from_ref(&b)).unwrap(),
        Some(u64::MAX)
    );
    let cursor = RecordCursor::new(&b).unwrap();
    assert!(cursor.next_offset().is_ok());
}

#[test]
fn malformed_batches_are_rejected_not_panicked_on() {
    let good = sample();
    assert!(matches!(
        validate(&good[..10], 1 << 20),
        Err(BatchError::TooShort(10))
    ));
    let mut bad = good.to_vec();
    bad[0] = 9;
    assert_eq!(validate(&bad, 1 << 20), Err(BatchError::BadMagic(9)));
    let mut bad = good.to_vec();
    bad[1] = 3;
    assert_eq!(
        validate(&bad, 1 << 20),
        Err(BatchError::UnsupportedCompression(3))
    );
    let mut bad = good.to_vec();
    bad[4] = 2;
    assert!(matches!(
        validate(&bad, 1 << 20),
        Err(BatchError::CountMismatch { .. })
    ));
    let mut bad = good.to_vec();
    bad.push(0);
    assert!(matches!(
        validate(&bad, 1 << 20),
        Err(BatchError::LengthMismatch { .. })
    ));
    let empty = BatchBuilder::new(TimestampType::CreateTime).finish();
    assert_eq!(validate(&empty, 1 << 20), Err(BatchError::Empty));
    // Every truncation and every single-byte corruption must give an error or a valid
    // batch, never a panic.
    for cut in 0..good.len() {
        let _ = validate(&good[..cut], 1 << 20);
    }
    for i in HEADER_LEN..good.len() {
        for v in [0u8, 0x7f, 0x80, 0xff] {
            let mut c = good.to_vec();
            c[i] = v;
            let _ = validate(&c, 1 << 20);
            let _ = decode(&Bytes::from(c));
        }
    }
}

#[test]
fn negative_create_time_is_rejected() {
    let mut b = BatchBuilder::new(TimestampType::CreateTime);
    b.push(-5, None, b"x", NO_HEADERS);
    assert!(matches!(
        validate(&b.finish(), 100),
        Err(BatchError::NegativeTimestamp {
            index: 0,
            timestamp: -5
        })
    ));
}

fn many(ts: TimestampType) -> BatchBuilder {
    let mut b = BatchBuilder::new(ts);
    for i in 0..500u32 {
        let value = format!("event {i} of a fairly repetitive stream of events");
        b.push(
            i64::from(i),
            Some(format!("k{}", i % 7).as_bytes()),
            value.as_bytes(),
            [("h", &b"v"[..])],
        );
    }
    b
}

#[test]
fn compressed_batches_read_back_identically() {
    let plain = many(TimestampType::CreateTime).finish();
    let (_, want) = decode(&plain).unwrap();
    for c in [Compression::Lz4, Compression::Zstd] {
        let packed = many(TimestampType::CreateTime).finish_compressed(c);
        assert!(packed.len() < plain.len() / 2, "{c}: {}", packed.len());
        let valid = validate(&packed, 1024).unwrap();
        assert_eq!(valid.header.compression(), c);
        assert_eq!(valid.header.record_count, 500);
        assert_eq!(valid.max_timestamp, 499);
        let (header, got) = decode(&packed).unwrap();
        assert_eq!(header.compression(), c);
        assert_eq!(got, want, "{c}");
    }
}

/// The records of a batch as `decode` sees them, read through [`record_refs`].
fn refs_as_records(batch: &Bytes) -> Vec<Record> {
    let plain = uncompressed(batch).unwrap();
    record_refs(&plain)
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            Record {
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key.map(Bytes::copy_from_slice),
                value: Bytes::copy_from_slice(r.value),
                headers: r
                    .headers()
                    .map(|(k, v)| Header {
                        key: k.into(),
                        value: Bytes::copy_from_slice(v),
                    })
                    .collect(),
            }
        })
        .collect()
}

#[test]
fn record_views_read_what_decode_reads() {
    for ts in [TimestampType::CreateTime, TimestampType::LogAppendTime] {
        for c in [Compression::None, Compression::Lz4, Compression::Zstd] {
            let mut bytes = many(ts).finish_compressed(c).to_vec();
            set_base_offset(&mut bytes, 1000);
            set_log_append_time(&mut bytes, 77);
            let batch = Bytes::from(bytes);
            let (_, want) = decode(&batch).unwrap();
            assert_eq!(refs_as_records(&batch), want, "{ts:?} {c}");
            // What was built, independently of either reader.
            assert_eq!(want.len(), 500);
            for (i, r) in (0u32..).zip(&want) {
                assert_eq!(r.offset, 1000 + u64::from(i));
                // The stamp moved the base timestamp to 77 (deltas 0..500 stay).
                let ts_want = match ts {
                    TimestampType::CreateTime => 77 + i64::from(i),
                    TimestampType::LogAppendTime => 77,
                };
                assert_eq!(r.timestamp, ts_want);
                assert_eq!(r.key.as_deref(), Some(format!("k{}", i % 7).as_bytes()));
                let value = format!("event {i} of a fairly repetitive stream of events");
                assert_eq!(&r.value[..], value.as_bytes());
                assert_eq!(r.headers[0].key, "h");
            }
            assert_eq!(
                BatchHeader::parse(&uncompressed(&batch).unwrap())
                    .unwrap()
                    .compression(),
                Compression::None
            );
        }
    }
    // Explicit offsets (plugin output) are honoured, and a compressed batch is refused.
    let mut b = BatchBuilder::with_explicit_offsets(TimestampType::CreateTime, 0);
    b.push_at(0, 5, None, b"a", NO_HEADERS);
    b.push_at(0, 6, Some(b"k"), b"b", [("h", &b"v"[..])]);
    b.push_at(9, 7, None, b"c", NO_HEADERS);
    let mut bytes = b.finish().to_vec();
    set_base_offset(&mut bytes, 10);
    let batch = Bytes::from(bytes);
    let offsets: Vec<u64> = refs_as_records(&batch).iter().map(|r| r.offset).collect();
    assert_eq!(offsets, [10, 10, 19]);
    let packed = many(TimestampType::CreateTime).finish_compressed(Compression::Lz4);
    assert!(record_refs(&packed).is_err());
}

#[test]
fn a_cursor_yields_what_decode_does_and_knows_where_the_batch_ends() {
    for batch in [
        sample(),
        many(TimestampType::CreateTime).finish_compressed(Compression::Lz4),
    ] {
        let mut cursor = RecordCursor::new(&batch).unwrap();
        let h = BatchHeader::parse(&batch).unwrap();
        assert_eq!(cursor.next_offset().unwrap(), h.next_offset());
        // Taken one at a time, interleaved with other work: the same records as decode.
        let first = cursor.next().unwrap().unwrap();
        let rest: Vec<Record> = cursor.map(Result::unwrap).collect();
        let all = decode(&batch).unwrap().1;
        assert_eq!(all[0], first);
        assert_eq!(all[1..], rest[..]);
    }
    // Plugin output: the end is after the last record's offset, not base + count.
    let mut b = BatchBuilder::with_explicit_offsets(TimestampType::CreateTime, 0);
    b.push_at(0, 5, None, b"a", NO_HEADERS);
    b.push_at(0, 6, None, b"b", NO_HEADERS);
    b.push_at(9, 7, None, b"c", NO_HEADERS);
    let mut bytes = b.finish().to_vec();
    set_base_offset(&mut bytes, 10);
    let cursor = RecordCursor::new(&Bytes::from(bytes)).unwrap();
    assert_eq!(cursor.next_offset().unwrap(), 20);
    // A corrupt record ends the cursor with one error.
    let good = sample();
    let mut bad = good[..good.len() - 1].to_vec();
    let len = (bad.len() - HEADER_LEN) as u32;
    bad[44..48].copy_from_slice(&len.to_le_bytes());
    let results: Vec<_> = RecordCursor::new(&Bytes::from(bad)).unwrap().collect();
    assert!(results.last().unwrap().is_err());
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
}

#[test]
fn record_views_report_corruption_once_and_stop() {
    let good = sample();
    for cut in HEADER_LEN..good.len() {
        let mut bad = good[..cut].to_vec();
        let len = (cut - HEADER_LEN) as u32;
        bad[44..48].copy_from_slice(&len.to_le_bytes());
        let results: Vec<_> = record_refs(&bad).unwrap().collect();
        assert!(results.iter().any(Result::is_err), "cut at {cut}");
        assert!(results.last().unwrap().is_err(), "cut at {cut}");
    }
    for i in HEADER_LEN..good.len() {
        let mut bad = good.to_vec();
        bad[i] ^= 0xff;
        if let Ok(refs) = record_refs(&bad) {
            assert!(refs.count() <= 4);
        }
    }
}

#[test]
fn a_read_ends_after_its_last_batch() {
    assert_eq!(next_offset_after(&[]), Ok(None));
    let mut first = sample().to_vec();
    set_base_offset(&mut first, 10);
    let mut second = sample().to_vec();
    set_base_offset(&mut second, 13);
    let batches = [Bytes::from(first), Bytes::from(second)];
    assert_eq!(next_offset_after(&batches), Ok(Some(16)));
    assert!(next_offset_after(&[Bytes::from_static(b"short")]).is_err());
}

#[test]
fn incompressible_records_stay_uncompressed() {
    let mut b = BatchBuilder::new(TimestampType::CreateTime);
    b.push(1, None, b"x", NO_HEADERS);
    let out = b.finish_compressed(Compression::Zstd);
    assert_eq!(
        BatchHeader::parse(&out).unwrap().compression(),
        Compression::None
    );
    validate(&out, 10).unwrap();
}

#[test]
fn corrupt_compressed_batches_are_rejected_not_panicked_on() {
    for c in [Compression::Lz4, Compression::Zstd] {
        let good = many(TimestampType::CreateTime).finish_compressed(c);
        for i in (HEADER_LEN..good.len()).step_by(7) {
            let mut bad = good.to_vec();
            bad[i] ^= 0x5a;
            let _ = validate(&bad, 1 << 20);
            let _ = decode(&Bytes::from(bad));
        }
        let mut bad = good.to_vec();
        bad.truncate(good.len() - 3);
        let len = (bad.len() - HEADER_LEN) as u32;
        bad[44..48].copy_from_slice(&len.to_le_bytes());
        assert!(validate(&bad, 1 << 20).is_err(), "{c}");
    }
}

#[test]
fn producer_fields_are_stamped() {
    let mut b = BatchBuilder::new(TimestampType::CreateTime);
    b.push(1, None, b"a", NO_HEADERS);
    b.push(2, None, b"b", NO_HEADERS);
    let mut bytes = b.finish().to_vec();
    set_producer(&mut bytes, 77, u32::MAX);
    let h = validate(&bytes, 10).unwrap().header;
    assert_eq!(h.producer_id, 77);
    assert_eq!(h.base_sequence, u32::MAX);
    assert_eq!(h.last_sequence(), 0, "sequences wrap");
}

#[test]
fn explicit_offsets_round_trip_and_are_refused_from_producers() {
    let mut b = BatchBuilder::with_explicit_offsets(TimestampType::CreateTime, 0);
    for (delta, v) in [(0u64, "a"), (0, "b"), (5, "c"), (300, "d")] {
        b.push_at(delta, 7, None, v.as_bytes(), NO_HEADERS);
    }
    let mut bytes = b.finish().to_vec();
    set_base_offset(&mut bytes, 1_000);
    let bytes = Bytes::from(bytes);
    let (h, records) = decode(&bytes).unwrap();
    assert!(h.explicit_offsets());
    let offsets: Vec<u64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![1_000, 1_000, 1_005, 1_300]);
    assert_eq!(records[3].value, "d".as_bytes());
    assert_eq!(validate(&bytes, 1 << 20), Err(BatchError::ExplicitOffsets));
    // Going backwards is malformed.
    let mut b = BatchBuilder::with_explicit_offsets(TimestampType::CreateTime, 0);
    b.push_at(3, 0, None, b"x", NO_HEADERS);
    b.push_at(2, 0, None, b"y", NO_HEADERS);
    assert!(decode(&b.finish()).is_err());
}

/// What a replica checks agrees with the full check on every valid batch, and refuses what
/// breaks the framing it relies on.
#[test]
fn a_replica_check_agrees_with_validate_and_refuses_broken_framing() {
    let mut log_append = many(TimestampType::LogAppendTime).finish().to_vec();
    set_log_append_time(&mut log_append, 1_700_000_000_000);
    let compressed = many(TimestampType::CreateTime).finish_compressed(Compression::Lz4);
    for good in [
        sample(),
        many(TimestampType::CreateTime).finish(),
        Bytes::from(log_append),
        compressed,
    ] {
        assert_eq!(validate_replica(&good), validate(&good, usize::MAX));
    }
    let good = sample();
    let mut bad = good.to_vec();
    bad[4] = 2;
    assert!(matches!(
        validate_replica(&bad),
        Err(BatchError::CountMismatch { .. })
    ));
    let mut bad = good.to_vec();
    bad.push(0);
    assert!(matches!(
        validate_replica(&bad),
        Err(BatchError::LengthMismatch { .. })
    ));
    let mut b = BatchBuilder::new(TimestampType::CreateTime);
    b.push(-5, None, b"x", NO_HEADERS);
    assert!(matches!(
        validate_replica(&b.finish()),
        Err(BatchError::NegativeTimestamp { index: 0, .. })
    ));
    let empty = BatchBuilder::new(TimestampType::CreateTime).finish();
    assert_eq!(validate_replica(&empty), Err(BatchError::Empty));
    for cut in 0..good.len() {
        assert!(validate_replica(&good[..cut]).is_err(), "cut at {cut}");
    }
    for i in HEADER_LEN..good.len() {
        for v in [0u8, 0x7f, 0x80, 0xff] {
            let mut c = good.to_vec();
            c[i] = v;
            let _ = validate_replica(&c);
        }
    }
}
