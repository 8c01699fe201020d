//! A pipeline's worker in a cluster, on its source partition's leader: each round reads the
//! source from its position, runs the chain, and writes the outputs as the worker's
//! idempotent producer ([`sequence::producer_id`]) through the destination partition's
//! leader with acks=all; every [`CHECKPOINT_INTERVAL`] (sooner once it caught up) it proposes
//! a [`Checkpoint`] of what the destination acknowledged.
//!
//! Exactly-once: a worker (this one after a retry, or a new leader's after a failover)
//! starts from a checkpoint, asks the destination where its producer's sequence stands, and
//! leaves out the outputs numbered below it ([`sequence::resume`]). Rounds are deterministic,
//! so what it leaves out is what the destination holds.
//!
//! Outputs and checkpoints go through a [`ClusterSink`]: this module knows no leaders, peers
//! or raft.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

use super::Checkpoint;
use super::sequence::{self, Resume};
use super::worker::{Numbering, Where, encode_outputs, run_chain, split_outputs};
use crate::log::{LogError, PartitionLog, ReadUpTo};
use crate::plugins::{Plugin, Stage};
use crate::topics::Topic;
use weir_common::batch;
use weir_common::limits::PIPELINE_READ_MAX_BYTES;

/// How often a worker proposes its checkpoint (when it moved): a failover replays at most
/// about this much of the source.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// How soon a worker that caught up with a trickling source checkpoints (when it moved): no
/// metadata write per round of a trickle. A new worker, or one that ran a burst of rounds,
/// checkpoints as soon as it catches up.
pub const CHECKPOINT_IDLE_INTERVAL: Duration = Duration::from_millis(200);

/// Why a sink call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The partition has no leader reachable now, or it moved: try again.
    #[error("{0}")]
    Retriable(String),
    /// The destination expects another sequence number next.
    #[error("the destination expects sequence {expected}")]
    OutOfOrder { expected: u32 },
    /// A newer worker checkpointed this partition: this one is deposed.
    #[error("a newer worker took the partition over")]
    Deposed,
    #[error("{0}")]
    Failed(String),
}

/// Where a cluster worker's outputs and checkpoints go.
pub trait ClusterSink: Send + Sync + 'static {
    /// The sequence number the destination partition's leader expects next from `producer_id`.
    fn expected_sequence(
        &self,
        topic: &str,
        partition: u32,
        producer_id: u64,
    ) -> impl Future<Output = Result<u32, SinkError>> + Send;

    /// Writes `batches` (stamped with the worker's producer id and sequences) to the
    /// destination partition's leader with acks=all.
    fn produce(
        &self,
        topic: &str,
        partition: u32,
        batches: Vec<Bytes>,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Proposes a checkpoint of pipeline `id`'s source partition `partition`.
    fn checkpoint(
        &self,
        pipeline: &str,
        id: u32,
        partition: u32,
        checkpoint: Checkpoint,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;
}

/// What a cluster worker runs on.
pub struct ReplicatedCtx<S> {
    pub name: String,
    pub id: u32,
    pub source: Arc<Topic>,
    /// Each output's topic and its partition count, output 0 first.
    pub dests: Vec<(String, u32)>,
    pub uses: Vec<(Plugin, Vec<u8>)>,
    /// Each stage's module (SHA-256), recorded in the checkpoints.
    pub modules: Vec<String>,
    pub max_record_bytes: usize,
    pub sink: S,
}

/// One round's result: the outputs to send and the position and states after them.
struct Round {
    next_offset: u64,
    records_in: u64,
    /// Per output, its batches.
    outputs: Vec<Vec<Bytes>>,
    states: Vec<Vec<u8>>,
}

/// Where one output of a worker goes, and where its numbering stands.
struct Dest {
    output: u8,
    topic: String,
    partition: u32,
    /// The sequence number of this worker's next output record there.
    next_sequence: u32,
    /// What the destination expects next: asked before the first send, and again after it
    /// refused one.
    expected: Option<u32>,
}

/// How sending one round's outputs to one destination ended.
enum Sent {
    /// Written (or held already): this many output records of the round.
    Done(u64),
    /// Stopped while retrying: the round is not complete.
    Stopped,
}

/// The worker of source partition `partition` under leader epoch `leader_epoch`, from
/// `checkpoint`, until `stop` is set (leadership moved, the pipeline stopped) or it fails
/// (returned, to be recorded as the pipeline's failure).
pub async fn run<S: ClusterSink>(
    ctx: Arc<ReplicatedCtx<S>>,
    partition: u32,
    leader_epoch: u32,
    checkpoint: Checkpoint,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let source = Arc::clone(&ctx.source.partitions[partition as usize].log);
    let mut watch = source.watch();
    let producer_id = sequence::producer_id(ctx.id, partition);
    let mut at = checkpoint;
    at.leader_epoch = leader_epoch;
    at.modules.clone_from(&ctx.modules);
    let mut dests: Vec<Dest> = (0u8..)
        .zip(&ctx.dests)
        .map(|(output, (topic, n))| {
            let dest_partition = partition % n;
            let next_sequence = at
                .sequences
                .iter()
                .find(|(o, p, _)| (*o, *p) == (output, dest_partition))
                .map_or(0, |(_, _, s)| *s);
            Dest {
                output,
                topic: topic.clone(),
                partition: dest_partition,
                next_sequence,
                expected: None,
            }
        })
        .collect();
    let mut stages: Option<Vec<Stage>> = None;
    let mut checkpointed = Instant::now();
    let mut dirty = false;
    // Whether this worker checkpointed yet, and the rounds it ran since it last waited for
    // the source.
    let (mut first, mut rounds) = (true, 0u32);
    loop {
        if *stop.borrow_and_update() {
            return last_checkpoint(&ctx, partition, at, dirty).await;
        }
        watch.borrow_and_update();
        let caught_up = at.next_offset >= source.bounds().latest;
        let due = match caught_up {
            // Caught up with a new worker's backlog or after a burst (two rounds or more in
            // a row): at once, so describe shows no lag as soon as there is none. After a
            // trickle: not more often than every CHECKPOINT_IDLE_INTERVAL.
            true if first || rounds >= 2 => Duration::ZERO,
            true => CHECKPOINT_IDLE_INTERVAL,
            false => CHECKPOINT_INTERVAL,
        };
        if dirty && checkpointed.elapsed() >= due {
            match ctx
                .sink
                .checkpoint(&ctx.name, ctx.id, partition, at.clone())
                .await
            {
                Ok(()) => (checkpointed, dirty, first) = (Instant::now(), false, false),
                Err(SinkError::Deposed) => return Ok(()),
                Err(SinkError::Failed(e)) => return Err(e),
                Err(e) => {
                    tracing::debug!(pipeline = %ctx.name, partition, error = %e, "checkpoint not taken; retrying")
                }
            }
        }
        if caught_up {
            rounds = 0;
            let next = due.saturating_sub(checkpointed.elapsed());
            tokio::select! {
                changed = watch.changed() => if changed.is_err() { return Ok(()) },
                _ = stop.changed() => {}
                _ = tokio::time::sleep(next), if dirty => {}
            }
            continue;
        }
        // The round on the blocking pool, from the stages' state at `at`.
        let c = Arc::clone(&ctx);
        let src = Arc::clone(&source);
        let from = at.clone();
        let taken = stages.take();
        let (back, round) = tokio::task::spawn_blocking(move || {
            let mut stages = taken;
            let r = round(&c, &src, partition, &mut stages, &from);
            (stages, r)
        })
        .await
        .map_err(|e| format!("partition {partition}: worker panicked: {e}"))?;
        stages = back;
        let round = round.map_err(|e| format!("partition {partition}: {e}"))?;
        rounds += 1;
        // Send each output, leaving out what its destination holds.
        let mut round_count = 0;
        for (dest, outputs) in dests.iter_mut().zip(&round.outputs) {
            match send(&ctx, producer_id, dest, outputs, at.next_offset, &mut stop).await? {
                Sent::Done(n) => round_count += n,
                Sent::Stopped => return last_checkpoint(&ctx, partition, at, dirty).await,
            }
        }
        at.records_out += round_count;
        at.records_in += round.records_in;
        at.next_offset = round.next_offset;
        at.states = round.states;
        at.sequences = dests
            .iter()
            .map(|d| (d.output, d.partition, d.next_sequence))
            .collect();
        dirty = true;
    }
}

/// A stopping worker checkpoints where it is, once (a plugin replaced switches here, and the
/// next worker replays nothing); a failure to is no failure of the pipeline.
async fn last_checkpoint<S: ClusterSink>(
    ctx: &ReplicatedCtx<S>,
    partition: u32,
    at: Checkpoint,
    dirty: bool,
) -> Result<(), String> {
    if !dirty {
        return Ok(());
    }
    match ctx.sink.checkpoint(&ctx.name, ctx.id, partition, at).await {
        Err(SinkError::Failed(e)) => Err(e),
        _ => Ok(()),
    }
}

/// Sends one round's `outputs` (records from source offset `from` on) to `dest`, leaving out
/// what it holds, retrying until written, the worker is stopped, or it fails.
async fn send<S: ClusterSink>(
    ctx: &ReplicatedCtx<S>,
    producer_id: u64,
    dest: &mut Dest,
    outputs: &[Bytes],
    from: u64,
    stop: &mut watch::Receiver<bool>,
) -> Result<Sent, String> {
    loop {
        let exp = match dest.expected {
            Some(e) => e,
            None => match ctx
                .sink
                .expected_sequence(&dest.topic, dest.partition, producer_id)
                .await
            {
                Ok(e) => *dest.expected.insert(e),
                Err(SinkError::Retriable(e)) => {
                    retry_pause(&ctx.name, dest.partition, &e).await;
                    if *stop.borrow() {
                        return Ok(Sent::Stopped);
                    }
                    continue;
                }
                Err(e) => return Err(e.to_string()),
            },
        };
        // Records the destination holds of this round (all when it is further on).
        let skip = match sequence::resume(dest.next_sequence, u64::MAX, exp) {
            Resume::SendFrom(k) => k,
            Resume::Gap { expected, first } => {
                return Err(format!(
                    "destination {:?} partition {} expects sequence {expected}, before this \
                     worker's {first}: acknowledged output is missing there",
                    dest.topic, dest.partition
                ));
            }
        };
        let numbering = Numbering {
            producer_id,
            first_sequence: dest.next_sequence,
            skip,
        };
        let (batches, count) =
            encode_outputs(outputs, from, ctx.max_record_bytes, Some(numbering))?;
        let bytes: Vec<Bytes> = batches.into_iter().map(|b| b.bytes).collect();
        let written = match bytes.is_empty() {
            true => Ok(()),
            false => ctx.sink.produce(&dest.topic, dest.partition, bytes).await,
        };
        match written {
            Ok(()) => {
                dest.next_sequence = dest.next_sequence.wrapping_add(count as u32);
                dest.expected = Some(dest.next_sequence);
                return Ok(Sent::Done(count));
            }
            Err(SinkError::OutOfOrder { expected: e }) => dest.expected = Some(e),
            Err(SinkError::Retriable(e)) => {
                // A new leader may hold less than the old one answered: ask again.
                dest.expected = None;
                retry_pause(&ctx.name, dest.partition, &e).await;
            }
            Err(e) => return Err(e.to_string()),
        }
        if *stop.borrow() {
            return Ok(Sent::Stopped);
        }
    }
}

async fn retry_pause(pipeline: &str, partition: u32, error: &str) {
    tracing::debug!(
        pipeline,
        partition,
        error,
        "pipeline output not written; retrying"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// One round (blocking): reads from `at.next_offset` up to the high watermark and runs the
/// chain (a failure stops the worker, so the stages' state then does not matter).
fn round<S>(
    ctx: &ReplicatedCtx<S>,
    source: &PartitionLog,
    partition: u32,
    stages: &mut Option<Vec<Stage>>,
    at: &Checkpoint,
) -> Result<Round, String> {
    let from = at.next_offset;
    let read = match source.read_from(from, PIPELINE_READ_MAX_BYTES, ReadUpTo::HighWatermark) {
        Ok(r) => r,
        Err(LogError::OffsetOutOfRange { earliest, .. }) if earliest > from => {
            return Err(format!(
                "source records {from}..{earliest} were dropped by retention before the \
                 pipeline read them"
            ));
        }
        Err(e) => return Err(format!("cannot read the source: {e}")),
    };
    let next = batch::next_offset_after(&read.batches)
        .map_err(|e| format!("corrupt source batch: {e}"))?
        .map_or(from, |end| end.max(from));
    let loc = Where {
        pipeline: &ctx.name,
        topic: &ctx.source.meta.name,
        partition,
    };
    let (staged, stages) = run_chain(loc, &ctx.uses, &at.states, stages, read.batches, from)?;
    Ok(Round {
        next_offset: next,
        records_in: next - from,
        outputs: split_outputs(staged, ctx.dests.len())?,
        states: stages.iter().map(|s| s.state().to_vec()).collect(),
    })
}
