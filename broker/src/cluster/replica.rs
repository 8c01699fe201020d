//! A follower's side of replication: for every leader this broker follows partitions of, one
//! fetcher task pulls them in one request at a time, from this copy's log end offset, and
//! appends what comes back unchanged (docs/cluster.md, "Replication").
//!
//! A supervisor follows the metadata: it starts a fetcher for each leader this broker needs,
//! hands it the partitions to follow, and drops it when it has none left (a partition whose
//! leader changes moves to the new leader's fetcher; one led here is not fetched).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;
use weir_common::batch;

use super::network::calls::{FetchPosition, Fetched, ReplicaFetcher};
use super::peers::NodeId;
use super::state::Metadata;
use crate::blocking::blocking;
use crate::error::BrokerError;
use crate::log::{LogError, PartitionLog, PendingBatch};
use crate::metrics::{self, Stage};
use crate::topics::TopicRegistry;
use crate::types::EpochStart;

/// Most bytes one replica fetch brings back (all partitions together).
pub const REPLICA_FETCH_MAX_BYTES: u32 = 8 * 1024 * 1024;
/// Pause after a failed fetch (leader unreachable), doubling up to the maximum.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A partition this broker follows, and the leader epoch it follows it in.
type Followed = BTreeMap<(String, u32), u32>;

/// The supervisor of broker `me`: follows `metadata` as this broker applied it (its local
/// copies exist then), until the channel closes or the task is dropped (its fetchers end
/// with it, when their partitions' senders go). An idle fetch waits up to `wait` at the
/// leader (`--replica-fetch-wait-ms`). Once `leaving` is set (a controlled shutdown) it
/// follows nothing more: a leader must not count a broker about to stop back into an ISR.
pub async fn supervise(
    topics: Arc<TopicRegistry>,
    me: NodeId,
    wait: Duration,
    mut metadata: watch::Receiver<Arc<Metadata>>,
    mut leaving: watch::Receiver<bool>,
) {
    let mut fetchers: HashMap<NodeId, (String, watch::Sender<Followed>)> = HashMap::new();
    loop {
        if *leaving.borrow_and_update() {
            fetchers.clear();
            // Idle until the broker stops (the sender goes with it).
            let _ = leaving.wait_for(|_| false).await;
            return;
        }
        let m = Arc::clone(&metadata.borrow_and_update());
        let wanted = followed(&m, me);
        fetchers.retain(|leader, (addr, _)| {
            wanted.contains_key(leader) && m.brokers.get(leader).is_some_and(|b| b.addr == *addr)
        });
        for (leader, parts) in wanted {
            match fetchers.get(&leader) {
                Some((_, tx)) => {
                    tx.send_if_modified(|p| {
                        let changed = *p != parts;
                        *p = parts.clone();
                        changed
                    });
                }
                None => {
                    let Some(addr) = m.brokers.get(&leader).map(|b| b.addr.clone()) else {
                        continue;
                    };
                    let (tx, rx) = watch::channel(parts);
                    tokio::spawn(fetch_loop(Arc::clone(&topics), me, addr.clone(), wait, rx));
                    fetchers.insert(leader, (addr, tx));
                }
            }
        }
        tokio::select! {
            changed = metadata.changed() => if changed.is_err() { return },
            changed = leaving.changed() => if changed.is_err() { return },
        }
    }
}

/// Per leader (not this broker), the partitions this broker holds a replica of.
pub fn followed(m: &Metadata, me: NodeId) -> BTreeMap<NodeId, Followed> {
    let mut out: BTreeMap<NodeId, Followed> = BTreeMap::new();
    for (name, i, p) in m.partitions() {
        match p.leader {
            Some(l) if l != me && p.replicas.contains(&me) => {
                out.entry(l)
                    .or_default()
                    .insert((name.clone(), i), p.leader_epoch);
            }
            _ => {}
        }
    }
    out
}

/// Fetches the partitions in `parts` from the leader at `addr` until the supervisor drops
/// the sender.
async fn fetch_loop(
    topics: Arc<TopicRegistry>,
    me: NodeId,
    addr: String,
    wait: Duration,
    mut parts: watch::Receiver<Followed>,
) {
    let mut fetcher = match ReplicaFetcher::new(&addr, CONNECT_TIMEOUT) {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(leader = %addr, error = %e, "bad leader address; not fetching");
            return;
        }
    };
    let mut retry = RETRY_MIN;
    tracing::debug!(leader = %addr, "replica fetcher started");
    loop {
        let followed = parts.borrow_and_update().clone();
        // Partitions whose local copy exists (the reconciler creates it from the same
        // metadata, moments apart).
        let positions: Vec<FetchPosition> = followed
            .iter()
            .filter_map(|((topic, partition), epoch)| {
                let log = local_copy(&topics, topic, *partition).ok()?;
                Some(FetchPosition {
                    topic: topic.clone(),
                    partition: *partition,
                    fetch_offset: log.bounds().log_end,
                    leader_epoch: *epoch,
                    last_epoch: log.latest_epoch(),
                })
            })
            .collect();
        if positions.is_empty() {
            // Nothing to fetch yet: wait for a change of the partitions, or for a local copy.
            tokio::select! {
                r = parts.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(RETRY_MAX) => {}
            }
            continue;
        }
        let sent = Instant::now();
        let fetch = fetcher.fetch(me, positions, REPLICA_FETCH_MAX_BYTES, wait);
        let resp = tokio::select! {
            r = fetch => r,
            r = parts.changed() => {
                if r.is_err() {
                    return;
                }
                continue;
            }
        };
        let fetched = match resp {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(leader = %addr, error = %e, "replica fetch failed; retrying");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_MAX);
                continue;
            }
        };
        metrics::global().stage(Stage::FetchRoundTrip, sent.elapsed());
        retry = RETRY_MIN;
        let mut refused = false;
        for (topic, partition, d) in fetched {
            let done = match d {
                Fetched::Refused { reason } => {
                    // Typically not_leader while the metadata moves; the supervisor follows it.
                    tracing::debug!(topic = %topic, partition, leader = %addr, error = %reason, "leader refused a partition");
                    refused = true;
                    continue;
                }
                Fetched::Diverging { epoch, end_offset } => {
                    truncate_diverged(&topics, &topic, partition, epoch, end_offset)
                        .await
                        .map(|end| tracing::info!(topic = %topic, partition, leader = %addr, log_end = end, "truncated a tail the leader does not have"))
                }
                Fetched::Batches {
                    batches,
                    epochs,
                    high_watermark,
                } => append_fetched(&topics, &topic, partition, batches, high_watermark, epochs)
                    .await
                    .map(|_| ()),
            };
            if let Err(e) = done {
                tracing::warn!(topic = %topic, partition, leader = %addr, error = %e, "cannot follow the leader's log");
                refused = true;
            }
        }
        if refused {
            // Do not spin on a partition that keeps failing.
            tokio::time::sleep(RETRY_MIN).await;
        }
    }
}

/// The local copy of `topic`'s partition `partition`.
fn local_copy(
    topics: &TopicRegistry,
    topic: &str,
    partition: u32,
) -> Result<Arc<PartitionLog>, BrokerError> {
    Ok(Arc::clone(&topics.get(topic)?.partition(partition)?.log))
}

/// Appends batches fetched from the partition's leader unchanged
/// (`PartitionLog::append_replica`), takes the leader's epoch history, then its high watermark
/// (up to this copy's log end). Returns this copy's new log end offset.
async fn append_fetched(
    topics: &TopicRegistry,
    topic: &str,
    partition: u32,
    batches: Vec<Bytes>,
    leader_hw: u64,
    leader_epochs: Vec<EpochStart>,
) -> Result<u64, BrokerError> {
    let log = local_copy(topics, topic, partition)?;
    if batches.is_empty() {
        log.set_high_watermark(leader_hw);
        return Ok(log.bounds().log_end);
    }
    let name = topic.to_string();
    blocking(move || {
        let started = Instant::now();
        let mut group = Vec::with_capacity(batches.len());
        for bytes in batches {
            // The leader checked every record when it was produced; a copy checks the
            // framing its log and time index rely on (lengths, count, timestamps).
            let valid = batch::validate_replica(&bytes)
                .map_err(|source| BrokerError::InvalidBatch { partition, source })?;
            group.push(PendingBatch { bytes, valid });
        }
        let log_err = |e: LogError| e.in_partition(&name, partition);
        log.append_replica(&group, weir_common::record::now_ms())
            .map_err(log_err)?;
        log.follow_epochs(&leader_epochs).map_err(log_err)?;
        log.set_high_watermark(leader_hw);
        metrics::global().stage(Stage::FollowerAppend, started.elapsed());
        Ok(log.bounds().log_end)
    })
    .await
}

/// A copy whose log diverged from its leader's (the leader said where `epoch` ends there):
/// truncates to that end, or to the end of that epoch in this copy's own history if earlier.
/// Returns the new log end.
async fn truncate_diverged(
    topics: &TopicRegistry,
    topic: &str,
    partition: u32,
    epoch: u32,
    leader_end: u64,
) -> Result<u64, BrokerError> {
    let log = local_copy(topics, topic, partition)?;
    let name = topic.to_string();
    blocking(move || {
        let own_end = log.end_of_epoch(epoch).map_or(leader_end, |(_, end)| end);
        log.truncate_to(leader_end.min(own_end))
            .map_err(|e| e.in_partition(&name, partition))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::state::testing::{create, three_brokers};

    #[test]
    fn a_broker_follows_the_partitions_it_replicates_but_does_not_lead() {
        let mut m = three_brokers();
        create(&mut m, "t", 3, 2);
        for me in 1..=3u64 {
            let f = followed(&m, me);
            let t = &m.topics["t"];
            for (i, p) in t.partitions.iter().enumerate() {
                let leader = p.leader.unwrap();
                let here = f
                    .get(&leader)
                    .is_some_and(|s| s.get(&("t".to_string(), i as u32)) == Some(&0));
                assert_eq!(
                    here,
                    leader != me && p.replicas.contains(&me),
                    "node {me} p{i}"
                );
            }
            assert!(!f.contains_key(&me));
        }
        let total: usize = (1..=3)
            .map(|me| followed(&m, me).values().map(|s| s.len()).sum::<usize>())
            .sum();
        assert_eq!(total, 3, "one follower per partition with RF 2");
    }
}
