//! One pipeline worker per source partition: wait for records, run a round on the blocking
//! pool (read → chain → one atomic write of outputs + progress), repeat until stopped or failed.

use std::sync::Arc;

use tokio::sync::watch;
use weir_common::batch::{self, BatchBuilder, BatchHeader, TimestampType};
use weir_common::limits::{PIPELINE_OUTPUT_BATCH_BYTES, PIPELINE_READ_MAX_BYTES};
use weir_common::record::Record;

use super::{Pipeline, PipelineProgress};
use crate::log::{LogError, PartitionLog, PendingBatch};
use crate::plugins::{Plugin, PluginKind, Stage, chain};
use crate::storage::{ProgressPut, Store};
use crate::topics::Topic;
use crate::types::now_ms;

/// What every worker of one run shares.
pub struct WorkerCtx {
    pub name: String,
    pub pipeline: Arc<Pipeline>,
    pub store: Store,
    pub source: Arc<Topic>,
    pub dest: Arc<Topic>,
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

    fn dest_log(&self, partition: u32) -> &Arc<PartitionLog> {
        let n = self.dest.partitions.len() as u32;
        &self.dest.partitions[(partition % n) as usize].log
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
    let read = match source.read_from(from, PIPELINE_READ_MAX_BYTES) {
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
    let mut next = from;
    let mut records_in = 0;
    for bytes in &read.batches {
        let h = BatchHeader::parse(bytes).map_err(|e| format!("corrupt source batch: {e}"))?;
        records_in += h.next_offset().saturating_sub(h.base_offset.max(from));
        next = next.max(h.next_offset());
    }
    if next == from {
        return Ok(progress.clone());
    }
    let stages = match stages {
        Some(s) => s,
        None => stages.insert(instantiate(ctx, progress)?),
    };
    let staged = chain::run_stages(stages, read.batches, from).map_err(|e| e.to_string())?;
    let mut outputs = Vec::new();
    for bytes in &staged.batches {
        let (_, rs) = batch::decode(bytes).map_err(|e| format!("plugin output: {e}"))?;
        // Unchanged stored batches may begin before the position.
        outputs.extend(rs.into_iter().filter(|r| r.offset >= from));
    }
    let next_progress = PipelineProgress {
        source_topic: ctx.source.meta.id,
        next_offset: next,
        records_in: progress.records_in + records_in,
        records_out: progress.records_out + outputs.len() as u64,
        states: stages.iter().map(|s| s.state().to_vec()).collect(),
    };
    let batches = encode_outputs(&outputs, ctx.max_record_bytes)?;
    let put = ProgressPut {
        pipeline: &ctx.name,
        partition,
        progress: &next_progress,
    };
    let dest = ctx.dest_log(partition);
    let appended = dest
        .append_group_with(&batches, now_ms(), Some(put))
        .map_err(|e| match e {
            LogError::Closed => format!("destination topic {:?} was deleted", ctx.dest.meta.name),
            e => format!("cannot write to the destination: {e}"),
        })?;
    if let Some(Err(e)) = appended.into_iter().find(|a| a.is_err()) {
        return Err(format!("cannot write to the destination: {e}"));
    }
    Ok(next_progress)
}

/// The chain's stages with their stored aggregate state.
fn instantiate(ctx: &WorkerCtx, progress: &PipelineProgress) -> Result<Vec<Stage>, String> {
    ctx.uses
        .iter()
        .zip(&progress.states)
        .map(|((plugin, params), state)| {
            let mut stage = plugin.stage(params).map_err(|e| e.to_string())?;
            if stage.kind() == PluginKind::Aggregate {
                stage.set_state(state.clone());
            }
            Ok(stage)
        })
        .collect()
}

/// Output records as validated batches of about [`PIPELINE_OUTPUT_BATCH_BYTES`] each.
fn encode_outputs(
    outputs: &[Record],
    max_record_bytes: usize,
) -> Result<Vec<PendingBatch>, String> {
    let mut out = Vec::new();
    let mut builder = BatchBuilder::new(TimestampType::CreateTime);
    let mut finish = |b: BatchBuilder| -> Result<(), String> {
        let bytes = b.finish();
        let valid = batch::validate(&bytes, max_record_bytes)
            .map_err(|e| format!("plugin output cannot be stored: {e}"))?;
        out.push(PendingBatch { bytes, valid });
        Ok(())
    };
    for r in outputs {
        let len = BatchBuilder::encoded_record_len(
            r.key.as_deref(),
            &r.value,
            r.headers.iter().map(|h| (h.key.as_str(), &h.value[..])),
        );
        if !builder.is_empty() && builder.len_bytes() + len > PIPELINE_OUTPUT_BATCH_BYTES {
            finish(std::mem::replace(
                &mut builder,
                BatchBuilder::new(TimestampType::CreateTime),
            ))?;
        }
        builder.push(
            r.timestamp,
            r.key.as_deref(),
            &r.value,
            r.headers.iter().map(|h| (h.key.as_str(), &h.value[..])),
        );
    }
    if !builder.is_empty() {
        finish(builder)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use weir_common::record::Header;

    use super::*;

    fn rec(value: &str) -> Record {
        Record {
            offset: 0,
            timestamp: 1_700_000_000_000,
            key: Some(Bytes::from_static(b"k")),
            value: Bytes::copy_from_slice(value.as_bytes()),
            headers: vec![Header {
                key: "h".into(),
                value: Bytes::from_static(b"v"),
            }],
        }
    }

    #[test]
    fn outputs_are_cut_into_batches_that_keep_every_record() {
        let big = "x".repeat(300 * 1024);
        let outputs: Vec<Record> = (0..10).map(|_| rec(&big)).collect();
        let batches = encode_outputs(&outputs, 1024 * 1024).unwrap();
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
        assert!(encode_outputs(&[], 1024).unwrap().is_empty());
    }

    #[test]
    fn an_output_record_over_the_record_limit_is_an_error() {
        let e = encode_outputs(&[rec(&"x".repeat(2000))], 1000).unwrap_err();
        assert!(e.contains("plugin output cannot be stored"), "{e}");
    }
}
