//! Storage keys as a damaged store may hold them: any bytes. Every decoder must answer `None`
//! or a value that encodes back to exactly the key it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_codec::keys::{self, PartitionKey};

const PK: PartitionKey = PartitionKey {
    topic: 7,
    partition: 3,
};
const PIPELINE: &str = "etl";

fuzz_target!(|data: &[u8]| {
    if let Some(offset) = keys::decode_offset_key(PK, data) {
        assert_eq!(keys::offset_key(PK, offset), data);
    }
    if let Some((ts, offset)) = keys::decode_time_key(PK, data) {
        assert_eq!(keys::time_key(PK, ts, offset), data);
    }
    if let Some((partition, offset)) = keys::decode_partition(PK.topic, data) {
        let pk = PartitionKey {
            topic: PK.topic,
            partition,
        };
        assert_eq!(keys::offset_key(pk, offset), data);
    }
    if let Some((group, pk)) = keys::decode_group_offset_key(data) {
        assert_eq!(keys::group_offset_key(&group, pk), data);
    }
    if let Some(partition) = keys::decode_pipeline_progress_key(PIPELINE, data) {
        assert_eq!(keys::pipeline_progress_key(PIPELINE, partition), data);
        let (start, end) = keys::pipeline_progress_range(PIPELINE);
        assert!(start.as_slice() <= data && data < end.as_slice());
    }
});
