//! The checker: reads a [`history`](crate::history) and finds what a correct log cannot do,
//! in the spirit of Jepsen's Kafka checker. Every anomaly comes with the events that prove it.
//!
//! - **lost**: an acknowledged value missing from the final read of its partition;
//! - **duplicated**: a value at two offsets;
//! - **inconsistent offset**: two observations (an acknowledgement, a read, the final read)
//!   disagree on the value at an offset;
//! - **order**: one producer's acknowledged values in a partition at offsets out of the order
//!   it sent them;
//! - **phantom**: a value read that was never sent, a failed send's value read, or a value a
//!   consumer read that is missing later (it read a record that was then truncated);
//! - **group**: a committed offset past what the committing member had read (or the group had
//!   committed), or a member's commit accepted for a partition another member had committed
//!   since, without the partition being assigned to it again (commit fencing failed: two
//!   owners at once).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use crate::history::Event;

/// What kind of anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Lost,
    Duplicated,
    InconsistentOffset,
    Order,
    Phantom,
    /// A group member committed past what it (or the group) had read.
    Group,
    /// A member's commit accepted for a partition another member had committed since,
    /// without it being assigned the partition again.
    TwoOwners,
    /// The history cannot be checked fully (no final read of a partition written to).
    Incomplete,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Lost => "lost",
            Kind::Duplicated => "duplicated",
            Kind::InconsistentOffset => "inconsistent offset",
            Kind::Order => "order",
            Kind::Phantom => "phantom",
            Kind::Group => "group",
            Kind::TwoOwners => "two owners",
            Kind::Incomplete => "incomplete",
        })
    }
}

impl std::str::FromStr for Kind {
    type Err = String;

    /// The kind's name with `-` for spaces: `lost`, `two-owners`, ...
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Kind::Lost,
            Kind::Duplicated,
            Kind::InconsistentOffset,
            Kind::Order,
            Kind::Phantom,
            Kind::Group,
            Kind::TwoOwners,
            Kind::Incomplete,
        ]
        .into_iter()
        .find(|k| k.to_string().replace(' ', "-") == s)
        .ok_or_else(|| format!("no anomaly kind {s:?}"))
    }
}

/// One anomaly: what is wrong, and the events (indices into the history) that show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    pub kind: Kind,
    pub message: String,
    pub evidence: Vec<usize>,
    /// The (partition, offset)s it is about: a final read in the evidence is shown only
    /// around them.
    pub focus: Vec<(u32, u64)>,
}

/// Records a final read shows on either side of an offset in focus.
const FINAL_CONTEXT: u64 = 2;

/// One history line; a final read only around `focus`.
fn excerpt(e: &Event, focus: &[(u32, u64)]) -> String {
    match e {
        Event::Final { partition, records } => {
            let near: Vec<(u64, u64)> = records
                .iter()
                .filter(|(o, _)| {
                    focus
                        .iter()
                        .any(|(p, f)| p == partition && o.abs_diff(*f) <= FINAL_CONTEXT)
                })
                .copied()
                .collect();
            let shown = serde_json::to_string(&near).unwrap_or_default();
            format!(
                r#"{{"type":"final","partition":{partition},"records":{shown}}} ({} records; only those near the offsets in question)"#,
                records.len()
            )
        }
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// What the checker found.
#[derive(Debug, Default)]
pub struct Report {
    pub sends: usize,
    pub acknowledged: usize,
    pub failed: usize,
    pub indeterminate: usize,
    pub reads: usize,
    pub commits: usize,
    pub anomalies: Vec<Anomaly>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.anomalies.is_empty()
    }

    /// Anomalies per kind.
    pub fn counts(&self) -> BTreeMap<Kind, usize> {
        let mut out = BTreeMap::new();
        for a in &self.anomalies {
            *out.entry(a.kind).or_default() += 1;
        }
        out
    }

    /// Whether every anomaly is of a kind in `tolerated`.
    pub fn is_clean_but(&self, tolerated: &[Kind]) -> bool {
        self.anomalies.iter().all(|a| tolerated.contains(&a.kind))
    }

    /// The summary, then each anomaly with the history lines that prove it (at most `max`).
    pub fn render(&self, history: &[Event], max: usize) -> String {
        let mut out = format!(
            "sends {} (acknowledged {}, failed {}, indeterminate {}), reads {}, commits {}\n",
            self.sends,
            self.acknowledged,
            self.failed,
            self.indeterminate,
            self.reads,
            self.commits
        );
        if self.is_clean() {
            out.push_str("anomalies: none\n");
            return out;
        }
        let counts: Vec<String> = self
            .counts()
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        out.push_str(&format!("anomalies: {}\n", counts.join(", ")));
        for a in self.anomalies.iter().take(max) {
            out.push_str(&format!("\n{}: {}\n", a.kind, a.message));
            let mut shown = Vec::new();
            for &i in &a.evidence {
                if shown.contains(&i) {
                    continue;
                }
                shown.push(i);
                out.push_str(&format!("  #{i} {}\n", excerpt(&history[i], &a.focus)));
            }
        }
        if self.anomalies.len() > max {
            out.push_str(&format!("\n... and {} more\n", self.anomalies.len() - max));
        }
        out
    }
}

/// How a send ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Pending,
    Acked { offset: u64, at: usize },
    Failed { at: usize },
    Unknown,
}

#[derive(Debug)]
struct Send {
    process: String,
    partition: u32,
    invoked: usize,
    outcome: Outcome,
}

/// One observation of `value` at (partition, offset), by event `at`.
#[derive(Debug, Clone, Copy)]
struct Seen {
    partition: u32,
    offset: u64,
    value: u64,
    at: usize,
}

/// Checks a history.
pub fn check(history: &[Event]) -> Report {
    let mut report = Report::default();
    let mut sends: HashMap<u64, Send> = HashMap::new();
    // Every observation of a value at an offset: acknowledgements, reads, final reads.
    let mut seen: Vec<Seen> = Vec::new();
    // Reads by consumers (not final reads), for phantoms and group checks.
    let mut consumer_reads: Vec<Seen> = Vec::new();
    let mut finals: Finals = HashMap::new();
    let mut group_events: Vec<usize> = Vec::new();
    for (at, e) in history.iter().enumerate() {
        match e {
            Event::Invoke {
                process,
                partition,
                value,
            } => {
                report.sends += 1;
                sends.insert(
                    *value,
                    Send {
                        process: process.clone(),
                        partition: *partition,
                        invoked: at,
                        outcome: Outcome::Pending,
                    },
                );
            }
            Event::Ok {
                partition,
                value,
                offset,
                ..
            } => {
                report.acknowledged += 1;
                if let Some(s) = sends.get_mut(value) {
                    s.outcome = Outcome::Acked {
                        offset: *offset,
                        at,
                    };
                }
                seen.push(Seen {
                    partition: *partition,
                    offset: *offset,
                    value: *value,
                    at,
                });
            }
            Event::Fail { value, .. } => {
                report.failed += 1;
                if let Some(s) = sends.get_mut(value) {
                    s.outcome = Outcome::Failed { at };
                }
            }
            Event::Info { value, .. } => {
                report.indeterminate += 1;
                if let Some(s) = sends.get_mut(value) {
                    s.outcome = Outcome::Unknown;
                }
            }
            Event::Read {
                partition,
                offset,
                value,
                ..
            } => {
                report.reads += 1;
                let s = Seen {
                    partition: *partition,
                    offset: *offset,
                    value: *value,
                    at,
                };
                seen.push(s);
                consumer_reads.push(s);
            }
            Event::Commit { uncertain, .. } => {
                if !uncertain {
                    report.commits += 1;
                }
                group_events.push(at);
            }
            Event::Assigned { .. } => group_events.push(at),
            Event::Final { partition, records } => {
                let entry = finals
                    .entry(*partition)
                    .or_insert_with(|| (at, HashSet::new()));
                entry.0 = at;
                for &(offset, value) in records {
                    entry.1.insert(value);
                    seen.push(Seen {
                        partition: *partition,
                        offset,
                        value,
                        at,
                    });
                }
            }
        }
    }
    let mut anomalies = Vec::new();
    lost(&sends, &finals, &mut anomalies);
    duplicated_and_inconsistent(&seen, &mut anomalies);
    order(&sends, &mut anomalies);
    phantoms(&sends, &seen, &consumer_reads, &finals, &mut anomalies);
    group(history, &group_events, &consumer_reads, &mut anomalies);
    anomalies.sort_by_key(|a| (a.kind, a.evidence.first().copied()));
    report.anomalies = anomalies;
    report
}

/// Each partition's final read: the event, and the values it holds.
type Finals = HashMap<u32, (usize, HashSet<u64>)>;

fn lost(sends: &HashMap<u64, Send>, finals: &Finals, out: &mut Vec<Anomaly>) {
    let mut unchecked: BTreeSet<u32> = BTreeSet::new();
    let mut acked: Vec<(&u64, &Send)> = sends
        .iter()
        .filter(|(_, s)| matches!(s.outcome, Outcome::Acked { .. }))
        .collect();
    acked.sort_by_key(|(_, s)| s.invoked);
    for (value, s) in acked {
        let Outcome::Acked { offset, at } = s.outcome else {
            continue;
        };
        let Some((final_at, _)) = finals.get(&s.partition) else {
            unchecked.insert(s.partition);
            continue;
        };
        if !finals
            .get(&s.partition)
            .is_some_and(|(_, vs)| vs.contains(value))
        {
            out.push(Anomaly {
                kind: Kind::Lost,
                message: format!(
                    "value {value} was acknowledged at partition {} offset {offset} but the final read does not have it",
                    s.partition
                ),
                evidence: vec![s.invoked, at, *final_at],
                focus: vec![(s.partition, offset)],
            });
        }
    }
    for p in unchecked {
        out.push(Anomaly {
            kind: Kind::Incomplete,
            message: format!("partition {p} was written to but never read in full at the end"),
            evidence: Vec::new(),
            focus: Vec::new(),
        });
    }
}

fn duplicated_and_inconsistent(seen: &[Seen], out: &mut Vec<Anomaly>) {
    // value → (partition, offset) → first event seeing it there.
    let mut places: BTreeMap<u64, BTreeMap<(u32, u64), usize>> = BTreeMap::new();
    // (partition, offset) → value → first event seeing it.
    let mut values: BTreeMap<(u32, u64), BTreeMap<u64, usize>> = BTreeMap::new();
    for s in seen {
        places
            .entry(s.value)
            .or_default()
            .entry((s.partition, s.offset))
            .or_insert(s.at);
        values
            .entry((s.partition, s.offset))
            .or_default()
            .entry(s.value)
            .or_insert(s.at);
    }
    for (value, at) in places {
        if at.len() > 1 {
            let where_: Vec<String> = at.keys().map(|(p, o)| format!("{p}/{o}")).collect();
            out.push(Anomaly {
                kind: Kind::Duplicated,
                message: format!(
                    "value {value} is at more than one partition/offset: {}",
                    where_.join(", ")
                ),
                evidence: at.values().copied().collect(),
                focus: at.keys().copied().collect(),
            });
        }
    }
    for ((partition, offset), vs) in values {
        if vs.len() > 1 {
            let list: Vec<String> = vs.keys().map(u64::to_string).collect();
            out.push(Anomaly {
                kind: Kind::InconsistentOffset,
                message: format!(
                    "partition {partition} offset {offset} was seen holding different values: {}",
                    list.join(", ")
                ),
                evidence: vs.values().copied().collect(),
                focus: vec![(partition, offset)],
            });
        }
    }
}

/// An acknowledged send: invoked at, offset, acknowledged at, value.
type AckedSend = (usize, u64, usize, u64);

fn order(sends: &HashMap<u64, Send>, out: &mut Vec<Anomaly>) {
    // (process, partition) → acknowledged sends in the order they were invoked.
    let mut by: BTreeMap<(&str, u32), Vec<AckedSend>> = BTreeMap::new();
    for (value, s) in sends {
        if let Outcome::Acked { offset, at } = s.outcome {
            by.entry((s.process.as_str(), s.partition))
                .or_default()
                .push((s.invoked, offset, at, *value));
        }
    }
    for ((process, partition), mut acked) in by {
        acked.sort_unstable();
        for pair in acked.windows(2) {
            let (a_inv, a_off, a_at, a_val) = pair[0];
            let (b_inv, b_off, b_at, b_val) = pair[1];
            if b_off <= a_off {
                out.push(Anomaly {
                    kind: Kind::Order,
                    message: format!(
                        "{process} sent {a_val} before {b_val} to partition {partition}, but they were acknowledged at offsets {a_off} and {b_off}"
                    ),
                    evidence: vec![a_inv, b_inv, a_at, b_at],
                    focus: vec![(partition, a_off), (partition, b_off)],
                });
            }
        }
    }
}

fn phantoms(
    sends: &HashMap<u64, Send>,
    seen: &[Seen],
    consumer_reads: &[Seen],
    finals: &Finals,
    out: &mut Vec<Anomaly>,
) {
    let mut reported: BTreeSet<u64> = BTreeSet::new();
    for s in seen {
        match sends.get(&s.value) {
            None => {
                if reported.insert(s.value) {
                    out.push(Anomaly {
                        kind: Kind::Phantom,
                        message: format!(
                            "value {} at partition {} offset {} was never sent",
                            s.value, s.partition, s.offset
                        ),
                        evidence: vec![s.at],
                        focus: vec![(s.partition, s.offset)],
                    });
                }
            }
            Some(send) => {
                if let Outcome::Failed { at } = send.outcome
                    && reported.insert(s.value)
                {
                    out.push(Anomaly {
                        kind: Kind::Phantom,
                        message: format!(
                            "value {} failed to send, yet is at partition {} offset {}",
                            s.value, s.partition, s.offset
                        ),
                        evidence: vec![send.invoked, at, s.at],
                        focus: vec![(s.partition, s.offset)],
                    });
                }
            }
        }
    }
    for r in consumer_reads {
        let Some((final_at, _)) = finals.get(&r.partition) else {
            continue;
        };
        let kept = finals
            .get(&r.partition)
            .is_some_and(|(_, vs)| vs.contains(&r.value));
        if !kept && reported.insert(r.value) {
            out.push(Anomaly {
                kind: Kind::Phantom,
                message: format!(
                    "value {} was read at partition {} offset {} but is gone from the final read",
                    r.value, r.partition, r.offset
                ),
                evidence: vec![r.at, *final_at],
                focus: vec![(r.partition, r.offset)],
            });
        }
    }
}

fn group(history: &[Event], events: &[usize], reads: &[Seen], out: &mut Vec<Anomaly>) {
    // (member, partition) → the next offset after what it has read so far, kept up to date
    // as the events are walked in order (reads and events are both in history order).
    let mut read_to: HashMap<(&str, u32), u64> = HashMap::new();
    let mut next_read = 0;
    // (group, partition) → highest offset committed so far.
    let mut committed: HashMap<(&str, u32), u64> = HashMap::new();
    // (group, partition) → the last member whose commit was accepted, and that event.
    let mut last_committer: HashMap<(&str, u32), (&str, usize)> = HashMap::new();
    // (group, member id, partition) → the member epoch of the member's last accepted commit,
    // and that event.
    let mut commit_epoch: HashMap<(&str, &str, u32), (i64, usize)> = HashMap::new();
    // (group, member, partition) → when it was last assigned the partition.
    let mut assigned_at: HashMap<(&str, &str, u32), usize> = HashMap::new();
    for &at in events {
        while let Some(r) = reads.get(next_read).filter(|r| r.at < at) {
            if let Event::Read { process, .. } = &history[r.at] {
                let e = read_to.entry((process.as_str(), r.partition)).or_insert(0);
                *e = (*e).max(r.offset + 1);
            }
            next_read += 1;
        }
        match &history[at] {
            Event::Assigned {
                process,
                group,
                partitions,
                ..
            } => {
                for p in partitions {
                    assigned_at.insert((group.as_str(), process.as_str(), *p), at);
                }
            }
            Event::Commit {
                process,
                group,
                partition,
                offset,
                membership,
                uncertain,
            } => {
                // A commit whose outcome is unknown may have moved the group's offset, from
                // which another member may start: nothing more is known of it.
                if *uncertain {
                    let c = committed.entry((group.as_str(), *partition)).or_insert(0);
                    *c = (*c).max(*offset);
                    continue;
                }
                // The next offset after what this member read of the partition before
                // committing.
                let read_up_to = read_to.get(&(process.as_str(), *partition)).copied();
                let key = (group.as_str(), *partition);
                let before = committed.get(&key).copied();
                let allowed = read_up_to.into_iter().chain(before).max().unwrap_or(0);
                if *offset > allowed {
                    out.push(Anomaly {
                        kind: Kind::Group,
                        message: format!(
                            "{process} committed offset {offset} of partition {partition} for group {group} having read only up to {allowed}"
                        ),
                        evidence: vec![at],
                        focus: vec![(*partition, *offset)],
                    });
                }
                let c = committed.entry(key).or_insert(0);
                *c = (*c).max(*offset);
                // Who committed: the member id when known (a process that rejoined the group is
                // a new member), else the process.
                let who = membership
                    .as_ref()
                    .map_or(process.as_str(), |(m, _)| m.as_str());
                if let Some((other, other_at)) = last_committer.get(&key).copied()
                    && other != who
                {
                    // With the membership known, commit fencing decides exactly: this member
                    // committed the partition before, under this same epoch, so it held the
                    // partition all along while another member's commit of it was accepted.
                    // Without it, the recorded assignments decide.
                    let still_owner = match membership {
                        Some((member, epoch)) => commit_epoch
                            .get(&(group.as_str(), member.as_str(), *partition))
                            .filter(|(e, _)| e == epoch)
                            .map(|(_, own_at)| vec![*own_at, other_at, at]),
                        None => assigned_at
                            .get(&(group.as_str(), process.as_str(), *partition))
                            .is_none_or(|a| *a <= other_at)
                            .then(|| vec![other_at, at]),
                    };
                    if let Some(evidence) = still_owner {
                        out.push(Anomaly {
                            kind: Kind::TwoOwners,
                            message: format!(
                                "{process} committed partition {partition} for group {group} after {other} had, without being assigned it again: two owners at once"
                            ),
                            evidence,
                            focus: vec![(*partition, *offset)],
                        });
                    }
                }
                last_committer.insert(key, (who, at));
                if let Some((member, epoch)) = membership {
                    commit_epoch
                        .insert((group.as_str(), member.as_str(), *partition), (*epoch, at));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
