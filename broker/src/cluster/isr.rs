//! A partition leader's view of its followers: how far each has fetched, the high watermark
//! that follows from it, and which followers should leave or rejoin the in-sync replica set
//! (docs/cluster.md, "Replication"). Pure bookkeeping: the caller applies the high watermark
//! to the log and proposes the ISR changes to the controller.
//!
//! Kafka's rules:
//! - a follower is caught up when it fetches from the leader's log end offset, or from
//!   where the log ended at its previous fetch (then it was caught up at that fetch);
//! - an in-sync follower not caught up for `lag_max` leaves the ISR;
//! - a follower outside the ISR rejoins once it has everything below the high watermark;
//! - the high watermark is the lowest log end offset among the in-sync replicas, and never
//!   moves back on a leader.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::peers::NodeId;
use super::state::{Command, PartitionState};

/// What a leader knows of one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Progress {
    /// The follower's log end offset, as its last fetch said.
    log_end: u64,
    /// When it last fetched, and the leader's log end offset then.
    last_fetch: Instant,
    leader_end_at_last_fetch: u64,
    /// The last time it had everything the leader had.
    caught_up: Instant,
}

/// One led partition's followers, for one leader epoch.
#[derive(Debug)]
struct Led {
    leader_epoch: u32,
    /// When this broker became leader: followers not heard from since count as caught up then.
    since: Instant,
    followers: HashMap<NodeId, Progress>,
    /// An ISR change for this partition is on its way to the controller.
    proposing: bool,
}

impl Led {
    fn new(leader_epoch: u32, now: Instant) -> Self {
        Self {
            leader_epoch,
            since: now,
            followers: HashMap::new(),
            proposing: false,
        }
    }
}

/// Every partition this broker leads, keyed by (topic, partition).
#[derive(Debug, Default)]
pub struct Leadership {
    led: HashMap<(String, u32), Led>,
}

/// What one follower fetch changes on the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchEffect {
    /// The high watermark to apply, when it moved up.
    pub high_watermark: Option<u64>,
    /// An ISR change to propose (the follower rejoins).
    pub propose: Option<Command>,
}

impl Leadership {
    /// Forgets partitions this broker no longer leads (or leads under a newer epoch: the
    /// followers' progress starts over). `led` lists (topic, partition, leader epoch).
    pub fn retain_led(&mut self, led: &[(String, u32, u32)], now: Instant) {
        let wanted: HashMap<(&str, u32), u32> =
            led.iter().map(|(t, p, e)| ((t.as_str(), *p), *e)).collect();
        self.led
            .retain(|(t, p), l| wanted.get(&(t.as_str(), *p)) == Some(&l.leader_epoch));
        for (t, p, e) in led {
            self.led
                .entry((t.clone(), *p))
                .or_insert_with(|| Led::new(*e, now));
        }
    }

    /// A follower fetched `partition` from `fetch_offset` (its log end) while the leader's
    /// log ended at `leader_end` with high watermark `hw`; `state` is the partition as the
    /// metadata has it here, `me` this broker.
    #[allow(clippy::too_many_arguments)]
    pub fn on_fetch(
        &mut self,
        topic: &str,
        partition: u32,
        state: &PartitionState,
        me: NodeId,
        follower: NodeId,
        fetch_offset: u64,
        leader_end: u64,
        hw: u64,
        now: Instant,
    ) -> FetchEffect {
        let none = FetchEffect {
            high_watermark: None,
            propose: None,
        };
        let Some(led) = self.led.get_mut(&(topic.to_string(), partition)) else {
            return none;
        };
        if led.leader_epoch != state.leader_epoch || follower == me {
            return none;
        }
        let prev = led.followers.get(&follower).copied();
        let caught_up = if fetch_offset >= leader_end {
            now
        } else {
            match prev {
                Some(p) if fetch_offset >= p.leader_end_at_last_fetch => p.last_fetch,
                Some(p) => p.caught_up,
                None => led.since,
            }
        };
        led.followers.insert(
            follower,
            Progress {
                log_end: fetch_offset,
                last_fetch: now,
                leader_end_at_last_fetch: leader_end,
                caught_up,
            },
        );
        let computed = high_watermark(led, state, me, leader_end, hw);
        let high_watermark = (computed > hw).then_some(computed);
        let hw_now = computed.max(hw);
        let propose = if !state.isr.contains(&follower)
            && state.replicas.contains(&follower)
            && fetch_offset >= hw_now
            && !led.proposing
        {
            led.proposing = true;
            let mut isr = state.isr.clone();
            isr.push(follower);
            Some(change_isr(topic, partition, state, me, isr))
        } else {
            None
        };
        FetchEffect {
            high_watermark,
            propose,
        }
    }

    /// The high watermark of a led partition from what its followers fetched (`hw` when
    /// nothing new is known), e.g. after the ISR shrank.
    pub fn high_watermark(
        &self,
        topic: &str,
        partition: u32,
        state: &PartitionState,
        me: NodeId,
        leader_end: u64,
        hw: u64,
    ) -> u64 {
        match self.led.get(&(topic.to_string(), partition)) {
            Some(led) if led.leader_epoch == state.leader_epoch => {
                high_watermark(led, state, me, leader_end, hw).max(hw)
            }
            _ => hw,
        }
    }

    /// For a led partition: the ISR change that drops followers not caught up for
    /// `lag_max`, if any (and none is on its way already).
    pub fn shrink(
        &mut self,
        topic: &str,
        partition: u32,
        state: &PartitionState,
        me: NodeId,
        lag_max: Duration,
        now: Instant,
    ) -> Option<Command> {
        let led = self.led.get_mut(&(topic.to_string(), partition))?;
        if led.leader_epoch != state.leader_epoch || led.proposing {
            return None;
        }
        let lagging = |r: &NodeId| {
            let caught_up = led.followers.get(r).map_or(led.since, |p| p.caught_up);
            *r != me && now.saturating_duration_since(caught_up) > lag_max
        };
        if !state.isr.iter().any(lagging) {
            return None;
        }
        let isr: Vec<NodeId> = state.isr.iter().copied().filter(|r| !lagging(r)).collect();
        led.proposing = true;
        Some(change_isr(topic, partition, state, me, isr))
    }

    /// The proposed ISR change for this partition was decided (applied or refused).
    pub fn proposed(&mut self, topic: &str, partition: u32) {
        if let Some(led) = self.led.get_mut(&(topic.to_string(), partition)) {
            led.proposing = false;
        }
    }
}

/// The leader `me` asks for a new ISR of a partition as it was at `state`.
fn change_isr(
    topic: &str,
    partition: u32,
    state: &PartitionState,
    me: NodeId,
    isr: Vec<NodeId>,
) -> Command {
    Command::ChangePartition {
        topic: topic.to_string(),
        partition,
        partition_epoch: state.partition_epoch,
        leader: Some(me),
        isr,
    }
}

/// The lowest log end offset among the in-sync replicas (the leader's own is `leader_end`;
/// a follower not heard from this epoch holds it at `hw`).
fn high_watermark(led: &Led, state: &PartitionState, me: NodeId, leader_end: u64, hw: u64) -> u64 {
    state
        .isr
        .iter()
        .filter(|r| **r != me)
        .map(|r| led.followers.get(r).map_or(hw, |p| p.log_end))
        .fold(leader_end, u64::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(isr: &[NodeId]) -> PartitionState {
        PartitionState {
            replicas: vec![1, 2, 3],
            leader: Some(1),
            leader_epoch: 4,
            isr: isr.to_vec(),
            partition_epoch: 9,
        }
    }

    fn leading(now: Instant) -> Leadership {
        let mut l = Leadership::default();
        l.retain_led(&[("t".into(), 0, 4)], now);
        l
    }

    #[test]
    fn the_high_watermark_is_the_lowest_log_end_among_the_in_sync_replicas() {
        let t0 = Instant::now();
        let mut l = leading(t0);
        let p = partition(&[1, 2, 3]);
        // Follower 2 has 7 of the leader's 10; 3 has not fetched: nothing moves yet.
        let e = l.on_fetch("t", 0, &p, 1, 2, 7, 10, 5, t0);
        assert_eq!(e.high_watermark, None);
        let e = l.on_fetch("t", 0, &p, 1, 3, 10, 10, 5, t0);
        assert_eq!(e.high_watermark, Some(7));
        let e = l.on_fetch("t", 0, &p, 1, 2, 10, 12, 7, t0);
        assert_eq!(e.high_watermark, Some(10));
        assert_eq!(e.propose, None, "both in sync already");
        // A follower outside the ISR does not hold it back.
        let p = partition(&[1, 3]);
        assert_eq!(l.high_watermark("t", 0, &p, 1, 12, 10), 10);
        l.on_fetch("t", 0, &p, 1, 3, 12, 12, 10, t0);
        assert_eq!(l.high_watermark("t", 0, &p, 1, 12, 10), 12);
        // Alone in the ISR, the leader's log end is the high watermark.
        assert_eq!(l.high_watermark("t", 0, &partition(&[1]), 1, 15, 12), 15);
        // It never moves back.
        assert_eq!(l.high_watermark("t", 0, &partition(&[1, 2]), 1, 15, 12), 12);
    }

    #[test]
    fn a_follower_that_stops_catching_up_leaves_the_isr_and_rejoins_at_the_high_watermark() {
        let t0 = Instant::now();
        let lag = Duration::from_secs(10);
        let mut l = leading(t0);
        let p = partition(&[1, 2, 3]);
        l.on_fetch("t", 0, &p, 1, 2, 10, 10, 10, t0);
        l.on_fetch("t", 0, &p, 1, 3, 10, 10, 10, t0);
        // Follower 2 keeps fetching from where the log ended at its previous fetch, so it is
        // caught up although the leader keeps growing; 3 falls silent.
        let t5 = t0 + Duration::from_secs(5);
        l.on_fetch("t", 0, &p, 1, 2, 10, 20, 10, t5);
        let t11 = t0 + Duration::from_secs(11);
        l.on_fetch("t", 0, &p, 1, 2, 20, 30, 10, t11);
        let cmd = l.shrink("t", 0, &p, 1, lag, t11).expect("3 lags");
        assert_eq!(
            cmd,
            Command::ChangePartition {
                topic: "t".into(),
                partition: 0,
                partition_epoch: 9,
                leader: Some(1),
                isr: vec![1, 2]
            }
        );
        assert_eq!(
            l.shrink("t", 0, &p, 1, lag, t11),
            None,
            "one change at a time"
        );
        l.proposed("t", 0);
        let p = partition(&[1, 2]);
        assert_eq!(l.shrink("t", 0, &p, 1, lag, t11), None);
        // 3 comes back behind the high watermark: not yet; at it: rejoins.
        let e = l.on_fetch("t", 0, &p, 1, 3, 15, 30, 20, t11);
        assert_eq!(e.propose, None);
        let e = l.on_fetch("t", 0, &p, 1, 3, 20, 30, 20, t11);
        assert_eq!(
            e.propose,
            Some(Command::ChangePartition {
                topic: "t".into(),
                partition: 0,
                partition_epoch: 9,
                leader: Some(1),
                isr: vec![1, 2, 3]
            })
        );
    }

    #[test]
    fn followers_never_heard_from_count_from_the_start_of_the_leadership() {
        let t0 = Instant::now();
        let mut l = leading(t0);
        let p = partition(&[1, 2, 3]);
        let lag = Duration::from_secs(10);
        assert_eq!(l.shrink("t", 0, &p, 1, lag, t0 + lag), None);
        let cmd = l
            .shrink("t", 0, &p, 1, lag, t0 + lag * 2)
            .expect("both silent");
        assert!(matches!(cmd, Command::ChangePartition { ref isr, .. } if isr == &[1]));
        // A new epoch (or another leader) starts over.
        l.retain_led(&[("t".into(), 0, 5)], t0 + lag * 2);
        let p5 = PartitionState {
            leader_epoch: 5,
            ..partition(&[1, 2, 3])
        };
        assert_eq!(l.shrink("t", 0, &p5, 1, lag, t0 + lag * 2), None);
        assert_eq!(
            l.on_fetch("t", 0, &p, 1, 2, 10, 10, 0, t0).high_watermark,
            None,
            "a fetch for an old epoch counts for nothing"
        );
        l.retain_led(&[], t0);
        assert_eq!(l.shrink("t", 0, &p5, 1, lag, t0 + lag * 9), None);
    }
}
