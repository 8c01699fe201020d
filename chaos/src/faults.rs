//! The fault schedule: which faults, when and for how long, all from one seed, so a run that
//! failed can be replayed. Targets that depend on the cluster's state (the controller, a
//! partition's leader) are looked up when the fault starts.

use std::fmt;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A node's link goes down.
    Isolate(u8),
    /// The controller's link goes down.
    IsolateController,
    /// A node cannot reach the others, nor they it (its link stays up: clients still reach
    /// it, as a minority partition that clients can see).
    SplitMinority(u8),
    /// Packets from one node to another are dropped, not the other way.
    OneWay { from: u8, to: u8 },
    /// A node drops 30 % of what it receives.
    Lossy(u8),
    /// A node's link is throttled to 512 kbit/s.
    Slow(u8),
    /// SIGKILL, restarted when the fault ends.
    Kill(u8),
    /// SIGKILL of partition 0's leader, restarted when the fault ends.
    KillLeader,
    /// SIGKILL of the controller, restarted when the fault ends.
    KillController,
    /// SIGSTOP, SIGCONT when the fault ends.
    Pause(u8),
    /// Half of what a node sends is delayed behind a slow queue: reordered.
    Reorder(u8),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Isolate(n) => write!(f, "isolate node {n}"),
            Fault::IsolateController => write!(f, "isolate the controller"),
            Fault::SplitMinority(n) => write!(f, "partition node {n} from the others"),
            Fault::OneWay { from, to } => write!(f, "drop packets node {from} → node {to}"),
            Fault::Lossy(n) => write!(f, "node {n} loses 30% of packets"),
            Fault::Slow(n) => write!(f, "node {n}'s link throttled to 512 kbit/s"),
            Fault::Kill(n) => write!(f, "kill -9 node {n}"),
            Fault::KillLeader => write!(f, "kill -9 partition 0's leader"),
            Fault::KillController => write!(f, "kill -9 the controller"),
            Fault::Pause(n) => write!(f, "pause node {n} (SIGSTOP)"),
            Fault::Reorder(n) => write!(f, "node {n} reorders what it sends"),
        }
    }
}

/// How many kinds of fault there are.
pub const KINDS: usize = 11;

fn of_kind(kind: usize, rng: &mut ChaCha8Rng, nodes: u8) -> Fault {
    let node = rng.gen_range(1..=nodes);
    match kind {
        0 => Fault::Isolate(node),
        1 => Fault::IsolateController,
        2 => Fault::SplitMinority(node),
        3 => {
            let to = (node % nodes) + 1;
            Fault::OneWay { from: node, to }
        }
        4 => Fault::Lossy(node),
        5 => Fault::Slow(node),
        6 => Fault::Kill(node),
        7 => Fault::KillLeader,
        8 => Fault::KillController,
        9 => Fault::Pause(node),
        _ => Fault::Reorder(node),
    }
}

/// One step of the schedule: wait `after` with the cluster healthy, then hold `fault` for
/// `hold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub after: Duration,
    pub fault: Fault,
    pub hold: Duration,
}

/// The steps that fit in `budget`: every kind once (in an order from the seed), then kinds
/// at random.
pub fn schedule(seed: u64, nodes: u8, budget: Duration) -> Vec<Step> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut kinds: Vec<usize> = (0..KINDS).collect();
    kinds.shuffle(&mut rng);
    let mut steps = Vec::new();
    let mut used = Duration::ZERO;
    let mut i = 0;
    loop {
        let kind = if i < KINDS {
            kinds[i]
        } else {
            rng.gen_range(0..KINDS)
        };
        let after = Duration::from_millis(rng.gen_range(2_000..5_000));
        let hold = Duration::from_millis(rng.gen_range(4_000..9_000));
        if used + after + hold > budget {
            return steps;
        }
        used += after + hold;
        steps.push(Step {
            after,
            fault: of_kind(kind, &mut rng, nodes),
            hold,
        });
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_schedule_and_every_kind_comes_first() {
        let a = schedule(7, 3, Duration::from_secs(300));
        assert_eq!(a, schedule(7, 3, Duration::from_secs(300)));
        assert_ne!(a, schedule(8, 3, Duration::from_secs(300)));
        let first: std::collections::HashSet<String> = a[..KINDS]
            .iter()
            .map(|s| {
                format!("{:?}", s.fault)
                    .chars()
                    .take_while(|c| c.is_alphabetic())
                    .collect()
            })
            .collect();
        assert_eq!(first.len(), KINDS, "{a:?}");
        let total: Duration = a.iter().map(|s| s.after + s.hold).sum();
        assert!(total <= Duration::from_secs(300));
        for s in &a {
            if let Fault::OneWay { from, to } = s.fault {
                assert_ne!(from, to);
            }
        }
    }
}

#[cfg(test)]
mod ci {
    use super::*;

    /// `scripts/test` runs `scripts/chaos --seed 1 --seconds 130`: about 110 s of it are
    /// faults (less start-up and 5 s of calm at each end), in which every kind must come at
    /// least once.
    #[test]
    fn the_ci_seed_injects_every_kind_of_fault() {
        let steps = schedule(1, 3, Duration::from_secs(108));
        assert!(steps.len() >= KINDS, "{steps:?}");
    }
}
