//! Sinks: a consumer-group member per sink that writes what it reads out, then commits.
//!
//! The driver reads what is ready (up to [`MAX_BATCH_BYTES`]), hands it to the [`Writer`],
//! and commits the group's offsets only after the write succeeded (at-least-once). A writer
//! that keeps its own positions with its output (the file sink) reports them at open; the
//! driver never hands it a record below them again, which makes it exactly-once.
//!
//! The sink's plugin chain runs at the broker as a consume-time chain. A batch never ends
//! between two outputs of the same input record (a flat_map's outputs share its offset), so
//! a position is always a whole input record.

pub mod file;
pub mod http;
pub mod postgres;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio::sync::watch;
use weir::{ConsumerConfig, ConsumerRecord, StartFrom};

use crate::config::PluginUse;
use crate::context::{self, Context};
use crate::error::ConnectError;
use crate::status::{Reporter, State};

/// Most bytes of record values one write carries (one more record of the same input may
/// follow).
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// Where a sink writes.
pub trait Writer: Send {
    /// Opens the target. Returns the positions (partition → next offset) already written
    /// there, for a target that keeps them; the driver skips records below them.
    fn open(&mut self) -> impl Future<Output = Result<BTreeMap<u32, u64>, ConnectError>> + Send;
    /// Writes `records` durably. `positions` is where every partition stands after them.
    /// Returns how many it passed over as unfit for the target (e.g. not a JSON object).
    fn write(
        &mut self,
        records: &[ConsumerRecord],
        positions: &BTreeMap<u32, u64>,
    ) -> impl Future<Output = Result<u64, ConnectError>> + Send;
}

/// The sink settings the driver needs.
pub struct SinkSpec<'a> {
    pub topic: &'a str,
    pub group: &'a str,
    pub session_timeout_ms: Option<u32>,
    pub plugins: &'a [PluginUse],
}

/// Runs a sink until `shutdown`.
pub async fn run<W: Writer>(
    ctx: &Context,
    spec: SinkSpec<'_>,
    writer: &mut W,
    status: &Reporter,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), ConnectError> {
    let mut written = writer.open().await?;
    let mut config = ConsumerConfig::default()
        .group(spec.group)
        .auto_commit(false)
        .start(StartFrom::Earliest)
        .client_id(status.name());
    if let Some(ms) = spec.session_timeout_ms {
        config = config.session_timeout(Duration::from_millis(ms.into()));
    }
    for p in spec.plugins {
        config = config.plugin(p.name(), p.params_json().as_deref());
    }
    let mut consumer = ctx.client.consumer(spec.topic, config).await?;
    status.set_state(State::Running);
    status.progress(0, 0, describe(&written));
    let mut held: Option<ConsumerRecord> = None;
    loop {
        let first = match held.take() {
            Some(r) => r,
            None => tokio::select! {
                r = consumer.next() => match r {
                    Some(r) => r?,
                    None => break,
                },
                _ = shutdown.changed() => break,
            },
        };
        let mut bytes = first.value.len();
        let mut batch = vec![first];
        while let Some(Some(next)) = consumer.next().now_or_never() {
            let next = next?;
            let same_input = batch
                .last()
                .is_some_and(|l| l.partition == next.partition && l.offset == next.offset);
            if bytes >= MAX_BATCH_BYTES && !same_input {
                held = Some(next);
                break;
            }
            bytes += next.value.len();
            batch.push(next);
        }
        batch.retain(|r| written.get(&r.partition).is_none_or(|&w| r.offset >= w));
        if !batch.is_empty() {
            let mut positions = written.clone();
            for r in &batch {
                let p = positions.entry(r.partition).or_default();
                *p = (*p).max(r.offset + 1);
            }
            let skipped = tokio::select! {
                skipped = writer.write(&batch, &positions) => skipped?,
                _ = context::grace_over(shutdown) => {
                    tracing::warn!(connector = %status.name(), "stopping in the middle of a write; it is done again after a restart");
                    break;
                }
            };
            written = positions;
            let records = batch.len() as u64;
            status.progress(records - skipped.min(records), skipped, describe(&written));
        }
        let owned = consumer.assignment();
        let commit: BTreeMap<u32, u64> = written
            .iter()
            .filter(|(p, _)| owned.contains(p))
            .map(|(&p, &o)| (p, o))
            .collect();
        if !commit.is_empty()
            && let Err(e) = consumer.commit_offsets(commit).await
        {
            // What was written stays written; the next commit covers it.
            tracing::warn!(connector = %status.name(), error = %e, "cannot commit the group's offsets");
        }
        if *shutdown.borrow() {
            break;
        }
    }
    consumer.close().await?;
    Ok(())
}

/// Positions readably: `p0=12 p1=40`.
fn describe(positions: &BTreeMap<u32, u64>) -> String {
    positions
        .iter()
        .map(|(p, o)| format!("p{p}={o}"))
        .collect::<Vec<_>>()
        .join(" ")
}
