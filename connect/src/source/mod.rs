//! Sources that read from a replayable position (files, tables), produced exactly once.
//!
//! A [`Reader`] hands out **chunks**: the records readable after a position, and the position
//! after them. The driver produces each chunk with an idempotent `acks=all` producer and saves
//! the position after the broker acknowledged it. To survive a `kill -9` in between without
//! duplicates, it saves a *pending* marker before producing a chunk (its end position and
//! where every partition ended before it) and tags every record with the header
//! [`SOURCE_HEADER`] = `<connector>/<chunk number>/<index in the chunk's output>`. A restart
//! that finds a pending chunk reads the same chunk again, scans each partition from where it
//! ended before the chunk for the tags already written, and produces only the rest.
//!
//! This needs the chunk's records to come out the same when read again: true of the file and
//! table readers, and of stateless plugins (an aggregate's state restarts with the connector).

pub mod file;
pub mod http;
pub mod postgres;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;
use weir::{
    Client, ConsumerConfig, Header, OffsetSpec, Producer, ProducerConfig, ProducerRecord, StartFrom,
};

use crate::config::PluginUse;
use crate::context::{self, Context};
use crate::error::ConnectError;
use crate::status::{Reporter, State};
use crate::transform::Transform;

/// The header every record produced by a replayable source carries (see the module docs).
pub const SOURCE_HEADER: &str = "weir-connect";
/// Most bytes of input one chunk reads.
pub const MAX_CHUNK_BYTES: usize = 1024 * 1024;

pub use crate::record::SourceRecord;

/// What one read returned.
#[derive(Debug, Default)]
pub struct Chunk {
    pub records: Vec<SourceRecord>,
    /// Input passed over (e.g. a line that is not a JSON object).
    pub skipped: u64,
    /// The position after this chunk.
    pub end: Value,
}

/// Reads a source from a position it can return to.
pub trait Reader: Send {
    /// Moves to a saved position (`None`: the source's start).
    fn seek(
        &mut self,
        position: Option<&Value>,
    ) -> impl Future<Output = Result<(), ConnectError>> + Send;
    /// The records readable now after the current position (at most about `max_bytes`, or
    /// exactly up to `until`), and moves past them; `None` when there is nothing new. A
    /// chunk may hold no records and only move the position (a rotated file).
    fn read(
        &mut self,
        max_bytes: usize,
        until: Option<&Value>,
    ) -> impl Future<Output = Result<Option<Chunk>, ConnectError>> + Send;
    /// A position, readably (for `weir connect status`).
    fn describe(&self, position: &Value) -> String;
    /// How long to wait before reading again after finding nothing.
    fn idle_wait(&self) -> Duration;
}

/// A source's saved state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SourceState {
    /// Where the next chunk starts (`None`: the source's start).
    position: Option<Value>,
    /// The number of the next chunk.
    chunk: u64,
    /// A chunk that may have been produced in part.
    pending: Option<Pending>,
}

impl SourceState {
    /// The chunk ending at `end` is in the topic.
    fn done(&mut self, end: Value) {
        self.pending = None;
        self.position = Some(end);
        self.chunk += 1;
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    end: Value,
    /// Where each partition ended (at the latest) before the chunk was produced.
    ends: BTreeMap<u32, u64>,
}

/// Runs a replayable source until `shutdown`.
pub async fn run<R: Reader>(
    ctx: &Context,
    topic: &str,
    plugins: &[PluginUse],
    reader: &mut R,
    status: &Reporter,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), ConnectError> {
    let name = status.name().to_string();
    let key = format!("{name}.source");
    let mut st: SourceState = ctx.state.load(&key)?.unwrap_or_default();
    let mut transform = Transform::open(&ctx.client, plugins).await?;
    let partitions = ctx
        .client
        .admin()
        .describe_topic(topic)
        .await?
        .topic
        .partitions;
    let producer = ctx.client.producer(ProducerConfig::default());
    reader.seek(st.position.as_ref()).await?;
    if let Some(p) = st.pending.take() {
        let chunk = reader
            .read(usize::MAX, Some(&p.end))
            .await?
            .unwrap_or_default();
        let read = chunk.records.len() as u64;
        let outputs = transform.apply(chunk.records).await?;
        let tag = tag_prefix(&name, st.chunk);
        let written = scan(&ctx.client, topic, &p.ends, &tag).await?;
        tracing::info!(
            connector = %name,
            chunk = st.chunk,
            outputs = outputs.len(),
            already_written = written.len(),
            "finishing the chunk a previous run left pending"
        );
        produce(&producer, topic, outputs, Some(&tag), &written).await?;
        st.done(p.end);
        ctx.state.save(&key, &st)?;
        report(status, reader, &st, read, chunk.skipped);
    }
    status.set_state(State::Running);
    report(status, reader, &st, 0, 0);
    let mut ends = partition_ends(&ctx.client, topic, partitions).await?;
    let mut dirty = false;
    while !*shutdown.borrow() {
        let Some(chunk) = reader.read(MAX_CHUNK_BYTES, None).await? else {
            if std::mem::take(&mut dirty) {
                ctx.state.save(&key, &st)?;
            }
            tokio::select! {
                _ = tokio::time::sleep(reader.idle_wait()) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        };
        if chunk.records.is_empty() {
            st.position = Some(chunk.end);
            dirty = true;
            report(status, reader, &st, 0, chunk.skipped);
            continue;
        }
        st.pending = Some(Pending {
            end: chunk.end.clone(),
            ends: ends.clone(),
        });
        ctx.state.save(&key, &st)?;
        let (read, skipped) = (chunk.records.len() as u64, chunk.skipped);
        let tag = tag_prefix(&name, st.chunk);
        let produced = async {
            let outputs = transform.apply(chunk.records).await?;
            produce(&producer, topic, outputs, Some(&tag), &HashSet::new()).await
        };
        let landed = tokio::select! {
            landed = produced => landed?,
            _ = context::grace_over(shutdown) => {
                // The chunk stays pending (saved above): a restart finishes it.
                tracing::warn!(connector = %name, "stopping in the middle of a chunk; a restart finishes it");
                return Ok(());
            }
        };
        for (partition, offset) in landed {
            let end = ends.entry(partition).or_default();
            *end = (*end).max(offset + 1);
        }
        st.done(chunk.end);
        dirty = true;
        report(status, reader, &st, read, skipped);
    }
    if dirty {
        ctx.state.save(&key, &st)?;
    }
    Ok(())
}

fn report<R: Reader>(status: &Reporter, reader: &R, st: &SourceState, records: u64, skipped: u64) {
    let position = st
        .position
        .as_ref()
        .map_or_else(|| "start".to_string(), |p| reader.describe(p));
    status.progress(records, skipped, position);
}

/// A JSON Lines record: the line itself as the value, `key_field`'s value as the key (a
/// string as it is, anything else as JSON).
pub(crate) fn json_record(line: &[u8], key_field: Option<&str>) -> Option<SourceRecord> {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(line) else {
        return None;
    };
    let key = key_field.and_then(|k| obj.get(k)).and_then(|v| match v {
        Value::Null => None,
        Value::String(s) => Some(Bytes::from(s.clone())),
        other => Some(Bytes::from(other.to_string())),
    });
    Some(SourceRecord {
        key,
        value: Bytes::copy_from_slice(line),
    })
}

fn tag_prefix(connector: &str, chunk: u64) -> String {
    format!("{connector}/{chunk}/")
}

/// Produces `outputs`, except the indices in `skip`, and waits until the broker acknowledged
/// every one; with a `tag` prefix, each carries [`SOURCE_HEADER`] = prefix + its index.
/// Returns where each landed.
pub(crate) async fn produce(
    producer: &Producer,
    topic: &str,
    outputs: Vec<weir::Record>,
    tag: Option<&str>,
    skip: &HashSet<u64>,
) -> Result<Vec<(u32, u64)>, ConnectError> {
    let mut pending = Vec::with_capacity(outputs.len());
    for (i, r) in outputs.into_iter().enumerate() {
        let i = i as u64;
        if skip.contains(&i) {
            continue;
        }
        let mut record = ProducerRecord::new(topic, r.value).timestamp(r.timestamp);
        record.key = r.key;
        record.headers = r.headers;
        if let Some(prefix) = tag {
            record.headers.push(Header {
                key: SOURCE_HEADER.to_string(),
                value: Bytes::from(format!("{prefix}{i}")),
            });
        }
        pending.push(producer.enqueue(record).await?);
    }
    let mut landed = Vec::with_capacity(pending.len());
    for delivery in pending {
        landed.push(delivery.await?);
    }
    Ok(landed)
}

/// Where every partition of `topic` ends now.
async fn partition_ends(
    client: &Client,
    topic: &str,
    partitions: u32,
) -> Result<BTreeMap<u32, u64>, ConnectError> {
    let admin = client.admin();
    let mut ends = BTreeMap::new();
    for p in 0..partitions {
        ends.insert(p, admin.list_offset(topic, p, OffsetSpec::Latest).await?);
    }
    Ok(ends)
}

/// The output indices of a chunk already in `topic`: records after `ends` whose
/// [`SOURCE_HEADER`] starts with `prefix`.
async fn scan(
    client: &Client,
    topic: &str,
    ends: &BTreeMap<u32, u64>,
    prefix: &str,
) -> Result<HashSet<u64>, ConnectError> {
    let admin = client.admin();
    let mut found = HashSet::new();
    for (&partition, &from) in ends {
        let latest = admin
            .list_offset(topic, partition, OffsetSpec::Latest)
            .await?;
        let earliest = admin
            .list_offset(topic, partition, OffsetSpec::Earliest)
            .await?;
        let from = from.max(earliest);
        if from >= latest {
            continue;
        }
        let config = ConsumerConfig::default()
            .partitions(vec![partition])
            .start(StartFrom::Offset(from));
        let mut consumer = client.consumer(topic, config).await?;
        while let Some(record) = consumer.next().await {
            let record = record?;
            let tag = record
                .headers
                .iter()
                .find(|h| h.key == SOURCE_HEADER)
                .and_then(|h| std::str::from_utf8(&h.value).ok())
                .and_then(|v| v.strip_prefix(prefix))
                .and_then(|i| i.parse::<u64>().ok());
            if let Some(i) = tag {
                found.insert(i);
            }
            if record.offset + 1 >= latest {
                break;
            }
        }
    }
    Ok(found)
}
