//! The follower's side of a partition log and its leader epochs (Kafka's leader-epoch cache):
//! where each epoch starts, where a follower's log diverges from its leader's, and cutting a
//! diverged tail.

use super::*;

impl PartitionLog {
    /// The leader-epoch history, oldest first.
    pub fn epochs(&self) -> Vec<EpochStart> {
        self.lock().epochs.clone()
    }

    /// The latest epoch of the history, if any (lock-free).
    pub fn latest_epoch(&self) -> Option<u32> {
        match self.latest_epoch.load(Ordering::Acquire) {
            NO_EPOCH => None,
            e => Some(e as u32),
        }
    }

    fn set_epochs(&self, state: &mut LogState, epochs: Vec<EpochStart>) {
        let latest = epochs.last().map_or(NO_EPOCH, |e| u64::from(e.epoch));
        state.epochs = epochs;
        self.latest_epoch.store(latest, Ordering::Release);
    }

    /// A leader about to append in `epoch`: records that the epoch starts at the log end,
    /// unless the history already has it (or a newer one: then this leader is stale, and its
    /// appends fail the leadership check anyway).
    pub fn ensure_epoch(&self, epoch: u32) -> Result<(), LogError> {
        let mut state = self.lock();
        if state.epochs.last().is_some_and(|e| e.epoch >= epoch) {
            return Ok(());
        }
        let mut epochs = state.epochs.clone();
        epochs.push(EpochStart {
            epoch,
            start_offset: state.log_end(),
        });
        layout::put_epochs(&self.store, self.key, &epochs)?;
        self.set_epochs(&mut state, epochs);
        Ok(())
    }

    /// A follower: takes the leader's history for the part of the log it has copied (its log
    /// is a prefix of the leader's).
    pub fn follow_epochs(&self, leader: &[EpochStart]) -> Result<(), LogError> {
        let mut state = self.lock();
        let end = state.log_end();
        let epochs: Vec<EpochStart> = leader
            .iter()
            .copied()
            .filter(|e| e.start_offset < end)
            .collect();
        self.store_epochs(&mut state, epochs)
    }

    /// Makes `epochs` the history, stored first (nothing is written when it is unchanged).
    fn store_epochs(&self, state: &mut LogState, epochs: Vec<EpochStart>) -> Result<(), LogError> {
        if epochs != state.epochs {
            layout::put_epochs(&self.store, self.key, &epochs)?;
            self.set_epochs(state, epochs);
        }
        Ok(())
    }

    /// The latest epoch in the history at or before `epoch`, and where it ends here (the next
    /// epoch's start, or the log end): Kafka's OffsetsForLeaderEpoch. `None` when the history
    /// has no such epoch.
    pub fn end_of_epoch(&self, epoch: u32) -> Option<(u32, u64)> {
        let state = self.lock();
        end_of_epoch(&state.epochs, epoch, state.log_end())
    }

    /// A leader: whether a follower at `fetch_offset` whose history ends with `last_epoch`
    /// disagrees with this log, and from where (Kafka's fetch validation against the
    /// follower's last fetched epoch).
    pub fn diverging(&self, fetch_offset: u64, last_epoch: Option<u32>) -> Option<Diverging> {
        let state = self.lock();
        let log_end = state.log_end();
        let Some(epoch) = last_epoch else {
            // No history: only a log longer than this one is known to diverge.
            return (fetch_offset > log_end).then_some(Diverging {
                epoch: 0,
                end_offset: log_end,
            });
        };
        match end_of_epoch(&state.epochs, epoch, log_end) {
            Some((e, end)) if e == epoch && end >= fetch_offset => None,
            Some((e, end)) => Some(Diverging {
                epoch: e,
                end_offset: end,
            }),
            // This history starts after that epoch: the logs agree up to where it starts.
            None => Some(Diverging {
                epoch,
                end_offset: state.epochs.first().map_or(log_end, |e| e.start_offset),
            }),
        }
    }

    /// Cuts the log at `offset` (a follower dropping a tail its new leader does not have):
    /// records, segments, time-index entries, producer batches and leader epochs from there
    /// on go, in one write; the high watermark stays at or below the new end. `offset` is
    /// rounded down to the start of the batch holding it. Returns the new log end.
    pub fn truncate_to(&self, offset: u64) -> Result<u64, LogError> {
        let mut state = self.lock();
        if self.is_closed() {
            return Err(LogError::Closed);
        }
        let end = state.log_end();
        let earliest = state.earliest();
        if offset >= end {
            // No record to cut, but epochs starting at or past `offset` (ones this copy led
            // without writing anything) are not its leader's: they go too, or the follower
            // would name one again at its next fetch and be told to truncate forever.
            let epochs: Vec<EpochStart> = state
                .epochs
                .iter()
                .copied()
                .filter(|e| e.start_offset < offset)
                .collect();
            self.store_epochs(&mut state, epochs)?;
            return Ok(end);
        }
        if offset < earliest {
            return Err(LogError::OffsetOutOfRange {
                offset,
                earliest,
                latest: end,
            });
        }
        let i = state
            .segments
            .iter()
            .rposition(|s| s.base_offset <= offset)
            .expect("earliest <= offset, so some segment starts at or before it");
        let (offset, keep, last) = if state.segments[i].base_offset == offset && i > 0 {
            (offset, i, state.segments[i - 1])
        } else {
            let prev_running = i
                .checked_sub(1)
                .map_or(i64::MIN, |p| state.segments[p].running_max_timestamp);
            let (offset, cut) = self.cut_segment(&state.segments[i], offset, prev_running)?;
            (offset, i + 1, cut)
        };
        let dropped: Vec<u64> = state
            .segments
            .iter()
            .skip(keep)
            .map(|s| s.base_offset)
            .collect();
        let mut producers: Vec<(u64, ProducerState)> = state
            .producers
            .iter()
            .filter(|(_, p)| {
                p.recent
                    .iter()
                    .any(|b| !b.is_anchor() && b.base_offset >= offset)
            })
            .map(|(id, p)| {
                let mut kept = p.clone();
                kept.recent
                    .retain(|b| !b.is_anchor() && b.base_offset < offset);
                (*id, kept)
            })
            .collect();
        // A producer whose remembered batches are all cut still has older ones kept: its
        // sequence continues just before its first cut batch, found in the cut tail (a retry
        // of it must be appended, not refused as out of order).
        if producers.iter().any(|(_, p)| p.recent.is_empty()) {
            let first_cut = self.first_sequences_from(offset, end)?;
            for (id, p) in &mut producers {
                if p.recent.is_empty()
                    && let Some(&first) = first_cut.get(id)
                    && first > 0
                {
                    p.recent.push_back(ProducerBatch::anchor(first - 1));
                }
            }
        }
        let producers: Vec<(u64, Option<ProducerState>)> = producers
            .into_iter()
            .map(|(id, p)| (id, (!p.recent.is_empty()).then_some(p)))
            .collect();
        let epochs: Vec<EpochStart> = state
            .epochs
            .iter()
            .copied()
            .filter(|e| e.start_offset < offset)
            .collect();
        layout::truncate(
            &self.store,
            self.key,
            &Truncation {
                offset,
                dropped: &dropped,
                last: &last,
                producers: &producers,
                epochs: &epochs,
            },
        )?;
        state.segments.truncate(keep);
        if let Some(l) = state.segments.back_mut() {
            *l = last;
        }
        for (id, p) in producers {
            match p {
                Some(p) => state.producers.insert(id, p),
                None => state.producers.remove(&id),
            };
        }
        self.set_epochs(&mut state, epochs);
        state.high_watermark = state.high_watermark.min(offset);
        self.publish(&state);
        Ok(offset)
    }

    /// Per idempotent producer, the first sequence of its first batch in `from..to`.
    fn first_sequences_from(&self, from: u64, to: u64) -> Result<HashMap<u64, u32>, LogError> {
        let mut first = HashMap::new();
        for bytes in layout::read_batches(&self.store, self.key, from, to, usize::MAX)? {
            let valid =
                batch::validate(&bytes, weir_common::limits::MAX_BATCH_BYTES).map_err(|e| {
                    LogError::Corrupt {
                        offset: from,
                        reason: e.to_string(),
                    }
                })?;
            let h = &valid.header;
            if h.producer_id != 0 && h.base_offset >= from {
                first.entry(h.producer_id).or_insert(h.base_sequence);
            }
        }
        Ok(first)
    }

    /// `seg` ending at `offset` (or at the start of the batch holding it): that offset and the
    /// segment's new metadata, from the batches it keeps.
    fn cut_segment(
        &self,
        seg: &SegmentMeta,
        offset: u64,
        prev_running_max: i64,
    ) -> Result<(u64, SegmentMeta), LogError> {
        let batches =
            layout::read_batches(&self.store, self.key, seg.base_offset, offset, usize::MAX)?;
        let mut cut = SegmentMeta {
            next_offset: seg.base_offset,
            size_bytes: 0,
            max_timestamp: i64::MIN,
            running_max_timestamp: prev_running_max,
            ..*seg
        };
        for bytes in &batches {
            let corrupt = |e: batch::BatchError| LogError::Corrupt {
                offset: cut.next_offset,
                reason: e.to_string(),
            };
            let valid =
                batch::validate(bytes, weir_common::limits::MAX_BATCH_BYTES).map_err(corrupt)?;
            let header = &valid.header;
            if header.next_offset() > offset {
                break;
            }
            let max_ts = match header.timestamp_type() {
                TimestampType::LogAppendTime => header.max_timestamp,
                TimestampType::CreateTime => valid.max_timestamp,
            };
            cut.next_offset = header.next_offset();
            cut.size_bytes += bytes.len() as u64;
            cut.max_timestamp = cut.max_timestamp.max(max_ts);
            cut.running_max_timestamp = cut.running_max_timestamp.max(max_ts);
        }
        Ok((cut.next_offset, cut))
    }
}

/// See [`PartitionLog::end_of_epoch`].
fn end_of_epoch(epochs: &[EpochStart], epoch: u32, log_end: u64) -> Option<(u32, u64)> {
    let i = epochs.iter().rposition(|e| e.epoch <= epoch)?;
    let end = epochs.get(i + 1).map_or(log_end, |next| next.start_offset);
    Some((epochs[i].epoch, end))
}
