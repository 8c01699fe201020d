//! Kafka record batches as a Kafka client may send them: any bytes. `to_weir` (what the Kafka
//! listener runs on a Produce's records) must never panic nor inflate past its bound, and
//! every Weir batch it builds must be one the log validates (but for the limits a record can
//! exceed: size, headers, negative timestamps) and read back through `to_kafka` with the
//! same number of records.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use weir_codec::kafka::{to_kafka, to_weir};
use weir_common::batch::{self, BatchError};
use weir_common::limits::MAX_BATCH_BYTES;

fuzz_target!(|data: &[u8]| {
    let Ok(batches) = to_weir(Bytes::copy_from_slice(data)) else {
        return;
    };
    for b in batches {
        match batch::validate(&b.batch, MAX_BATCH_BYTES) {
            Ok(valid) => {
                assert_eq!(valid.header.record_count, b.records);
                let mut out = BytesMut::new();
                to_kafka(std::slice::from_ref(&b.batch), &mut out)
                    .expect("a valid batch is served to Kafka clients");
                let back = to_weir(out.freeze()).expect("what is served reads back");
                assert_eq!(back.iter().map(|b| b.records).sum::<u32>(), b.records);
            }
            Err(
                BatchError::RecordTooLarge { .. }
                | BatchError::TooManyHeaders { .. }
                | BatchError::NegativeTimestamp { .. },
            ) => {}
            Err(e) => panic!("to_weir built a batch the log refuses: {e}"),
        }
    }
});
