//! The broker's core at the module level, on a real store in a temp dir and without gRPC: the
//! produce path (every batch checked before any is written, offsets, idempotent dedupe and
//! gaps), the group coordinator driven with explicit instants (joins, cooperative handover,
//! session expiry, fenced commits, offsets read back from the store), and the pipeline
//! manager (exactly-once output, a plugin in use, delete, a failure and resume).

use std::collections::BTreeSet;
use std::path::Path;

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use clap::Parser;
use weir_common::batch::{self, BatchBuilder, TimestampType};

use super::*;
use crate::config::Args;
use crate::groups::{CommitArgs, Heartbeat, HeartbeatArgs, LEAVE_EPOCH, TopicPartition};
use crate::log::{Appended, ReadUpTo};
use crate::pipelines::{PipelineDef, PipelineView, PluginUseDef, Start};
use crate::plugins::PluginLimits;

fn config(dir: &Path) -> Config {
    let data = dir.to_str().expect("a UTF-8 temp dir");
    Config::resolve(Args::try_parse_from(["weir-broker", "--data-dir", data]).expect("flags"))
        .expect("a config")
}

async fn open(dir: &Path) -> Arc<Broker> {
    Broker::open(&config(dir)).expect("the broker opens")
}

async fn create_topic(b: &Arc<Broker>, name: &str, partitions: u32) {
    b.create_topic(
        name,
        NewTopic {
            partitions,
            ..NewTopic::default()
        },
    )
    .await
    .unwrap();
}

async fn with_topic(dir: &Path, name: &str, partitions: u32) -> Arc<Broker> {
    let b = open(dir).await;
    create_topic(&b, name, partitions).await;
    b
}

fn batch(values: &[&str]) -> Bytes {
    let mut b = BatchBuilder::new(TimestampType::CreateTime);
    for v in values {
        b.push(1, None, v.as_bytes(), std::iter::empty::<(&str, &[u8])>());
    }
    b.finish()
}

fn idempotent(values: &[&str], producer_id: u64, base_sequence: u32) -> Bytes {
    let mut buf = BytesMut::from(batch(values));
    batch::set_producer(&mut buf, producer_id, base_sequence);
    buf.freeze()
}

/// Every value of a partition, in offset order.
async fn values(b: &Broker, topic: &str, partition: u32) -> Vec<String> {
    let t = b.topic(topic).unwrap();
    let read = b
        .read(&t, partition, 0, 1 << 20, ReadUpTo::HighWatermark)
        .await
        .unwrap();
    read.batches
        .iter()
        .flat_map(|bytes| batch::decode(bytes).unwrap().1)
        .map(|r| String::from_utf8(r.value.to_vec()).unwrap())
        .collect()
}

/// (partition, base offset, records) of each append.
fn placed(appended: &[(u32, Appended)]) -> Vec<(u32, u64, u32)> {
    appended
        .iter()
        .map(|(p, a)| (*p, a.base_offset, a.record_count))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_produce_is_checked_whole_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let b = with_topic(dir.path(), "t", 2).await;

    // A good batch for partition 0 and garbage for partition 1: neither is written.
    let garbage = Bytes::from_static(b"not a record batch at all, just bytes");
    let e = b
        .produce("t", vec![(0, batch(&["a"])), (1, garbage)], Acks::All)
        .await
        .unwrap_err();
    assert!(
        matches!(e, BrokerError::InvalidBatch { partition: 1, .. }),
        "{e:?}"
    );
    assert!(values(&b, "t", 0).await.is_empty(), "partition 0 written");

    // Each refusal, with the error it must get; none writes anything.
    let too_big = "x".repeat(b.max_record_bytes() + 1);
    type Check = fn(&BrokerError) -> bool;
    type Case<'a> = (&'a str, Vec<(u32, Bytes)>, Check);
    let cases: Vec<Case> = vec![
        ("t", vec![(0, batch(&["a"])), (7, batch(&["b"]))], |e| {
            matches!(e, BrokerError::PartitionNotFound { .. })
        }),
        (
            "nope",
            vec![(0, batch(&["a"]))],
            |e| matches!(e, BrokerError::TopicNotFound(t) if t == "nope"),
        ),
        (
            "t",
            vec![],
            |e| matches!(e, BrokerError::InvalidArgument(m) if m.contains("no batch")),
        ),
        (
            "__consumer_offsets",
            vec![(0, batch(&["a"]))],
            |e| matches!(e, BrokerError::InvalidArgument(m) if m.contains("internal")),
        ),
        (
            "t",
            vec![(0, batch(&["a"])), (1, batch(&[too_big.as_str()]))],
            |e| matches!(e, BrokerError::InvalidBatch { partition: 1, .. }),
        ),
    ];
    for (topic, batches, expected) in cases {
        let e = b.produce(topic, batches, Acks::All).await.unwrap_err();
        assert!(expected(&e), "{topic}: {e:?}");
    }
    assert!(
        values(&b, "t", 0).await.is_empty(),
        "a refused request wrote"
    );
    assert!(
        values(&b, "t", 1).await.is_empty(),
        "a refused request wrote"
    );

    // Offsets: contiguous per partition across requests, partitions independent.
    let a = b
        .produce(
            "t",
            vec![(0, batch(&["a", "b"])), (1, batch(&["c"]))],
            Acks::All,
        )
        .await
        .unwrap();
    assert_eq!(placed(&a), vec![(0, 0, 2), (1, 0, 1)]);
    let a = b
        .produce("t", vec![(0, batch(&["d"]))], Acks::Leader)
        .await
        .unwrap();
    assert_eq!(placed(&a), vec![(0, 2, 1)]);
    assert_eq!(values(&b, "t", 0).await, ["a", "b", "d"]);
    assert_eq!(values(&b, "t", 1).await, ["c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_retry_gets_its_first_offsets_and_a_gap_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = with_topic(dir.path(), "t", 1).await;
    let (p1, p2) = (
        b.init_producer().await.unwrap(),
        b.init_producer().await.unwrap(),
    );
    assert!(p1 != 0 && p2 != 0 && p1 != p2, "{p1} {p2}");

    let first = idempotent(&["x", "y"], p1, 0);
    let a = b
        .produce("t", vec![(0, first.clone())], Acks::All)
        .await
        .unwrap();
    assert_eq!(placed(&a), vec![(0, 0, 2)]);
    // The same batch again (a retry after a lost answer): its original offsets, no copy.
    let again = b.produce("t", vec![(0, first)], Acks::All).await.unwrap();
    assert_eq!(placed(&again), vec![(0, 0, 2)]);
    let next = b
        .produce("t", vec![(0, idempotent(&["z"], p1, 2))], Acks::All)
        .await
        .unwrap();
    assert_eq!(placed(&next), vec![(0, 2, 1)]);
    // A sequence that skips ahead means an earlier batch is missing: refused, not written.
    let e = b
        .produce("t", vec![(0, idempotent(&["w"], p1, 5))], Acks::All)
        .await
        .unwrap_err();
    assert!(matches!(e, BrokerError::OutOfOrderSequence { .. }), "{e:?}");
    // Another producer numbers its own batches from 0.
    let other = b
        .produce("t", vec![(0, idempotent(&["v"], p2, 0))], Acks::All)
        .await
        .unwrap();
    assert_eq!(placed(&other), vec![(0, 3, 1)]);
    assert_eq!(values(&b, "t", 0).await, ["x", "y", "z", "v"]);
}

/// A background loop holds the broker until `stop_background` ends it, and then lets go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_loops_stop_and_let_go_of_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let held = Arc::clone(&b);
    b.spawn_background(async move {
        let _held = held;
        let _tx = tx;
        std::future::pending::<()>().await
    });
    assert_eq!(Arc::strong_count(&b), 2, "the loop holds the broker");
    b.stop_background();
    // The sender goes when the loop's future is dropped.
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv()).await;
    assert_eq!(ended, Ok(None), "the loop was not stopped");
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while Arc::strong_count(&b) > 1 {
        assert!(
            Instant::now() < deadline,
            "the stopped loop still holds the broker"
        );
        tokio::task::yield_now().await;
    }
}

fn join(client: &str) -> HeartbeatArgs {
    HeartbeatArgs {
        group: "billing".into(),
        topics: vec!["orders".into()],
        session_timeout_ms: 2_000,
        client_id: client.into(),
        ..HeartbeatArgs::default()
    }
}

/// The heartbeat of `member` (as last answered) that reports `owned`.
fn beat(member: &Heartbeat, owned: &BTreeSet<TopicPartition>) -> HeartbeatArgs {
    HeartbeatArgs {
        group: "billing".into(),
        member_id: member.member_id.to_string(),
        member_epoch: member.member_epoch,
        owned: owned.iter().cloned().collect(),
        ..HeartbeatArgs::default()
    }
}

fn partitions(assignment: &BTreeSet<TopicPartition>) -> Vec<u32> {
    assignment.iter().map(|(_, p)| *p).collect()
}

fn commit(partition: u32, offset: u64) -> Vec<CommitArgs> {
    vec![CommitArgs {
        topic: "orders".into(),
        partition,
        offset,
        metadata: String::new(),
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_coordinator_hands_partitions_over_expires_members_and_fences_commits() {
    let dir = tempfile::tempdir().unwrap();
    let b = with_topic(dir.path(), "orders", 4).await;
    b.produce("orders", vec![(0, batch(&["a", "b", "c"]))], Acks::All)
        .await
        .unwrap();
    let (g, topics) = (&b.groups, &b.topics);
    let t0 = Instant::now();
    let s = Duration::from_secs;

    // a alone gets every partition.
    let a = g.heartbeat(join("a"), topics, t0).unwrap().unwrap();
    assert_eq!(partitions(&a.assignment), [0, 1, 2, 3]);
    // b joins: it gets nothing until a has let go of its share (cooperative).
    let b1 = g.heartbeat(join("b"), topics, t0).unwrap().unwrap();
    assert!(b1.assignment.is_empty(), "{b1:?}");
    let a2 = g
        .heartbeat(beat(&a, &a.assignment), topics, t0 + s(1))
        .unwrap()
        .unwrap();
    assert_eq!(a2.assignment.len(), 2, "{a2:?}");
    assert!(a2.member_epoch > a.member_epoch);
    let kept = a2.assignment.clone();
    let a3 = g
        .heartbeat(beat(&a2, &kept), topics, t0 + s(1))
        .unwrap()
        .unwrap();
    let b2 = g
        .heartbeat(beat(&b1, &BTreeSet::new()), topics, t0 + s(1))
        .unwrap()
        .unwrap();
    assert_eq!(b2.assignment.len(), 2);
    assert!(b2.assignment.is_disjoint(&kept), "{b2:?} {kept:?}");

    // Commits: a stale epoch is fenced; only the owner commits; past the end is refused.
    let mine = *partitions(&kept).first().unwrap();
    let e = g
        .commit(
            "billing",
            &a.member_id,
            a.member_epoch,
            commit(mine, 0),
            topics,
        )
        .unwrap_err();
    assert!(matches!(e, BrokerError::StaleMemberEpoch { .. }), "{e:?}");
    let e = g
        .commit(
            "billing",
            &b2.member_id,
            b2.member_epoch,
            commit(mine, 0),
            topics,
        )
        .unwrap_err();
    assert!(matches!(e, BrokerError::NotPartitionOwner { .. }), "{e:?}");
    let end = if mine == 0 { 3 } else { 0 };
    let e = g
        .commit(
            "billing",
            &a3.member_id,
            a3.member_epoch,
            commit(mine, end + 1),
            topics,
        )
        .unwrap_err();
    assert!(matches!(e, BrokerError::InvalidArgument(_)), "{e:?}");
    g.commit(
        "billing",
        &a3.member_id,
        a3.member_epoch,
        commit(mine, end),
        topics,
    )
    .unwrap();

    // b falls silent after its heartbeat at t0+1s: still a member at t0+2.9s, gone at t0+3.1s
    // (session 2 s), and a is given everything.
    let a4 = g
        .heartbeat(beat(&a3, &kept), topics, t0 + s(2))
        .unwrap()
        .unwrap();
    g.expire(topics, t0 + Duration::from_millis(2_900));
    assert_eq!(g.list()[0].members, 2);
    g.expire(topics, t0 + Duration::from_millis(3_100));
    assert_eq!(g.list()[0].members, 1);
    assert!(!g.owns("billing", &b2.member_id, "orders", 0));
    let a5 = g
        .heartbeat(beat(&a4, &kept), topics, t0 + Duration::from_millis(3_100))
        .unwrap()
        .unwrap();
    assert_eq!(partitions(&a5.assignment), [0, 1, 2, 3]);
    // The expired member's calls are refused: it must join again.
    let e = g
        .heartbeat(beat(&b2, &BTreeSet::new()), topics, t0 + s(4))
        .unwrap_err();
    assert!(matches!(e, BrokerError::UnknownMember { .. }), "{e:?}");

    // a leaves; the committed offset is in the store (a coordinator recovered from it has it).
    let mut leave = beat(&a5, &BTreeSet::new());
    leave.member_epoch = LEAVE_EPOCH;
    assert!(g.heartbeat(leave, topics, t0 + s(4)).unwrap().is_none());
    let recovered = GroupCoordinator::recover(b.store.clone(), topics).unwrap();
    let bounds = |_p: u32| Ok((0, 3));
    let offsets = recovered
        .fetch_offsets("billing", "orders", &[mine], topics, &bounds)
        .unwrap();
    assert_eq!(offsets[0].committed.as_ref().map(|c| c.offset), Some(end));
}

/// Registers the `uppercase` example plugin as `upper` (built by `scripts/build-plugins`, as
/// `scripts/test` does before the tests).
async fn register_upper(b: &Arc<Broker>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/target/wasm32-unknown-unknown/release/uppercase.wasm");
    let wasm = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: build the example plugins first (scripts/build-plugins)",
            path.display()
        )
    });
    b.register_plugin(
        "upper".into(),
        Bytes::from(wasm),
        false,
        PluginLimits::default(),
    )
    .await
    .unwrap();
}

fn pipeline(name: &str, plugin: &str) -> PipelineDef {
    PipelineDef {
        name: name.into(),
        from_topic: "in".into(),
        to_topic: "out".into(),
        extra_to: Vec::new(),
        plugins: vec![PluginUseDef {
            plugin: plugin.into(),
            params: String::new(),
        }],
        created_ms: 0,
        failure: None,
    }
}

/// Polls a pipeline until `done` holds (fails after 60 s).
async fn until(b: &Broker, name: &str, done: impl Fn(&PipelineView) -> bool) -> PipelineView {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = b.describe_pipeline(name).await.unwrap();
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "pipeline {name} stuck: {v:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_manager_writes_each_output_once_and_guards_its_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let b = with_topic(dir.path(), "in", 2).await;
    create_topic(&b, "out", 2).await;
    register_upper(&b).await;
    b.produce(
        "in",
        vec![(0, batch(&["a", "b"])), (1, batch(&["c"]))],
        Acks::All,
    )
    .await
    .unwrap();

    // Bad definitions are refused before anything runs.
    let mut to_itself = pipeline("loop", "upper");
    to_itself.to_topic = "in".into();
    for (def, why) in [
        (pipeline("p", "missing"), "missing"),
        (to_itself, "its own source topic"),
    ] {
        let e = b.create_pipeline(def, Start::Earliest).await.unwrap_err();
        assert!(e.to_string().contains(why), "{e}");
    }

    b.create_pipeline(pipeline("p", "upper"), Start::Earliest)
        .await
        .unwrap();
    let e = b
        .create_pipeline(pipeline("p", "upper"), Start::Earliest)
        .await
        .unwrap_err();
    assert!(matches!(e, BrokerError::PipelineExists(_)), "{e:?}");
    let done = until(&b, "p", |v| v.records_in == 3 && v.lag == 0).await;
    assert_eq!(done.records_out, 3);
    assert_eq!(values(&b, "out", 0).await, ["A", "B"]);
    assert_eq!(values(&b, "out", 1).await, ["C"]);

    // More input later: only the new records are transformed (nothing is written twice).
    b.produce("in", vec![(1, batch(&["d"]))], Acks::All)
        .await
        .unwrap();
    until(&b, "p", |v| v.records_in == 4 && v.lag == 0).await;
    assert_eq!(values(&b, "out", 1).await, ["C", "D"]);

    // The plugin cannot go while the pipeline uses it; once the pipeline is deleted it can,
    // and the output stays.
    let e = b.delete_plugin("upper".into()).await.unwrap_err();
    assert!(matches!(e, BrokerError::PluginInUse { .. }), "{e:?}");
    b.delete_pipeline("p").await.unwrap();
    assert!(matches!(
        b.describe_pipeline("p").await,
        Err(BrokerError::PipelineNotFound(_))
    ));
    b.delete_plugin("upper".into()).await.unwrap();
    assert_eq!(values(&b, "out", 0).await, ["A", "B"]);

    // A pipeline whose destination goes fails (with the reason), and resumes once it is
    // back, from where it stopped.
    register_upper(&b).await;
    b.create_pipeline(pipeline("q", "upper"), Start::Latest)
        .await
        .unwrap();
    b.delete_topic("out").await.unwrap();
    b.produce("in", vec![(0, batch(&["e"]))], Acks::All)
        .await
        .unwrap();
    let failed = until(&b, "q", |v| v.def.failure.is_some()).await;
    let why = failed.def.failure.unwrap().error;
    assert!(why.contains("out"), "{why}");
    create_topic(&b, "out", 2).await;
    b.resume_pipeline("q").await.unwrap();
    until(&b, "q", |v| {
        v.def.failure.is_none() && v.lag == 0 && v.records_in == 1
    })
    .await;
    assert_eq!(values(&b, "out", 0).await, ["E"]);
    assert!(values(&b, "out", 1).await.is_empty());
}

/// A cluster worker's sink writing straight into a partition log (its idempotence checks
/// included), keeping the checkpoints proposed.
struct LogSink {
    log: Arc<crate::log::PartitionLog>,
    checkpoints: std::sync::Mutex<Vec<crate::pipelines::Checkpoint>>,
}

impl crate::pipelines::replicated::ClusterSink for LogSink {
    async fn expected_sequence(
        &self,
        _topic: &str,
        _partition: u32,
        producer_id: u64,
    ) -> Result<u32, crate::pipelines::replicated::SinkError> {
        Ok(self.log.expected_sequence(producer_id))
    }

    async fn produce(
        &self,
        _topic: &str,
        _partition: u32,
        batches: Vec<Bytes>,
    ) -> Result<(), crate::pipelines::replicated::SinkError> {
        use crate::pipelines::replicated::SinkError;
        let pending: Vec<crate::log::PendingBatch> = batches
            .into_iter()
            .map(|bytes| {
                let valid = batch::validate(&bytes, 1 << 20).unwrap();
                crate::log::PendingBatch { bytes, valid }
            })
            .collect();
        let appended = self
            .log
            .append_group(&pending, crate::types::now_ms())
            .map_err(|e| SinkError::Failed(e.to_string()))?;
        for a in appended {
            match a {
                Ok(_) => {}
                Err(crate::log::LogError::OutOfOrderSequence { expected, .. }) => {
                    return Err(SinkError::OutOfOrder { expected });
                }
                Err(e) => return Err(SinkError::Failed(e.to_string())),
            }
        }
        Ok(())
    }

    async fn checkpoint(
        &self,
        _pipeline: &str,
        _id: u32,
        _partition: u32,
        checkpoint: crate::pipelines::Checkpoint,
    ) -> Result<(), crate::pipelines::replicated::SinkError> {
        self.checkpoints.lock().unwrap().push(checkpoint);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_worker_replaying_from_an_old_checkpoint_writes_each_output_once() {
    use crate::pipelines::Checkpoint;
    use crate::pipelines::replicated::{self, ReplicatedCtx};

    let dir = tempfile::tempdir().unwrap();
    let b = with_topic(dir.path(), "in", 1).await;
    create_topic(&b, "out", 1).await;
    register_upper(&b).await;
    let produce = |from: usize, to: usize| {
        let b = Arc::clone(&b);
        async move {
            for chunk in (from..to).collect::<Vec<_>>().chunks(100) {
                let vals: Vec<String> = chunk.iter().map(|i| format!("v{i}")).collect();
                let refs: Vec<&str> = vals.iter().map(String::as_str).collect();
                b.produce("in", vec![(0, batch(&refs))], Acks::Leader)
                    .await
                    .unwrap();
            }
        }
    };
    let sink = LogSink {
        log: Arc::clone(&b.topics.get("out").unwrap().partitions[0].log),
        checkpoints: Default::default(),
    };
    let ctx = Arc::new(ReplicatedCtx {
        name: "up".into(),
        id: 7,
        source: b.topics.get("in").unwrap(),
        dests: vec![("out".into(), 1)],
        uses: vec![(b.plugins.get("upper").unwrap(), Vec::new())],
        modules: vec!["upper-module".into()],
        max_record_bytes: 1 << 20,
        sink,
    });
    let start = Checkpoint {
        states: vec![Vec::new()],
        ..Checkpoint::default()
    };
    let until_out = |n: usize| {
        let b = Arc::clone(&b);
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while values(&b, "out", 0).await.len() < n {
                assert!(Instant::now() < deadline, "the worker is stuck");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let spawn = |epoch: u32, from: Checkpoint| {
        let (stop, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(replicated::run(Arc::clone(&ctx), 0, epoch, from, rx));
        (stop, task)
    };

    // A worker writes 300 outputs, then its leader dies before any checkpoint is taken.
    produce(0, 300).await;
    let (stop, task) = spawn(0, start.clone());
    until_out(300).await;
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    // The next leader starts from the pipeline's first checkpoint: it replays all 500 source
    // records and writes only the 200 the destination lacks.
    produce(300, 500).await;
    let (stop, task) = spawn(1, start);
    until_out(500).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    let want: Vec<String> = (0..500).map(|i| format!("V{i}")).collect();
    assert_eq!(values(&b, "out", 0).await, want);
    // Its checkpoint says so, and a worker starting from it writes nothing more.
    let last = ctx
        .sink
        .checkpoints
        .lock()
        .unwrap()
        .last()
        .cloned()
        .unwrap();
    assert_eq!(last.next_offset, 500);
    assert_eq!((last.records_in, last.records_out), (500, 500));
    assert_eq!(last.sequences, [(0, 0, 500)]);
    assert_eq!(last.leader_epoch, 1);
    produce(500, 510).await;
    let (stop, task) = spawn(2, last);
    until_out(510).await;
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    let want: Vec<String> = (0..510).map(|i| format!("V{i}")).collect();
    assert_eq!(values(&b, "out", 0).await, want);
}
