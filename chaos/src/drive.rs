//! One run from inside the client namespace: brokers up, workloads on, the fault schedule,
//! then heal, recover, read everything back, and write the history.

use std::collections::BTreeMap;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use weir::Client;

use crate::availability::{self, Window};
use crate::brokers::Brokers;
use crate::faults::{Fault, schedule};
use crate::history::{Event, Recorder};
use crate::net::Net;
use crate::workload::{self, Sink};

/// What a run is asked to do.
#[derive(Debug, Clone)]
pub struct Plan {
    pub tag: String,
    pub nodes: u8,
    pub seed: u64,
    /// The whole run, workloads included.
    pub duration: Duration,
    pub broker_bin: PathBuf,
    /// Data dirs, logs and the history.
    pub dir: PathBuf,
}

/// Workloads run this long before the first fault and after the last.
const SETTLE: Duration = Duration::from_secs(5);
/// Longest wait for the cluster to come up, to recover, or to be read back.
const RECOVERY: Duration = Duration::from_secs(90);

/// The history's file in a run's directory.
pub fn history_path(dir: &Path) -> PathBuf {
    dir.join("history.jsonl")
}

fn log(start: Instant, what: impl std::fmt::Display) {
    eprintln!("[{:>7.1} s] {what}", start.elapsed().as_secs_f64());
}

/// The node that leads partition 0, or the controller, as the cluster says now.
async fn target(bootstrap: &str, fault: Fault) -> Option<u8> {
    let client = Client::connect(bootstrap).await.ok()?;
    let admin = client.admin();
    let id = match fault {
        Fault::KillLeader => {
            admin
                .describe_topic(workload::TOPIC)
                .await
                .ok()?
                .placement
                .first()?
                .leader?
        }
        _ => admin
            .cluster_status()
            .await
            .ok()?
            .iter()
            .find_map(|n| n.controller)?,
    };
    u8::try_from(id).ok()
}

/// Waits until a controller is known, every partition has a leader and a full ISR.
async fn recovered(bootstrap: &str) -> bool {
    let Ok(client) = Client::connect(bootstrap).await else {
        return false;
    };
    let admin = client.admin();
    let Ok(status) = admin.cluster_status().await else {
        return false;
    };
    if !status.iter().any(|n| n.role == "controller")
        || status.iter().any(|n| n.role == "unreachable")
    {
        return false;
    }
    match admin.describe_topic(workload::TOPIC).await {
        Ok(d) => d
            .placement
            .iter()
            .all(|p| p.leader.is_some() && p.isr.len() == p.replicas.len()),
        Err(_) => false,
    }
}

async fn wait_until<F, Fut>(what: &str, mut check: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < RECOVERY {
        if check().await {
            return Ok(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("{what}: not within {} s", RECOVERY.as_secs())
}

/// Runs the plan; returns the faults injected, by kind.
pub async fn drive(plan: &Plan) -> anyhow::Result<BTreeMap<String, usize>> {
    let start = Instant::now();
    let net = Net::attach(&plan.tag, plan.nodes);
    let mut brokers = Brokers::start(&net, &plan.broker_bin, &plan.dir)?;
    let bootstrap = brokers.bootstrap();
    log(
        start,
        format!("{} brokers started: {bootstrap}", plan.nodes),
    );

    let (sink, mut events) = Sink::new();
    let file = std::fs::File::create(history_path(&plan.dir)).context("creating the history")?;
    // Also notes when each acknowledgement arrived (seconds since the start), per partition.
    type Acks = BTreeMap<u32, Vec<f64>>;
    let writer = tokio::task::spawn_blocking(move || -> anyhow::Result<(usize, Acks)> {
        let mut rec = Recorder::new(BufWriter::new(file));
        let mut n = 0;
        let mut acks = Acks::new();
        while let Some(e) = events.blocking_recv() {
            if let Event::Ok { partition, .. } = &e {
                acks.entry(*partition)
                    .or_default()
                    .push(start.elapsed().as_secs_f64());
            }
            rec.record(&e)?;
            n += 1;
        }
        rec.flush()?;
        Ok((n, acks))
    });

    let up = wait_until("a controller", || async {
        match Client::connect(&bootstrap).await {
            Ok(c) => c
                .admin()
                .cluster_status()
                .await
                .is_ok_and(|s| s.iter().any(|n| n.role == "controller")),
            Err(_) => false,
        }
    })
    .await?;
    log(
        start,
        format!("controller elected after {:.1} s", up.as_secs_f64()),
    );
    workload::create_topic(&bootstrap, RECOVERY).await?;
    wait_until("the topic's replicas in sync", || recovered(&bootstrap)).await?;

    let producing = Arc::new(AtomicBool::new(false));
    let reading = Arc::new(AtomicBool::new(false));
    let producers = workload::producers(&bootstrap, &sink, &producing);
    let mut readers = vec![workload::reader(&bootstrap, &sink, &reading)];
    readers.extend(workload::members(&bootstrap, &sink, &reading));
    log(start, "workloads started");
    let producing_from = start.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;

    let budget = plan.duration.saturating_sub(start.elapsed() + SETTLE * 2);
    let mut injected: BTreeMap<String, usize> = BTreeMap::new();
    let mut windows: Vec<Window> = Vec::new();
    for step in schedule(plan.seed, plan.nodes, budget) {
        tokio::time::sleep(step.after).await;
        let node = match step.fault {
            Fault::IsolateController | Fault::KillLeader | Fault::KillController => {
                match target(&bootstrap, step.fault).await {
                    Some(n) => Some(n),
                    None => {
                        log(start, format!("skipped ({}): no target known", step.fault));
                        continue;
                    }
                }
            }
            _ => None,
        };
        log(
            start,
            format!(
                "fault: {}{} for {:.1} s",
                step.fault,
                node.map(|n| format!(" (node {n})")).unwrap_or_default(),
                step.hold.as_secs_f64()
            ),
        );
        let kind = format!("{:?}", step.fault)
            .chars()
            .take_while(|c| c.is_alphanumeric())
            .collect::<String>();
        *injected.entry(kind.clone()).or_default() += 1;
        let fault_start = start.elapsed().as_secs_f64();
        match step.fault {
            Fault::Isolate(n) => net.isolate(n)?,
            Fault::IsolateController => net.isolate(node.unwrap_or(1))?,
            Fault::SplitMinority(n) => {
                for other in (1..=plan.nodes).filter(|o| *o != n) {
                    net.drop_between(n, other)?;
                    net.drop_between(other, n)?;
                }
            }
            Fault::OneWay { from, to } => net.drop_between(from, to)?,
            Fault::Lossy(n) => net.lossy(n, 30)?,
            Fault::Slow(n) => net.slow(n, 512)?,
            Fault::Reorder(n) => net.reorder(n)?,
            Fault::Kill(n) => brokers.kill(n),
            Fault::KillLeader | Fault::KillController => brokers.kill(node.unwrap_or(1)),
            Fault::Pause(n) => brokers.pause(n)?,
        }
        tokio::time::sleep(step.hold).await;
        net.heal()?;
        brokers.heal()?;
        windows.push(Window {
            kind,
            start: fault_start,
            end: start.elapsed().as_secs_f64(),
        });
        log(start, "healed");
    }
    net.heal()?;
    brokers.heal()?;
    tokio::time::sleep(SETTLE).await;
    let producing_to = start.elapsed().as_secs_f64();
    producing.store(true, Ordering::Relaxed);
    for p in producers {
        let _ = p.await;
    }
    log(start, "producers done");
    let took = wait_until("recovery", || recovered(&bootstrap)).await?;
    log(
        start,
        format!(
            "recovered ({:.1} s after the producers stopped)",
            took.as_secs_f64()
        ),
    );
    workload::final_read(&bootstrap, &sink, RECOVERY).await?;
    log(start, "final read done");
    // Let the readers catch up on what is left, then stop them.
    tokio::time::sleep(SETTLE).await;
    reading.store(true, Ordering::Relaxed);
    for r in readers {
        let _ = r.await;
    }
    drop(sink);
    let (events, acks) = writer.await??;
    log(start, format!("history: {events} events"));
    eprint!(
        "{}",
        availability::report(&acks, &windows, producing_from, producing_to)
    );
    brokers.stop();
    Ok(injected)
}
