//! One pipeline worker per source partition: wait for records, run a round on the blocking
//! pool (read → chain → one atomic write of outputs + progress), repeat until stopped or failed.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;
use weir_common::batch::{self, BatchBuilder, BatchError, TimestampType};
use weir_common::limits::{PIPELINE_OUTPUT_BATCH_BYTES, PIPELINE_READ_MAX_BYTES};

use super::store;
use super::{Pipeline, PipelineProgress};
use crate::log::{LogError, PartitionLog, PendingBatch, ReadUpTo};
use crate::plugins::{Plugin, PluginKind, Stage, Staged, chain};
use crate::storage::Store;
use crate::topics::Topic;
use crate::types::now_ms;

/// What every worker of one run shares.
pub struct WorkerCtx {
    pub name: String,
    pub pipeline: Arc<Pipeline>,
    pub store: Store,
    pub source: Arc<Topic>,
    /// Each output's topic, output 0 first.
    pub dests: Vec<Arc<Topic>>,
    pub uses: Vec<(Plugin, Vec<u8>)>,
    pub max_record_bytes: usize,
    /// Set to stop every worker of the run (delete, resume, or a sibling's failure).
    pub stop: Arc<watch::Sender<bool>>,
}

impl WorkerCtx {
    /// Marks the pipeline failed (persisted) and stops the other workers.
    async fn fail(self: &Arc<Self>, error: String) {
        let _ = self.stop.send(true);
        let ctx = Arc::clone(self);
        let _ =
            tokio::task::spawn_blocking(move || ctx.pipeline.mark_failed(&ctx.store, error)).await;
    }

    /// The partition of output `output` that source partition `partition` writes to.
    fn dest_log(&self, output: usize, partition: u32) -> &Arc<PartitionLog> {
        let dest = &self.dests[output];
        let n = dest.partitions.len() as u32;
        &dest.partitions[(partition % n) as usize].log
    }
}

/// The worker of source partition `partition`, starting from `progress`.
pub async fn run_partition(ctx: Arc<WorkerCtx>, partition: u32, progress: PipelineProgress) {
    let mut stop = ctx.stop.subscribe();
    let source = Arc::clone(&ctx.source.partitions[partition as usize].log);
    let mut watch = source.watch();
    let mut progress = progress;
    // Instantiated on the first records, reused for every later round; dropped on failure.
    let mut stages: Option<Vec<Stage>> = None;
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        watch.borrow_and_update();
        if source.is_closed() {
            let msg = format!("source topic {:?} was deleted", ctx.source.meta.name);
            ctx.fail(msg).await;
            return;
        }
        if progress.next_offset >= source.bounds().latest {
            tokio::select! {
                changed = watch.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = stop.changed() => {}
            }
            continue;
        }
        let c = Arc::clone(&ctx);
        let src = Arc::clone(&source);
        let job = tokio::task::spawn_blocking(move || {
            let r = round(&c, &src, partition, &mut stages, &progress);
            (stages, r)
        });
        match job.await {
            Ok((s, Ok(next))) => {
                stages = s;
                ctx.pipeline.set_stats(partition, &next);
                progress = next;
            }
            Ok((_, Err(e))) => {
                ctx.fail(format!("partition {partition}: {e}")).await;
                return;
            }
            Err(e) => {
                ctx.fail(format!("partition {partition}: worker panicked: {e}"))
                    .await;
                return;
            }
        }
    }
}

/// One round (blocking): reads from `progress.next_offset`, runs the chain, writes outputs and
/// the new progress atomically. Returns the new progress.
fn round(
    ctx: &WorkerCtx,
    source: &PartitionLog,
    partition: u32,
    stages: &mut Option<Vec<Stage>>,
    progress: &PipelineProgress,
) -> Result<PipelineProgress, String> {
    let mut from = progress.next_offset;
    let earliest = source.bounds().earliest;
    if from < earliest {
        tracing::warn!(
            pipeline = %ctx.name,
            partition,
            skipped = earliest - from,
            "source records were dropped by retention before the pipeline read them"
        );
        from = earliest;
    }
    let read = match source.read_from(from, PIPELINE_READ_MAX_BYTES, ReadUpTo::HighWatermark) {
        Ok(r) => r,
        // Retention ran between the two reads: start at the new earliest next round.
        Err(LogError::OffsetOutOfRange { earliest, .. }) => {
            return Ok(PipelineProgress {
                next_offset: earliest,
                ..progress.clone()
            });
        }
        Err(e) => return Err(format!("cannot read the source: {e}")),
    };
    // Stored batches are consecutive: the round covers every offset from `from` to `next`.
    let next = batch::next_offset_after(&read.batches)
        .map_err(|e| format!("corrupt source batch: {e}"))?
        .map_or(from, |end| end.max(from));
    if next == from {
        return Ok(progress.clone());
    }
    let records_in = next - from;
    let loc = Where {
        pipeline: &ctx.name,
        topic: &ctx.source.meta.name,
        partition,
    };
    let (staged, stages) = run_chain(loc, &ctx.uses, &progress.states, stages, read.batches, from)?;
    let mut groups = Vec::with_capacity(ctx.dests.len());
    let mut records_out = 0;
    for (k, outputs) in split_outputs(staged, ctx.dests.len())?.iter().enumerate() {
        let (batches, n) = encode_outputs(outputs, from, ctx.max_record_bytes, None)?;
        records_out += n;
        groups.push((k, batches));
    }
    let next_progress = PipelineProgress {
        source_topic: ctx.source.meta.id,
        next_offset: next,
        records_in: progress.records_in + records_in,
        records_out: progress.records_out + records_out,
        states: stages.iter().map(|s| s.state().to_vec()).collect(),
    };
    let mut progress_write = ctx.store.write_set();
    store::put_progress(&mut progress_write, &ctx.name, partition, &next_progress);
    // Every output's records and the progress: one atomic write.
    let deleted = || {
        let names: Vec<&str> = ctx.dests.iter().map(|t| t.meta.name.as_str()).collect();
        match names.as_slice() {
            [one] => format!("destination topic {one:?} was deleted"),
            _ => format!("a destination topic of {names:?} was deleted"),
        }
    };
    let written = match groups.as_slice() {
        [(k, batches)] => ctx
            .dest_log(*k, partition)
            .append_group_with(batches, now_ms(), progress_write)
            .map(|a| vec![a]),
        _ => {
            let parts: Vec<(&PartitionLog, &[PendingBatch])> = groups
                .iter()
                .map(|(k, b)| (&**ctx.dest_log(*k, partition), b.as_slice()))
                .collect();
            PartitionLog::append_groups_with(&parts, now_ms(), progress_write)
        }
    };
    let appended = written.map_err(|e| match e {
        LogError::Closed => deleted(),
        e => format!("cannot write to the destination: {e}"),
    })?;
    if let Some(Err(e)) = appended.into_iter().flatten().find(|a| a.is_err()) {
        return Err(format!("cannot write to the destination: {e}"));
    }
    Ok(next_progress)
}

/// How a cluster worker numbers a round's output records (see `encode_outputs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Numbering {
    pub producer_id: u64,
    pub first_sequence: u32,
    pub skip: u64,
}

/// Where a pipeline's chain runs (what its failure log line names).
#[derive(Clone, Copy)]
pub(super) struct Where<'a> {
    pub pipeline: &'a str,
    pub topic: &'a str,
    pub partition: u32,
}

/// Runs the chain over `batches` from offset `from`, instantiating the stages with `states`
/// on first use; a plugin's failure is logged with where it happened. Returns the staged
/// output and the stages (their state after the round).
pub(super) fn run_chain<'s>(
    loc: Where<'_>,
    uses: &[(Plugin, Vec<u8>)],
    states: &[Vec<u8>],
    stages: &'s mut Option<Vec<Stage>>,
    batches: Vec<Bytes>,
    from: u64,
) -> Result<(Staged, &'s [Stage]), String> {
    let stages = match stages {
        Some(s) => s,
        None => stages.insert(instantiate(uses, states)?),
    };
    let staged = chain::run_stages(stages, batches, from).map_err(|e| {
        tracing::warn!(
            pipeline = %loc.pipeline,
            plugin = e.plugin().unwrap_or(""),
            topic = %loc.topic,
            partition = loc.partition,
            offset = e.offset(),
            error = %e,
            "a pipeline's plugin failed; the pipeline stops"
        );
        e.to_string()
    })?;
    Ok((staged, stages))
}

/// A round's output batches per output (output 0 first, `outputs` of them): records a
/// `route` stage sent to an output the pipeline does not have fail it.
pub(super) fn split_outputs(staged: Staged, outputs: usize) -> Result<Vec<Vec<Bytes>>, String> {
    let mut out = vec![Vec::new(); outputs];
    out[0] = staged.batches;
    for (k, batches) in staged.routed {
        match out.get_mut(usize::from(k)) {
            Some(o) => o.extend(batches),
            None => {
                return Err(format!(
                    "a plugin sent records to output {k}, but the pipeline has {outputs} output \
                     topic(s) (outputs 0 to {})",
                    outputs - 1
                ));
            }
        }
    }
    Ok(out)
}

/// The chain's stages with their stored aggregate state (none: empty).
fn instantiate(uses: &[(Plugin, Vec<u8>)], states: &[Vec<u8>]) -> Result<Vec<Stage>, String> {
    let none = Vec::new();
    uses.iter()
        .zip(states.iter().chain(std::iter::repeat(&none)))
        .map(|((plugin, params), state)| {
            let mut stage = plugin.stage(params).map_err(|e| e.to_string())?;
            if stage.kind() == PluginKind::Aggregate {
                stage.set_state(state.clone());
            }
            Ok(stage)
        })
        .collect()
}

/// The chain's output records from offset `from` on (unchanged stored batches may begin
/// before it), read in place and re-encoded for the destination as validated batches of about
/// [`PIPELINE_OUTPUT_BATCH_BYTES`] each; with how many records they hold.
///
/// `numbering` (a cluster worker's): the producer id, and the sequence number of the first
/// output record; the first `skip` output records are left out (the destination holds them)
/// and still counted.
pub(super) fn encode_outputs(
    outputs: &[Bytes],
    from: u64,
    max_record_bytes: usize,
    numbering: Option<Numbering>,
) -> Result<(Vec<PendingBatch>, u64), String> {
    let mut out = Vec::new();
    let mut count = 0u64;
    let mut builder = BatchBuilder::new(TimestampType::CreateTime);
    let mut finish = |mut b: BatchBuilder, first: u64| -> Result<(), String> {
        if let Some(n) = numbering {
            b.set_producer(n.producer_id, n.first_sequence.wrapping_add(first as u32));
        }
        let bytes = b.finish();
        let valid = batch::validate(&bytes, max_record_bytes)
            .map_err(|e| format!("plugin output cannot be stored: {e}"))?;
        out.push(PendingBatch { bytes, valid });
        Ok(())
    };
    let bad = |e: BatchError| format!("plugin output: {e}");
    let skip = numbering.map_or(0, |n| n.skip);
    // Index (among all output records) of the builder's first record.
    let mut first = skip;
    for bytes in outputs {
        let plain = batch::uncompressed(bytes).map_err(bad)?;
        for r in batch::record_refs(&plain).map_err(bad)? {
            let r = r.map_err(bad)?;
            if r.offset < from {
                continue;
            }
            count += 1;
            if count <= skip {
                continue;
            }
            let len = BatchBuilder::encoded_record_len(r.key, r.value, r.headers());
            if !builder.is_empty() && builder.len_bytes() + len > PIPELINE_OUTPUT_BATCH_BYTES {
                let b =
                    std::mem::replace(&mut builder, BatchBuilder::new(TimestampType::CreateTime));
                finish(b, first)?;
                first = count - 1;
            }
            builder.push(r.timestamp, r.key, r.value, r.headers());
        }
    }
    if !builder.is_empty() {
        finish(builder, first)?;
    }
    Ok((out, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One stored batch at offsets `base..` of `n` records with this value.
    fn stored(base: u64, n: usize, value: &str) -> Bytes {
        let mut b = BatchBuilder::new(TimestampType::CreateTime);
        for _ in 0..n {
            b.push(
                1_700_000_000_000,
                Some(b"k"),
                value.as_bytes(),
                [("h", &b"v"[..])],
            );
        }
        let mut bytes = b.finish().to_vec();
        batch::set_base_offset(&mut bytes, base);
        Bytes::from(bytes)
    }

    #[test]
    fn outputs_are_cut_into_batches_that_keep_every_record() {
        let big = "x".repeat(300 * 1024);
        // Two records below the position: left out.
        let outputs = [stored(8, 5, &big), stored(13, 7, &big)];
        let (batches, count) = encode_outputs(&outputs, 10, 1024 * 1024, None).unwrap();
        assert_eq!(count, 10);
        assert!(batches.len() >= 3, "{} batches", batches.len());
        assert!(
            batches
                .iter()
                .all(|b| b.bytes.len() <= PIPELINE_OUTPUT_BATCH_BYTES + 64)
        );
        let mut decoded = Vec::new();
        for b in &batches {
            decoded.extend(batch::decode(&b.bytes).unwrap().1);
        }
        assert_eq!(decoded.len(), 10);
        assert!(decoded.iter().all(|r| r.value.len() == big.len()
            && r.key.as_deref() == Some(&b"k"[..])
            && r.headers.len() == 1
            && r.timestamp == 1_700_000_000_000));
        let (none, zero) = encode_outputs(&[], 0, 1024, None).unwrap();
        assert!(none.is_empty());
        assert_eq!(zero, 0);
    }

    #[test]
    fn numbered_outputs_carry_their_sequences_and_leave_out_what_the_destination_holds() {
        let big = "x".repeat(300 * 1024);
        let outputs = [stored(8, 5, &big), stored(13, 7, &big)];
        let numbering = Numbering {
            producer_id: 9,
            first_sequence: u32::MAX - 1,
            skip: 3,
        };
        let (batches, count) = encode_outputs(&outputs, 10, 1024 * 1024, Some(numbering)).unwrap();
        // Every output record counts; the first three are not sent.
        assert_eq!(count, 10);
        let mut next = (u32::MAX - 1).wrapping_add(3);
        let mut sent = 0;
        for b in &batches {
            let h = batch::BatchHeader::parse(&b.bytes).unwrap();
            assert_eq!((h.producer_id, h.base_sequence), (9, next));
            next = next.wrapping_add(h.record_count);
            sent += h.record_count;
        }
        assert_eq!(sent, 7);
        assert!(batches.len() >= 2);
        // All held already: nothing to send, all counted.
        let all = Numbering {
            skip: 10,
            ..numbering
        };
        let (none, count) = encode_outputs(&outputs, 10, 1024 * 1024, Some(all)).unwrap();
        assert!(none.is_empty());
        assert_eq!(count, 10);
    }

    #[test]
    fn an_output_record_over_the_record_limit_is_an_error() {
        let e = encode_outputs(&[stored(0, 1, &"x".repeat(2000))], 0, 1000, None).unwrap_err();
        assert!(e.contains("plugin output cannot be stored"), "{e}");
    }
}
