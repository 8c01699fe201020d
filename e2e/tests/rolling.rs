//! A rolling restart of a 3-broker cluster under load (docs/deploy.md, "Rolling restart and
//! upgrade"): each member in turn gets SIGTERM, hands its leadership over before it stops
//! (controlled shutdown), starts again and rejoins every ISR; an idempotent acks=all producer
//! and a group consumer run throughout.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use weir_e2e::{Broker, TestCluster, metadata};

/// Failover after this long: a produce answered sooner than this across a member's stop did
/// not wait for one.
const SESSION_TIMEOUT_MS: u64 = 8000;
/// How soon after a member exits the others show its handover: far less than a failover.
const HANDOVER_VISIBLE: Duration = Duration::from_secs(1);

/// The members a partition's metadata names, through `via`: (leader, ISR) per partition.
fn placement(via: &Broker, topic: &str) -> Vec<(Option<u64>, Vec<u64>)> {
    metadata(via, &[topic]).topics[0]
        .partitions
        .iter()
        .map(|p| (p.leader, p.isr.clone()))
        .collect()
}

/// Waits until every partition of `topic` has all three replicas in sync, through `via`.
fn await_full_isr(via: &Broker, topic: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let p = placement(via, topic);
        if p.iter().all(|(l, isr)| l.is_some() && isr.len() == 3) {
            return;
        }
        assert!(Instant::now() < deadline, "ISRs did not fill: {p:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_rolling_restart_under_load_loses_nothing_and_moves_leadership_before_each_stop() {
    let session = SESSION_TIMEOUT_MS.to_string();
    let mut c = TestCluster::start_with(3, &["--session-timeout-ms", &session]);
    // A controller first: topics are created through it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = c.brokers[0].cli(&["cluster", "status"]);
        let text = String::from_utf8_lossy(&out.stdout);
        if out.status.success()
            && text
                .lines()
                .any(|l| l.split('\t').nth(2) == Some("controller"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "no controller: {text}");
        std::thread::sleep(Duration::from_millis(100));
    }
    c.brokers[0].cli_ok(&[
        "topic",
        "create",
        "roll",
        "--partitions",
        "3",
        "--replication-factor",
        "3",
    ]);
    await_full_isr(&c.brokers[0], "roll");
    let bootstrap = c.bootstrap();

    // The producer: idempotent, acks=all, a few records every few milliseconds until told to
    // stop; it keeps each record's acknowledgement and how long it took.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let producing = {
        let (stop, sent, bootstrap) = (stop.clone(), sent.clone(), bootstrap.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let client = weir::Client::connect(&bootstrap).await.unwrap();
                let producer = client.producer(weir::ProducerConfig::default());
                let mut waits = Vec::new();
                let mut i = 0usize;
                while !stop.load(SeqCst) {
                    for _ in 0..5 {
                        let rec =
                            weir::ProducerRecord::new("roll", format!("v{i}")).key(format!("k{i}"));
                        let enqueued = Instant::now();
                        let ack = producer.enqueue(rec).await.unwrap();
                        waits.push(tokio::spawn(async move {
                            (i, ack.await.map_err(|e| e.to_string()), enqueued.elapsed())
                        }));
                        i += 1;
                    }
                    sent.store(i, SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                producer.flush().await.unwrap();
                let mut acked = Vec::new();
                for w in waits {
                    acked.push(w.await.unwrap());
                }
                acked
            })
        })
    };

    // The group consumer: every value it reads and when, until told to stop.
    let reading = {
        let (stop, bootstrap) = (stop.clone(), bootstrap.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                use futures::StreamExt;
                let client = weir::Client::connect(&bootstrap).await.unwrap();
                let config = weir::ConsumerConfig::default()
                    .group("g")
                    .start(weir::StartFrom::Earliest)
                    .session_timeout(Duration::from_millis(SESSION_TIMEOUT_MS))
                    .auto_commit_interval(Duration::from_millis(200));
                let mut consumer = client.consumer("roll", config).await.unwrap();
                let mut seen = Vec::new();
                // Keeps reading a while after the producer stopped, to catch up.
                let mut quiet_since: Option<Instant> = None;
                loop {
                    if stop.load(SeqCst) && quiet_since.is_some_and(|q| q.elapsed().as_secs() >= 5)
                    {
                        break;
                    }
                    match tokio::time::timeout(Duration::from_millis(200), consumer.next()).await {
                        Ok(Some(Ok(r))) => {
                            seen.push((weir_e2e::text(&r), Instant::now()));
                            quiet_since = None;
                        }
                        Ok(Some(Err(e))) => panic!("consumer failed: {e}"),
                        Ok(None) => break,
                        Err(_) => {
                            quiet_since.get_or_insert_with(Instant::now);
                        }
                    }
                }
                consumer.close().await.unwrap();
                seen
            })
        })
    };

    let await_progress = |sent: &AtomicUsize, more: usize| {
        let from = sent.load(SeqCst);
        let deadline = Instant::now() + Duration::from_secs(60);
        while sent.load(SeqCst) < from + more {
            assert!(Instant::now() < deadline, "the producer stalled");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    await_progress(&sent, 500);
    let mut stops = Vec::new();
    for i in 0..3 {
        let other = (i + 1) % 3;
        await_full_isr(&c.brokers[other], "roll");
        let node = i as u64 + 1;
        let led = placement(&c.brokers[other], "roll")
            .iter()
            .filter(|(l, _)| *l == Some(node))
            .count();
        let stopping = Instant::now();
        let status = c.brokers[i].terminate();
        assert!(status.success(), "broker {node} stopped with {status}");
        // Right after it exits, well inside a session timeout: it leads nothing and is in
        // no ISR, so this was its controlled shutdown, not the controller's failover. The
        // other member may apply the last change a moment after the stopping one did.
        let handed_over = Instant::now() + HANDOVER_VISIBLE;
        loop {
            let after = placement(&c.brokers[other], "roll");
            if after
                .iter()
                .all(|(l, isr)| *l != Some(node) && l.is_some() && !isr.contains(&node))
            {
                break;
            }
            assert!(
                Instant::now() < handed_over,
                "broker {node} (led {led}) stopped without handing over: {after:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        stops.push((node, led, stopping.elapsed()));
        await_progress(&sent, 300);
        c.brokers[i].restart();
        await_full_isr(&c.brokers[other], "roll");
        await_progress(&sent, 300);
    }
    stop.store(true, SeqCst);
    let acked = producing.join().unwrap();
    let seen = reading.join().unwrap();
    eprintln!("stops (node, partitions it led, SIGTERM to exit): {stops:?}");

    // Every record was acknowledged, and none waited as long as a failover takes.
    let failed: BTreeMap<&String, usize> = acked
        .iter()
        .filter_map(|(_, r, _)| r.as_ref().err())
        .fold(BTreeMap::new(), |mut m, e| {
            *m.entry(e).or_default() += 1;
            m
        });
    assert!(failed.is_empty(), "undelivered: {failed:?}");
    let slowest = acked.iter().map(|(_, _, took)| *took).max().unwrap();
    eprintln!(
        "{} records acknowledged, the slowest in {slowest:?}",
        acked.len()
    );
    assert!(
        slowest < Duration::from_millis(SESSION_TIMEOUT_MS),
        "a produce waited {slowest:?}, as long as a failover"
    );

    // Each acknowledged record is stored exactly once, at the offset it was acknowledged with.
    let stored = weir_e2e::stored_once_by_value(&c.brokers[0], "roll");
    for (i, r, _) in &acked {
        let (p, off) = r.as_ref().unwrap();
        assert_eq!(
            stored.get(&format!("v{i}")),
            Some(&vec![(*p, *off)]),
            "v{i}"
        );
    }

    // The group read every acknowledged record (at least once) and never stopped for as
    // long as a failover takes while records were coming.
    let read: BTreeSet<&str> = seen.iter().map(|(v, _)| v.as_str()).collect();
    let missing: Vec<usize> = acked
        .iter()
        .map(|(i, _, _)| *i)
        .filter(|i| !read.contains(format!("v{i}").as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the group never read {} records: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let longest_gap = seen
        .windows(2)
        .map(|w| w[1].1.duration_since(w[0].1))
        .max()
        .unwrap_or_default();
    eprintln!(
        "{} records read ({} again after a rebalance), longest pause {longest_gap:?}",
        seen.len(),
        seen.len() - read.len()
    );
    assert!(
        longest_gap < Duration::from_millis(SESSION_TIMEOUT_MS),
        "the consumer stalled for {longest_gap:?}"
    );
}
