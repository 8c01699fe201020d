//! Cluster mode (docs/cluster.md) with real brokers on 127.0.0.1: the metadata quorum.

use std::time::{Duration, Instant};

use weir_e2e::{Broker, TestCluster, metadata, raw};

/// One `weir cluster status` line.
#[derive(Debug, Clone, PartialEq)]
struct Member {
    node: u64,
    addr: String,
    role: String,
    controller: Option<u64>,
    applied: u64,
}

/// `weir cluster status` through `via`: the exit status and the members.
fn status(via: &Broker) -> (bool, Vec<Member>) {
    let out = via.cli(&["cluster", "status"]);
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let members = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 5, "{l:?}");
            Member {
                node: f[0].parse().unwrap(),
                addr: f[1].to_string(),
                role: f[2].to_string(),
                controller: f[3].parse().ok(),
                applied: f[4].parse().unwrap(),
            }
        })
        .collect();
    (out.status.success(), members)
}

/// Polls `status` through `via` until `done` holds (or fails after `within`).
fn wait_for(
    via: &Broker,
    within: Duration,
    what: &str,
    done: impl Fn(bool, &[Member]) -> bool,
) -> Vec<Member> {
    let deadline = Instant::now() + within;
    loop {
        let (ok, members) = status(via);
        if done(ok, &members) {
            return members;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}: {members:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn controllers(members: &[Member]) -> Vec<u64> {
    members
        .iter()
        .filter(|m| m.role == "controller")
        .map(|m| m.node)
        .collect()
}

/// Three brokers, once one of them is the controller.
fn three_with_a_controller() -> TestCluster {
    three_with_a_controller_and(&[])
}

/// Three brokers that fence a silent broker and drop a lagging follower after 2 s.
fn three_with_fast_failover() -> TestCluster {
    three_with_a_controller_and(&[
        "--session-timeout-ms",
        "2000",
        "--replica-lag-max-ms",
        "2000",
    ])
}

/// Creates `topic` with a copy of each partition on all three brokers.
fn create_replicated(via: &Broker, topic: &str, partitions: u32) {
    via.cli_ok(&[
        "topic",
        "create",
        topic,
        "--partitions",
        &partitions.to_string(),
        "--replication-factor",
        "3",
    ]);
}

/// Three brokers with extra flags, once one of them is the controller.
fn three_with_a_controller_and(args: &[&str]) -> TestCluster {
    let c = TestCluster::start_with(3, args);
    wait_for(
        &c.brokers[0],
        Duration::from_secs(20),
        "electing a controller",
        |ok, m| ok && controllers(m).len() == 1,
    );
    c
}

#[test]
fn three_brokers_elect_a_controller_and_replace_it_when_it_dies() {
    let mut c = TestCluster::start(3);
    let members = wait_for(
        &c.brokers[1],
        Duration::from_secs(20),
        "electing a controller",
        |ok, m| {
            // Every member knows the same controller (a follower learns it from the first
            // heartbeat, a moment after the election).
            ok && m.len() == 3
                && controllers(m).len() == 1
                && m.iter().all(|x| x.controller == Some(controllers(m)[0]))
        },
    );
    for (i, m) in members.iter().enumerate() {
        assert_eq!(m.node, i as u64 + 1);
        assert_eq!(m.addr, c.brokers[i].addr);
    }
    let first = controllers(&members)[0];

    // SIGKILL the controller: the other two elect another within seconds.
    c.brokers[first as usize - 1].kill9();
    let survivor = &c.brokers[first as usize % 3];
    let started = Instant::now();
    let members = wait_for(
        survivor,
        Duration::from_secs(15),
        "electing a new controller",
        |_, m| {
            let dead = &m[first as usize - 1];
            let live = controllers(m);
            dead.role == "unreachable" && live.len() == 1 && live[0] != first
        },
    );
    let second = controllers(&members)[0];
    eprintln!(
        "controller {first} killed; {second} took over after {:?}",
        started.elapsed()
    );

    // The old controller comes back as a follower and catches up.
    c.brokers[first as usize - 1].restart();
    let members = wait_for(
        &c.brokers[first as usize - 1],
        Duration::from_secs(15),
        "the restarted member rejoining",
        |ok, m| {
            let c = controllers(m);
            ok && c.len() == 1
                && m.iter().all(|x| x.controller == Some(c[0]))
                && m.iter().all(|x| x.applied == m[0].applied && x.applied > 0)
        },
    );
    // Normally it rejoins under the controller it finds; it could also have started an
    // election of its own, so only agreement is asserted.
    eprintln!("after the restart: {members:?} (controller before: {second})");
}

#[test]
fn a_standalone_broker_reports_itself() {
    let broker = Broker::start();
    let (ok, members) = status(&broker);
    assert!(ok);
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].role, "standalone");
    assert_eq!(members[0].addr, broker.addr);
}

#[test]
fn bad_cluster_flags_are_refused_at_start() {
    let out = std::process::Command::new(weir_e2e::bin("weir-broker"))
        .args(["--node-id", "4", "--cluster", "1=127.0.0.1:1,2=127.0.0.1:2"])
        .output()
        .expect("run weir-broker");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--node-id 4 is not in --cluster"), "{err}");
}

/// Waits until `weir topic list` on `b` prints `want`.
fn wait_for_topics(b: &Broker, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = b.cli_ok(&["topic", "list"]);
        let got: Vec<&str> = out.lines().collect();
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: topics {got:?}, want {want:?}",
            b.addr
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn topics_are_created_and_deleted_through_the_quorum_from_any_broker() {
    let c = three_with_a_controller();
    // Created through a broker that may not be the controller: forwarded to it.
    for b in &c.brokers {
        let name = format!("t{}", b.addr.rsplit(':').next().unwrap());
        let out = b.cli_ok(&[
            "topic",
            "create",
            &name,
            "--partitions",
            "3",
            "--replication-factor",
            "3",
        ]);
        assert_eq!(
            out.trim(),
            format!("created topic {name} with 3 partitions")
        );
    }
    let mut names: Vec<String> = c
        .brokers
        .iter()
        .map(|b| format!("t{}\t3", b.addr.rsplit(':').next().unwrap()))
        .collect();
    names.sort();
    let want: Vec<&str> = names.iter().map(String::as_str).collect();
    // Every broker holds a replica of every partition (RF 3 on 3 brokers).
    for b in &c.brokers {
        wait_for_topics(b, &want);
    }
    // Describe shows where each partition lives; leaders spread over the brokers.
    let first_topic = want[0].split('\t').next().unwrap();
    let described = c.brokers[0].cli_ok(&["topic", "describe", first_topic]);
    let mut leaders = Vec::new();
    for (i, line) in described.lines().enumerate() {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 6, "{line:?}");
        assert_eq!(f[0], i.to_string());
        let replicas: Vec<&str> = f[4].split(',').collect();
        let mut distinct = replicas.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 3, "{line:?}");
        assert_eq!(f[3], replicas[0], "the first replica leads: {line:?}");
        assert_eq!(f[5], f[4], "every replica is in sync at first: {line:?}");
        leaders.push(f[3].to_string());
    }
    leaders.sort();
    leaders.dedup();
    assert_eq!(leaders.len(), 3, "{described}");
    // Errors come back as such, from any broker.
    let dup = c.brokers[2].cli(&["topic", "create", want[0].split('\t').next().unwrap()]);
    assert!(!dup.status.success());
    assert!(
        String::from_utf8_lossy(&dup.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&dup.stderr)
    );
    let big = c.brokers[1].cli(&["topic", "create", "big", "--replication-factor", "4"]);
    assert!(!big.status.success());
    assert!(
        String::from_utf8_lossy(&big.stderr).contains("needs at least 4 brokers"),
        "{}",
        String::from_utf8_lossy(&big.stderr)
    );
    // Deleted through one broker while another is down: gone from all, the one that was
    // down included once it is back.
    let mut c = c;
    c.brokers[2].kill9();
    let first = want[0].split('\t').next().unwrap();
    c.brokers[1].cli_ok(&["topic", "delete", first]);
    c.brokers[2].restart();
    for b in &c.brokers {
        wait_for_topics(b, &want[1..]);
    }
}

#[test]
fn a_standalone_broker_refuses_replication() {
    let broker = Broker::start();
    let out = broker.cli(&["topic", "create", "t", "--replication-factor", "2"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("runs alone"), "{err}");
}

#[test]
fn metadata_names_every_broker_and_where_partitions_live() {
    let c = three_with_a_controller();
    c.brokers[2].cli_ok(&[
        "topic",
        "create",
        "orders",
        "--partitions",
        "2",
        "--replication-factor",
        "2",
    ]);
    c.brokers[0].cli_ok(&["topic", "create", "audit"]);
    let m = metadata(&c.brokers[1], &["orders"]);
    let brokers: Vec<(u64, String)> = m
        .brokers
        .iter()
        .map(|b| (b.node_id, b.addr.clone()))
        .collect();
    let want: Vec<(u64, String)> = (1..=3)
        .map(|i| (i, c.brokers[i as usize - 1].addr.clone()))
        .collect();
    assert_eq!(brokers, want);
    assert!((1..=3).contains(&m.controller));
    assert_eq!(m.topics.len(), 1, "only the topic asked for");
    let t = &m.topics[0];
    assert_eq!((t.name.as_str(), t.partitions.len()), ("orders", 2));
    for p in &t.partitions {
        assert_eq!(p.replicas.len(), 2);
        assert_eq!(p.leader, Some(p.replicas[0]));
        assert_eq!(p.isr, p.replicas);
    }
    assert_eq!(metadata(&c.brokers[2], &[]).topics.len(), 2);

    // A standalone broker leads everything itself.
    let alone = Broker::start();
    alone.cli_ok(&["topic", "create", "t", "--partitions", "2"]);
    let m = metadata(&alone, &[]);
    assert_eq!(m.brokers.len(), 1);
    assert_eq!(m.brokers[0].addr, alone.addr);
    assert_eq!(m.topics[0].partitions.len(), 2);
    assert!(m.topics[0].partitions.iter().all(|p| p.leader == Some(0)));
}

#[test]
fn only_a_partitions_leader_serves_it_and_clients_route_to_leaders() {
    let c = three_with_a_controller();
    c.brokers[0].cli_ok(&["topic", "create", "t", "--partitions", "6"]);
    let m = metadata(&c.brokers[0], &["t"]);
    let leaders: Vec<u64> = m.topics[0]
        .partitions
        .iter()
        .map(|p| p.leader.unwrap())
        .collect();
    assert_eq!(
        leaders
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        3,
        "leaders spread over the brokers: {leaders:?}"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    // A broker asked for a partition it does not lead refuses, naming the leader.
    let other = (leaders[0] % 3) as usize;
    let lead = &c.brokers[leaders[0] as usize - 1];
    let status = rt.block_on(async {
        let mut log = weir_proto::v1::log_client::LogClient::connect(format!(
            "http://{}",
            c.brokers[other].addr
        ))
        .await
        .unwrap();
        let req = weir_proto::v1::ListOffsetsRequest {
            topic: "t".into(),
            queries: vec![weir_proto::v1::OffsetQuery {
                partition: 0,
                spec: weir_proto::v1::OffsetSpec::Latest as i32,
                timestamp: 0,
            }],
        };
        log.list_offsets(req).await.unwrap_err()
    });
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert_eq!(
        status.metadata().get("weir-error-kind").unwrap(),
        "not_leader"
    );
    assert_eq!(status.metadata().get("weir-leader").unwrap(), &*lead.addr);
    assert!(status.message().contains("does not lead"), "{status:?}");

    // The SDK, bootstrapped from one broker, produces to and reads from every leader.
    const N: usize = 3000;
    let (per_partition, read) = rt.block_on(async {
        let client = weir::Client::connect(&c.brokers[0].addr).await.unwrap();
        let producer = client.producer(weir::ProducerConfig::default());
        for i in 0..N {
            let rec = weir::ProducerRecord::new("t", format!("v{i}")).key(format!("k{i}"));
            producer.enqueue(rec).await.unwrap();
        }
        producer.flush().await.unwrap();
        let desc = weir::Client::connect(&c.brokers[2].addr)
            .await
            .unwrap()
            .admin()
            .describe_topic("t")
            .await
            .unwrap();
        let per_partition: Vec<u64> = desc.partitions.iter().map(|p| p.latest_offset).collect();
        let reader = weir::Client::connect(&c.brokers[1].addr).await.unwrap();
        let read = weir_e2e::read_all(&reader, "t", weir::ConsumerConfig::default()).await;
        (per_partition, read)
    });
    assert_eq!(
        per_partition.iter().sum::<u64>(),
        N as u64,
        "{per_partition:?}"
    );
    assert!(per_partition.iter().all(|&n| n > 0), "{per_partition:?}");
    assert_eq!(read.len(), N);
    let mut values: Vec<String> = read.iter().map(weir_e2e::text).collect();
    values.sort();
    values.dedup();
    assert_eq!(values.len(), N, "every record exactly once");
    for p in 0..6u32 {
        let offsets: Vec<u64> = read
            .iter()
            .filter(|r| r.partition == p)
            .map(|r| r.offset)
            .collect();
        let want: Vec<u64> = (0..per_partition[p as usize]).collect();
        assert_eq!(offsets, want, "partition {p} in order");
    }
    // The CLI routes the same way, through any broker.
    let out = c.brokers[2].cli_ok(&[
        "consume",
        "t",
        "--max",
        &N.to_string(),
        "--idle-timeout",
        "5000",
    ]);
    assert_eq!(out.lines().count(), N);
}

/// Each partition's `(latest offset, bytes)` in `via`'s own copy of `topic` (the raw RPC, not
/// the SDK, which would ask the leaders).
fn local_copy(via: &Broker, topic: &str) -> Vec<(u64, u64)> {
    let name = topic.to_string();
    raw(via, |ch| async move {
        weir_proto::v1::topics_client::TopicsClient::new(ch)
            .describe_topic(weir_proto::v1::DescribeTopicRequest { name })
            .await
            .expect("describe")
            .into_inner()
            .partitions
            .iter()
            .map(|p| (p.latest_offset, p.size_bytes))
            .collect()
    })
}

/// Waits until every broker's copy of `topic` equals `want`.
fn await_copies(c: &TestCluster, topic: &str, want: &[(u64, u64)]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let copies: Vec<Vec<(u64, u64)>> = c.brokers.iter().map(|b| local_copy(b, topic)).collect();
        if copies.iter().all(|copy| copy == want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "copies {copies:?}, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Produces `n` keyed records to `topic` through `via` and returns each partition's
/// `(latest offset, bytes)` as its leader reports them.
fn produce_keyed(via: &Broker, topic: &str, from: usize, n: usize) -> Vec<(u64, u64)> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = weir::Client::connect(&via.addr).await.unwrap();
        let producer = client.producer(weir::ProducerConfig::default());
        for i in from..from + n {
            let rec = weir::ProducerRecord::new(topic, format!("v{i}")).key(format!("k{i}"));
            producer.enqueue(rec).await.unwrap();
        }
        producer.flush().await.unwrap();
        let desc = client.admin().describe_topic(topic).await.unwrap();
        desc.partitions
            .iter()
            .map(|p| (p.latest_offset, p.size_bytes))
            .collect()
    })
}

#[test]
fn followers_copy_their_leaders_and_a_restarted_follower_catches_up() {
    let mut c = three_with_a_controller_and(&["--replica-lag-max-ms", "2000"]);
    c.brokers[1].cli_ok(&[
        "topic",
        "create",
        "r",
        "--partitions",
        "2",
        "--replication-factor",
        "3",
    ]);
    let leaders = produce_keyed(&c.brokers[0], "r", 0, 3000);
    assert_eq!(leaders.iter().map(|l| l.0).sum::<u64>(), 3000);
    // Same offsets and the same bytes on every copy.
    await_copies(&c, "r", &leaders);

    // The broker leading neither partition, killed, misses records and catches up from its
    // own log end after a restart (leaders do not move yet: that is failover).
    let m = metadata(&c.brokers[0], &["r"]);
    let led: Vec<u64> = m.topics[0]
        .partitions
        .iter()
        .map(|p| p.leader.unwrap())
        .collect();
    let victim = (1..=3u64).find(|n| !led.contains(n)).unwrap() as usize - 1;
    c.brokers[victim].kill9();
    let via = (victim + 1) % 3;
    let _ = produce_keyed(&c.brokers[via], "r", 3000, 2000);
    c.brokers[victim].restart();
    let leaders = produce_keyed(&c.brokers[via], "r", 5000, 1000);
    assert_eq!(leaders.iter().map(|l| l.0).sum::<u64>(), 6000);
    await_copies(&c, "r", &leaders);
    // Caught up, it is back in the ISR of both partitions.
    let deadline = Instant::now() + Duration::from_secs(20);
    while isr(&c.brokers[via], "r").iter().any(|i| i.len() < 3) {
        assert!(Instant::now() < deadline, "{:?}", isr(&c.brokers[via], "r"));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The ISR of each partition of `topic`, as `via` knows it.
fn isr(via: &Broker, topic: &str) -> Vec<Vec<u64>> {
    metadata(via, &[topic]).topics[0]
        .partitions
        .iter()
        .map(|p| p.isr.clone())
        .collect()
}

/// Produces `n` records `v{from}..` to `topic` through `via` with the given acks; returns
/// how long the flush took.
fn produce_acks(via: &Broker, topic: &str, from: usize, n: usize, acks: weir::Acks) -> Duration {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = weir::Client::connect(&via.addr).await.unwrap();
        let producer = client.producer(weir::ProducerConfig {
            acks,
            ..weir::ProducerConfig::default()
        });
        let start = Instant::now();
        for i in from..from + n {
            producer
                .enqueue(weir::ProducerRecord::new(topic, format!("v{i}")))
                .await
                .unwrap();
        }
        producer.flush().await.unwrap();
        start.elapsed()
    })
}

/// Every value in `topic` (one partition), read through `via` from the earliest offset.
fn values(via: &Broker, topic: &str) -> Vec<String> {
    let out = via.cli_ok(&[
        "consume",
        topic,
        "--from",
        "earliest",
        "--idle-timeout",
        "1000",
    ]);
    out.lines().map(str::to_string).collect()
}

#[test]
fn a_stopped_follower_leaves_the_isr_holds_nothing_back_and_rejoins_when_it_resumes() {
    // 5 s: far longer than the one produce before the high-watermark check below takes, so
    // the stopped follower is surely still in the ISR when it is made.
    let c = three_with_a_controller_and(&["--replica-lag-max-ms", "5000"]);
    c.brokers[0].cli_ok(&["topic", "create", "isr", "--replication-factor", "3"]);
    produce_acks(&c.brokers[0], "isr", 0, 100, weir::Acks::All);
    assert_eq!(isr(&c.brokers[0], "isr"), vec![vec![1, 2, 3]]);
    let m = metadata(&c.brokers[0], &["isr"]);
    let leader = m.topics[0].partitions[0].leader.unwrap();
    let follower = if leader == 3 { 2 } else { 3 };
    let (lb, fb) = (
        &c.brokers[leader as usize - 1],
        &c.brokers[follower as usize - 1],
    );
    // acks=all: every in-sync replica had the records when they were acknowledged (the
    // same bytes; its high watermark may trail by a fetch).
    assert_eq!(local_copy(fb, "isr")[0].1, local_copy(lb, "isr")[0].1);

    fb.pause();
    // acks=1 is answered by the leader alone, but consumers do not see the record while a
    // follower in the ISR lacks it.
    produce_acks(lb, "isr", 100, 1, weir::Acks::Leader);
    let hw = local_copy(lb, "isr")[0].0;
    // Read after the high watermark: a paused follower cannot leave and rejoin, so it was in
    // the ISR when the high watermark was read too.
    assert!(
        isr(lb, "isr")[0].contains(&follower),
        "the paused follower left the ISR before the check: {:?}",
        isr(lb, "isr")
    );
    assert_eq!(hw, 100, "the high watermark waits for the in-sync follower");
    // acks=all waits until the stopped follower leaves the ISR (5 s without catching up).
    let took = produce_acks(lb, "isr", 101, 49, weir::Acks::All);
    let without: Vec<u64> = [1, 2, 3].into_iter().filter(|n| *n != follower).collect();
    assert_eq!(isr(lb, "isr"), vec![without]);
    eprintln!("acks=all waited {took:?} for a stopped follower to leave the ISR");
    assert_eq!(local_copy(lb, "isr")[0].0, 150);
    let want: Vec<String> = (0..150).map(|i| format!("v{i}")).collect();
    assert_eq!(values(lb, "isr"), want);

    // Back, it catches up and rejoins.
    fb.resume();
    let deadline = Instant::now() + Duration::from_secs(20);
    while isr(lb, "isr")[0].len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the follower did not rejoin the ISR"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    produce_acks(lb, "isr", 150, 10, weir::Acks::All);
    assert_eq!(local_copy(lb, "isr")[0].0, 160);
    assert_eq!(local_copy(fb, "isr")[0].1, local_copy(lb, "isr")[0].1);
}

/// What happens to a partition's leader in [`leader_fault_under_acks_all`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum LeaderFault {
    /// SIGKILL, then a restart on its data dir.
    Kill,
    /// SIGSTOP (cut off: its sockets stay open, it answers nothing), then SIGCONT: it comes
    /// back still believing it leads, with requests it had accepted in hand.
    Pause,
}

#[test]
fn killing_a_leader_under_acks_all_loses_and_duplicates_no_acknowledged_record() {
    leader_fault_under_acks_all(LeaderFault::Kill);
}

#[test]
fn a_paused_leader_is_replaced_and_once_resumed_follows_without_losing_or_forking() {
    leader_fault_under_acks_all(LeaderFault::Pause);
}

/// An idempotent acks=all producer writes through the fault of partition 0's leader: every
/// record is acknowledged, once, at the offset it is stored at; the old leader comes back as
/// a follower of the new one, with the same log.
fn leader_fault_under_acks_all(fault: LeaderFault) {
    let mut c = three_with_fast_failover();
    create_replicated(&c.brokers[0], "fo", 2);
    let bootstrap = c.bootstrap();
    // An idempotent acks=all producer writes until told to stop; the leader of partition 0
    // dies once records flow, and the producer goes on until it has sent 500 more after the
    // failover.
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
    let sent = std::sync::Arc::new(AtomicUsize::new(0));
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let (sent_by_producer, stop_producer) = (sent.clone(), stop.clone());
    let producing = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let client = weir::Client::connect(&bootstrap).await.unwrap();
            let producer = client.producer(weir::ProducerConfig::default());
            let mut pending = Vec::new();
            let mut i = 0;
            while !stop_producer.load(SeqCst) {
                for _ in 0..5 {
                    let rec = weir::ProducerRecord::new("fo", format!("v{i}")).key(format!("k{i}"));
                    pending.push((i, producer.enqueue(rec).await.unwrap()));
                    i += 1;
                }
                sent_by_producer.store(i, SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let _ = producer.flush().await;
            let mut acked = Vec::new();
            let mut failed: std::collections::BTreeMap<String, usize> = Default::default();
            for (i, fut) in pending {
                match fut.await {
                    Ok((p, off)) => acked.push((format!("v{i}"), p, off)),
                    Err(e) => *failed.entry(e.to_string()).or_default() += 1,
                }
            }
            assert!(failed.is_empty(), "undelivered: {failed:?}");
            (i, acked)
        })
    });
    let m = metadata(&c.brokers[0], &["fo"]);
    let old = m.topics[0].partitions[0].leader.unwrap();
    let survivor = if old == 1 { 1 } else { 0 };
    // Records flow: partition 0's leader holds some.
    let deadline = Instant::now() + Duration::from_secs(60);
    while local_copy(&c.brokers[old as usize - 1], "fo")[0].0 < 100 {
        assert!(Instant::now() < deadline, "producing stalled");
        std::thread::sleep(Duration::from_millis(20));
    }
    match fault {
        LeaderFault::Kill => c.brokers[old as usize - 1].kill9(),
        LeaderFault::Pause => c.brokers[old as usize - 1].pause(),
    }
    let killed = Instant::now();
    let new_leader = loop {
        let m = metadata(&c.brokers[survivor], &["fo"]);
        let p = &m.topics[0].partitions[0];
        if p.leader.is_some_and(|l| l != old) {
            assert!(!p.isr.contains(&old), "{p:?}");
            break p.leader.unwrap();
        }
        assert!(killed.elapsed() < Duration::from_secs(60), "no failover");
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "{fault:?}: partition 0 failed over from broker {old} to {new_leader} in {:?}",
        killed.elapsed()
    );
    let at_failover = sent.load(SeqCst);
    let deadline = Instant::now() + Duration::from_secs(60);
    while sent.load(SeqCst) < at_failover + 500 {
        assert!(
            Instant::now() < deadline,
            "the producer stalled after the failover"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, SeqCst);
    let (sent, acked) = producing.join().unwrap();
    assert_eq!(acked.len(), sent, "retries deliver every record");

    // Every acknowledged record is there exactly once, at the offset it was acknowledged with.
    let via = &c.brokers[survivor];
    let stored = weir_e2e::stored_once_by_value(via, "fo");
    for (value, p, off) in &acked {
        assert_eq!(stored.get(value), Some(&vec![(*p, *off)]), "{value}");
    }

    // The old leader comes back as a follower, drops whatever it wrote that the new leader
    // does not have, catches up and rejoins the ISR; every copy is the same.
    match fault {
        LeaderFault::Kill => c.brokers[old as usize - 1].restart(),
        LeaderFault::Pause => c.brokers[old as usize - 1].resume(),
    }
    let via = &c.brokers[survivor];
    let deadline = Instant::now() + Duration::from_secs(30);
    while isr(via, "fo").iter().any(|i| i.len() < 3) {
        assert!(
            Instant::now() < deadline,
            "the restarted broker did not rejoin: {:?}",
            isr(via, "fo")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let leaders = produce_keyed(via, "fo", 0, 10);
    await_copies(&c, "fo", &leaders);
}

/// `Groups.FindCoordinator` through `via`: the coordinating broker's node id.
fn coordinator_of(via: &Broker, group: &str) -> u64 {
    let group = group.to_string();
    raw(via, |ch| async move {
        weir_proto::v1::groups_client::GroupsClient::new(ch)
            .find_coordinator(weir_proto::v1::FindCoordinatorRequest { group })
            .await
            .expect("find coordinator")
            .into_inner()
            .node_id
    })
}

/// `weir group describe` rows through `via`: (partition, committed, end), if it answers.
fn group_offsets(via: &Broker, group: &str) -> Option<Vec<(u32, String, u64)>> {
    let out = via.cli(&["group", "describe", group]);
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).unwrap();
    Some(
        text.lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (
                    f[1].parse().unwrap(),
                    f[2].to_string(),
                    f[3].parse().unwrap(),
                )
            })
            .collect(),
    )
}

#[test]
fn a_groups_coordinator_moves_with_its_offsets_and_its_consumer_keeps_reading() {
    let mut c = three_with_fast_failover();
    create_replicated(&c.brokers[0], "gc", 3);
    produce_keyed(&c.brokers[0], "gc", 0, 300);
    // The group reads and commits everything so far.
    let out = c.brokers[1].cli_ok(&[
        "consume",
        "gc",
        "--group",
        "g",
        "--from",
        "earliest",
        "--idle-timeout",
        "2000",
    ]);
    assert_eq!(out.lines().count(), 300);
    let coordinator = coordinator_of(&c.brokers[0], "g");
    for b in &c.brokers {
        assert_eq!(coordinator_of(b, "g"), coordinator, "every broker agrees");
    }
    let committed = group_offsets(&c.brokers[2], "g").expect("describe");
    assert_eq!(committed.len(), 3);
    assert!(
        committed.iter().all(|(_, c, end)| *c == end.to_string()),
        "{committed:?}"
    );

    // A group consumer (earliest by default: offsets lost would read everything again) reads
    // new records while its coordinator is SIGKILLed.
    let survivor = if coordinator == 1 { 1 } else { 0 };
    let bootstrap = c.brokers[survivor].addr.clone();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let reading = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            use futures::StreamExt;
            let client = weir::Client::connect(&bootstrap).await.unwrap();
            let config = weir::ConsumerConfig::default()
                .group("g")
                .start(weir::StartFrom::Earliest)
                .session_timeout(Duration::from_secs(3))
                .auto_commit_interval(Duration::from_millis(200));
            let mut consumer = client.consumer("gc", config).await.unwrap();
            let mut seen = Vec::new();
            loop {
                if stop_rx.try_recv().is_ok() {
                    break;
                }
                match tokio::time::timeout(Duration::from_millis(200), consumer.next()).await {
                    Ok(Some(Ok(r))) => seen.push(weir_e2e::text(&r)),
                    Ok(Some(Err(e))) => panic!("consumer failed: {e}"),
                    Ok(None) => break,
                    Err(_) => {}
                }
            }
            consumer.close().await.unwrap();
            seen
        })
    });
    produce_keyed(&c.brokers[survivor], "gc", 300, 100);
    // The consumer read those and committed them (auto-commit) before the coordinator dies.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let offsets = group_offsets(&c.brokers[survivor], "g").unwrap_or_default();
        let ends: u64 = offsets.iter().map(|(_, _, end)| end).sum();
        if ends == 400 && offsets.iter().all(|(_, c, end)| *c == end.to_string()) {
            break;
        }
        assert!(Instant::now() < deadline, "no commit: {offsets:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    c.brokers[coordinator as usize - 1].kill9();
    let killed = Instant::now();
    let via = &c.brokers[survivor];
    loop {
        let moved = coordinator_of(via, "g") != coordinator;
        if moved && group_offsets(via, "g").is_some() {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "the coordinator did not move"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "group coordinator moved from broker {coordinator} to {} in {:?}",
        coordinator_of(via, "g"),
        killed.elapsed()
    );
    produce_keyed(via, "gc", 400, 100);
    // The consumer catches up on everything: committed offsets survived the move.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let lag: u64 = group_offsets(via, "g")
            .unwrap_or_default()
            .iter()
            .map(|(_, c, end)| end - c.parse::<u64>().unwrap_or(0))
            .sum();
        if lag == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the group did not catch up");
        std::thread::sleep(Duration::from_millis(200));
    }
    stop_tx.send(()).unwrap();
    let seen = reading.join().unwrap();
    let distinct: std::collections::BTreeSet<&String> = seen.iter().collect();
    let want: std::collections::BTreeSet<String> = (300..500).map(|i| format!("v{i}")).collect();
    let missing: Vec<&String> = want.iter().filter(|v| !distinct.contains(v)).collect();
    assert!(missing.is_empty(), "never read: {missing:?}");
    let old: Vec<&&String> = distinct.iter().filter(|v| !want.contains(**v)).collect();
    assert!(
        old.is_empty(),
        "read again although committed before: {old:?}"
    );
    eprintln!(
        "{} records read, {} of them again after the move (at least once)",
        seen.len(),
        seen.len() - distinct.len()
    );
}

#[test]
fn a_plugin_registered_through_one_broker_runs_at_every_partitions_leader() {
    let c = three_with_a_controller();
    // Replication factor 1: the three partitions are led by three different brokers.
    c.brokers[0].cli_ok(&["topic", "create", "pl", "--partitions", "3"]);
    let m = metadata(&c.brokers[0], &["pl"]);
    let leaders: std::collections::BTreeSet<u64> = m.topics[0]
        .partitions
        .iter()
        .map(|p| p.leader.unwrap())
        .collect();
    assert_eq!(leaders.len(), 3, "{m:?}");
    let wasm = weir_e2e::example_plugin("uppercase");
    c.brokers[1].cli_ok(&["plugin", "register", "uppercase", wasm.to_str().unwrap()]);
    let listed = plugin_list(&c.brokers[1]);
    for b in &c.brokers {
        until_plugins_listed(b, &listed);
    }
    produce_keyed(&c.brokers[0], "pl", 0, 30);
    let out = c.brokers[2].cli_ok(&[
        "consume",
        "pl",
        "--from",
        "earliest",
        "--plugin",
        "uppercase",
        "--idle-timeout",
        "2000",
    ]);
    let mut got: Vec<&str> = out.lines().collect();
    got.sort();
    let mut want: Vec<String> = (0..30).map(|i| format!("V{i}")).collect();
    want.sort();
    assert_eq!(got, want);

    // A pipeline into a topic that does not exist is refused, naming it (cluster pipelines
    // themselves: tests/cluster_pipelines.rs).
    let out = c.brokers[0].cli(&[
        "pipeline",
        "create",
        "up",
        "--from",
        "pl",
        "--to",
        "pl2",
        "--plugin",
        "uppercase",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pl2"), "{err}");

    c.brokers[0].cli_ok(&["plugin", "delete", "uppercase"]);
    for b in &c.brokers {
        until_plugins_listed(b, &[]);
    }
}

/// `weir plugin list` through `b`, as its lines.
fn plugin_list(b: &Broker) -> Vec<String> {
    b.cli_ok(&["plugin", "list"])
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits (up to 20 s) until `b` lists exactly `want`: metadata reaches members in turn.
fn until_plugins_listed(b: &Broker, want: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = plugin_list(b);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} lists {got:?}, not {want:?}",
            b.addr
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_broker_down_while_a_plugin_is_registered_or_replaced_fetches_it_when_it_returns() {
    let mut c = three_with_a_controller();
    let (_, members) = status(&c.brokers[0]);
    let controller = controllers(&members)[0] as usize - 1;
    // A member that is not the controller goes down; another takes the registrations.
    let victim = (controller + 1) % 3;
    let via = (controller + 2) % 3;
    c.brokers[victim].kill9();

    let wasm = weir_e2e::example_plugin("uppercase");
    let out = c.brokers[via].cli_ok(&["plugin", "register", "p", wasm.to_str().unwrap()]);
    assert!(out.starts_with("registered plugin p (map, "), "{out}");
    c.brokers[victim].restart();

    // It catches up on the registry and the module: the same list on every member.
    let listed = plugin_list(&c.brokers[via]);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(listed[0].starts_with("p\tmap\t"), "{listed:?}");
    assert!(listed[0].contains("\tv1\t"), "{listed:?}");
    until_plugins_listed(&c.brokers[victim], &listed);

    // Each broker leads one partition; the returned one runs the chain for its own.
    c.brokers[via].cli_ok(&["topic", "create", "late", "--partitions", "3"]);
    let m = metadata(&c.brokers[via], &["late"]);
    let leaders: std::collections::BTreeSet<u64> = m.topics[0]
        .partitions
        .iter()
        .map(|p| p.leader.unwrap())
        .collect();
    assert_eq!(leaders.len(), 3, "{m:?}");
    produce_keyed(&c.brokers[via], "late", 0, 30);
    let consume = |b: &Broker, plugin: &str| -> Vec<String> {
        let out = b.cli_ok(&[
            "consume",
            "late",
            "--from",
            "earliest",
            "--plugin",
            plugin,
            "--idle-timeout",
            "2000",
        ]);
        let mut got: Vec<String> = out.lines().map(str::to_string).collect();
        got.sort();
        got
    };
    let mut want: Vec<String> = (0..30).map(|i| format!("V{i}")).collect();
    want.sort();
    assert_eq!(consume(&c.brokers[victim], "p"), want);

    // Replaced while the same member is down: it comes back to version 2, and new
    // subscriptions everywhere run the new module (a filter now).
    c.brokers[victim].kill9();
    let filter = weir_e2e::example_plugin("filter-contains");
    let out = c.brokers[via].cli_ok(&[
        "plugin",
        "register",
        "p",
        filter.to_str().unwrap(),
        "--replace",
    ]);
    assert!(out.starts_with("replaced plugin p (filter, "), "{out}");
    c.brokers[victim].restart();
    let listed = plugin_list(&c.brokers[via]);
    assert!(listed[0].starts_with("p\tfilter\t"), "{listed:?}");
    assert!(listed[0].contains("\tv2\t"), "{listed:?}");
    until_plugins_listed(&c.brokers[victim], &listed);
    let mut want: Vec<String> = std::iter::once(1)
        .chain(10..20)
        .map(|i| format!("v{i}"))
        .collect();
    want.sort();
    for b in &c.brokers {
        assert_eq!(consume(b, r#"p={"substring":"v1"}"#), want, "{}", b.addr);
    }

    // Deleted through the returned member: gone everywhere, and a chain naming it fails.
    c.brokers[victim].cli_ok(&["plugin", "delete", "p"]);
    assert!(plugin_list(&c.brokers[victim]).is_empty());
    for b in &c.brokers {
        until_plugins_listed(b, &[]);
    }
    let out = c.brokers[via].cli(&["consume", "late", "--plugin", "p", "--idle-timeout", "500"]);
    assert!(!out.status.success());
}

/// How long an idle follower's fetch waits at its leader in
/// [`an_acks_all_produce_is_answered_as_followers_catch_up_not_when_their_wait_ends`].
const LONG_FETCH_WAIT: Duration = Duration::from_secs(20);

#[test]
fn an_acks_all_produce_is_answered_as_followers_catch_up_not_when_their_wait_ends() {
    // Followers whose idle fetches wait 20 s at the leader: if any step from the leader's
    // append to the acknowledgement (followers noticing the append, fetching again, the high
    // watermark moving, the produce and the consumer being told) waited for a timer instead
    // of the event, the answers below would come after that wait, not before it.
    let wait_ms = LONG_FETCH_WAIT.as_millis().to_string();
    let c = three_with_a_controller_and(&[
        "--replica-fetch-wait-ms",
        &wait_ms,
        "--replica-lag-max-ms",
        "60000",
    ]);
    create_replicated(&c.brokers[0], "events", 1);
    let m = metadata(&c.brokers[0], &["events"]);
    let p = &m.topics[0].partitions[0];
    assert_eq!(p.isr.len(), 3, "{p:?}");
    let leader = p.leader.unwrap();
    let followers: Vec<&Broker> = c
        .brokers
        .iter()
        .enumerate()
        .filter(|(i, _)| *i as u64 + 1 != leader)
        .map(|(_, b)| b)
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = weir::Client::connect(&c.bootstrap()).await.unwrap();
        let mut consumer = client
            .consumer(
                "events",
                weir::ConsumerConfig::default().start(weir::StartFrom::Earliest),
            )
            .await
            .unwrap();
        let producer = client.producer(weir::ProducerConfig {
            acks: weir::Acks::All,
            ..weir::ProducerConfig::default()
        });
        for round in 0..3u64 {
            // Idle: every follower's fetch is parked at the leader, waiting.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let sent = Instant::now();
            let delivery = producer
                .enqueue(weir::ProducerRecord::new("events", format!("r{round}")))
                .await
                .unwrap();
            // Answered before half the followers' wait: by their fetches, not its expiry.
            let acked = tokio::time::timeout(LONG_FETCH_WAIT / 2, delivery)
                .await
                .unwrap_or_else(|_| {
                    panic!("round {round}: the acks=all produce waited for a timer")
                })
                .unwrap();
            assert_eq!(acked, (0, round));
            let took = sent.elapsed();
            // The consumer, waiting at the leader, is woken by the same high-watermark move.
            let r =
                tokio::time::timeout(LONG_FETCH_WAIT / 2, futures::StreamExt::next(&mut consumer))
                    .await
                    .unwrap_or_else(|_| panic!("round {round}: the consumer waited for a timer"))
                    .unwrap()
                    .unwrap();
            assert_eq!((r.offset, weir_e2e::text(&r)), (round, format!("r{round}")));
            eprintln!("round {round}: acks=all answered in {took:?}");
        }
    });
    // The followers' parked fetches were answered by the high watermark's move too: their
    // copies show all three records long before a fetch could have timed out.
    let deadline = Instant::now() + LONG_FETCH_WAIT / 2;
    for f in followers {
        while local_copy(f, "events")[0].0 != 3 {
            assert!(
                Instant::now() < deadline,
                "a follower's high watermark waited for a timer"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn acks_all_keeps_several_batches_per_partition_in_flight_while_they_replicate() {
    // A follower that is paused but still in the ISR (10 s lag max) holds every acks=all
    // produce back. Batches sent one after another must still all reach the leader's log
    // while the first awaits replication: the producer's window stays full under acks=all
    // instead of one batch per round trip.
    let c = three_with_a_controller_and(&["--replica-lag-max-ms", "10000"]);
    create_replicated(&c.brokers[0], "window", 1);
    let m = metadata(&c.brokers[0], &["window"]);
    let leader = m.topics[0].partitions[0].leader.unwrap();
    let follower = if leader == 3 { 2 } else { 3 };
    let (lb, fb) = (
        &c.brokers[leader as usize - 1],
        &c.brokers[follower as usize - 1],
    );
    const IN_FLIGHT: usize = 5;
    // `local_copy` runs a runtime of its own: it is called between the `block_on`s, while
    // the deliveries wait as tasks of this one.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = rt.block_on(weir::Client::connect(&lb.addr)).unwrap();
    // One record per batch, sent at once.
    let producer = rt.block_on(async {
        client.producer(weir::ProducerConfig {
            acks: weir::Acks::All,
            linger: Duration::ZERO,
            batch_bytes: 1,
            ..weir::ProducerConfig::default()
        })
    });
    let first = rt
        .block_on(producer.send(weir::ProducerRecord::new("window", "w0")))
        .unwrap();
    assert_eq!(first, (0, 0));
    // Every batch here has the same size: one record, a value of the same length.
    let one_batch = local_copy(lb, "window")[0].1;

    fb.pause();
    let pending: Vec<_> = (1..=IN_FLIGHT)
        .map(|i| {
            let record = weir::ProducerRecord::new("window", format!("w{i}"));
            let delivery = rt.block_on(producer.enqueue(record)).unwrap();
            rt.spawn(delivery)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    let written = loop {
        let (hw, bytes) = local_copy(lb, "window")[0];
        assert_eq!(
            hw, 1,
            "nothing is visible while the paused follower is in sync"
        );
        if bytes == one_batch * (IN_FLIGHT as u64 + 1) || Instant::now() > deadline {
            break bytes / one_batch - 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let acked = pending.iter().filter(|p| p.is_finished()).count();
    assert_eq!(
        (written, acked),
        (IN_FLIGHT as u64, 0),
        "batches written at the leader, and acknowledged, while the first awaits replication"
    );
    fb.resume();
    for (i, p) in pending.into_iter().enumerate() {
        assert_eq!(rt.block_on(p).unwrap().unwrap(), (0, i as u64 + 1));
    }
}

#[test]
fn a_restarted_leader_shows_no_record_its_followers_did_not_have() {
    // Long timeouts: while both followers are paused nobody is fenced and nobody leaves the
    // ISR, so the killed leader, restarted, leads again at once (no quorum can move it).
    let mut c = three_with_a_controller_and(&[
        "--replica-lag-max-ms",
        "30000",
        "--session-timeout-ms",
        "30000",
    ]);
    create_replicated(&c.brokers[0], "hw", 1);
    let leader = metadata(&c.brokers[0], &["hw"]).topics[0].partitions[0]
        .leader
        .unwrap() as usize
        - 1;
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    produce_acks(&c.brokers[leader], "hw", 0, 10, weir::Acks::All);
    for &f in &followers {
        c.brokers[f].pause();
    }
    // Written by the leader alone: above the high watermark.
    produce_acks(&c.brokers[leader], "hw", 10, 5, weir::Acks::Leader);
    assert_eq!(local_copy(&c.brokers[leader], "hw")[0].0, 10);

    c.brokers[leader].kill9();
    c.brokers[leader].restart();
    // It recovers its high watermark from the checkpoint (at most 10), not its log end (15).
    let seen = values(&c.brokers[leader], "hw");
    let want: Vec<String> = (0..seen.len()).map(|i| format!("v{i}")).collect();
    assert!(
        seen.len() <= 10 && seen == want,
        "a restarted leader showed records only it had: {seen:?}"
    );

    // Once the followers copy them, they are visible (acks=1 kept them on the leader).
    for &f in &followers {
        c.brokers[f].resume();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = values(&c.brokers[leader], "hw");
        if seen.len() == 15 {
            let want: Vec<String> = (0..15).map(|i| format!("v{i}")).collect();
            assert_eq!(seen, want);
            break;
        }
        assert!(Instant::now() < deadline, "still {seen:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn acks_all_below_min_insync_replicas_is_refused_and_writes_nothing() {
    let c = three_with_fast_failover();
    // Bad settings are refused at creation.
    let bad = c.brokers[0].cli(&[
        "topic",
        "create",
        "bad",
        "--replication-factor",
        "2",
        "--min-insync-replicas",
        "3",
    ]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("min-insync-replicas must be between 1 and the replication factor (2), got 3"),
        "{err}"
    );
    // Every replica must be in sync: one paused follower is enough to refuse acks=all (and
    // the other two keep the metadata quorum, so the ISR can shrink).
    c.brokers[0].cli_ok(&[
        "topic",
        "create",
        "safe",
        "--replication-factor",
        "3",
        "--min-insync-replicas",
        "3",
    ]);
    produce_acks(&c.brokers[0], "safe", 0, 10, weir::Acks::All);
    let leader = metadata(&c.brokers[0], &["safe"]).topics[0].partitions[0]
        .leader
        .unwrap() as usize
        - 1;
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let lb = &c.brokers[leader];
    let batch = |value: &'static [u8]| {
        let mut b =
            weir_common::batch::BatchBuilder::new(weir_common::batch::TimestampType::CreateTime);
        b.push(1_700_000_000_000, None, value, std::iter::empty());
        b.finish()
    };
    let produce = |acks: weir_proto::v1::Acks, value: &'static [u8]| {
        let batch = batch(value);
        raw(lb, move |ch| async move {
            weir_proto::v1::log_client::LogClient::new(ch)
                .produce(weir_proto::v1::ProduceRequest {
                    acks: acks as i32,
                    topic: "safe".into(),
                    batches: vec![weir_proto::v1::PartitionBatch {
                        partition: 0,
                        batch,
                    }],
                })
                .await
        })
    };
    c.brokers[follower].pause();
    // Sent while the paused follower is still in the ISR: written, then the ISR shrinks to
    // 2 and the high watermark passes it without the third copy: not acknowledged.
    let e = produce(weir_proto::v1::Acks::All, b"written").expect_err("acks=all, ISR shrinking");
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(
        e.message()
            .contains("fewer than its min-insync-replicas 3; the batch was written"),
        "{}",
        e.message()
    );
    assert_eq!(isr(lb, "safe")[0].len(), 2);
    let before = local_copy(lb, "safe")[0];
    assert_eq!(before.0, 11);
    // Now refused before anything is written.
    let e = produce(weir_proto::v1::Acks::All, b"refused").expect_err("acks=all, 2 of 3");
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(
        e.message().contains(
            "has 2 in-sync replicas, fewer than its min-insync-replicas 3; nothing was written"
        ),
        "{}",
        e.message()
    );
    assert_eq!(local_copy(lb, "safe")[0], before, "nothing was written");
    // acks=1 asks nothing of the followers.
    produce(weir_proto::v1::Acks::Leader, b"leader").expect("acks=1");

    // All three in sync again: acks=all works.
    c.brokers[follower].resume();
    let deadline = Instant::now() + Duration::from_secs(30);
    while isr(lb, "safe")[0].len() < 3 {
        assert!(Instant::now() < deadline, "ISR {:?}", isr(lb, "safe"));
        std::thread::sleep(Duration::from_millis(100));
    }
    produce(weir_proto::v1::Acks::All, b"back").expect("acks=all with 3 in sync");
    let want: Vec<String> = (0..10)
        .map(|i| format!("v{i}"))
        .chain(["written", "leader", "back"].map(String::from))
        .collect();
    assert_eq!(values(lb, "safe"), want);
}

/// Every member's cluster id as `via` reports them (`None`: not joined yet, or unreachable).
async fn cluster_ids(via: &Broker) -> Vec<Option<String>> {
    let client = via.client().await;
    match client.admin().cluster_status().await {
        Ok(nodes) => nodes.into_iter().map(|n| n.cluster_id).collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_data_dir_was_wiped_is_refused_with_a_clear_error() {
    let mut c = three_with_a_controller();
    // Every member joins the cluster its first member founded, under one id.
    let deadline = Instant::now() + Duration::from_secs(20);
    let id = loop {
        let ids = cluster_ids(&c.brokers[1]).await;
        if ids.len() == 3 && ids.iter().all(|i| i.is_some() && *i == ids[0]) {
            break ids[0].clone().unwrap();
        }
        assert!(Instant::now() < deadline, "members did not join: {ids:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(id.len(), 32, "{id}");
    // Node 1 founded the cluster. With its data dir gone it would have founded a second
    // one; it is refused instead, and says why.
    c.brokers[0].kill9();
    std::fs::remove_dir_all(c.brokers[0].data_dir()).unwrap();
    let out = c.brokers[0].start_refused(Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("node 1's data dir holds no cluster id")
            && stderr.contains(&format!("cluster {id} already counts node 1"))
            && stderr.contains("data was lost or wiped"),
        "{stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening"),
        "a refused member must not serve"
    );
    // So is a wiped follower.
    c.brokers[2].kill9();
    std::fs::remove_dir_all(c.brokers[2].data_dir()).unwrap();
    let out = c.brokers[2].start_refused(Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("node 3's data dir holds no cluster id"),
        "{stderr}"
    );
    // The member that kept its data still names the cluster.
    let ids = cluster_ids(&c.brokers[1]).await;
    assert_eq!(ids.get(1), Some(&Some(id)), "{ids:?}");
}

/// Per partition of `topic` as `via` describes it: (leader, preferred replica, ISR).
fn placement(via: &Broker, topic: &str) -> Vec<(String, String, String)> {
    via.cli_ok(&["topic", "describe", topic])
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let preferred = f[4].split(',').next().unwrap_or_default();
            (f[3].to_string(), preferred.to_string(), f[5].to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_spreads_again_when_a_failed_broker_returns() {
    let mut c = three_with_a_controller_and(&[
        "--session-timeout-ms",
        "2000",
        "--replica-lag-max-ms",
        "2000",
        "--leader-rebalance-interval-ms",
        "1000",
    ]);
    c.brokers[0].cli_ok(&[
        "topic",
        "create",
        "t",
        "--partitions",
        "6",
        "--replication-factor",
        "3",
    ]);
    // A group's commit creates `__consumer_offsets`: group coordination moves with it.
    let client = c.brokers[0].client().await;
    client
        .admin()
        .commit_offsets("g", "t", &[(0, 0)])
        .await
        .unwrap();
    let spread = |p: &[(String, String, String)]| p.iter().all(|(l, pref, _)| l == pref);
    for topic in ["t", "__consumer_offsets"] {
        let p = placement(&c.brokers[0], topic);
        assert!(spread(&p), "{topic} starts on its preferred leaders: {p:?}");
    }
    // Node 2 dies: its partitions fail over to the others.
    c.brokers[1].kill9();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p = placement(&c.brokers[0], "t");
        if p.iter().all(|(l, _, _)| l != "2" && l != "-") {
            break;
        }
        assert!(Instant::now() < deadline, "no failover: {p:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Back and in sync again, it leads what it is the preferred replica of: data and groups.
    c.brokers[1].restart();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = placement(&c.brokers[0], "t");
        let offsets = placement(&c.brokers[0], "__consumer_offsets");
        if spread(&t) && spread(&offsets) {
            assert!(t.iter().any(|(l, _, _)| l == "2"), "{t:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leadership did not spread again: {t:?} {offsets:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Nothing was lost on the way: the group's commit is still there.
    let d = client.admin().describe_group("g").await.unwrap();
    assert!(
        d.partitions
            .iter()
            .any(|p| p.partition == 0 && p.committed_offset == Some(0)),
        "{d:?}"
    );
}
