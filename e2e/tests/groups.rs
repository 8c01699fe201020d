//! Consumer groups against a real broker: members split partitions with no overlap and get
//! every record exactly once; a second group gets everything; lag reaches 0; a member killed
//! with SIGKILL hands its partitions over once its session expires; committed offsets
//! survive a broker crash; fenced commits and subscriptions are rejected; CLI group commands.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{BufRead, BufReader};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tonic::Code;
use weir::{ConsumerConfig, ConsumerRecord, ProducerConfig, ProducerRecord};
use weir_e2e::{Broker, lines};
use weir_proto::v1 as pb;
use weir_proto::v1::groups_client::GroupsClient;
use weir_proto::v1::log_client::LogClient;

const SESSION: Duration = Duration::from_secs(2);

async fn produce(client: &weir::Client, topic: &str, from: usize, n: usize) {
    let p = client.producer(ProducerConfig::default());
    for i in from..from + n {
        let rec = ProducerRecord::new(topic, format!("v{i}")).key(format!("k{i}"));
        p.enqueue(rec).await.unwrap();
    }
    p.close().await.unwrap();
}

fn group_config(group: &str) -> ConsumerConfig {
    ConsumerConfig::default()
        .group(group)
        .session_timeout(SESSION)
        .auto_commit_interval(Duration::from_millis(200))
}

/// Waits until the group has `members` members and is stable.
async fn wait_stable(client: &weir::Client, group: &str, members: u32) -> Duration {
    let start = Instant::now();
    loop {
        if let Ok(d) = client.admin().describe_group(group).await
            && d.group.members == members
            && d.group.state == "stable"
        {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "group {group} never settled on {members} members"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A consumer read in the background; its records land in a shared list.
struct Reader {
    records: Arc<Mutex<Vec<ConsumerRecord>>>,
    assignment: Arc<Mutex<Vec<u32>>>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

fn spawn_reader(mut c: weir::Consumer) -> Reader {
    let records = Arc::new(Mutex::new(Vec::new()));
    let assignment = Arc::new(Mutex::new(Vec::new()));
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let (r, a) = (Arc::clone(&records), Arc::clone(&assignment));
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                n = tokio::time::timeout(Duration::from_millis(20), c.next()) => {
                    if let Ok(n) = n {
                        r.lock().unwrap().push(n.expect("stream open").expect("record"));
                    }
                    *a.lock().unwrap() = c.assignment();
                }
            }
        }
        c.close().await.expect("close commits and leaves");
    });
    Reader {
        records,
        assignment,
        stop,
        task,
    }
}

impl Reader {
    fn count(&self) -> usize {
        self.records.lock().unwrap().len()
    }

    fn assignment(&self) -> Vec<u32> {
        self.assignment.lock().unwrap().clone()
    }

    async fn finish(self) -> Vec<ConsumerRecord> {
        let _ = self.stop.send(());
        self.task.await.unwrap();
        Arc::try_unwrap(self.records).unwrap().into_inner().unwrap()
    }
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

fn positions(records: &[ConsumerRecord]) -> Vec<(u32, u64)> {
    records.iter().map(|r| (r.partition, r.offset)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_share_partitions_exactly_once_and_groups_each_get_everything() {
    let broker = Broker::start();
    let client = broker.client_with_topic("orders", 4).await;
    produce(&client, "orders", 0, 2_000).await;

    // a joins alone and starts reading everything; b joins while a is busy.
    let a = spawn_reader(
        client
            .consumer("orders", group_config("billing"))
            .await
            .unwrap(),
    );
    wait_for("a to read", Duration::from_secs(10), || a.count() > 0).await;
    let joined = Instant::now();
    let b = spawn_reader(
        client
            .consumer("orders", group_config("billing"))
            .await
            .unwrap(),
    );
    wait_for("b to get partitions", Duration::from_secs(10), || {
        b.assignment().len() == 2
    })
    .await;
    let rebalance = joined.elapsed();
    wait_stable(&client, "billing", 2).await;
    eprintln!("rebalance after a join took {rebalance:?}");
    produce(&client, "orders", 2_000, 2_000).await;
    wait_for("every record", Duration::from_secs(20), || {
        a.count() + b.count() >= 4_000
    })
    .await;
    let (pa, pb_) = (a.assignment(), b.assignment());
    assert_eq!(pa.len(), 2, "{pa:?}");
    assert_eq!(pb_.len(), 2, "{pb_:?}");
    assert!(pa.iter().all(|p| !pb_.contains(p)), "{pa:?} {pb_:?}");
    let ra = a.finish().await;
    let rb = b.finish().await;

    // Every record exactly once across the two members.
    let mut all: Vec<(u32, u64)> = positions(&ra);
    all.extend(positions(&rb));
    let total = all.len();
    let unique: BTreeSet<(u32, u64)> = all.into_iter().collect();
    assert_eq!(unique.len(), total, "a record was delivered twice");
    assert_eq!(total, 4_000);
    let values: HashSet<String> = ra
        .iter()
        .chain(rb.iter())
        .map(|r| String::from_utf8(r.value.to_vec()).unwrap())
        .collect();
    assert_eq!(values.len(), 4_000);
    // b only ever read its own partitions.
    assert!(rb.iter().all(|r| pb_.contains(&r.partition)));

    // Both closed after committing: lag 0 everywhere, nobody owns anything.
    let d = client.admin().describe_group("billing").await.unwrap();
    assert_eq!(d.group.members, 0);
    assert_eq!(d.partitions.len(), 4);
    for p in &d.partitions {
        assert_eq!(p.committed_offset, Some(p.end_offset), "{p:?}");
        assert_eq!(p.lag, Some(0));
        assert_eq!(p.member_id, None);
    }
    let table = broker.cli_ok(&["group", "describe", "billing"]);
    let rows = lines(&table);
    assert_eq!(rows[0], "topic\tpartition\tcommitted\tend\tlag\tmember");
    assert_eq!(rows.len(), 5);
    for row in &rows[1..] {
        let cols: Vec<&str> = row.split('\t').collect();
        assert_eq!(cols[0], "orders");
        assert_eq!(cols[2], cols[3], "committed == end: {row}");
        assert_eq!(cols[4], "0", "lag 0: {row}");
        assert_eq!(cols[5], "-");
    }

    // Another group gets every record again (pub/sub), here through the CLI.
    let out = broker.cli_ok(&[
        "consume",
        "orders",
        "--group",
        "audit",
        "--max",
        "4000",
        "--idle-timeout",
        "10000",
    ]);
    let seen: HashSet<&str> = lines(&out).into_iter().collect();
    assert_eq!(seen.len(), 4_000);
    assert_eq!(
        lines(&broker.cli_ok(&["group", "list"])),
        vec!["audit\t0\tempty", "billing\t0\tempty"]
    );
    // The audit group committed everything it printed: nothing more to read.
    let again = broker.cli_ok(&[
        "consume",
        "orders",
        "--group",
        "audit",
        "--idle-timeout",
        "1000",
    ]);
    assert_eq!(again, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_member_hands_its_partitions_over_when_its_session_expires() {
    let broker = Broker::start();
    let client = broker.client_with_topic("jobs", 4).await;
    // Member 1: a CLI process, killed with SIGKILL later.
    let mut cli = broker.cli_spawn(&[
        "consume",
        "jobs",
        "--group",
        "workers",
        "--session-timeout",
        &SESSION.as_millis().to_string(),
    ]);
    let cli_out = cli.stdout.take().unwrap();
    let cli_lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&cli_lines);
    std::thread::spawn(move || {
        for line in BufReader::new(cli_out).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    wait_stable(&client, "workers", 1).await;
    let survivor = spawn_reader(
        client
            .consumer("jobs", group_config("workers"))
            .await
            .unwrap(),
    );
    wait_for("the survivor's share", Duration::from_secs(10), || {
        survivor.assignment().len() == 2
    })
    .await;
    wait_stable(&client, "workers", 2).await;
    produce(&client, "jobs", 0, 400).await;
    wait_for("both members to read", Duration::from_secs(10), || {
        cli_lines.lock().unwrap().len() + survivor.count() >= 400
    })
    .await;

    // The dead member is still listed until its session expires; then the group drops it
    // and the survivor is given its partitions. (How long that takes is measured in
    // docs/benchmarks.md; here only a hang fails.)
    cli.kill().unwrap();
    cli.wait().unwrap();
    let takeover = wait_for("the survivor to take over", Duration::from_secs(60), || {
        survivor.assignment().len() == 4
    })
    .await;
    eprintln!("takeover after kill -9 took {takeover:?} (session timeout {SESSION:?})");
    let d = client.admin().describe_group("workers").await.unwrap();
    assert_eq!(d.group.members, 1, "the dead member was dropped: {d:?}");
    produce(&client, "jobs", 400, 400).await;
    wait_for(
        "the records produced after the kill",
        Duration::from_secs(10),
        || {
            let r = survivor.records.lock().unwrap();
            r.iter().filter(|r| r.value.starts_with(b"v")).count() >= 400
                && (400..800).all(|i| {
                    let v = format!("v{i}");
                    r.iter().any(|r| r.value == v.as_bytes())
                })
        },
    )
    .await;
    let got = survivor.finish().await;
    // Each partition in offset order, no gap: what the dead member had not committed is
    // delivered again (at least once), nothing is skipped.
    let mut by_partition: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for r in &got {
        by_partition.entry(r.partition).or_default().push(r.offset);
    }
    for offsets in by_partition.values() {
        assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1), "{offsets:?}");
    }
    // Every record was read by one member or the other: the union of what the killed CLI
    // printed and what the survivor read is all 800 values (a record read by both counts once).
    let mut values: HashSet<String> = cli_lines.lock().unwrap().iter().cloned().collect();
    values.extend(
        got.iter()
            .map(|r| String::from_utf8(r.value.to_vec()).unwrap()),
    );
    let want: HashSet<String> = (0..800).map(|i| format!("v{i}")).collect();
    assert_eq!(values, want);
}

fn kind(s: &tonic::Status) -> &str {
    s.metadata()
        .get("weir-error-kind")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn join(group: &str, topic: &str) -> pb::HeartbeatRequest {
    pb::HeartbeatRequest {
        group: group.into(),
        topics: vec![topic.into()],
        session_timeout_ms: 30_000,
        client_id: "raw".into(),
        ..Default::default()
    }
}

fn commit(
    member: &pb::HeartbeatResponse,
    epoch: i64,
    partition: u32,
    offset: u64,
) -> pb::CommitOffsetsRequest {
    pb::CommitOffsetsRequest {
        group: "g".into(),
        member_id: member.member_id.clone(),
        member_epoch: epoch,
        offsets: vec![pb::OffsetCommit {
            topic: "t".into(),
            partition,
            offset,
            metadata: "m".into(),
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_are_fenced_validated_and_survive_a_broker_crash() {
    let mut broker = Broker::start();
    let client = broker.client_with_topic("t", 2).await;
    produce(&client, "t", 0, 40).await;
    let url = format!("http://{}", broker.addr);
    let mut groups = GroupsClient::connect(url.clone()).await.unwrap();

    let a = groups.heartbeat(join("g", "t")).await.unwrap().into_inner();
    assert_eq!(a.assignment[0].partitions, vec![0, 1]);
    groups
        .commit_offsets(commit(&a, a.member_epoch, 0, 5))
        .await
        .unwrap();

    // Past the end: INVALID_ARGUMENT; unknown topic and group: NOT_FOUND.
    let e = groups
        .commit_offsets(commit(&a, a.member_epoch, 0, 10_000))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("past the end"), "{}", e.message());
    let e = groups
        .describe_group(pb::DescribeGroupRequest {
            group: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!((e.code(), kind(&e)), (Code::NotFound, "group_not_found"));
    let e = groups.heartbeat(join("g", "missing")).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = groups.heartbeat(join("bad name", "t")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // b joins: a must give a partition up; b gets it only after a released it.
    let b = groups.heartbeat(join("g", "t")).await.unwrap().into_inner();
    assert!(b.assignment.iter().all(|tp| tp.partitions.is_empty()));
    let hb = |m: &pb::HeartbeatResponse, owned: Vec<u32>| pb::HeartbeatRequest {
        group: "g".into(),
        member_id: m.member_id.clone(),
        member_epoch: m.member_epoch,
        owned: vec![pb::TopicPartitions {
            topic: "t".into(),
            partitions: owned,
        }],
        ..Default::default()
    };
    let a2 = groups
        .heartbeat(hb(&a, vec![0, 1]))
        .await
        .unwrap()
        .into_inner();
    assert!(a2.member_epoch > a.member_epoch);
    let kept = a2.assignment[0].partitions.clone();
    assert_eq!(kept.len(), 1);
    let given_up = 1 - kept[0];
    // A stale epoch is fenced, even for a partition a still owns.
    let e = groups
        .commit_offsets(commit(&a, a.member_epoch, kept[0], 1))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), kind(&e)),
        (Code::FailedPrecondition, "stale_member_epoch")
    );
    // b does not own anything yet: it can neither commit nor read.
    let e = groups
        .commit_offsets(commit(&b, b.member_epoch, given_up, 1))
        .await
        .unwrap_err();
    assert_eq!(kind(&e), "not_partition_owner");
    let mut log = LogClient::connect(url.clone()).await.unwrap();
    let subscribe = |member: &str, partition: u32| pb::SubscribeRequest {
        topic: "t".into(),
        positions: vec![pb::FetchPosition {
            partition,
            offset: 0,
        }],
        max_bytes: 0,
        member: Some(pb::GroupMember {
            group: "g".into(),
            member_id: member.into(),
        }),
        plugins: Vec::new(),
    };
    let e = log
        .subscribe(subscribe(&b.member_id, given_up))
        .await
        .unwrap_err();
    assert_eq!(kind(&e), "not_partition_owner");
    // a may still commit the partition it is giving up (at its new epoch), then releases it.
    groups
        .commit_offsets(commit(&a2, a2.member_epoch, given_up, 7))
        .await
        .unwrap();
    let mut a_stream = log
        .subscribe(subscribe(&a2.member_id, given_up))
        .await
        .unwrap()
        .into_inner();
    assert!(
        a_stream.message().await.unwrap().is_some(),
        "a still reads it"
    );
    let a3 = groups
        .heartbeat(hb(&a2, kept.clone()))
        .await
        .unwrap()
        .into_inner();
    // Released: the broker ends a's stream of that partition.
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(5), a_stream.message()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(Err(e)) => break e,
            other => panic!("stream should end with an error, got {other:?}"),
        }
    };
    assert_eq!(kind(&ended), "not_partition_owner");
    let b2 = groups.heartbeat(hb(&b, vec![])).await.unwrap().into_inner();
    assert_eq!(b2.assignment[0].partitions, vec![given_up]);
    groups
        .commit_offsets(commit(&b2, b2.member_epoch, given_up, 9))
        .await
        .unwrap();

    // Admin changes need an empty group.
    let out = broker.cli(&["group", "reset", "g", "--topic", "t", "--to", "earliest"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error:") && err.contains("live member"),
        "{err}"
    );
    let e = groups
        .delete_group(pb::DeleteGroupRequest { group: "g".into() })
        .await
        .unwrap_err();
    assert_eq!(kind(&e), "group_not_empty");

    // a leaves; as a zombie it can no longer commit.
    groups
        .heartbeat(pb::HeartbeatRequest {
            group: "g".into(),
            member_id: a3.member_id.clone(),
            member_epoch: -1,
            ..Default::default()
        })
        .await
        .unwrap();
    let e = groups
        .commit_offsets(commit(&a3, a3.member_epoch, kept[0], 2))
        .await
        .unwrap_err();
    assert_eq!(kind(&e), "unknown_member");

    // Crash the broker: committed offsets are back after the restart, members are not.
    broker.kill9();
    broker.restart();
    let client = broker.client().await;
    let committed = client.admin().committed_offsets("g", "t").await.unwrap();
    let expect: Vec<(u32, Option<u64>)> = if given_up == 1 {
        vec![(0, Some(5)), (1, Some(9))]
    } else {
        vec![(0, Some(9)), (1, None)]
    };
    assert_eq!(committed, expect);
    let d = client.admin().describe_group("g").await.unwrap();
    assert_eq!((d.group.members, d.group.state.as_str()), (0, "empty"));

    // With no live member, reset works (the CLI prints the new offsets).
    let out = broker.cli_ok(&["group", "reset", "g", "--topic", "t", "--to", "3"]);
    assert_eq!(lines(&out), vec!["0\t3", "1\t3"]);
    let out = broker.cli_ok(&["group", "reset", "g", "--topic", "t", "--to", "latest"]);
    let ends: Vec<u64> = client
        .admin()
        .describe_topic("t")
        .await
        .unwrap()
        .partitions
        .iter()
        .map(|p| p.latest_offset)
        .collect();
    assert_eq!(
        lines(&out),
        vec![format!("0\t{}", ends[0]), format!("1\t{}", ends[1])]
    );
    let out = broker.cli(&["group", "reset", "g", "--topic", "t", "--to", "100000"]);
    assert!(!out.status.success());
    let out = broker.cli(&["group", "describe", "nope"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("does not exist"),
        "{err}"
    );
    broker.cli_ok(&["group", "delete", "g"]);
    assert_eq!(broker.cli_ok(&["group", "list"]), "");
}

#[test]
fn cli_group_consumers_resume_where_the_group_left_off() {
    let broker = Broker::start();
    broker.cli_ok(&["topic", "create", "log", "--partitions", "3"]);
    let input: String = (0..90).map(|i| format!("line{i}\n")).collect();
    let out = broker.cli_with_stdin(&["produce", "log"], input.as_bytes());
    assert!(out.status.success());
    let mut seen = Vec::new();
    for _ in 0..3 {
        let out = broker.cli_ok(&[
            "consume",
            "log",
            "--group",
            "readers",
            "--max",
            "30",
            "--idle-timeout",
            "5000",
        ]);
        let got = lines(&out);
        assert_eq!(got.len(), 30);
        seen.extend(got.into_iter().map(str::to_string));
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 90, "no line twice, none missed");
    let table = broker.cli_ok(&["group", "describe", "readers"]);
    assert!(
        lines(&table)[1..]
            .iter()
            .all(|r| r.split('\t').nth(4) == Some("0")),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_consumer_rejoins_after_a_broker_crash_and_misses_nothing() {
    let mut broker = Broker::start();
    let client = broker.client_with_topic("feed", 2).await;
    produce(&client, "feed", 0, 500).await;
    let reader = spawn_reader(client.consumer("feed", group_config("sync")).await.unwrap());
    wait_for("the first records", Duration::from_secs(10), || {
        reader.count() >= 500
    })
    .await;
    // Wait until an auto-commit covered everything read, then crash the broker under the
    // consumer.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = client.admin().describe_group("sync").await.unwrap();
        if d.partitions.iter().all(|p| p.lag == Some(0)) {
            break;
        }
        assert!(Instant::now() < deadline, "no auto-commit: {d:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    broker.kill9();
    broker.restart();
    let client = broker.client().await;
    produce(&client, "feed", 500, 500).await;
    wait_for(
        "every record after the crash",
        Duration::from_secs(30),
        || {
            let r = reader.records.lock().unwrap();
            let values: HashSet<&[u8]> = r.iter().map(|r| &r.value[..]).collect();
            values.len() == 1_000
        },
    )
    .await;
    assert_eq!(reader.assignment(), vec![0, 1]);
    let got = reader.finish().await;
    // The commit before the crash held: the 500 committed records do not come again.
    let before_crash = got
        .iter()
        .filter(|r| weir_e2e::text(r)[1..].parse::<usize>().unwrap() < 500)
        .count();
    assert_eq!(before_crash, 500, "records read twice after the crash");
    let d = client.admin().describe_group("sync").await.unwrap();
    assert!(d.partitions.iter().all(|p| p.lag == Some(0)), "{d:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_rejoins_as_a_new_member_reads_from_the_committed_offsets() {
    let mut broker = Broker::start();
    let client = broker.client_with_topic("feed", 1).await;
    produce(&client, "feed", 0, 100).await;
    let mut consumer = client
        .consumer("feed", group_config("resume").auto_commit(false))
        .await
        .unwrap();
    for i in 0..100 {
        let r = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("a record")
            .unwrap()
            .unwrap();
        assert_eq!(r.offset, i);
    }
    // It has read 100 records but commits only the first 50 (say, all it has written
    // somewhere durable).
    consumer
        .commit_offsets([(0, 50)].into_iter().collect())
        .await
        .unwrap();
    let first = consumer.group_metadata().unwrap();
    assert_eq!(first.group, "resume");
    assert!(
        !first.member_id.is_empty() && first.member_epoch > 0,
        "{first:?}"
    );
    // The broker forgets the member (memberships live in memory); the consumer is not polled
    // meanwhile, so it learns of the loss and of its new membership at once.
    broker.kill9();
    broker.restart();
    let client = broker.client().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = client.admin().describe_group("resume").await.unwrap();
        if d.members.len() == 1 && d.members[0].member_id != first.member_id {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the consumer did not rejoin: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the join's answer reach the consumer's membership task too.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Another member may have read and committed the partition meanwhile: the consumer
    // starts again from the committed offset, not from where it had read to.
    let r = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("a record")
        .unwrap()
        .unwrap();
    assert_eq!(r.offset, 50);
    let now = consumer.group_metadata().unwrap();
    assert_ne!(now.member_id, first.member_id);
}
