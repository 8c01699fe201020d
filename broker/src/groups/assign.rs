//! Partition assignment for a consumer group: balanced and sticky.
//!
//! Each topic's partitions are spread over the members subscribed to it so that member counts
//! differ by at most one; within that, a member keeps the partitions it already owned (a
//! member joining or leaving moves only the partitions it must). Pure logic: the coordinator
//! calls it on every membership change.

use std::collections::{BTreeMap, HashMap};

/// A member id as the coordinator hands them out.
pub type MemberId = String;

/// Assigns `partitions` partitions of one topic to `members` (the members subscribed to it),
/// given who owned what before (`previous[p]`). Returns each member's partitions, sorted.
/// Every partition goes to exactly one member; no member gets more than one partition more
/// than another. With no members, nothing is assigned.
pub fn assign_topic(
    partitions: u32,
    members: &[MemberId],
    previous: &HashMap<u32, MemberId>,
) -> BTreeMap<MemberId, Vec<u32>> {
    let mut out: BTreeMap<MemberId, Vec<u32>> =
        members.iter().map(|m| (m.clone(), Vec::new())).collect();
    if members.is_empty() {
        return out;
    }
    let n = partitions as usize;
    let base = n / members.len();
    let extra = n % members.len();
    // What each live member owned before, in partition order.
    let mut owned: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for p in 0..partitions {
        if let Some(m) = previous.get(&p)
            && out.contains_key(m)
        {
            owned.entry(m.as_str()).or_default().push(p);
        }
    }
    // The `extra` bigger quotas go to the members that already own the most, so fewer
    // partitions move; ties by id keep the result deterministic.
    let mut order: Vec<&MemberId> = members.iter().collect();
    order.sort_by(|a, b| {
        let (ca, cb) = (owned.get(a.as_str()), owned.get(b.as_str()));
        let (ca, cb) = (ca.map_or(0, Vec::len), cb.map_or(0, Vec::len));
        cb.cmp(&ca).then_with(|| a.cmp(b))
    });
    let quota: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), base + usize::from(i < extra)))
        .collect();
    let mut taken = vec![false; n];
    for (m, ps) in &owned {
        let keep = &ps[..ps.len().min(quota[m])];
        for &p in keep {
            taken[p as usize] = true;
        }
        if let Some(v) = out.get_mut(*m) {
            v.extend_from_slice(keep);
        }
    }
    let mut free = (0..partitions).filter(|p| !taken[*p as usize]);
    for m in &order {
        let want = quota[m.as_str()];
        if let Some(v) = out.get_mut(m.as_str()) {
            while v.len() < want {
                match free.next() {
                    Some(p) => v.push(p),
                    None => break,
                }
            }
            v.sort_unstable();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<MemberId> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn owners(a: &BTreeMap<MemberId, Vec<u32>>) -> HashMap<u32, MemberId> {
        a.iter()
            .flat_map(|(m, ps)| ps.iter().map(move |p| (*p, m.clone())))
            .collect()
    }

    fn check_complete_and_balanced(a: &BTreeMap<MemberId, Vec<u32>>, partitions: u32) {
        let mut all: Vec<u32> = a.values().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..partitions).collect::<Vec<_>>(), "{a:?}");
        let sizes: Vec<usize> = a.values().map(Vec::len).collect();
        let (min, max) = (sizes.iter().min(), sizes.iter().max());
        assert!(max.unwrap() - min.unwrap() <= 1, "{a:?}");
    }

    #[test]
    fn spreads_evenly_and_covers_every_partition() {
        for members in 1..=7 {
            for partitions in 0..=20 {
                let m: Vec<MemberId> = (0..members).map(|i| format!("m{i}")).collect();
                let a = assign_topic(partitions, &m, &HashMap::new());
                check_complete_and_balanced(&a, partitions);
            }
        }
    }

    #[test]
    fn a_joining_member_takes_only_its_share() {
        let before = assign_topic(12, &ids(&["a", "b", "c"]), &HashMap::new());
        let after = assign_topic(12, &ids(&["a", "b", "c", "d"]), &owners(&before));
        check_complete_and_balanced(&after, 12);
        let moved = owners(&after)
            .iter()
            .filter(|(p, m)| owners(&before).get(p) != Some(m))
            .count();
        assert_eq!(moved, 3, "only the newcomer's 3 partitions move: {after:?}");
        assert_eq!(after["d"].len(), 3);
    }

    #[test]
    fn a_leaving_member_hands_over_only_its_partitions() {
        let before = assign_topic(10, &ids(&["a", "b", "c"]), &HashMap::new());
        let after = assign_topic(10, &ids(&["a", "c"]), &owners(&before));
        check_complete_and_balanced(&after, 10);
        for (p, m) in owners(&before) {
            if m != "b" {
                assert_eq!(owners(&after)[&p], m, "partition {p} stayed put");
            }
        }
    }

    #[test]
    fn no_members_no_assignment_and_unknown_owners_are_ignored() {
        assert!(assign_topic(4, &[], &HashMap::new()).is_empty());
        let prev: HashMap<u32, MemberId> = [(0, "gone".to_string())].into();
        let a = assign_topic(2, &ids(&["x"]), &prev);
        assert_eq!(a["x"], vec![0, 1]);
    }
}
