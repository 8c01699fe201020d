//! A partition log on a real store: appends, replica copies, the high watermark, truncation
//! and leader epochs.

use weir_common::batch::{BatchBuilder, set_producer};
use weir_common::limits::DEFAULT_MAX_RECORD_BYTES;

use super::*;
use crate::storage::SyncMode;

/// The test partition's config: segments of 100 bytes, so a batch or two rolls one.
fn config() -> TopicConfig {
    TopicConfig {
        partitions: 1,
        retention_ms: None,
        retention_bytes: None,
        segment_bytes: 100,
        segment_ms: i64::MAX,
        min_insync_replicas: 1,
    }
}

/// The test partition's segments as stored, in offset order.
fn stored_segments(store: &Store) -> Vec<SegmentMeta> {
    let mut segs: Vec<SegmentMeta> = layout::load_segments(store, 1)
        .unwrap()
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    segs.sort_by_key(|s| s.base_offset);
    segs
}

fn log(dir: &std::path::Path) -> PartitionLog {
    let store = Store::open(dir, SyncMode::Never).expect("open store");
    let key = PartitionKey {
        topic: 1,
        partition: 0,
    };
    PartitionLog::new(
        store,
        key,
        config(),
        vec![SegmentMeta::empty_at(0, 0, i64::MIN)],
        vec![],
        vec![],
    )
}

fn pending(ts: TimestampType, values: &[&str], producer: Option<(u64, u32)>) -> PendingBatch {
    let mut b = BatchBuilder::with_capacity(ts, 256);
    for (i, v) in values.iter().enumerate() {
        b.push(1000 + i as i64, None, v.as_bytes(), std::iter::empty());
    }
    let bytes: Bytes = b.finish();
    let bytes = match producer {
        None => bytes,
        Some((id, seq)) => {
            let mut buf = bytes.to_vec();
            set_producer(&mut buf, id, seq);
            Bytes::from(buf)
        }
    };
    let valid = batch::validate(&bytes, DEFAULT_MAX_RECORD_BYTES).expect("valid");
    PendingBatch { bytes, valid }
}

/// What a follower receives: the leader's stored batches.
fn as_fetched(batches: Vec<Bytes>) -> Vec<PendingBatch> {
    batches
        .into_iter()
        .map(|bytes| {
            let valid = batch::validate(&bytes, DEFAULT_MAX_RECORD_BYTES).expect("valid");
            PendingBatch { bytes, valid }
        })
        .collect()
}

#[test]
fn a_replica_copy_holds_the_leaders_batches_byte_for_byte_and_its_producer_state() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (leader, follower) = (log(d1.path()), log(d2.path()));
    let group = [
        pending(TimestampType::CreateTime, &["a", "b", "c"], Some((7, 0))),
        pending(TimestampType::LogAppendTime, &["d"], None),
        pending(TimestampType::CreateTime, &["e", "f"], Some((7, 3))),
    ];
    for r in leader.append_group(&group, 5_000).unwrap() {
        r.unwrap();
    }
    let stored = leader
        .read_from(0, usize::MAX, ReadUpTo::LogEnd)
        .unwrap()
        .batches;
    assert_eq!(stored.len(), 3);
    // Fetched in two rounds, the follower applies them at the leader's offsets, later.
    let fetched = as_fetched(stored.clone());
    follower.append_replica(&fetched[..1], 9_000).unwrap();
    follower.append_replica(&fetched[1..], 9_000).unwrap();
    assert_eq!(
        follower
            .read_from(0, usize::MAX, ReadUpTo::LogEnd)
            .unwrap()
            .batches,
        stored
    );
    assert_eq!(follower.bounds().latest, 6);
    assert!(
        follower.bounds().segments > 1,
        "rolls segments by its own config"
    );
    // Where producer 7 stands, on both (a pipeline worker asks before a replay).
    assert_eq!(leader.expected_sequence(7), 5);
    assert_eq!(follower.expected_sequence(7), 5);
    assert_eq!(follower.expected_sequence(8), 0);
    // A retry of producer 7's last batch is recognised on the copy (it may become leader).
    let retry = pending(TimestampType::CreateTime, &["e", "f"], Some((7, 3)));
    let again = follower.append_group(&[retry], 10_000).unwrap();
    assert_eq!(again[0].as_ref().unwrap().base_offset, 4);
    assert_eq!(follower.bounds().latest, 6);
}

#[test]
fn a_replica_copy_refuses_a_gap_or_an_overlap_and_writes_nothing() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (leader, follower) = (log(d1.path()), log(d2.path()));
    let group = [
        pending(TimestampType::CreateTime, &["a", "b"], None),
        pending(TimestampType::CreateTime, &["c"], None),
    ];
    leader.append_group(&group, 5_000).unwrap();
    let fetched = as_fetched(
        leader
            .read_from(0, usize::MAX, ReadUpTo::LogEnd)
            .unwrap()
            .batches,
    );
    let gap = follower.append_replica(&fetched[1..], 9_000).unwrap_err();
    assert!(
        matches!(
            gap,
            LogError::NotContiguous {
                expected: 0,
                got: 2
            }
        ),
        "{gap:?}"
    );
    follower.append_replica(&fetched[..1], 9_000).unwrap();
    let overlap = follower.append_replica(&fetched, 9_000).unwrap_err();
    assert!(
        matches!(
            overlap,
            LogError::NotContiguous {
                expected: 2,
                got: 0
            }
        ),
        "{overlap:?}"
    );
    assert_eq!(follower.bounds().latest, 2);
}

#[test]
fn readers_see_only_what_is_below_the_high_watermark() {
    let d = tempfile::tempdir().unwrap();
    let log = log(d.path());
    log.append_group(&[pending(TimestampType::CreateTime, &["a", "b"], None)], 1)
        .unwrap();
    assert_eq!(
        (log.bounds().latest, log.bounds().log_end),
        (2, 2),
        "standalone"
    );
    // A leader with followers in sync: appends no longer move the high watermark.
    log.set_hw_follows_end(false);
    log.append_group(&[pending(TimestampType::CreateTime, &["c"], None)], 1)
        .unwrap();
    log.append_group(&[pending(TimestampType::CreateTime, &["d", "e"], None)], 1)
        .unwrap();
    let b = log.bounds();
    assert_eq!((b.latest, b.log_end), (2, 5));
    let visible = log
        .read_from(0, usize::MAX, ReadUpTo::HighWatermark)
        .unwrap();
    assert_eq!(visible.batches.len(), 1);
    assert!(
        log.read_from(2, usize::MAX, ReadUpTo::HighWatermark)
            .unwrap()
            .batches
            .is_empty()
    );
    assert_eq!(
        log.read_from(2, usize::MAX, ReadUpTo::LogEnd)
            .unwrap()
            .batches
            .len(),
        2
    );
    // Standing past the high watermark (up to the log end) is fine; past the end is not.
    assert!(log.read_from(5, 1, ReadUpTo::HighWatermark).is_ok());
    assert!(matches!(
        log.read_from(6, 1, ReadUpTo::HighWatermark),
        Err(LogError::OffsetOutOfRange { latest: 5, .. })
    ));
    let mut watch = log.watch();
    watch.borrow_and_update();
    log.set_high_watermark(3);
    assert!(watch.has_changed().unwrap(), "readers wake when it moves");
    assert_eq!(log.bounds().latest, 3);
    log.set_high_watermark(99);
    assert_eq!(log.bounds().latest, 5, "never past the log end");
    log.set_high_watermark(0);
    log.set_hw_follows_end(true);
    assert_eq!(
        log.bounds().latest,
        5,
        "a sole in-sync replica sees all it has"
    );
}

#[test]
fn truncation_cuts_records_segments_index_producers_and_epochs_and_survives_a_restart() {
    let d = tempfile::tempdir().unwrap();
    let l = log(d.path());
    l.ensure_epoch(1).unwrap();
    // Small segments (100 bytes): every batch or two rolls one.
    let vals: Vec<String> = (0..12).map(|i| format!("value-{i:02}")).collect();
    for (i, pair) in vals.chunks(2).enumerate() {
        if i == 3 {
            l.ensure_epoch(2).unwrap();
        }
        let v: Vec<&str> = pair.iter().map(String::as_str).collect();
        let b = pending(TimestampType::CreateTime, &v, Some((9, (i * 2) as u32)));
        l.append_group(&[b], 5_000).unwrap()[0].as_ref().unwrap();
    }
    let before = l.bounds();
    assert_eq!(before.log_end, 12);
    assert!(before.segments > 2);
    assert_eq!(l.end_of_epoch(1), Some((1, 6)));
    assert_eq!(l.end_of_epoch(2), Some((2, 12)));
    assert_eq!(l.end_of_epoch(7), Some((2, 12)));
    assert_eq!(l.end_of_epoch(0), None);

    // An offset inside a batch rounds down to its start.
    assert_eq!(l.truncate_to(7).unwrap(), 6);
    let b = l.bounds();
    assert_eq!((b.log_end, b.latest), (6, 6));
    assert_eq!(
        l.epochs(),
        vec![EpochStart {
            epoch: 1,
            start_offset: 0
        }]
    );
    let read = l
        .read_from(0, usize::MAX, ReadUpTo::LogEnd)
        .unwrap()
        .batches;
    assert_eq!(batch::next_offset_after(&read).unwrap(), Some(6));
    assert_eq!(
        read.iter().map(|b| b.len() as u64).sum::<u64>(),
        b.size_bytes,
        "segment sizes match the data kept"
    );
    // The producer's later batches are forgotten: its next sequence continues at 6.
    let next = pending(TimestampType::CreateTime, &["x"], Some((9, 6)));
    let a = l.append_group(&[next], 6_000).unwrap();
    assert_eq!(a[0].as_ref().unwrap().base_offset, 6);
    // Nothing of the cut tail is found by timestamp.
    assert_eq!(l.offset_for_timestamp(1_001).unwrap(), 1);

    // Reopened: the same log, history and producer state.
    let (segs, epochs) = (l.bounds(), l.epochs());
    drop(l);
    let store = Store::open(d.path(), SyncMode::Never).unwrap();
    let key = PartitionKey {
        topic: 1,
        partition: 0,
    };
    let loaded = stored_segments(&store);
    assert_eq!(loaded.last().unwrap().next_offset, 7);
    assert_eq!(layout::load_epochs(&store, key).unwrap(), epochs);
    let producers = layout::load_producers(&store, key).unwrap();
    let again = PartitionLog::new(store, key, config(), loaded, producers, epochs);
    assert_eq!(again.bounds(), segs);
    let retry = pending(TimestampType::CreateTime, &["x"], Some((9, 6)));
    let a = again.append_group(&[retry], 7_000).unwrap();
    assert_eq!(
        a[0].as_ref().unwrap().base_offset,
        6,
        "a retry, not a new record"
    );
    // Cutting at a segment boundary, and everything.
    assert_eq!(again.truncate_to(2).unwrap(), 2);
    assert_eq!(again.truncate_to(0).unwrap(), 0);
    assert_eq!(again.bounds().size_bytes, 0);
    assert!(again.epochs().is_empty());
}

#[test]
fn a_follower_takes_the_leaders_epochs_for_what_it_has() {
    let d = tempfile::tempdir().unwrap();
    let l = log(d.path());
    l.append_group(&[pending(TimestampType::CreateTime, &["a", "b"], None)], 1)
        .unwrap();
    let leader = [
        EpochStart {
            epoch: 0,
            start_offset: 0,
        },
        EpochStart {
            epoch: 3,
            start_offset: 2,
        },
        EpochStart {
            epoch: 4,
            start_offset: 5,
        },
    ];
    l.follow_epochs(&leader).unwrap();
    assert_eq!(l.epochs(), leader[..1]);
    assert_eq!(l.end_of_epoch(3), Some((0, 2)));
    l.append_group(&[pending(TimestampType::CreateTime, &["c"], None)], 1)
        .unwrap();
    l.follow_epochs(&leader).unwrap();
    assert_eq!(l.epochs(), leader[..2]);
}

#[test]
fn a_leader_finds_where_a_followers_log_diverges() {
    let d = tempfile::tempdir().unwrap();
    let l = log(d.path());
    // Epoch 1 wrote 0..4, epoch 3 wrote 4..6.
    l.ensure_epoch(1).unwrap();
    l.append_group(
        &[pending(
            TimestampType::CreateTime,
            &["a", "b", "c", "d"],
            None,
        )],
        1,
    )
    .unwrap();
    l.ensure_epoch(3).unwrap();
    l.append_group(&[pending(TimestampType::CreateTime, &["e", "f"], None)], 1)
        .unwrap();
    // In step: a follower of epoch 3 anywhere up to the end, or of epoch 1 up to 4.
    assert_eq!(l.diverging(6, Some(3)), None);
    assert_eq!(l.diverging(2, Some(1)), None);
    assert_eq!(l.diverging(4, Some(1)), None);
    // An old leader of epoch 1 that wrote on past 4: cut back to 4.
    let cut = |epoch, end_offset| Some(Diverging { epoch, end_offset });
    assert_eq!(l.diverging(5, Some(1)), cut(1, 4));
    // A leader of epoch 2 this log never saw: epoch 1 ends at 4 here.
    assert_eq!(l.diverging(5, Some(2)), cut(1, 4));
    // No history: only a longer log diverges.
    assert_eq!(l.diverging(6, None), None);
    assert_eq!(l.diverging(9, None), cut(0, 6));
    // An epoch before this history: the logs agree up to where it starts.
    assert_eq!(l.diverging(3, Some(0)), cut(0, 0));
}

#[test]
fn a_recovered_high_watermark_starts_at_the_checkpoint_within_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path());
    log.append_group(
        &[pending(TimestampType::CreateTime, &["a", "b", "c"], None)],
        1,
    )
    .unwrap();
    assert_eq!(log.bounds().latest, 3, "standalone: the log end");
    for (checkpoint, want) in [(Some(2), 2), (Some(9), 3), (None, 0)] {
        log.recover_high_watermark(checkpoint);
        assert_eq!(log.bounds().latest, want, "{checkpoint:?}");
    }
    // From there only replication moves it: an append does not.
    log.append_group(&[pending(TimestampType::CreateTime, &["d"], None)], 2)
        .unwrap();
    assert_eq!((log.bounds().latest, log.bounds().log_end), (0, 4));

    // The checkpoint itself round-trips through the store, replaced whole.
    let (key, _) = log.high_watermark();
    let other = PartitionKey {
        topic: 7,
        partition: 1,
    };
    layout::put_high_watermarks(&log.store, &[(key, 3), (other, 9)]).unwrap();
    layout::put_high_watermarks(&log.store, &[(key, 4)]).unwrap();
    let loaded = layout::load_high_watermarks(&log.store).unwrap();
    assert_eq!(loaded.into_iter().collect::<Vec<_>>(), vec![(key, 4)]);
}

/// One round of what a follower's fetcher does (`cluster/replica.rs`): ask the leader whether
/// its log diverges, and truncate as told. Returns whether the leader said it diverged.
fn follow_round(leader: &PartitionLog, follower: &PartitionLog) -> bool {
    let end = follower.bounds().log_end;
    let Some(d) = leader.diverging(end, follower.latest_epoch()) else {
        return false;
    };
    let own = follower
        .end_of_epoch(d.epoch)
        .map_or(d.end_offset, |(_, e)| e);
    follower.truncate_to(d.end_offset.min(own)).unwrap();
    true
}

#[test]
fn a_follower_that_led_an_epoch_without_writing_converges_with_its_new_leader() {
    // Found by the chaos harness (seed 4): a broker led epoch 5 of a partition without
    // writing anything, then followed the broker elected in epoch 6. Its last epoch, 5, is not
    // in the leader's history; the leader says the logs diverge where its own epoch 4 ends,
    // which is this copy's log end: nothing to cut. Before, the epoch stayed and every fetch
    // was told to truncate again, forever (the follower never rejoined the ISR).
    let (dl, df) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (leader, follower) = (log(dl.path()), log(df.path()));
    for l in [&leader, &follower] {
        l.ensure_epoch(4).unwrap();
        l.append_group(&[pending(TimestampType::CreateTime, &["a", "b"], None)], 1)
            .unwrap();
    }
    follower.ensure_epoch(5).unwrap();
    leader.ensure_epoch(6).unwrap();
    leader
        .append_group(&[pending(TimestampType::CreateTime, &["c"], None)], 2)
        .unwrap();

    assert!(
        follow_round(&leader, &follower),
        "epoch 5 is unknown to the leader"
    );
    assert_eq!(follower.bounds().log_end, 2, "no record to cut");
    assert_eq!(
        follower.latest_epoch(),
        Some(4),
        "the unwritten epoch is gone"
    );
    assert!(!follow_round(&leader, &follower), "the next fetch copies");
    // The stored history lost it too (what a restart loads).
    let key = PartitionKey {
        topic: 1,
        partition: 0,
    };
    let stored = layout::load_epochs(&follower.store, key).unwrap();
    assert_eq!(stored.last().map(|e| e.epoch), Some(4));
}

#[test]
fn truncation_that_cuts_every_remembered_batch_of_a_producer_keeps_its_sequence() {
    let d = tempfile::tempdir().unwrap();
    let l = log(d.path());
    // Producer 9 writes more batches than the window remembers: one record each.
    let n = producers::PRODUCER_DEDUPE_WINDOW as u32 + 4;
    for seq in 0..n {
        let b = pending(TimestampType::CreateTime, &["v"], Some((9, seq)));
        l.append_group(&[b], 5_000).unwrap()[0].as_ref().unwrap();
    }
    // A new leader had only the first 3: every batch this copy remembers is cut.
    assert_eq!(l.truncate_to(3).unwrap(), 3);
    // The producer retries what the leader does not have, from sequence 3: appended, not
    // refused as out of order (the state used to be dropped, expecting sequence 0).
    let retry = pending(TimestampType::CreateTime, &["v"], Some((9, 3)));
    let a = l.append_group(&[retry], 6_000).unwrap();
    assert_eq!(a[0].as_ref().unwrap().base_offset, 3);
    let skip = pending(TimestampType::CreateTime, &["v"], Some((9, 9)));
    assert!(matches!(
        l.append_group(&[skip], 6_000).unwrap()[0],
        Err(LogError::OutOfOrderSequence { expected: 4, .. })
    ));
    // The same after a restart, from the stored state.
    drop(l);
    let store = Store::open(d.path(), SyncMode::Never).unwrap();
    let key = PartitionKey {
        topic: 1,
        partition: 0,
    };
    let producers = layout::load_producers(&store, key).unwrap();
    assert_eq!(producers.len(), 1);
    let truncated_again = {
        // Cut the retried batch too: the anchor alone is left, still at sequence 2.
        let segs = stored_segments(&store);
        let epochs = layout::load_epochs(&store, key).unwrap();
        let again = PartitionLog::new(store, key, config(), segs, producers, epochs);
        let retry = pending(TimestampType::CreateTime, &["v"], Some((9, 3)));
        assert_eq!(
            again.append_group(&[retry], 7_000).unwrap()[0]
                .as_ref()
                .unwrap()
                .base_offset,
            3,
            "a retry after the restart is answered with its offset"
        );
        assert_eq!(again.truncate_to(3).unwrap(), 3);
        again
    };
    let retry = pending(TimestampType::CreateTime, &["v"], Some((9, 3)));
    let a = truncated_again.append_group(&[retry], 8_000).unwrap();
    assert_eq!(a[0].as_ref().unwrap().base_offset, 3);
}

#[test]
fn groups_to_several_partitions_are_written_with_the_extra_in_one_write() {
    let dir = tempfile::tempdir().unwrap();
    let a = log(dir.path());
    let b = PartitionLog::new(
        a.store.clone(),
        PartitionKey {
            topic: 2,
            partition: 0,
        },
        config(),
        vec![SegmentMeta::empty_at(0, 0, i64::MIN)],
        vec![],
        vec![],
    );
    a.set_hw_follows_end(true);
    b.set_hw_follows_end(true);
    let mut extra = a.store.write_set();
    extra.put(crate::storage::Cf::Meta, b"pipeline-progress", b"7");
    let ga = [pending(TimestampType::CreateTime, &["a1", "a2"], None)];
    let gb = [
        pending(TimestampType::CreateTime, &["b1"], None),
        pending(TimestampType::CreateTime, &["b2"], Some((9, 0))),
    ];
    let outs = PartitionLog::append_groups_with(&[(&b, &gb), (&a, &ga)], 5, extra).unwrap();
    assert_eq!(outs.len(), 2);
    assert_eq!(outs[0].iter().filter(|o| o.is_ok()).count(), 2);
    assert_eq!(outs[1][0].as_ref().unwrap().record_count, 2);
    assert_eq!((a.bounds().latest, b.bounds().latest), (2, 2));
    assert_eq!(b.expected_sequence(9), 1);
    assert_eq!(
        a.store
            .get(crate::storage::Cf::Meta, b"pipeline-progress")
            .unwrap()
            .as_deref(),
        Some(&b"7"[..])
    );
    // A closed partition refuses the whole write: nothing lands anywhere.
    b.close();
    let mut extra = a.store.write_set();
    extra.put(crate::storage::Cf::Meta, b"pipeline-progress", b"8");
    let e = PartitionLog::append_groups_with(&[(&a, &ga), (&b, &gb)], 6, extra).unwrap_err();
    assert!(matches!(e, LogError::Closed), "{e:?}");
    assert_eq!(a.bounds().latest, 2);
    assert_eq!(
        a.store
            .get(crate::storage::Cf::Meta, b"pipeline-progress")
            .unwrap()
            .as_deref(),
        Some(&b"7"[..])
    );
}
