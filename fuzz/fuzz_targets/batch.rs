//! Record batches as a client may send them: any bytes. `validate` (what the broker checks
//! before storing) must never panic, and a batch it accepts must decode whole, the same way
//! by every reader (zero-copy refs, the owned cursor, `decode`), with as many records as its
//! header says. `validate_replica` (a follower's check of its leader's bytes) must not panic
//! and must accept every batch `validate` accepts, with the same result.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weir_common::batch::{self, RecordCursor, TimestampType};
use weir_common::limits::DEFAULT_MAX_RECORD_BYTES;

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    // Readers meet stored batches only, but must not panic on anything.
    let _ = batch::next_offset_after(std::slice::from_ref(&bytes));
    if let Ok(cursor) = RecordCursor::new(&bytes) {
        cursor.take(100_000).for_each(drop);
    }
    // What a replica checks of its leader's bytes must not panic either, and accepts every
    // batch the full check accepts, learning the same about it.
    let replica = batch::validate_replica(data);
    let Ok(valid) = batch::validate(data, DEFAULT_MAX_RECORD_BYTES) else {
        return;
    };
    assert_eq!(replica, Ok(valid), "a replica learns what validate learnt");
    let count = valid.header.record_count as usize;
    let plain = batch::uncompressed(&bytes).expect("a valid batch decompresses");
    let refs: Vec<_> = batch::record_refs(&plain)
        .expect("a valid batch has readable records")
        .collect::<Result<_, _>>()
        .expect("every record of a valid batch reads");
    assert_eq!(refs.len(), count);
    let cursor: Vec<_> = RecordCursor::new(&bytes)
        .expect("a valid batch has a cursor")
        .collect::<Result<_, _>>()
        .expect("every record of a valid batch reads");
    assert_eq!(cursor.len(), count);
    let (_, records) = batch::decode(&bytes).expect("a valid batch decodes");
    assert_eq!(records.len(), count);
    for (r, c) in refs.iter().zip(&records) {
        assert_eq!(
            (r.offset, r.timestamp, r.value),
            (c.offset, c.timestamp, &c.value[..])
        );
        // Log-append-time records all read as the time the broker stamps; create times stay
        // within what validation saw.
        if valid.header.timestamp_type() == TimestampType::CreateTime {
            assert!(c.timestamp <= valid.max_timestamp);
        }
    }
});
