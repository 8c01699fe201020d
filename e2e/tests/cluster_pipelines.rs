//! Pipelines in a 3-broker cluster (docs/pipelines.md, "In a cluster"): each source
//! partition's worker runs at its leader and moves with it; outputs go through the
//! destination partitions' leaders with acks=all; the destination holds every output exactly
//! once, in source order, across SIGKILLs of a source leader and of a destination leader.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use weir_e2e::{Broker, TestCluster, example_plugin, metadata};

/// Three brokers that fence a silent broker and drop a lagging follower after 2 s, once
/// topics can be created (a controller is elected): `topics` with 3 replicas each.
fn cluster_with(topics: &[(&str, u32)]) -> TestCluster {
    let c = TestCluster::start_with(
        3,
        &[
            "--session-timeout-ms",
            "2000",
            "--replica-lag-max-ms",
            "2000",
        ],
    );
    for (topic, partitions) in topics {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = c.brokers[0].cli(&[
                "topic",
                "create",
                topic,
                "--partitions",
                &partitions.to_string(),
                "--replication-factor",
                "3",
            ]);
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "cannot create {topic}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    c
}

fn leader(via: &Broker, topic: &str, partition: usize) -> Option<u64> {
    metadata(via, &[topic]).topics[0].partitions[partition].leader
}

/// `weir pipeline describe` through `via`: the key/value lines and the partition rows.
fn describe(via: &Broker, name: &str) -> (BTreeMap<String, String>, Vec<Vec<String>>) {
    let out = via.cli_ok(&["pipeline", "describe", name]);
    let mut keys = BTreeMap::new();
    let mut rows = Vec::new();
    let mut in_rows = false;
    for line in out.lines() {
        let f: Vec<String> = line.split('\t').map(str::to_string).collect();
        if in_rows {
            rows.push(f);
        } else if f[0] == "partition" {
            in_rows = true;
        } else {
            keys.insert(f[0].clone(), f[1].clone());
        }
    }
    (keys, rows)
}

/// Waits (up to `within`) until the pipeline, described through `via`, has processed at
/// least `n` source records, running.
fn until_processed(via: &Broker, name: &str, n: u64, within: Duration) {
    until(via, name, within, |records_in, _| records_in >= n);
}

/// Waits (up to `within`) until the pipeline has processed exactly `n` source records and
/// has no lag.
fn until_caught_up(via: &Broker, name: &str, n: u64, within: Duration) {
    until(via, name, within, |records_in, lag| {
        records_in == n && lag == 0
    });
}

fn until(via: &Broker, name: &str, within: Duration, done: impl Fn(u64, u64) -> bool) {
    let deadline = Instant::now() + within;
    loop {
        let (keys, _) = describe(via, name);
        assert_eq!(keys["status"], "running", "{keys:?}");
        let records_in = keys["records_in"].parse::<u64>().unwrap();
        if done(records_in, keys["lag"].parse().unwrap()) {
            return;
        }
        assert!(Instant::now() < deadline, "pipeline {name} stuck: {keys:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until `topic`'s partition `partition` is led by a broker other than `old`.
fn until_failed_over(via: &Broker, topic: &str, partition: usize, old: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(l) = leader(via, topic, partition).filter(|l| *l != old) {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "{topic}/{partition}: no failover"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until every partition of `topics` has all three replicas in sync.
fn until_all_in_sync(via: &Broker, topics: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = metadata(via, topics);
        if m.topics
            .iter()
            .all(|t| t.partitions.iter().all(|p| p.isr.len() == 3))
        {
            return;
        }
        assert!(Instant::now() < deadline, "replicas did not rejoin: {m:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every record of `topic` read through `via`: per partition, the (key, value) in order.
fn read_all(via: &Broker, topic: &str) -> BTreeMap<u64, Vec<(String, String)>> {
    let out = via.cli_ok(&[
        "consume",
        topic,
        "--from",
        "earliest",
        "--format",
        "json",
        "--idle-timeout",
        "3000",
    ]);
    let mut by_partition: BTreeMap<u64, Vec<(u64, String, String)>> = BTreeMap::new();
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        by_partition
            .entry(v["partition"].as_u64().unwrap())
            .or_default()
            .push((
                v["offset"].as_u64().unwrap(),
                v["key"].as_str().unwrap_or_default().to_string(),
                v["value"].as_str().unwrap().to_string(),
            ));
    }
    by_partition
        .into_iter()
        .map(|(p, mut rs)| {
            rs.sort_by_key(|r| r.0);
            (p, rs.into_iter().map(|(_, k, v)| (k, v)).collect())
        })
        .collect()
}

/// Produces keyed records `v{i}` (acks=all, idempotent) through the cluster from a thread
/// until `stop` is set and at least `at_least` were sent; returns how many were sent.
fn spawn_producer(
    bootstrap: String,
    topic: &'static str,
    at_least: usize,
    keys: usize,
    sent: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let client = weir::Client::connect(&bootstrap).await.unwrap();
            let producer = client.producer(weir::ProducerConfig::default());
            let mut pending = Vec::new();
            let mut i = 0;
            while i < at_least || !stop.load(SeqCst) {
                for _ in 0..1000 {
                    let rec = weir::ProducerRecord::new(topic, format!("v{i}"))
                        .key(format!("k{}", i % keys));
                    pending.push(producer.enqueue(rec).await.unwrap());
                    i += 1;
                }
                sent.store(i, SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            producer.flush().await.unwrap();
            for fut in pending {
                fut.await
                    .expect("every record is acknowledged (retries included)");
            }
            i
        })
    })
}

/// What [`produce_through_a_kill`] produces.
struct Load {
    topic: &'static str,
    at_least: usize,
    keys: usize,
    /// Source records the pipeline has processed when the leader dies.
    before_kill: u64,
}

/// Produces `load` through the cluster while pipeline `name` runs; once it processed
/// `load.before_kill` records, SIGKILLs the leader of `kill`'s topic partition and stops
/// producing after the failover. Returns the records sent and a surviving broker's index,
/// once the pipeline caught up with all of them and the killed broker restarted.
fn produce_through_a_kill(
    c: &mut TestCluster,
    name: &str,
    load: Load,
    kill: (&str, usize),
) -> (u64, usize) {
    let sent = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let producing = spawn_producer(
        c.bootstrap(),
        load.topic,
        load.at_least,
        load.keys,
        Arc::clone(&sent),
        Arc::clone(&stop),
    );
    let within = Duration::from_secs(120);
    until_processed(&c.brokers[0], name, load.before_kill, within);
    let old = leader(&c.brokers[0], kill.0, kill.1).unwrap();
    let survivor = (old % 3) as usize;
    c.brokers[old as usize - 1].kill9();
    until_failed_over(&c.brokers[survivor], kill.0, kill.1, old);
    stop.store(true, SeqCst);
    let sent = producing.join().unwrap() as u64;
    until_caught_up(&c.brokers[survivor], name, sent, within);
    c.brokers[old as usize - 1].restart();
    (sent, survivor)
}

#[test]
fn a_cluster_pipeline_writes_each_output_once_across_source_and_destination_leader_kills() {
    let mut c = cluster_with(&[("in", 3), ("out", 3)]);
    let wasm = example_plugin("uppercase");
    c.brokers[1].cli_ok(&["plugin", "register", "uppercase", wasm.to_str().unwrap()]);
    let created = c.brokers[2].cli_ok(&[
        "pipeline",
        "create",
        "up",
        "--from",
        "in",
        "--to",
        "out",
        "--plugin",
        "uppercase",
    ]);
    assert!(created.contains("created pipeline up"), "{created}");

    // Every member describes it, each partition's worker at that partition's leader.
    let leaders: Vec<String> = (0..3)
        .map(|p| leader(&c.brokers[0], "in", p).unwrap().to_string())
        .collect();
    for b in &c.brokers {
        let (keys, rows) = describe(b, "up");
        assert_eq!(keys["status"], "running");
        let workers: Vec<String> = rows.iter().map(|r| r[6].clone()).collect();
        assert_eq!(workers, leaders, "through {}", b.addr);
    }
    // A plugin a pipeline uses cannot be deleted.
    let refused = c.brokers[0].cli(&["plugin", "delete", "uppercase"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("up"),
        "{refused:?}"
    );

    let total = 200_000;
    let sent = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let producing = spawn_producer(
        c.bootstrap(),
        "in",
        total,
        1000,
        Arc::clone(&sent),
        Arc::clone(&stop),
    );

    // The leader of source partition 0 dies once output flows; its worker moves.
    until_processed(&c.brokers[0], "up", 20_000, Duration::from_secs(120));
    let source_leader = leader(&c.brokers[0], "in", 0).unwrap();
    let survivor = (source_leader % 3) as usize; // index of another broker
    c.brokers[source_leader as usize - 1].kill9();
    let moved_to = until_failed_over(&c.brokers[survivor], "in", 0, source_leader);
    eprintln!("source partition 0 failed over from {source_leader} to {moved_to}");
    let at_kill = sent.load(SeqCst) as u64;
    until_processed(
        &c.brokers[survivor],
        "up",
        at_kill.min(total as u64),
        Duration::from_secs(120),
    );
    let (_, rows) = describe(&c.brokers[survivor], "up");
    assert_eq!(rows[0][6], moved_to.to_string(), "{rows:?}");
    c.brokers[source_leader as usize - 1].restart();
    until_all_in_sync(&c.brokers[survivor], &["in", "out"]);

    // Later, the leader of a destination partition dies.
    let dest_leader = leader(&c.brokers[0], "out", 1).unwrap();
    let survivor = (dest_leader % 3) as usize;
    c.brokers[dest_leader as usize - 1].kill9();
    let moved_to = until_failed_over(&c.brokers[survivor], "out", 1, dest_leader);
    eprintln!("destination partition 1 failed over from {dest_leader} to {moved_to}");
    let at_kill = sent.load(SeqCst) as u64;
    until_processed(
        &c.brokers[survivor],
        "up",
        at_kill.min(total as u64),
        Duration::from_secs(120),
    );
    stop.store(true, SeqCst);
    let sent = producing.join().unwrap() as u64;
    c.brokers[dest_leader as usize - 1].restart();
    until_all_in_sync(&c.brokers[survivor], &["in", "out"]);
    until_caught_up(&c.brokers[0], "up", sent, Duration::from_secs(120));

    // The destination is the source, upper-cased, exactly once and in order per partition.
    let source = read_all(&c.brokers[0], "in");
    let dest = read_all(&c.brokers[0], "out");
    let n: usize = source.values().map(Vec::len).sum();
    assert_eq!(n as u64, sent);
    for (p, records) in &source {
        let want: Vec<(String, String)> = records
            .iter()
            .map(|(k, v)| (k.clone(), v.to_uppercase()))
            .collect();
        let got = dest.get(p).cloned().unwrap_or_default();
        assert_eq!(got.len(), want.len(), "partition {p}: output count");
        assert!(got == want, "partition {p}: output differs from the source");
    }
    let (keys, _) = describe(&c.brokers[1], "up");
    assert_eq!(keys["records_out"], sent.to_string(), "{keys:?}");

    c.brokers[0].cli_ok(&["pipeline", "delete", "up"]);
    c.brokers[0].cli_ok(&["plugin", "delete", "uppercase"]);
}

#[test]
fn a_cluster_aggregate_keeps_exact_counts_across_a_source_leader_kill() {
    let mut c = cluster_with(&[("clicks", 1), ("counts", 1)]);
    let wasm = example_plugin("count-by-key");
    c.brokers[0].cli_ok(&["plugin", "register", "count-by-key", wasm.to_str().unwrap()]);
    c.brokers[0].cli_ok(&[
        "pipeline",
        "create",
        "counts",
        "--from",
        "clicks",
        "--to",
        "counts",
        "--plugin",
        "count-by-key",
    ]);
    let load = Load {
        topic: "clicks",
        at_least: 30_000,
        keys: 7,
        before_kill: 5_000,
    };
    let (sent, survivor) = produce_through_a_kill(&mut c, "counts", load, ("clicks", 0));

    // Each output is the running count of its key, computed once per source record.
    let source = read_all(&c.brokers[survivor], "clicks");
    let dest = read_all(&c.brokers[survivor], "counts");
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let want: Vec<(String, String)> = source[&0]
        .iter()
        .map(|(k, _)| {
            let n = counts.entry(k.clone()).or_default();
            *n += 1;
            (k.clone(), n.to_string())
        })
        .collect();
    assert_eq!(want.len() as u64, sent);
    let got = dest.get(&0).cloned().unwrap_or_default();
    assert_eq!(got.len(), want.len(), "output count");
    assert!(got == want, "the counts differ from the source's");
}

/// Sends `values` (keyed by index) to `topic` through the cluster and waits for the acks.
fn produce_values(c: &TestCluster, topic: &str, values: &[String]) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = weir::Client::connect(&c.bootstrap()).await.unwrap();
        let producer = client.producer(weir::ProducerConfig::default());
        for (i, v) in values.iter().enumerate() {
            let rec = weir::ProducerRecord::new(topic, v.clone()).key(format!("k{i}"));
            producer.enqueue(rec).await.unwrap();
        }
        producer.flush().await.unwrap();
    });
}

/// Waits until `via` describes pipeline `name` with `status`; returns its key/value lines.
fn until_status(via: &Broker, name: &str, status: &str) -> BTreeMap<String, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (keys, _) = describe(via, name);
        if keys["status"] == status {
            return keys;
        }
        assert!(
            Instant::now() < deadline,
            "{name} is not {status}: {keys:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_failing_plugin_fails_a_cluster_pipeline_on_every_member_until_replaced_and_resumed() {
    let c = cluster_with(&[("src", 2), ("dst", 2)]);
    let dir = tempfile::tempdir().unwrap();
    let fragile = dir.path().join("fragile.wasm");
    std::fs::write(&fragile, weir_e2e::hostile_plugin("unreachable")).unwrap();
    c.brokers[0].cli_ok(&["plugin", "register", "fragile", fragile.to_str().unwrap()]);
    let values: Vec<String> = (0..50).map(|i| format!("v{i}")).collect();
    produce_values(&c, "src", &values);
    c.brokers[0].cli_ok(&[
        "pipeline", "create", "bad", "--from", "src", "--to", "dst", "--plugin", "fragile",
    ]);
    let keys = until_status(&c.brokers[0], "bad", "failed");
    assert!(keys["error"].contains("unreachable"), "{keys:?}");
    // Every member reports the same failure, and no worker runs.
    for b in &c.brokers {
        let (k, rows) = describe(b, "bad");
        assert_eq!(k["error"], keys["error"], "through {}", b.addr);
        assert!(rows.iter().all(|r| r[6] == "-"), "{rows:?}");
    }
    // Resumed with the cause still there: fails again.
    c.brokers[1].cli_ok(&["pipeline", "resume", "bad"]);
    until_status(&c.brokers[1], "bad", "failed");

    // Fix the cause, resume through another member: every record goes through once.
    let uppercase = example_plugin("uppercase");
    c.brokers[2].cli_ok(&[
        "plugin",
        "register",
        "fragile",
        uppercase.to_str().unwrap(),
        "--replace",
    ]);
    let resumed = c.brokers[2].cli_ok(&["pipeline", "resume", "bad"]);
    assert_eq!(resumed.trim(), "resumed pipeline bad (running)");
    until_caught_up(&c.brokers[0], "bad", 50, Duration::from_secs(60));
    let mut got: Vec<String> = read_all(&c.brokers[1], "dst")
        .into_values()
        .flatten()
        .map(|(_, v)| v)
        .collect();
    got.sort();
    let mut want: Vec<String> = values.iter().map(|v| v.to_uppercase()).collect();
    want.sort();
    assert_eq!(got, want);

    // Deleting a topic under a pipeline fails it, with the reason.
    c.brokers[0].cli_ok(&["topic", "delete", "dst"]);
    let keys = until_status(&c.brokers[2], "bad", "failed");
    assert!(keys["error"].contains("\"dst\" was deleted"), "{keys:?}");
    c.brokers[0].cli_ok(&["pipeline", "delete", "bad"]);
}

#[test]
fn a_plugin_replaced_under_a_running_cluster_pipeline_switches_at_a_checkpoint() {
    let c = cluster_with(&[("words", 1), ("out", 1)]);
    let uppercase = example_plugin("uppercase");
    c.brokers[0].cli_ok(&["plugin", "register", "p", uppercase.to_str().unwrap()]);
    c.brokers[0].cli_ok(&[
        "pipeline", "create", "sw", "--from", "words", "--to", "out", "--plugin", "p",
    ]);
    let before: Vec<String> = (0..20).map(|i| format!("a{i} b{i}")).collect();
    produce_values(&c, "words", &before);
    until_caught_up(&c.brokers[0], "sw", 20, Duration::from_secs(60));
    let split = example_plugin("split-words");
    c.brokers[1].cli_ok(&[
        "plugin",
        "register",
        "p",
        split.to_str().unwrap(),
        "--replace",
    ]);
    // Every member has switched before more records come (a new subscription sees v2).
    for b in &c.brokers {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !b.cli_ok(&["plugin", "list"]).contains("\tv2\t") {
            assert!(
                Instant::now() < deadline,
                "{} did not take the replacement",
                b.addr
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // The workers restart as each member applies the change (a moment after it lists it).
    std::thread::sleep(Duration::from_millis(500));
    let after: Vec<String> = (20..30).map(|i| format!("c{i} d{i}")).collect();
    produce_values(&c, "words", &after);
    until_caught_up(&c.brokers[2], "sw", 30, Duration::from_secs(60));
    let got: Vec<String> = read_all(&c.brokers[0], "out")[&0]
        .iter()
        .map(|(_, v)| v.clone())
        .collect();
    let mut want: Vec<String> = before.iter().map(|v| v.to_uppercase()).collect();
    for v in &after {
        want.extend(v.split(' ').map(str::to_string));
    }
    assert_eq!(got, want);
}

#[test]
fn a_cluster_routing_pipeline_writes_each_record_once_to_its_output_across_a_kill() {
    let mut c = cluster_with(&[("in", 3), ("rest", 3), ("sevens", 3)]);
    let wasm = example_plugin("route-contains");
    c.brokers[0].cli_ok(&["plugin", "register", "route", wasm.to_str().unwrap()]);
    c.brokers[1].cli_ok(&[
        "pipeline",
        "create",
        "split",
        "--from",
        "in",
        "--to",
        "rest",
        "--to",
        "sevens",
        "--plugin",
        r#"route={"substring":"7"}"#,
    ]);
    // The leader of a destination partition of the second output dies mid-stream.
    let load = Load {
        topic: "in",
        at_least: 60_000,
        keys: 100,
        before_kill: 10_000,
    };
    let (sent, survivor) = produce_through_a_kill(&mut c, "split", load, ("sevens", 1));

    let via = &c.brokers[survivor];
    let source = read_all(via, "in");
    let rest = read_all(via, "rest");
    let sevens = read_all(via, "sevens");
    assert_eq!(source.values().map(Vec::len).sum::<usize>() as u64, sent);
    for (p, records) in &source {
        let values: Vec<String> = records.iter().map(|(_, v)| v.clone()).collect();
        let want_sevens: Vec<String> = values.iter().filter(|v| v.contains('7')).cloned().collect();
        let want_rest: Vec<String> = values
            .iter()
            .filter(|v| !v.contains('7'))
            .cloned()
            .collect();
        let got = |t: &BTreeMap<u64, Vec<(String, String)>>| -> Vec<String> {
            t.get(p)
                .map(|rs| rs.iter().map(|(_, v)| v.clone()).collect())
                .unwrap_or_default()
        };
        assert_eq!(
            got(&sevens).len(),
            want_sevens.len(),
            "partition {p}: sevens count"
        );
        assert!(got(&sevens) == want_sevens, "partition {p}: sevens differ");
        assert_eq!(
            got(&rest).len(),
            want_rest.len(),
            "partition {p}: rest count"
        );
        assert!(got(&rest) == want_rest, "partition {p}: rest differs");
    }
}
