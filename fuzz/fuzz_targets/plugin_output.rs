//! A plugin's output as an untrusted guest may write it: any bytes, answering a call on a
//! fixed input of 8 records (the first byte picks how many lie below `skip_below`). Decoding
//! must never panic, and what it accepts must be output batches that read back, with offsets
//! of the input's records at or above `skip_below`, in order.
#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weir_codec::abi::{Decoded, Input};
use weir_common::batch::{self, BatchBuilder, TimestampType};

const BASE: u64 = 100;
const RECORDS: u64 = 8;

fn input_batch() -> &'static [Bytes] {
    static BATCH: OnceLock<Vec<Bytes>> = OnceLock::new();
    BATCH.get_or_init(|| {
        let mut b = BatchBuilder::new(TimestampType::CreateTime);
        for i in 0..RECORDS {
            let key = format!("k{i}");
            let value = format!("value {i}");
            b.push(
                1_000 + i as i64,
                Some(key.as_bytes()),
                value.as_bytes(),
                [("h", &b"v"[..])],
            );
        }
        let mut bytes = b.finish().to_vec();
        batch::set_base_offset(&mut bytes, BASE);
        vec![Bytes::from(bytes)]
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, output)) = data.split_first() else {
        return;
    };
    let skip_below = BASE + u64::from(first) % (RECORDS + 1);
    let batches = input_batch();
    let input = Input::new(b"state", skip_below, batches).expect("the input batch is valid");
    let Ok(Decoded::Changed {
        batches,
        records,
        routed,
        ..
    }) = weir_codec::abi::decode_output(output, &input)
    else {
        return;
    };
    let mut seen = 0u64;
    let mut last = None;
    for b in &batches {
        for r in batch::record_refs(b).expect("output batches read back") {
            let r = r.expect("output records read back");
            assert!(
                r.offset >= skip_below && r.offset < BASE + RECORDS,
                "offset {}",
                r.offset
            );
            assert!(last.is_none_or(|l| r.offset >= l), "offsets go back");
            last = Some(r.offset);
            seen += 1;
        }
    }
    assert_eq!(seen, records);
    // Other outputs' batches read back too, each in offset order.
    for (_, batches) in &routed {
        let mut last = None;
        for b in batches {
            for r in batch::record_refs(b).expect("routed batches read back") {
                let r = r.expect("routed records read back");
                assert!(r.offset >= skip_below && r.offset < BASE + RECORDS);
                assert!(last.is_none_or(|l| r.offset >= l), "offsets go back");
                last = Some(r.offset);
            }
        }
    }
});
