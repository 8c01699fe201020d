//! Output sequence numbers of a pipeline worker in a cluster: each (pipeline, source
//! partition) writes as one idempotent producer whose id derives from the pipeline's id, and
//! numbers its output records per destination partition from the checkpoint on. Plugins are deterministic and the source log does not change, so a worker
//! replaying from a checkpoint produces the same records under the same numbers, and the
//! destination's sequence tells which of them it already holds.

use weir_common::limits::{MAX_PARTITIONS, PIPELINE_PRODUCER_ID_BIT};

/// The producer id of pipeline `pipeline_id`'s worker on source partition `partition`:
/// never issued to a client, never shared by two workers, never reused by a later pipeline
/// (pipeline ids are not).
pub fn producer_id(pipeline_id: u32, partition: u32) -> u64 {
    debug_assert!(partition < MAX_PARTITIONS);
    PIPELINE_PRODUCER_ID_BIT | (u64::from(pipeline_id) << 16) | u64::from(partition)
}

/// Where a round's outputs to one destination partition stand against what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Send the round's records from this index on (the destination holds those before).
    SendFrom(u64),
    /// The destination expects a sequence before this round's first: output that was
    /// acknowledged is missing there.
    Gap { expected: u32, first: u32 },
}

/// A round of `count` records numbered from `first` against a destination that expects
/// `expected` next. Sequences wrap at 2^32: `expected` is ahead of `first` when it is less
/// than 2^31 ahead (serial number arithmetic, RFC 1982).
pub fn resume(first: u32, count: u64, expected: u32) -> Resume {
    let ahead = expected.wrapping_sub(first);
    if ahead < 1 << 31 {
        Resume::SendFrom(u64::from(ahead).min(count))
    } else {
        Resume::Gap { expected, first }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_sends_only_what_the_destination_lacks() {
        // Nothing there yet, part there, all there, and beyond this round.
        assert_eq!(resume(100, 50, 100), Resume::SendFrom(0));
        assert_eq!(resume(100, 50, 120), Resume::SendFrom(20));
        assert_eq!(resume(100, 50, 150), Resume::SendFrom(50));
        assert_eq!(resume(100, 50, 900), Resume::SendFrom(50));
        // Across the wrap.
        assert_eq!(resume(u32::MAX - 9, 50, 5), Resume::SendFrom(15));
        // The destination lost acknowledged output.
        assert_eq!(
            resume(100, 50, 90),
            Resume::Gap {
                expected: 90,
                first: 100
            }
        );
        assert!(matches!(resume(3, 1, u32::MAX), Resume::Gap { .. }));
    }

    #[test]
    fn worker_producer_ids_are_distinct_and_never_a_brokers() {
        use weir_common::limits::{MAX_NODE_ID, PRODUCER_ID_NODE_SHIFT};
        let broker_max =
            (MAX_NODE_ID << PRODUCER_ID_NODE_SHIFT) | ((1 << PRODUCER_ID_NODE_SHIFT) - 1);
        let ids = [
            producer_id(0, 0),
            producer_id(0, 1),
            producer_id(1, 0),
            producer_id(u32::MAX, MAX_PARTITIONS - 1),
        ];
        for (i, a) in ids.iter().enumerate() {
            assert!(*a > broker_max);
            assert!(ids[i + 1..].iter().all(|b| a != b));
        }
    }
}
