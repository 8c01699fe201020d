//! Kafka's classic group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) for the
//! Kafka listener's consumers: one group's membership (pure: no I/O, time passed in).
//!
//! Unlike Weir's own groups (`state`), the broker does not assign: members join, the group
//! waits until every known member has joined (or the rebalance timeout drops those that did
//! not), starts a new *generation*, picks a protocol (assignor) every member supports, and
//! makes one member the leader; the leader computes the assignment (range, roundrobin,
//! cooperative-sticky: the client's own code) and hands it over in its SyncGroup, which the
//! group passes to each member. Assignments are opaque bytes here; the edge also hands in
//! the partitions they name, for `weir group describe`.
//!
//! States as Kafka names them: Empty → PreparingRebalance → CompletingRebalance → Stable.
//! Waiting (a JoinGroup until the rebalance completes, a SyncGroup until the leader's) is the
//! caller's: it asks [`Classic::join_result`] / [`Classic::sync_result`] again whenever the
//! group changes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::state::TopicPartition;
use crate::error::BrokerError;

/// A member's JoinGroup.
#[derive(Debug, Clone)]
pub struct ClassicJoin {
    pub group: String,
    /// Empty: a new member.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    /// `consumer` for consumers.
    pub protocol_type: String,
    /// Assignor names with the member's metadata for each, in its order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// The topics the member subscribes to (decoded from its metadata by the edge; shown by
    /// `weir group describe`).
    pub topics: BTreeSet<String>,
}

/// What a JoinGroup is answered with once its rebalance completed.
#[derive(Debug, Clone)]
pub struct JoinResult {
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: String,
    pub leader: String,
    pub member_id: String,
    /// The leader's answer: every member with its instance id and its metadata for the
    /// chosen protocol; empty for the others.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

/// One member's assignment, as the leader's SyncGroup gives it.
#[derive(Debug, Clone)]
pub struct ClassicAssignment {
    pub member_id: String,
    pub bytes: Bytes,
    /// The partitions `bytes` names (for views).
    pub partitions: BTreeSet<TopicPartition>,
}

/// Kafka's names for a classic group's states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Empty,
    PreparingRebalance {
        /// Members that have not joined by then are removed.
        deadline: Instant,
    },
    CompletingRebalance,
    Stable,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Empty => "Empty",
            Phase::PreparingRebalance { .. } => "PreparingRebalance",
            Phase::CompletingRebalance => "CompletingRebalance",
            Phase::Stable => "Stable",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ClassicMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<(String, Bytes)>,
    pub topics: BTreeSet<String>,
    pub last_seen: Instant,
    /// Joined in the rebalance under way.
    joined: bool,
    pub assignment: Bytes,
    pub assigned: BTreeSet<TopicPartition>,
}

impl ClassicMember {
    /// Its metadata for `protocol`.
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(p, _)| p == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// One group's classic membership.
#[derive(Debug, Clone)]
pub struct Classic {
    group: String,
    pub phase: Phase,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    members: BTreeMap<String, ClassicMember>,
}

impl Classic {
    pub fn new(group: String) -> Self {
        Self {
            group,
            phase: Phase::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
        }
    }

    pub fn has_members(&self) -> bool {
        !self.members.is_empty()
    }

    pub fn members(&self) -> impl Iterator<Item = &ClassicMember> {
        self.members.values()
    }

    /// The member whose assignment holds `tp`, if any.
    pub fn holder(&self, tp: &TopicPartition) -> Option<&ClassicMember> {
        self.members.values().find(|m| m.assigned.contains(tp))
    }

    fn unknown(&self, id: &str) -> BrokerError {
        BrokerError::UnknownMember {
            group: self.group.clone(),
            member: id.to_string(),
        }
    }

    fn inconsistent(&self, why: String) -> BrokerError {
        BrokerError::InconsistentGroupProtocol {
            group: self.group.clone(),
            why,
        }
    }

    /// The protocols every member (but `skip`, and with `extra`) supports, in the first
    /// member's order.
    fn common_protocols(&self, skip: &str, extra: Option<&[(String, Bytes)]>) -> Vec<String> {
        let mut lists = self
            .members
            .values()
            .filter(|m| m.id != skip)
            .map(|m| m.protocols.as_slice())
            .chain(extra);
        let Some(first) = lists.next() else {
            return Vec::new();
        };
        let rest: Vec<&[(String, Bytes)]> = lists.collect();
        first
            .iter()
            .map(|(p, _)| p.clone())
            .filter(|p| rest.iter().all(|l| l.iter().any(|(q, _)| q == p)))
            .collect()
    }

    /// Adds member `new_id` (for an empty member id) or rejoins a known one; starts a
    /// rebalance unless one is under way. Returns the member's id and the generation its
    /// answer must be newer than.
    pub fn join(
        &mut self,
        new_id: String,
        join: ClassicJoin,
        now: Instant,
    ) -> Result<(String, i32), BrokerError> {
        if join.protocols.is_empty() {
            return Err(BrokerError::InvalidArgument(
                "a member must name at least one protocol (assignor)".into(),
            ));
        }
        if self.has_members() {
            if self.protocol_type.as_deref() != Some(join.protocol_type.as_str()) {
                return Err(self.inconsistent(format!(
                    "its members use protocol type {:?}, not {:?}",
                    self.protocol_type.as_deref().unwrap_or(""),
                    join.protocol_type
                )));
            }
            let others: Vec<_> = self
                .members
                .values()
                .filter(|m| m.id != join.member_id)
                .collect();
            if !others.is_empty()
                && self
                    .common_protocols(&join.member_id, Some(&join.protocols))
                    .is_empty()
            {
                return Err(self.inconsistent(format!(
                    "no assignor is shared with its members (it offers {:?})",
                    join.protocols.iter().map(|(p, _)| p).collect::<Vec<_>>()
                )));
            }
        }
        let id = if join.member_id.is_empty() {
            new_id
        } else if self.members.contains_key(&join.member_id) {
            join.member_id.clone()
        } else {
            return Err(self.unknown(&join.member_id));
        };
        self.protocol_type = Some(join.protocol_type);
        let previous = self.members.remove(&id);
        self.members.insert(
            id.clone(),
            ClassicMember {
                id: id.clone(),
                instance_id: join.group_instance_id,
                client_id: join.client_id,
                client_host: join.client_host,
                session_timeout: join.session_timeout,
                rebalance_timeout: join.rebalance_timeout,
                protocols: join.protocols,
                topics: join.topics,
                last_seen: now,
                joined: false,
                assignment: previous
                    .as_ref()
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default(),
                assigned: previous.map(|m| m.assigned).unwrap_or_default(),
            },
        );
        if !matches!(self.phase, Phase::PreparingRebalance { .. }) {
            self.start_rebalance(now);
        }
        if let Some(m) = self.members.get_mut(&id) {
            m.joined = true;
        }
        let waits_for = self.generation;
        self.try_complete();
        Ok((id, waits_for))
    }

    /// Every member must join again, within the longest rebalance timeout.
    fn start_rebalance(&mut self, now: Instant) {
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.phase = Phase::PreparingRebalance {
            deadline: now + timeout,
        };
        for m in self.members.values_mut() {
            m.joined = false;
        }
    }

    /// Completes the rebalance once every member joined: a new generation, its protocol and
    /// leader.
    fn try_complete(&mut self) {
        if !matches!(self.phase, Phase::PreparingRebalance { .. }) {
            return;
        }
        if !self.members.values().all(|m| m.joined) {
            return;
        }
        self.generation += 1;
        if self.members.is_empty() {
            self.phase = Phase::Empty;
            self.protocol = None;
            self.protocol_type = None;
            self.leader = None;
            return;
        }
        // Each member votes for the first protocol it lists that all support (Kafka's rule).
        let common = self.common_protocols("", None);
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((p, _)) = m.protocols.iter().find(|(p, _)| common.contains(p)) {
                *votes.entry(p.as_str()).or_default() += 1;
            }
        }
        let mut chosen = common.first().cloned();
        let mut best = 0;
        for p in &common {
            let n = votes.get(p.as_str()).copied().unwrap_or(0);
            if n > best {
                best = n;
                chosen = Some(p.clone());
            }
        }
        self.protocol = chosen;
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.phase = Phase::CompletingRebalance;
    }

    /// The answer to member `id`'s JoinGroup that waits for a generation newer than
    /// `waits_for`: `None` while the rebalance is under way.
    pub fn join_result(&self, id: &str, waits_for: i32) -> Option<Result<JoinResult, BrokerError>> {
        let Some(me) = self.members.get(id) else {
            return Some(Err(self.unknown(id)));
        };
        if self.generation <= waits_for {
            return None;
        }
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == me.id {
            self.members
                .values()
                .map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata(&protocol)))
                .collect()
        } else {
            Vec::new()
        };
        Some(Ok(JoinResult {
            generation: self.generation,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol,
            leader,
            member_id: me.id.clone(),
            members,
        }))
    }

    fn check_member(&self, id: &str, generation: i32) -> Result<(), BrokerError> {
        if !self.members.contains_key(id) {
            return Err(self.unknown(id));
        }
        if generation != self.generation {
            return Err(BrokerError::IllegalGeneration {
                group: self.group.clone(),
                member: id.to_string(),
                generation,
                current: self.generation,
            });
        }
        Ok(())
    }

    fn rebalancing(&self) -> BrokerError {
        BrokerError::RebalanceInProgress {
            group: self.group.clone(),
        }
    }

    /// Member `id`'s SyncGroup; the leader's carries every member's assignment, and makes the
    /// group stable.
    pub fn sync(
        &mut self,
        id: &str,
        generation: i32,
        assignments: Vec<ClassicAssignment>,
        now: Instant,
    ) -> Result<(), BrokerError> {
        self.check_member(id, generation)?;
        if let Some(m) = self.members.get_mut(id) {
            m.last_seen = now;
        }
        match self.phase {
            Phase::PreparingRebalance { .. } | Phase::Empty => Err(self.rebalancing()),
            Phase::Stable => Ok(()),
            Phase::CompletingRebalance => {
                if self.leader.as_deref() == Some(id) {
                    for m in self.members.values_mut() {
                        m.assignment = Bytes::new();
                        m.assigned.clear();
                    }
                    for a in assignments {
                        if let Some(m) = self.members.get_mut(&a.member_id) {
                            m.assignment = a.bytes;
                            m.assigned = a.partitions;
                        }
                    }
                    self.phase = Phase::Stable;
                }
                Ok(())
            }
        }
    }

    /// The answer to member `id`'s SyncGroup of `generation`: `None` until the leader's came.
    pub fn sync_result(&self, id: &str, generation: i32) -> Option<Result<Bytes, BrokerError>> {
        let Some(m) = self.members.get(id) else {
            return Some(Err(self.unknown(id)));
        };
        if generation != self.generation {
            return Some(Err(self.rebalancing()));
        }
        match self.phase {
            Phase::Stable => Some(Ok(m.assignment.clone())),
            Phase::CompletingRebalance => None,
            Phase::PreparingRebalance { .. } | Phase::Empty => Some(Err(self.rebalancing())),
        }
    }

    /// A Heartbeat: the member is alive; it learns of a rebalance here.
    pub fn heartbeat(
        &mut self,
        id: &str,
        generation: i32,
        now: Instant,
    ) -> Result<(), BrokerError> {
        match self.members.get_mut(id) {
            Some(m) => m.last_seen = now,
            None => return Err(self.unknown(id)),
        }
        if let Phase::PreparingRebalance { .. } = self.phase {
            return Err(self.rebalancing());
        }
        self.check_member(id, generation)
    }

    /// Member `id` leaves: the others rebalance.
    pub fn leave(&mut self, id: &str, now: Instant) -> Result<(), BrokerError> {
        if self.members.remove(id).is_none() {
            return Err(self.unknown(id));
        }
        self.after_removal(now);
        Ok(())
    }

    fn after_removal(&mut self, now: Instant) {
        if self.members.is_empty() {
            self.phase = Phase::PreparingRebalance { deadline: now };
            self.try_complete();
            return;
        }
        if !matches!(self.phase, Phase::PreparingRebalance { .. }) {
            self.start_rebalance(now);
        }
        self.try_complete();
    }

    /// Removes members that did not join a rebalance by its deadline, and members not heard
    /// from within their session timeout (but those waiting for a rebalance they joined).
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let late = matches!(self.phase, Phase::PreparingRebalance { deadline } if now >= deadline);
        let rebalancing = matches!(self.phase, Phase::PreparingRebalance { .. });
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                (late && !m.joined)
                    || (!(rebalancing && m.joined)
                        && now.saturating_duration_since(m.last_seen) > m.session_timeout)
            })
            .map(|m| m.id.clone())
            .collect();
        for id in &gone {
            self.members.remove(id);
        }
        if !gone.is_empty() {
            self.after_removal(now);
        }
        gone
    }

    /// Whether member `id` of `generation` may commit offsets now (Kafka's rules: the
    /// current generation, and not while the leader's assignment is awaited).
    pub fn check_commit(&self, id: &str, generation: i32) -> Result<(), BrokerError> {
        self.check_member(id, generation)?;
        if self.phase == Phase::CompletingRebalance {
            return Err(self.rebalancing());
        }
        Ok(())
    }

    /// Whether `id` is one of this group's classic members.
    pub fn is_member(&self, id: &str) -> bool {
        self.members.contains_key(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(member: &str, protocols: &[&str]) -> ClassicJoin {
        ClassicJoin {
            group: "g".into(),
            member_id: member.into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::from(format!("meta-{p}"))))
                .collect(),
            topics: BTreeSet::from(["t".to_string()]),
        }
    }

    fn assignment(member: &str, partitions: &[u32]) -> ClassicAssignment {
        ClassicAssignment {
            member_id: member.into(),
            bytes: Bytes::from(format!("{member}:{partitions:?}")),
            partitions: partitions.iter().map(|p| ("t".to_string(), *p)).collect(),
        }
    }

    #[test]
    fn a_lone_member_joins_syncs_and_is_stable() {
        let now = Instant::now();
        let mut g = Classic::new("g".into());
        let (id, waits) = g.join("a".into(), join("", &["range"]), now).unwrap();
        let r = g.join_result(&id, waits).unwrap().unwrap();
        assert_eq!(
            (r.generation, r.leader.as_str(), r.protocol.as_str()),
            (1, "a", "range")
        );
        assert_eq!(r.members.len(), 1);
        assert_eq!(&r.members[0].2[..], b"meta-range");
        assert!(
            g.sync_result("a", 1).is_none(),
            "waits for the leader's assignment"
        );
        g.sync("a", 1, vec![assignment("a", &[0, 1])], now).unwrap();
        assert_eq!(&g.sync_result("a", 1).unwrap().unwrap()[..], b"a:[0, 1]");
        assert_eq!(g.phase, Phase::Stable);
        g.heartbeat("a", 1, now).unwrap();
        g.check_commit("a", 1).unwrap();
        assert!(matches!(
            g.check_commit("a", 0),
            Err(BrokerError::IllegalGeneration { .. })
        ));
    }

    #[test]
    fn a_second_member_rebalances_the_group_and_the_first_rejoins() {
        let now = Instant::now();
        let mut g = Classic::new("g".into());
        let (a, _) = g
            .join("a".into(), join("", &["cooperative-sticky", "range"]), now)
            .unwrap();
        g.sync(&a, 1, vec![assignment("a", &[0, 1])], now).unwrap();
        let (b, waits_b) = g.join("b".into(), join("", &["range"]), now).unwrap();
        assert!(g.join_result(&b, waits_b).is_none(), "a has not rejoined");
        assert!(matches!(
            g.heartbeat(&a, 1, now),
            Err(BrokerError::RebalanceInProgress { .. })
        ));
        // Commits of the current generation still go through while members rejoin.
        g.check_commit(&a, 1).unwrap();
        let (_, waits_a) = g
            .join("x".into(), join(&a, &["cooperative-sticky", "range"]), now)
            .unwrap();
        let ra = g.join_result(&a, waits_a).unwrap().unwrap();
        let rb = g.join_result(&b, waits_b).unwrap().unwrap();
        assert_eq!(ra.generation, 2);
        assert_eq!(ra.protocol, "range", "the one protocol both support");
        assert_eq!(ra.leader, "a", "the leader stays");
        assert_eq!(ra.members.len(), 2);
        assert!(rb.members.is_empty());
        assert!(matches!(
            g.check_commit(&a, 2),
            Err(BrokerError::RebalanceInProgress { .. })
        ));
        g.sync(&b, 2, vec![], now).unwrap();
        assert!(g.sync_result(&b, 2).is_none());
        g.sync(
            &a,
            2,
            vec![assignment("a", &[0]), assignment("b", &[1])],
            now,
        )
        .unwrap();
        assert_eq!(&g.sync_result(&b, 2).unwrap().unwrap()[..], b"b:[1]");
        assert_eq!(g.holder(&("t".into(), 1)).map(|m| m.id.as_str()), Some("b"));
    }

    #[test]
    fn late_and_silent_members_are_removed_and_the_rest_go_on() {
        let now = Instant::now();
        let mut g = Classic::new("g".into());
        let (a, _) = g.join("a".into(), join("", &["range"]), now).unwrap();
        g.sync(&a, 1, vec![assignment("a", &[0])], now).unwrap();
        let (b, waits_b) = g.join("b".into(), join("", &["range"]), now).unwrap();
        // a never rejoins: dropped at the rebalance deadline, and b's join completes.
        assert!(g.expire(now + Duration::from_secs(5)).is_empty());
        assert_eq!(g.expire(now + Duration::from_secs(31)), vec![a.clone()]);
        let rb = g.join_result(&b, waits_b).unwrap().unwrap();
        assert_eq!((rb.generation, rb.leader.as_str()), (2, "b"));
        g.sync(&b, 2, vec![assignment("b", &[0])], now).unwrap();
        // b falls silent past its session timeout: the group is empty.
        let later = now + Duration::from_secs(60);
        assert_eq!(g.expire(later), vec![b.clone()]);
        assert_eq!(g.phase, Phase::Empty);
        assert!(!g.has_members());
        assert!(matches!(
            g.heartbeat(&b, 2, later),
            Err(BrokerError::UnknownMember { .. })
        ));
    }

    #[test]
    fn a_member_that_shares_no_protocol_or_type_is_refused() {
        let now = Instant::now();
        let mut g = Classic::new("g".into());
        g.join("a".into(), join("", &["range"]), now).unwrap();
        assert!(matches!(
            g.join("b".into(), join("", &["roundrobin"]), now),
            Err(BrokerError::InconsistentGroupProtocol { .. })
        ));
        let mut other = join("", &["range"]);
        other.protocol_type = "connect".into();
        assert!(matches!(
            g.join("b".into(), other, now),
            Err(BrokerError::InconsistentGroupProtocol { .. })
        ));
        assert!(matches!(
            g.join("b".into(), join("nobody", &["range"]), now),
            Err(BrokerError::UnknownMember { .. })
        ));
    }

    #[test]
    fn leaving_rebalances_the_others_and_the_last_one_empties_the_group() {
        let now = Instant::now();
        let mut g = Classic::new("g".into());
        let (a, _) = g.join("a".into(), join("", &["range"]), now).unwrap();
        let (b, wb) = g.join("b".into(), join("", &["range"]), now).unwrap();
        let (_, wa) = g.join("x".into(), join(&a, &["range"]), now).unwrap();
        assert!(g.join_result(&b, wb).is_some() && g.join_result(&a, wa).is_some());
        g.sync(
            &a,
            2,
            vec![assignment("a", &[0]), assignment("b", &[1])],
            now,
        )
        .unwrap();
        g.leave(&a, now).unwrap();
        assert!(matches!(g.phase, Phase::PreparingRebalance { .. }));
        let (_, wb) = g.join("x".into(), join(&b, &["range"]), now).unwrap();
        let rb = g.join_result(&b, wb).unwrap().unwrap();
        assert_eq!((rb.generation, rb.leader.as_str()), (3, "b"));
        g.leave(&b, now).unwrap();
        assert_eq!(g.phase, Phase::Empty);
        assert!(matches!(
            g.leave(&b, now),
            Err(BrokerError::UnknownMember { .. })
        ));
    }
}
