use super::*;

fn invoke(p: &str, partition: u32, value: u64) -> Event {
    Event::Invoke {
        process: p.into(),
        partition,
        value,
    }
}

fn ok(p: &str, partition: u32, value: u64, offset: u64) -> Event {
    Event::Ok {
        process: p.into(),
        partition,
        value,
        offset,
    }
}

fn read(p: &str, partition: u32, offset: u64, value: u64) -> Event {
    Event::Read {
        process: p.into(),
        partition,
        offset,
        value,
    }
}

fn commit(p: &str, partition: u32, offset: u64) -> Event {
    Event::Commit {
        process: p.into(),
        group: "g".into(),
        partition,
        offset,
        membership: None,
        uncertain: false,
    }
}

/// A commit accepted under member id `member` at `epoch`.
fn commit_as(p: &str, member: &str, epoch: i64, partition: u32, offset: u64) -> Event {
    Event::Commit {
        process: p.into(),
        group: "g".into(),
        partition,
        offset,
        membership: Some((member.into(), epoch)),
        uncertain: false,
    }
}

fn assigned(p: &str, partitions: &[u32]) -> Event {
    Event::Assigned {
        process: p.into(),
        group: "g".into(),
        partitions: partitions.to_vec(),
        membership: None,
    }
}

fn fin(partition: u32, records: &[(u64, u64)]) -> Event {
    Event::Final {
        partition,
        records: records.to_vec(),
    }
}

/// Two producers, a reader, a committing member, an indeterminate send that was written and
/// one that was not: nothing wrong.
fn clean() -> Vec<Event> {
    vec![
        invoke("p0", 0, 1),
        invoke("p1", 0, 2),
        ok("p0", 0, 1, 0),
        invoke("p0", 0, 3),
        ok("p1", 0, 2, 1),
        Event::Info {
            process: "p0".into(),
            partition: 0,
            value: 3,
            error: "timeout".into(),
        },
        invoke("p1", 0, 4),
        Event::Info {
            process: "p1".into(),
            partition: 0,
            value: 4,
            error: "connection lost".into(),
        },
        invoke("p1", 0, 5),
        Event::Fail {
            process: "p1".into(),
            partition: 0,
            value: 5,
            error: "record too large".into(),
        },
        assigned("c0", &[0]),
        read("c0", 0, 0, 1),
        read("c0", 0, 1, 2),
        commit("c0", 0, 2),
        read("c0", 0, 2, 3),
        commit("c0", 0, 3),
        // The partition moves to c1, which commits where the group was, unread.
        assigned("c1", &[0]),
        commit("c1", 0, 3),
        // And back to c0.
        assigned("c0", &[0]),
        commit("c0", 0, 3),
        fin(0, &[(0, 1), (1, 2), (2, 3)]),
    ]
}

fn kinds(h: &[Event]) -> Vec<Kind> {
    check(h).anomalies.iter().map(|a| a.kind).collect()
}

#[test]
fn a_clean_history_passes() {
    let h = clean();
    let r = check(&h);
    assert!(r.is_clean(), "{}", r.render(&h, 10));
    assert_eq!(
        (
            r.sends,
            r.acknowledged,
            r.failed,
            r.indeterminate,
            r.reads,
            r.commits
        ),
        (5, 2, 1, 2, 3, 4)
    );
    assert!(r.render(&h, 10).ends_with("anomalies: none\n"));
}

#[test]
fn an_acknowledged_value_missing_at_the_end_is_lost() {
    let mut h = clean();
    let last = h.len() - 1;
    h[last] = fin(0, &[(0, 1), (1, 3)]);
    let r = check(&h);
    assert!(
        r.anomalies
            .iter()
            .any(|a| a.kind == Kind::Lost && a.message.contains("value 2 was acknowledged"))
    );
    // The proof names the send, its acknowledgement and the final read.
    let lost = r.anomalies.iter().find(|a| a.kind == Kind::Lost).unwrap();
    assert_eq!(lost.evidence, vec![1, 4, last]);
    let text = r.render(&h, 10);
    assert!(text.contains("lost: value 2"), "{text}");
    assert!(
        text.contains(r#""records":[[0,1],[1,3]]} (2 records; only those near"#),
        "{text}"
    );
    assert!(
        text.contains(r#"#4 {"type":"ok","process":"p1","partition":0,"value":2,"offset":1}"#),
        "{text}"
    );
}

#[test]
fn a_value_at_two_offsets_is_duplicated() {
    let mut h = clean();
    let last = h.len() - 1;
    h[last] = fin(0, &[(0, 1), (1, 2), (2, 3), (3, 2)]);
    assert!(kinds(&h).contains(&Kind::Duplicated));
}

#[test]
fn two_values_at_one_offset_are_inconsistent() {
    let mut h = clean();
    // A reader saw value 3 at offset 1, where the acknowledgement put value 2.
    h.insert(13, read("c9", 0, 1, 3));
    assert!(kinds(&h).contains(&Kind::InconsistentOffset));
}

#[test]
fn one_producers_values_acknowledged_out_of_order_are_an_order_anomaly() {
    let h = vec![
        invoke("p0", 0, 1),
        invoke("p0", 0, 2),
        ok("p0", 0, 2, 0),
        ok("p0", 0, 1, 1),
        fin(0, &[(0, 2), (1, 1)]),
    ];
    assert_eq!(kinds(&h), vec![Kind::Order]);
    // Different producers may interleave either way.
    let h = vec![
        invoke("p0", 0, 1),
        invoke("p1", 0, 2),
        ok("p1", 0, 2, 0),
        ok("p0", 0, 1, 1),
        fin(0, &[(0, 2), (1, 1)]),
    ];
    assert_eq!(kinds(&h), vec![]);
}

#[test]
fn values_never_sent_failed_or_read_then_gone_are_phantoms() {
    // Never sent.
    let mut h = clean();
    let last = h.len() - 1;
    h[last] = fin(0, &[(0, 1), (1, 2), (2, 3), (3, 99)]);
    assert_eq!(kinds(&h), vec![Kind::Phantom]);
    // A failed send's value.
    let mut h = clean();
    h[last] = fin(0, &[(0, 1), (1, 2), (2, 3), (3, 5)]);
    assert_eq!(kinds(&h), vec![Kind::Phantom]);
    // Read (the indeterminate value 4), then truncated away.
    let mut h = clean();
    h.insert(15, read("c0", 0, 3, 4));
    let k = kinds(&h);
    assert!(k.contains(&Kind::Phantom), "{k:?}");
}

#[test]
fn commits_past_what_was_read_or_by_two_owners_are_anomalies() {
    // c0 commits offset 5 having read up to offset 1.
    let mut h = clean();
    assert_eq!(h[13], commit("c0", 0, 2));
    h[13] = commit("c0", 0, 5);
    assert!(kinds(&h).contains(&Kind::Group));
    // c0 commits again after c1 took the partition over, without getting it back: both
    // owned it at once.
    let mut h = clean();
    assert_eq!(h[18], assigned("c0", &[0]));
    h.remove(18);
    let r = check(&h);
    assert_eq!(r.anomalies.len(), 1, "{:?}", r.anomalies);
    assert!(
        r.anomalies[0].message.contains("two owners at once"),
        "{:?}",
        r.anomalies
    );
    assert_eq!(r.anomalies[0].kind, Kind::TwoOwners);
    assert!(!r.is_clean() && r.is_clean_but(&[Kind::TwoOwners]));
    assert!(!r.is_clean_but(&[Kind::Group]));
}

#[test]
fn with_member_epochs_two_owners_are_decided_by_commit_fencing() {
    // Reads that back every commit below, then a commits at epoch 3, b (another member)
    // commits, and a commits again as `member` at `epoch`.
    let history = |member: &str, epoch: i64| {
        vec![
            read("c0", 0, 0, 1),
            read("c0", 0, 1, 2),
            read("c1", 0, 0, 1),
            read("c1", 0, 1, 2),
            commit_as("c0", "a", 3, 0, 1),
            commit_as("c1", "b", 5, 0, 2),
            commit_as("c0", member, epoch, 0, 2),
        ]
    };
    let owners = |h: &[Event]| -> Vec<Anomaly> {
        check(h)
            .anomalies
            .into_iter()
            .filter(|a| a.kind == Kind::TwoOwners)
            .collect()
    };
    // a still at epoch 3: it held the partition throughout.
    let found = owners(&history("a", 3));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].evidence, vec![4, 5, 6]);
    // a's epoch moved in between (its assignment changed: it gave the partition up and got
    // it back), even though no assignment was recorded: no anomaly.
    assert!(owners(&history("a", 7)).is_empty());
    // One process that rejoined the group as a new member (c0 as a, then as c) is two
    // members: c's commit after b's is no anomaly, nor is a's before.
    assert!(owners(&history("c", 1)).is_empty());
}

#[test]
fn a_partition_written_but_never_read_at_the_end_cannot_be_checked() {
    let h = vec![invoke("p0", 3, 1), ok("p0", 3, 1, 0)];
    assert_eq!(kinds(&h), vec![Kind::Incomplete]);
}

#[test]
fn a_member_may_commit_from_where_an_uncertain_commit_of_another_left_the_group() {
    // c1 read up to offset 1 and committed 2, but got no answer; c0, given the partition,
    // starts from the group's committed offset 2 and commits it without reading anything.
    let mut h = vec![
        read("c1", 0, 0, 1),
        read("c1", 0, 1, 2),
        Event::Commit {
            process: "c1".into(),
            group: "g".into(),
            partition: 0,
            offset: 2,
            membership: None,
            uncertain: true,
        },
        commit_as("c0", "a", 1, 0, 2),
    ];
    assert!(
        !kinds(&h).contains(&Kind::Group),
        "{:?}",
        check(&h).anomalies
    );
    assert_eq!(check(&h).commits, 1, "only answered commits count");
    // Without it, the commit is past anything read.
    h.remove(2);
    assert!(kinds(&h).contains(&Kind::Group));
}
