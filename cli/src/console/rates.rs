//! Produce and consume rates over the last minutes, for the overview's chart: the console
//! polls offsets (the sum of every partition's latest offset: records produced; the sum of
//! every group's committed offsets: records consumed) every [`SAMPLE_EVERY`] and keeps
//! [`SAMPLES_KEPT`] samples. It polls with its own client (the `weir console` credentials,
//! if any); without rights to read everything it shows no chart, and only these two totals
//! ever reach a page.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use maud::{Markup, html};
use weir::Client;

use super::State;
use super::render::human_count;

/// How often offsets are polled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Samples kept: ten minutes.
pub const SAMPLES_KEPT: usize = 120;

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    produced: u64,
    consumed: u64,
}

/// The rates over one interval between two samples.
#[derive(Debug, Clone, Copy)]
struct Interval {
    from_ago: f64,
    to_ago: f64,
    produced: f64,
    consumed: f64,
}

#[derive(Default)]
pub struct Rates {
    samples: Mutex<VecDeque<Sample>>,
    error: Mutex<Option<String>>,
}

impl Rates {
    fn push(&self, s: Sample) {
        let mut v = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if v.len() == SAMPLES_KEPT {
            v.pop_front();
        }
        v.push_back(s);
    }

    /// Per interval between consecutive samples: (seconds before now of its start and of its
    /// end, produced/s, consumed/s).
    fn series(&self) -> Vec<Interval> {
        let v = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        v.iter()
            .zip(v.iter().skip(1))
            .map(|(a, b)| {
                let dt = b.at.duration_since(a.at).as_secs_f64().max(1e-3);
                Interval {
                    from_ago: now.duration_since(a.at).as_secs_f64(),
                    to_ago: now.duration_since(b.at).as_secs_f64(),
                    produced: b.produced.saturating_sub(a.produced) as f64 / dt,
                    consumed: b.consumed.saturating_sub(a.consumed) as f64 / dt,
                }
            })
            .collect()
    }
}

/// Records produced and consumed so far, from the same walk as `weir status`.
async fn totals(client: &Client) -> Result<(u64, u64), String> {
    let status = client.admin().status().await.map_err(|e| e.to_string())?;
    match (status.produced, status.committed) {
        (Some(produced), Some(consumed)) => Ok((produced, consumed)),
        // A section that could not be read says why among the problems.
        _ => Err(status
            .problems
            .iter()
            .find(|p| p.starts_with("cannot read"))
            .cloned()
            .unwrap_or_else(|| "cannot read the offsets".to_string())),
    }
}

/// Runs for the console's lifetime.
pub async fn sample(client: Client, console: State) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let at = Instant::now();
        let result = totals(&client).await;
        let mut error = console
            .rates
            .error
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match result {
            Ok((produced, consumed)) => {
                *error = None;
                drop(error);
                console.rates.push(Sample {
                    at,
                    produced,
                    consumed,
                });
            }
            Err(e) => *error = Some(e),
        }
    }
}

/// Chart size (SVG user units).
const W: f64 = 600.0;
const H: f64 = 140.0;
const WINDOW_SECS: f64 = SAMPLE_EVERY.as_secs() as f64 * SAMPLES_KEPT as f64;
const MIN_WINDOW_SECS: f64 = 30.0;

/// Two lines (produced/s, consumed/s) over the last ten minutes, drawn on the server.
pub fn chart(rates: &Rates) -> Markup {
    let series = rates.series();
    let error = rates
        .error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let max = series
        .iter()
        .map(|i| i.produced.max(i.consumed))
        .fold(0.0_f64, f64::max)
        .max(1.0);
    // The x axis spans the history kept (at least half a minute, at most ten minutes).
    let window = series
        .first()
        .map_or(MIN_WINDOW_SECS, |i| i.from_ago)
        .clamp(MIN_WINDOW_SECS, WINDOW_SECS);
    let x = |ago: f64| W - (ago / window).min(1.0) * W;
    let y = |v: f64| H - v / max * (H - 10.0);
    // A step per interval: its rate held from its start to its end.
    let line = |pick: fn(&Interval) -> f64| {
        series
            .iter()
            .flat_map(|i| {
                let v = y(pick(i));
                [(x(i.from_ago), v), (x(i.to_ago), v)]
            })
            .map(|(x, y)| format!("{x:.1},{y:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let last = series.last().copied();
    html! {
        figure.chart #rates {
            @if series.is_empty() {
                p.muted {
                    @if let Some(e) = &error { "Rates unavailable: " (e) }
                    @else { "Rates appear after two samples (every " (SAMPLE_EVERY.as_secs()) " s)." }
                }
            } @else {
                svg viewBox=(format!("0 0 {W} {H}")) preserveAspectRatio="none" role="img" aria-label="records per second, last 10 minutes" {
                    line x1="0" y1=(H) x2=(W) y2=(H) class="axis" {}
                    polyline class="produced" points=(line(|i| i.produced)) {}
                    polyline class="consumed" points=(line(|i| i.consumed)) {}
                }
                figcaption {
                    span.produced { "produced " (human_count(last.map_or(0.0, |i| i.produced))) "/s" }
                    " · "
                    span.consumed { "consumed (committed) " (human_count(last.map_or(0.0, |i| i.consumed))) "/s" }
                    " · peak " (human_count(max)) "/s over the last "
                    @if window < 120.0 { (format!("{window:.0}")) " s" } @else { (format!("{:.0}", window / 60.0)) " min" }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_differences_per_second_and_old_samples_go() {
        let r = Rates::default();
        let t0 = Instant::now();
        for i in 0..(SAMPLES_KEPT as u64 + 5) {
            r.push(Sample {
                at: t0 + Duration::from_secs(i * 5),
                produced: i * 500,
                consumed: i * 100,
            });
        }
        let s = r.series();
        assert_eq!(s.len(), SAMPLES_KEPT - 1);
        assert!(
            s.iter().all(|i| i.produced == 100.0 && i.consumed == 20.0),
            "{s:?}"
        );
        let svg = chart(&r).into_string();
        assert!(svg.contains("<polyline class=\"produced\""), "{svg}");
        // Even one interval is a visible line: two points.
        let one = Rates::default();
        for (i, at) in [0u64, 5].into_iter().enumerate() {
            one.push(Sample {
                at: t0 + Duration::from_secs(at),
                produced: i as u64 * 50,
                consumed: 0,
            });
        }
        let svg = chart(&one).into_string();
        let points = svg.split("points=\"").nth(1).unwrap_or_default();
        let points = points.split('"').next().unwrap_or_default();
        assert_eq!(points.split(' ').count(), 2, "{svg}");
        assert!(
            chart(&Rates::default())
                .into_string()
                .contains("after two samples")
        );
    }
}
