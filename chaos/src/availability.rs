//! What the faults cost in availability, from when acknowledgements arrived: per fault, the
//! longest a partition went without one (a leader failover under a partition or a kill is
//! such a stall), and the acknowledged rate during faults against the rate in calm.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One fault, held from `start` to `end` (seconds since the run started).
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub kind: String,
    pub start: f64,
    pub end: f64,
}

/// A stall shorter than this is ordinary batching, not worth reporting.
const NOTICEABLE_S: f64 = 0.5;
/// A stall is charged to a fault if it begins between this long before the fault and the
/// fault's heal: a send in flight when the fault starts is answered late.
const LEAD_S: f64 = 1.0;

/// The longest gap between consecutive acknowledgements of one partition that begins within
/// `[w.start - LEAD_S, w.end]`, over every partition (0 if none is noticeable).
pub fn stall(acks: &BTreeMap<u32, Vec<f64>>, w: &Window) -> f64 {
    acks.values()
        .flat_map(|times| times.windows(2))
        .filter(|pair| pair[0] >= w.start - LEAD_S && pair[0] <= w.end)
        .map(|pair| pair[1] - pair[0])
        .filter(|gap| *gap >= NOTICEABLE_S)
        .fold(0.0, f64::max)
}

/// Acknowledgements per second inside the fault windows, and outside them between `from` and
/// `to` (the part of the run with producers on).
pub fn rates(acks: &BTreeMap<u32, Vec<f64>>, windows: &[Window], from: f64, to: f64) -> (f64, f64) {
    let inside = |t: f64| windows.iter().any(|w| t >= w.start && t < w.end);
    let (mut during, mut calm) = (0usize, 0usize);
    for &t in acks.values().flatten() {
        if t < from || t >= to {
            continue;
        }
        match inside(t) {
            true => during += 1,
            false => calm += 1,
        }
    }
    let fault_time: f64 = windows.iter().map(|w| w.end - w.start).sum();
    let calm_time = (to - from - fault_time).max(f64::EPSILON);
    (
        during as f64 / fault_time.max(f64::EPSILON),
        calm as f64 / calm_time,
    )
}

/// The report printed after a run: rates, then per fault kind the stalls (max, median, count).
pub fn report(acks: &BTreeMap<u32, Vec<f64>>, windows: &[Window], from: f64, to: f64) -> String {
    let (during, calm) = rates(acks, windows, from, to);
    let mut out = format!(
        "acknowledged sends per second: {calm:.0} in calm, {during:.0} during faults ({:.0} %)\n",
        100.0 * during / calm.max(f64::EPSILON)
    );
    let mut by_kind: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for w in windows {
        by_kind.entry(&w.kind).or_default().push(stall(acks, w));
    }
    out.push_str("longest stall of a partition's acknowledgements per fault (max / median):");
    for (kind, mut stalls) in by_kind {
        stalls.sort_by(f64::total_cmp);
        let max = stalls.last().copied().unwrap_or(0.0);
        let median = stalls[stalls.len() / 2];
        let _ = write!(out, " {kind} {max:.1}/{median:.1} s;");
    }
    out.pop();
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every(step: f64, from: f64, to: f64) -> Vec<f64> {
        let mut v = Vec::new();
        let mut t = from;
        while t < to {
            v.push(t);
            t += step;
        }
        v
    }

    #[test]
    fn a_partition_without_acknowledgements_during_a_fault_is_a_stall() {
        let mut p0 = every(0.01, 0.0, 12.0);
        // Partition 1 stalls from 12 s to 15.5 s: its leader was cut off.
        let mut p1 = every(0.01, 0.0, 12.0);
        p1.extend(every(0.01, 15.5, 30.0));
        p0.extend(every(0.01, 12.0, 30.0));
        let acks = BTreeMap::from([(0, p0), (1, p1)]);
        let w = Window {
            kind: "Isolate".into(),
            start: 12.5,
            end: 17.0,
        };
        let s = stall(&acks, &w);
        assert!((s - 3.5).abs() < 0.02, "{s}");
        let calm = Window {
            kind: "Slow".into(),
            start: 20.0,
            end: 25.0,
        };
        assert_eq!(stall(&acks, &calm), 0.0);
        let (during, calm_rate) = rates(&acks, std::slice::from_ref(&w), 0.0, 30.0);
        assert!(during < calm_rate, "{during} {calm_rate}");
        let r = report(&acks, &[w], 0.0, 30.0);
        assert!(r.contains("Isolate 3.5/3.5 s"), "{r}");
    }
}
