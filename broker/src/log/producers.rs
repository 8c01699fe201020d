//! Idempotent-producer state of one partition: which sequence each producer id has reached,
//! and its last few batches (to answer a retried batch with its original offsets).
//!
//! Pure logic; the partition log persists the state in the same RocksDB write as the records
//! it describes (see `storage`), so deduplication survives restarts.
//!
//! Architecture invariant: for a producer id, appended batches have contiguous sequence
//! numbers starting at 0; a batch is appended only if its `base_sequence` is the successor of
//! the producer's last sequence. So a retry can never be written twice and a producer's
//! records keep their order even when requests overtake each other on the wire.

use std::collections::VecDeque;

/// How many of a producer's last batches are remembered per partition: as many as a producer
/// may have unacknowledged there (in flight or being retried).
pub const PRODUCER_DEDUPE_WINDOW: usize = weir_common::limits::MAX_IN_FLIGHT_BATCHES_PER_PARTITION;

/// A producer's state is dropped after this long without a write to the partition (Kafka's
/// `producer.id.expiration.ms` idea; longer than the default retention of a week).
pub const PRODUCER_STATE_EXPIRY_MS: i64 = 7 * 24 * 3600 * 1000;

/// One appended batch of a producer, or an *anchor* (`record_count` 0): where the producer's
/// sequence stands when truncation dropped every batch it remembered (see
/// [`ProducerBatch::anchor`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    pub first_seq: u32,
    pub last_seq: u32,
    pub base_offset: u64,
    pub record_count: u32,
    /// The broker's stamp for log-append-time batches, else 0.
    pub log_append_time: i64,
}

impl ProducerBatch {
    /// Stands for the producer's kept batches when truncation dropped all it remembered:
    /// sequences are contiguous, so the kept ones end just before the first dropped one
    /// (`last_seq`). It sets the next expected sequence but answers no retry (its offset is
    /// unknown), and moves out of the window as later batches come.
    pub fn anchor(last_seq: u32) -> Self {
        Self {
            first_seq: last_seq,
            last_seq,
            base_offset: 0,
            record_count: 0,
            log_append_time: 0,
        }
    }

    pub fn is_anchor(&self) -> bool {
        self.record_count == 0
    }
}

/// A producer's recent history on one partition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProducerState {
    /// Last appended batches, oldest first, at most [`PRODUCER_DEDUPE_WINDOW`].
    pub recent: VecDeque<ProducerBatch>,
    /// Broker time of the last append (drives expiry).
    pub last_used_ms: i64,
}

/// What to do with an incoming idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqCheck {
    /// The next batch in sequence: append it.
    Append,
    /// A retry of a batch already appended: answer with its original placement.
    Duplicate(ProducerBatch),
    /// A gap or an old batch no longer remembered: refuse.
    OutOfOrder { expected: u32 },
}

impl ProducerState {
    /// Sequence number the next batch must start at.
    pub fn expected(&self) -> u32 {
        self.recent.back().map_or(0, |b| b.last_seq.wrapping_add(1))
    }

    /// Records an appended batch.
    pub fn push(&mut self, batch: ProducerBatch, now_ms: i64) {
        if self.recent.len() == PRODUCER_DEDUPE_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(batch);
        self.last_used_ms = now_ms;
    }
}

/// Checks a batch with sequences `first..=last` against the producer's state (`None`: the
/// partition has never seen this producer).
pub fn check(state: Option<&ProducerState>, first: u32, last: u32) -> SeqCheck {
    let Some(state) = state else {
        return if first == 0 {
            SeqCheck::Append
        } else {
            SeqCheck::OutOfOrder { expected: 0 }
        };
    };
    if let Some(b) = state
        .recent
        .iter()
        .find(|b| !b.is_anchor() && b.first_seq == first && b.last_seq == last)
    {
        return SeqCheck::Duplicate(*b);
    }
    let expected = state.expected();
    if first == expected {
        SeqCheck::Append
    } else {
        SeqCheck::OutOfOrder { expected }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(first: u32, count: u32, base_offset: u64) -> ProducerBatch {
        ProducerBatch {
            first_seq: first,
            last_seq: first.wrapping_add(count - 1),
            base_offset,
            record_count: count,
            log_append_time: 0,
        }
    }

    #[test]
    fn an_anchor_sets_the_next_sequence_and_answers_no_retry() {
        let mut s = ProducerState::default();
        s.push(ProducerBatch::anchor(41), 1);
        assert_eq!(s.expected(), 42);
        assert_eq!(check(Some(&s), 42, 50), SeqCheck::Append);
        assert_eq!(
            check(Some(&s), 41, 41),
            SeqCheck::OutOfOrder { expected: 42 }
        );
        s.push(batch(42, 9, 500), 2);
        assert_eq!(
            check(Some(&s), 42, 50),
            SeqCheck::Duplicate(batch(42, 9, 500))
        );
    }

    #[test]
    fn a_new_producer_starts_at_zero() {
        assert_eq!(check(None, 0, 9), SeqCheck::Append);
        assert_eq!(check(None, 10, 19), SeqCheck::OutOfOrder { expected: 0 });
    }

    #[test]
    fn next_in_sequence_appends_retries_are_duplicates_gaps_are_refused() {
        let mut s = ProducerState::default();
        s.push(batch(0, 10, 100), 1);
        s.push(batch(10, 5, 110), 2);
        assert_eq!(s.expected(), 15);
        assert_eq!(check(Some(&s), 15, 20), SeqCheck::Append);
        assert_eq!(
            check(Some(&s), 0, 9),
            SeqCheck::Duplicate(batch(0, 10, 100))
        );
        assert_eq!(
            check(Some(&s), 10, 14),
            SeqCheck::Duplicate(batch(10, 5, 110))
        );
        assert_eq!(
            check(Some(&s), 16, 20),
            SeqCheck::OutOfOrder { expected: 15 }
        );
        // Same start, different length: not the same batch.
        assert_eq!(
            check(Some(&s), 10, 12),
            SeqCheck::OutOfOrder { expected: 15 }
        );
    }

    #[test]
    fn only_the_last_window_is_remembered() {
        let mut s = ProducerState::default();
        let n = PRODUCER_DEDUPE_WINDOW as u32 + 2;
        for i in 0..n {
            s.push(batch(i * 10, 10, u64::from(i) * 10), i64::from(i));
        }
        assert_eq!(s.recent.len(), PRODUCER_DEDUPE_WINDOW);
        // The two oldest batches are forgotten; the oldest and newest remembered still count.
        assert_eq!(
            check(Some(&s), 0, 9),
            SeqCheck::OutOfOrder { expected: n * 10 }
        );
        assert_eq!(
            check(Some(&s), 10, 19),
            SeqCheck::OutOfOrder { expected: n * 10 }
        );
        assert!(matches!(check(Some(&s), 20, 29), SeqCheck::Duplicate(_)));
        assert!(matches!(
            check(Some(&s), (n - 1) * 10, n * 10 - 1),
            SeqCheck::Duplicate(_)
        ));
        assert_eq!(s.last_used_ms, i64::from(n - 1));
    }

    #[test]
    fn sequences_wrap() {
        let mut s = ProducerState::default();
        s.push(batch(u32::MAX - 1, 2, 0), 0);
        assert_eq!(s.expected(), 0);
        assert_eq!(check(Some(&s), 0, 4), SeqCheck::Append);
    }
}
