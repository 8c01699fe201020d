//! The controller's failover duty (docs/cluster.md, "Failover"): while this broker is the
//! raft leader it probes every other broker, and a broker silent for `--session-timeout-ms`
//! is fenced: each partition it led gets a new leader from its live in-sync replicas (next
//! leader epoch), and it leaves the ISRs. A partition left with no live in-sync replica keeps
//! its last leader in the ISR, without a leader, until one of them comes back (no unclean
//! election, as Kafka by default).
//!
//! A broker that just became controller counts every broker as seen at that moment, so it
//! waits one session timeout before fencing anyone.
//!
//! Failovers pile leadership (and, through `__consumer_offsets`, group coordination) onto the
//! brokers that stayed up. Every `--leader-rebalance-interval-ms` the controller gives each
//! partition back to its preferred replica (the first of its replicas; placement spreads
//! those over the brokers) when that replica is alive and in sync, as Kafka's
//! `auto.leader.rebalance.enable` does. An in-sync replica has every acknowledged record, so
//! the move loses none; unacknowledged ones the old leader holds are retried by producers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Cluster;
use super::network::calls::StatusProbe;
use super::peers::NodeId;
use super::state::{Command, Metadata, Outcome};

/// How often the controller probes the brokers and looks for partitions to fail over.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// The metadata changes that fail over partitions, given which brokers are alive: for each
/// partition whose leader is dead (or that has none), the first live in-sync replica in
/// replica order leads, and dead brokers leave its ISR.
pub fn elections(m: &Metadata, alive: impl Fn(NodeId) -> bool) -> Vec<Command> {
    let mut out = Vec::new();
    for (name, i, p) in m.partitions() {
        if p.leader.is_some_and(&alive) {
            continue;
        }
        let live_isr: Vec<NodeId> = p.isr.iter().copied().filter(|r| alive(*r)).collect();
        let leader = p.replicas.iter().copied().find(|r| live_isr.contains(r));
        let isr = match leader {
            Some(_) => live_isr,
            // Nobody left to lead: keep the ISR as it was, so the first of them back leads
            // again (a replica outside it may lack acknowledged records).
            None if p.leader.is_none() => continue,
            None => p.isr.clone(),
        };
        out.push(Command::ChangePartition {
            topic: name.clone(),
            partition: i,
            partition_epoch: p.partition_epoch,
            leader,
            isr,
        });
    }
    out
}

/// The changes that give partitions back to their preferred replica: for each partition led
/// by another broker whose preferred replica is alive and in its ISR.
pub fn preferred_leaders(m: &Metadata, alive: impl Fn(NodeId) -> bool) -> Vec<Command> {
    m.partitions()
        .filter_map(|(name, i, p)| {
            let preferred = *p.replicas.first()?;
            let move_it = p.leader.is_some_and(|l| l != preferred)
                && alive(preferred)
                && p.isr.contains(&preferred);
            move_it.then(|| Command::ChangePartition {
                topic: name.clone(),
                partition: i,
                partition_epoch: p.partition_epoch,
                leader: Some(preferred),
                isr: p.isr.clone(),
            })
        })
        .collect()
}

/// A controlled shutdown of broker `me` (Kafka's `controlled.shutdown.enable`): the changes
/// that take it out of every partition before it stops. A partition it leads goes to the
/// first other in-sync replica in replica order (it has every acknowledged record), and `me`
/// leaves every ISR, so no acks=all write waits for a broker about to go and the leader does
/// not count it in the high watermark. A partition whose only in-sync replica is `me` keeps
/// it: moving would lose acknowledged records (it is unavailable until `me` is back).
pub fn handoffs(m: &Metadata, me: NodeId) -> Vec<Command> {
    m.partitions()
        .filter_map(|(name, i, p)| {
            if !p.isr.contains(&me) {
                return None;
            }
            let isr: Vec<NodeId> = p.isr.iter().copied().filter(|r| *r != me).collect();
            if isr.is_empty() {
                return None;
            }
            let leader = match p.leader {
                Some(l) if l == me => Some(p.replicas.iter().copied().find(|r| isr.contains(r))?),
                other => other,
            };
            Some(Command::ChangePartition {
                topic: name.clone(),
                partition: i,
                partition_epoch: p.partition_epoch,
                leader,
                isr,
            })
        })
        .collect()
}

/// The controller's failover duty on this broker, for as long as the cluster lives (or the
/// task is dropped); with `rebalance_every`, also preferred-leader rebalancing.
pub async fn run(
    cluster: Arc<Cluster>,
    session_timeout: Duration,
    rebalance_every: Option<Duration>,
) {
    let me = cluster.node_id();
    let mut probes: HashMap<NodeId, (String, StatusProbe)> = HashMap::new();
    let mut seen: HashMap<NodeId, Instant> = HashMap::new();
    let mut was_controller = false;
    let mut last_rebalance = Instant::now();
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let controller = cluster.view().role == "controller";
        if !controller {
            was_controller = false;
            continue;
        }
        let m = Arc::clone(&cluster.metadata().borrow());
        let now = Instant::now();
        if !was_controller {
            // Everyone gets a full session from the moment this broker took over.
            seen = m.brokers.keys().map(|id| (*id, now)).collect();
            was_controller = true;
            last_rebalance = now;
        }
        probe(&m, me, &mut probes, &mut seen, session_timeout).await;
        let now = Instant::now();
        let alive = |id: NodeId| {
            id == me
                || seen
                    .get(&id)
                    .is_some_and(|t| now.saturating_duration_since(*t) <= session_timeout)
        };
        let failovers = elections(&m, alive);
        // Rebalance only in a round without failovers: a fresh failover's ISR changes come
        // first, and the next round sees them.
        let rebalance = failovers.is_empty()
            && rebalance_every.is_some_and(|every| now.duration_since(last_rebalance) >= every);
        let moves = if rebalance {
            last_rebalance = now;
            preferred_leaders(&m, alive)
        } else {
            Vec::new()
        };
        for (cmd, failover, why) in failovers
            .into_iter()
            .map(|c| (c, true, "failing over a partition whose leader is gone"))
            .chain(
                moves
                    .into_iter()
                    .map(|c| (c, false, "giving a partition back to its preferred replica")),
            )
        {
            if let Command::ChangePartition {
                topic,
                partition,
                leader,
                ..
            } = &cmd
            {
                match failover {
                    true => {
                        tracing::warn!(topic = %topic, partition, new_leader = ?leader, "{why}")
                    }
                    false => {
                        tracing::info!(topic = %topic, partition, new_leader = ?leader, "{why}")
                    }
                }
            }
            match cluster.propose_here(cmd).await {
                Ok(Ok(Outcome::Done)) => {}
                Ok(Ok(other)) => tracing::debug!(outcome = ?other, "leadership change refused"),
                Ok(Err(e)) => tracing::warn!(error = %e, "leadership change failed"),
                // No longer the controller: the new one takes over.
                Err(_) => break,
            }
        }
    }
}

/// Asks every other broker for its status at once; those that answer within the probe
/// timeout count as seen now.
async fn probe(
    m: &Metadata,
    me: NodeId,
    probes: &mut HashMap<NodeId, (String, StatusProbe)>,
    seen: &mut HashMap<NodeId, Instant>,
    session_timeout: Duration,
) {
    let timeout = (session_timeout / 3).min(Duration::from_secs(1));
    probes.retain(|id, (addr, _)| m.brokers.get(id).is_some_and(|b| b.addr == *addr));
    for (id, b) in &m.brokers {
        if *id == me || probes.contains_key(id) {
            continue;
        }
        match StatusProbe::new(&b.addr, timeout) {
            Ok(probe) => {
                probes.insert(*id, (b.addr.clone(), probe));
            }
            Err(e) => tracing::error!(broker = id, error = %e, "bad broker address"),
        }
    }
    let asks = probes.iter().map(|(id, (_, probe))| {
        let probe = probe.clone();
        let id = *id;
        async move { (id, probe.answers(timeout).await) }
    });
    let now = Instant::now();
    for (id, ok) in futures::future::join_all(asks).await {
        if ok {
            seen.insert(id, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::state::PartitionState;
    use crate::cluster::state::testing::{create, three_brokers};

    /// Three brokers and topic `t` with these partitions.
    fn metadata(partitions: Vec<PartitionState>) -> Metadata {
        let mut m = three_brokers();
        create(&mut m, "t", partitions.len() as u32, 3);
        m.topics.get_mut("t").unwrap().partitions = partitions;
        m
    }

    fn p(leader: Option<NodeId>, replicas: &[NodeId], isr: &[NodeId]) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            leader,
            leader_epoch: 2,
            isr: isr.to_vec(),
            partition_epoch: 5,
        }
    }

    fn change(partition: u32, leader: Option<NodeId>, isr: &[NodeId]) -> Command {
        Command::ChangePartition {
            topic: "t".into(),
            partition,
            partition_epoch: 5,
            leader,
            isr: isr.to_vec(),
        }
    }

    #[test]
    fn a_dead_leader_is_replaced_by_the_first_live_in_sync_replica() {
        let m = metadata(vec![
            p(Some(1), &[1, 2, 3], &[1, 2, 3]),
            p(Some(2), &[2, 3, 1], &[2, 3, 1]),
            p(Some(1), &[1, 3, 2], &[1, 2]),
        ]);
        let alive = |id| id != 1;
        assert_eq!(
            elections(&m, alive),
            vec![change(0, Some(2), &[2, 3]), change(2, Some(2), &[2])],
            "p1's leader lives; p2's only live in-sync replica is 2 (3 is not in sync)"
        );
        assert!(elections(&m, |_| true).is_empty());
    }

    #[test]
    fn a_stopping_broker_hands_its_leadership_over_and_leaves_every_isr() {
        let m = metadata(vec![
            // Led by 1: to 3, the first other in-sync replica in replica order.
            p(Some(1), &[1, 3, 2], &[1, 2, 3]),
            // Followed by 1: it leaves the ISR, the leader stays.
            p(Some(2), &[2, 1, 3], &[2, 1, 3]),
            // 1 is its only in-sync replica: it stays (moving would lose records).
            p(Some(1), &[1, 2, 3], &[1]),
            // 1 is not in its ISR: nothing to do.
            p(Some(3), &[3, 1, 2], &[3, 2]),
            // No leader, 1 in the ISR: it leaves it, still without a leader.
            p(None, &[2, 1, 3], &[1, 2]),
            // No leader and 1 the only in-sync replica: it stays, to lead when back.
            p(None, &[1, 2, 3], &[1]),
        ]);
        assert_eq!(
            handoffs(&m, 1),
            vec![
                change(0, Some(3), &[2, 3]),
                change(1, Some(2), &[2, 3]),
                change(4, None, &[2]),
            ]
        );
        assert_eq!(
            handoffs(&m, 3).len(),
            3,
            "3 leads p3 and is in p0, p1, p3's ISRs"
        );
    }

    #[test]
    fn leadership_goes_back_to_a_preferred_replica_that_is_alive_and_in_sync() {
        let m = metadata(vec![
            // Failed over to 2; 1 is back and in sync: it leads again.
            p(Some(2), &[1, 2, 3], &[2, 3, 1]),
            // Already led by its preferred replica.
            p(Some(2), &[2, 3, 1], &[2, 3, 1]),
            // 3 is back but not in sync yet: it waits.
            p(Some(1), &[3, 1, 2], &[1, 2]),
            // No leader at all: elections' business, not a rebalance.
            p(None, &[1, 2, 3], &[1]),
        ]);
        assert_eq!(
            preferred_leaders(&m, |_| true),
            vec![change(0, Some(1), &[2, 3, 1])]
        );
        assert!(preferred_leaders(&m, |id| id != 1).is_empty(), "1 is down");
    }

    #[test]
    fn without_a_live_in_sync_replica_a_partition_waits_for_one() {
        let m = metadata(vec![p(Some(1), &[1, 2, 3], &[1])]);
        // 2 and 3 are alive but out of sync: no unclean election.
        assert_eq!(elections(&m, |id| id != 1), vec![change(0, None, &[1])]);
        let m = metadata(vec![p(None, &[1, 2, 3], &[1])]);
        assert!(elections(&m, |id| id != 1).is_empty(), "nothing new to do");
        assert_eq!(elections(&m, |_| true), vec![change(0, Some(1), &[1])]);
    }
}
