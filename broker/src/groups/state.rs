//! One consumer group's membership state machine (pure: no I/O, time passed in).
//!
//! The broker drives assignment (like Kafka's KIP-848 protocol): members heartbeat; every
//! membership or subscription change bumps the group epoch and recomputes a *target*
//! assignment (balanced, sticky: see `assign`). Each member then converges on its target one
//! heartbeat at a time:
//!
//! - partitions it must give up move from `assigned` to `revoking`; the member stops reading
//!   them, commits their offsets and reports them released in its next heartbeat (`owned`);
//! - a partition is handed to its new owner only once no other member holds it (assigned or
//!   revoking), so no partition is ever read by two members of a group at once.
//!
//! Each change of a member's assignment bumps its *member epoch*; commits carry it, so a
//! member acting on an assignment it no longer has is fenced. A member that misses heartbeats
//! for its session timeout, or keeps partitions it was asked to give up past its rebalance
//! timeout, is removed, and its partitions move.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use super::assign::{MemberId, assign_topic};
use super::classic::Classic;
use crate::error::BrokerError;

/// A topic and one of its partitions.
pub type TopicPartition = (String, u32);

/// Stable members heartbeat this often (or every third of their session timeout if shorter).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// A member still converging on its target heartbeats this often, so partitions move fast.
pub const RECONCILE_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The next offset the group will read (Kafka semantics: last consumed + 1).
    pub offset: u64,
    pub metadata: String,
    /// When it was committed (unix ms).
    pub commit_time: i64,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub id: MemberId,
    pub client_id: String,
    pub epoch: i64,
    pub topics: BTreeSet<String>,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub last_seen: Instant,
    /// Partitions the member may read.
    pub assigned: BTreeSet<TopicPartition>,
    /// Partitions the member was asked to give up and has not yet reported released.
    pub revoking: BTreeSet<TopicPartition>,
    revoking_since: Option<Instant>,
}

impl Member {
    fn holds(&self, tp: &TopicPartition) -> bool {
        self.assigned.contains(tp) || self.revoking.contains(tp)
    }
}

/// What a joining member asks for.
#[derive(Debug, Clone)]
pub struct Join {
    pub client_id: String,
    pub topics: BTreeSet<String>,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
}

/// What a member is told after each heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub member_id: MemberId,
    pub member_epoch: i64,
    pub interval: Duration,
    /// Everything the member may read now (its full assignment, not a delta).
    pub assignment: BTreeSet<TopicPartition>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members.
    Empty,
    /// Every member has exactly its target.
    Stable,
    /// Partitions are moving between members.
    Reconciling,
}

impl GroupState {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "empty",
            GroupState::Stable => "stable",
            GroupState::Reconciling => "reconciling",
        }
    }
}

#[derive(Debug)]
pub struct Group {
    pub name: String,
    /// Bumped on every membership, subscription or partition-count change.
    pub epoch: u64,
    members: BTreeMap<MemberId, Member>,
    /// The target assignment of the current epoch, both ways.
    target: HashMap<MemberId, BTreeSet<TopicPartition>>,
    target_owner: HashMap<TopicPartition, MemberId>,
    /// Partition counts the target was computed with.
    counts: BTreeMap<String, u32>,
    pub offsets: BTreeMap<TopicPartition, Committed>,
    /// Its Kafka-protocol members (the Kafka listener's classic protocol). A group has
    /// members of one protocol at a time; offsets are shared (docs/kafka.md).
    pub classic: Classic,
}

impl Group {
    pub fn new(name: String) -> Self {
        Self {
            classic: Classic::new(name.clone()),
            name,
            epoch: 0,
            members: BTreeMap::new(),
            target: HashMap::new(),
            target_owner: HashMap::new(),
            counts: BTreeMap::new(),
            offsets: BTreeMap::new(),
        }
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    pub fn has_members(&self) -> bool {
        !self.members.is_empty() || self.classic.has_members()
    }

    pub fn state(&self) -> GroupState {
        if self.classic.has_members() {
            return match self.classic.phase {
                super::classic::Phase::Stable => GroupState::Stable,
                _ => GroupState::Reconciling,
            };
        }
        if self.members.is_empty() {
            GroupState::Empty
        } else if self.members.values().all(|m| self.converged(m)) {
            GroupState::Stable
        } else {
            GroupState::Reconciling
        }
    }

    /// Every topic some member subscribes to.
    pub fn subscribed_topics(&self) -> BTreeSet<String> {
        self.members
            .values()
            .flat_map(|m| m.topics.iter().cloned())
            .chain(
                self.classic
                    .members()
                    .flat_map(|m| m.topics.iter().cloned()),
            )
            .collect()
    }

    /// The id of the member reading `tp` now, of either protocol.
    pub fn holder_id(&self, tp: &TopicPartition) -> Option<String> {
        self.holder(tp)
            .map(|m| m.id.clone())
            .or_else(|| self.classic.holder(tp).map(|m| m.id.clone()))
    }

    /// The member that may read `tp` now, if any (its assignment or its revoking set).
    pub fn holder(&self, tp: &TopicPartition) -> Option<&Member> {
        self.members.values().find(|m| m.holds(tp))
    }

    /// How many partitions member `id` holds (assigned or revoking).
    pub fn held_count(&self, id: &str) -> usize {
        self.members
            .get(id)
            .map_or(0, |m| m.assigned.len() + m.revoking.len())
    }

    /// Whether member `id` may read `tp` now.
    pub fn owns(&self, id: &str, tp: &TopicPartition) -> bool {
        self.members.get(id).is_some_and(|m| m.holds(tp))
    }

    fn converged(&self, m: &Member) -> bool {
        m.revoking.is_empty()
            && self
                .target
                .get(&m.id)
                .map_or(m.assigned.is_empty(), |t| *t == m.assigned)
    }

    /// Adds a member; returns what it is told.
    pub fn join(
        &mut self,
        id: MemberId,
        join: Join,
        now: Instant,
        counts: &dyn Fn(&str) -> u32,
    ) -> Result<Heartbeat, BrokerError> {
        if self.classic.has_members() {
            return Err(BrokerError::InconsistentGroupProtocol {
                group: self.name.clone(),
                why: "its members are Kafka-protocol consumers; a Weir consumer may join once \
                      they have left (the two share committed offsets, not membership)"
                    .into(),
            });
        }
        self.members.insert(
            id.clone(),
            Member {
                id: id.clone(),
                client_id: join.client_id,
                // The epoch `bump` below moves the group to.
                epoch: self.epoch as i64 + 1,
                topics: join.topics,
                session_timeout: join.session_timeout,
                rebalance_timeout: join.rebalance_timeout,
                last_seen: now,
                assigned: BTreeSet::new(),
                revoking: BTreeSet::new(),
                revoking_since: None,
            },
        );
        self.bump(counts);
        self.reconcile(&id, now)
    }

    /// A heartbeat of a member: `owned` is what it still holds (`None`: not reported),
    /// `topics` a new subscription (`None`: unchanged).
    pub fn heartbeat(
        &mut self,
        id: &str,
        epoch: i64,
        topics: Option<BTreeSet<String>>,
        owned: Option<&BTreeSet<TopicPartition>>,
        now: Instant,
        counts: &dyn Fn(&str) -> u32,
    ) -> Result<Heartbeat, BrokerError> {
        let current = self.member_mut(id)?.epoch;
        // The previous epoch is fine too: the member may not have seen the last response.
        if epoch > current || epoch < current - 1 {
            return Err(BrokerError::StaleMemberEpoch {
                group: self.name.clone(),
                member: id.to_string(),
                epoch,
                current,
            });
        }
        let m = self.member_mut(id)?;
        m.last_seen = now;
        if let Some(owned) = owned {
            m.revoking.retain(|tp| owned.contains(tp));
            if m.revoking.is_empty() {
                m.revoking_since = None;
            }
        }
        let resubscribed = topics.is_some_and(|t| {
            let changed = t != m.topics;
            m.topics = t;
            changed
        });
        if resubscribed || self.counts_changed(counts) {
            self.bump(counts);
        }
        self.reconcile(id, now)
    }

    /// Removes a member that leaves on its own.
    pub fn leave(&mut self, id: &str, counts: &dyn Fn(&str) -> u32) -> Result<(), BrokerError> {
        self.member_mut(id)?;
        self.members.remove(id);
        self.bump(counts);
        Ok(())
    }

    /// Removes members whose session expired or that kept revoked partitions too long.
    pub fn expire(&mut self, now: Instant, counts: &dyn Fn(&str) -> u32) -> Vec<Member> {
        let gone: Vec<MemberId> = self
            .members
            .values()
            .filter(|m| {
                now.saturating_duration_since(m.last_seen) > m.session_timeout
                    || m.revoking_since
                        .is_some_and(|t| now.saturating_duration_since(t) > m.rebalance_timeout)
            })
            .map(|m| m.id.clone())
            .collect();
        let removed: Vec<Member> = gone
            .iter()
            .filter_map(|id| self.members.remove(id))
            .collect();
        if !removed.is_empty() {
            self.bump(counts);
        }
        removed
    }

    /// Checks that member `id` at `epoch` may commit offsets of `tp`.
    pub fn check_commit(
        &self,
        id: &str,
        epoch: i64,
        tp: &TopicPartition,
    ) -> Result<(), BrokerError> {
        if self.classic.is_member(id) {
            // Kafka's rule: the member's generation is the group's; partitions are the
            // client-side assignor's business.
            let generation = i32::try_from(epoch).unwrap_or(i32::MIN);
            return self.classic.check_commit(id, generation);
        }
        let m = self.members.get(id).ok_or_else(|| self.unknown(id))?;
        if epoch != m.epoch {
            return Err(BrokerError::StaleMemberEpoch {
                group: self.name.clone(),
                member: id.to_string(),
                epoch,
                current: m.epoch,
            });
        }
        if !m.holds(tp) {
            return Err(BrokerError::NotPartitionOwner {
                group: self.name.clone(),
                member: id.to_string(),
                topic: tp.0.clone(),
                partition: tp.1,
            });
        }
        Ok(())
    }

    fn unknown(&self, id: &str) -> BrokerError {
        BrokerError::UnknownMember {
            group: self.name.clone(),
            member: id.to_string(),
        }
    }

    /// The member, or `UnknownMember` (the error is built only when it is missing).
    fn member_mut(&mut self, id: &str) -> Result<&mut Member, BrokerError> {
        let Self { name, members, .. } = self;
        members
            .get_mut(id)
            .ok_or_else(|| BrokerError::UnknownMember {
                group: name.clone(),
                member: id.to_string(),
            })
    }

    fn counts_changed(&self, counts: &dyn Fn(&str) -> u32) -> bool {
        let topics = self.subscribed_topics();
        topics.len() != self.counts.len()
            || topics
                .iter()
                .any(|t| self.counts.get(t).copied() != Some(counts(t)))
    }

    /// New epoch: recomputes the target assignment, sticky to the previous target.
    fn bump(&mut self, counts: &dyn Fn(&str) -> u32) {
        self.epoch += 1;
        self.counts = self
            .subscribed_topics()
            .into_iter()
            .map(|t| {
                let n = counts(&t);
                (t, n)
            })
            .collect();
        let mut target: HashMap<MemberId, BTreeSet<TopicPartition>> = HashMap::new();
        let mut owner = HashMap::new();
        for (topic, &n) in &self.counts {
            let subscribers: Vec<MemberId> = self
                .members
                .values()
                .filter(|m| m.topics.contains(topic))
                .map(|m| m.id.clone())
                .collect();
            let previous: HashMap<u32, MemberId> = self
                .target_owner
                .iter()
                .filter(|((t, _), _)| t == topic)
                .map(|((_, p), m)| (*p, m.clone()))
                .collect();
            for (m, ps) in assign_topic(n, &subscribers, &previous) {
                for p in ps {
                    let tp = (topic.clone(), p);
                    owner.insert(tp.clone(), m.clone());
                    target.entry(m.clone()).or_default().insert(tp);
                }
            }
        }
        self.target = target;
        self.target_owner = owner;
    }

    /// Moves member `id` one step toward its target: gives up what is no longer its own and
    /// takes what is free.
    fn reconcile(&mut self, id: &str, now: Instant) -> Result<Heartbeat, BrokerError> {
        let desired = self.target.get(id).cloned().unwrap_or_default();
        // Partitions held by the other members (assigned or still being given up).
        let held: BTreeSet<TopicPartition> = self
            .members
            .values()
            .filter(|m| m.id != id)
            .flat_map(|m| m.assigned.iter().chain(m.revoking.iter()).cloned())
            .collect();
        let group_epoch = self.epoch as i64;
        let m = self.member_mut(id)?;
        let mut changed = false;
        let revoke: Vec<TopicPartition> = m.assigned.difference(&desired).cloned().collect();
        for tp in revoke {
            m.assigned.remove(&tp);
            m.revoking.insert(tp);
            changed = true;
        }
        for tp in &desired {
            if m.assigned.contains(tp) {
                continue;
            }
            // Taken back before it was released: no hand-over needed.
            if m.revoking.remove(tp) || !held.contains(tp) {
                m.assigned.insert(tp.clone());
                changed = true;
            }
        }
        if m.revoking.is_empty() {
            m.revoking_since = None;
        } else if m.revoking_since.is_none() {
            m.revoking_since = Some(now);
        }
        if changed {
            m.epoch = (m.epoch + 1).max(group_epoch);
        }
        let converged = m.revoking.is_empty() && m.assigned == desired;
        let stable_interval = HEARTBEAT_INTERVAL.min(m.session_timeout / 3);
        Ok(Heartbeat {
            member_id: m.id.clone(),
            member_epoch: m.epoch,
            interval: if converged {
                stable_interval
            } else {
                RECONCILE_HEARTBEAT_INTERVAL.min(stable_interval)
            },
            assignment: m.assigned.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: Duration = Duration::from_secs(10);

    fn counts(t: &str) -> u32 {
        if t == "t" { 4 } else { 0 }
    }

    fn join(g: &mut Group, id: &str, now: Instant) -> Heartbeat {
        let j = Join {
            client_id: "test".into(),
            topics: ["t".to_string()].into(),
            session_timeout: SESSION,
            rebalance_timeout: Duration::from_secs(30),
        };
        g.join(id.into(), j, now, &counts).unwrap()
    }

    fn hb(g: &mut Group, h: &Heartbeat, now: Instant) -> Heartbeat {
        g.heartbeat(
            &h.member_id,
            h.member_epoch,
            None,
            Some(&h.assignment),
            now,
            &counts,
        )
        .unwrap()
    }

    fn parts(h: &Heartbeat) -> Vec<u32> {
        h.assignment.iter().map(|(_, p)| *p).collect()
    }

    #[test]
    fn a_partition_moves_only_after_its_owner_released_it() {
        let now = Instant::now();
        let mut g = Group::new("g".into());
        let a = join(&mut g, "a", now);
        assert_eq!(parts(&a), vec![0, 1, 2, 3]);
        assert_eq!(g.state(), GroupState::Stable);
        // b joins: its share is still held by a, so it gets nothing yet.
        let b = join(&mut g, "b", now);
        assert!(b.assignment.is_empty());
        assert_eq!(b.interval, RECONCILE_HEARTBEAT_INTERVAL);
        assert_eq!(g.state(), GroupState::Reconciling);
        // a's heartbeat (still reporting all four) revokes two; they stay with a meanwhile.
        let a_before = a.clone();
        let a = g
            .heartbeat(
                "a",
                a.member_epoch,
                None,
                Some(&a_before.assignment),
                now,
                &counts,
            )
            .unwrap();
        assert_eq!(a.assignment.len(), 2);
        assert!(a.member_epoch > a_before.member_epoch);
        let b = hb(&mut g, &b, now);
        assert!(b.assignment.is_empty(), "not released yet: {b:?}");
        // a may still commit what it is giving up, at its new epoch only.
        let revoked: Vec<TopicPartition> = a_before
            .assignment
            .difference(&a.assignment)
            .cloned()
            .collect();
        g.check_commit("a", a.member_epoch, &revoked[0]).unwrap();
        assert!(matches!(
            g.check_commit("a", a_before.member_epoch, &revoked[0]),
            Err(BrokerError::StaleMemberEpoch { .. })
        ));
        // a reports them released; b gets them.
        let a = hb(&mut g, &a, now);
        let b = hb(&mut g, &b, now);
        assert_eq!(b.assignment.len(), 2);
        assert!(a.assignment.is_disjoint(&b.assignment));
        assert_eq!(g.state(), GroupState::Stable);
        assert!(matches!(
            g.check_commit("a", a.member_epoch, &revoked[0]),
            Err(BrokerError::NotPartitionOwner { .. })
        ));
    }

    #[test]
    fn an_expired_member_is_removed_and_fenced() {
        let now = Instant::now();
        let mut g = Group::new("g".into());
        let a = join(&mut g, "a", now);
        let b = join(&mut g, "b", now);
        let a = hb(&mut g, &a, now);
        let a = hb(&mut g, &a, now);
        let b = hb(&mut g, &b, now);
        assert_eq!((a.assignment.len(), b.assignment.len()), (2, 2));
        // b keeps heartbeating, a goes silent.
        let later = now + SESSION + Duration::from_millis(1);
        let b = hb(&mut g, &b, later - Duration::from_millis(5));
        let gone = g.expire(later, &counts);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].id, "a");
        let b = hb(&mut g, &b, later);
        assert_eq!(parts(&b), vec![0, 1, 2, 3]);
        let tp = ("t".to_string(), parts(&a)[0]);
        assert!(matches!(
            g.check_commit("a", a.member_epoch, &tp),
            Err(BrokerError::UnknownMember { .. })
        ));
        assert!(matches!(
            g.heartbeat("a", a.member_epoch, None, None, later, &counts),
            Err(BrokerError::UnknownMember { .. })
        ));
    }

    #[test]
    fn a_member_that_never_releases_is_removed_after_its_rebalance_timeout() {
        let now = Instant::now();
        let mut g = Group::new("g".into());
        let a = join(&mut g, "a", now);
        let _b = join(&mut g, "b", now);
        // a keeps heartbeating but keeps reporting all four partitions as owned.
        let all = a.assignment.clone();
        let mut t = now;
        for _ in 0..40 {
            t += Duration::from_secs(1);
            g.heartbeat("a", g.members["a"].epoch, None, Some(&all), t, &counts)
                .unwrap();
            g.members.get_mut("b").unwrap().last_seen = t;
            if !g.expire(t, &counts).is_empty() {
                break;
            }
        }
        assert!(!g.members.contains_key("a"), "a was removed");
        assert!(t - now > Duration::from_secs(30));
    }

    #[test]
    fn leaving_frees_partitions_at_once_and_unknown_members_are_rejected() {
        let now = Instant::now();
        let mut g = Group::new("g".into());
        let a = join(&mut g, "a", now);
        let b = join(&mut g, "b", now);
        g.leave("a", &counts).unwrap();
        let b = hb(&mut g, &b, now);
        assert_eq!(parts(&b), vec![0, 1, 2, 3]);
        assert!(g.leave("a", &counts).is_err());
        assert!(
            g.check_commit("a", a.member_epoch, &("t".into(), 0))
                .is_err()
        );
        g.leave("b", &counts).unwrap();
        assert_eq!(g.state(), GroupState::Empty);
    }
}
