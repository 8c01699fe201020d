//! Fetch (a long poll over the partitions asked for) and ListOffsets (earliest, latest, by
//! timestamp). Stored Weir batches go out as Kafka batches, whole: a fetch from the middle of
//! a batch returns all of it and the client skips the records before its offset, as Kafka's
//! own broker does.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
};
use tokio::sync::watch;
use weir_codec::kafka::{skipped, to_kafka};
use weir_common::batch;
use weir_common::limits::MAX_KAFKA_FETCH_WAIT_MS;

use super::Request;
use super::errors::{self, Code, FirstError, UNKNOWN_TOPIC_OR_PARTITION, code_of};
use crate::broker::Broker;
use crate::error::BrokerError;
use crate::groups::offsets::INTERNAL_PREFIX;
use crate::log::{Bounds, ReadUpTo};
use crate::metrics;
use crate::security::{Operation, Resource};
use crate::topics::{Topic, any_changed};
use crate::types::OffsetQuery;

/// Kafka's "latest" and "earliest" ListOffsets timestamps.
const LATEST_TIMESTAMP: i64 = -1;
const EARLIEST_TIMESTAMP: i64 = -2;

/// A topic the caller may read, or why not.
fn readable(r: &Request, name: &str) -> Result<Arc<Topic>, Code> {
    let broker = r.broker();
    if name.starts_with(INTERNAL_PREFIX) {
        return Err(UNKNOWN_TOPIC_OR_PARTITION);
    }
    match broker
        .security()
        .authorize(&r.who, Resource::topic(name), Operation::Read)
    {
        Ok(()) => {}
        Err(BrokerError::PermissionDenied(_)) => return Err(errors::TOPIC_AUTHORIZATION_FAILED),
        Err(e) => return Err(code_of(&e)),
    }
    broker.topic(name).map_err(|e| code_of(&e))
}

/// One partition of a fetch.
struct Wanted {
    partition: i32,
    offset: i64,
    max_bytes: usize,
}

/// One topic of a fetch: the topic, or the error every partition of it gets.
struct WantedTopic {
    name: kafka_protocol::messages::TopicName,
    topic: Result<Arc<Topic>, Code>,
    partitions: Vec<Wanted>,
}

fn partition_error(partition: i32, code: Code) -> PartitionData {
    let mut p = PartitionData::default();
    p.partition_index = partition;
    p.error_code = code.code();
    p.high_watermark = -1;
    p.last_stable_offset = -1;
    p.log_start_offset = -1;
    p
}

/// One partition's part of a fetch round: its records (Kafka batches) and bounds, or an error.
async fn read_partition(
    broker: &Broker,
    topic: &Arc<Topic>,
    w: &Wanted,
    budget: usize,
) -> Result<(PartitionData, usize, u64), BrokerError> {
    // A negative index is no partition (it fails as one that does not exist).
    let partition = u32::try_from(w.partition).unwrap_or(u32::MAX);
    topic.partition(partition)?;
    broker.check_leader(&topic.meta.name, partition)?;
    let bounds = topic.bounds(partition)?;
    let offset = u64::try_from(w.offset).unwrap_or(u64::MAX);
    if !bounds.holds(offset) {
        return Err(topic.out_of_range(partition, offset, bounds));
    }
    let mut p = PartitionData::default();
    p.partition_index = w.partition;
    p.high_watermark = bounds.latest as i64;
    p.last_stable_offset = bounds.latest as i64;
    p.log_start_offset = bounds.earliest as i64;
    let (mut bytes, mut records) = (0, 0);
    if offset < bounds.latest && budget > 0 {
        let read = broker
            .read(
                topic,
                partition,
                offset,
                w.max_bytes.min(budget),
                ReadUpTo::HighWatermark,
            )
            .await?;
        // Kafka's record framing takes a few bytes more per record than Weir's.
        let stored: usize = read
            .batches
            .iter()
            .map(|b| b.len() + b.len() / 8 + 64)
            .sum();
        let mut out = BytesMut::with_capacity(stored);
        to_kafka(&read.batches, &mut out).map_err(|e| BrokerError::Storage(e.to_string()))?;
        // A view's chain may have left out the records at the end of what was read: an
        // empty batch up to where the read ended moves the client past them.
        if let Some(end) = read.end {
            let covered = batch::next_offset_after_records(&read.batches)
                .map_err(|e| BrokerError::Storage(format!("stored batch: {e}")))?
                .unwrap_or(offset)
                .max(offset);
            if covered < end {
                skipped(covered, end - 1, &mut out);
            }
        }
        bytes = out.len();
        records = batch::records_in(&read.batches);
        p.high_watermark = read.bounds.latest as i64;
        p.last_stable_offset = read.bounds.latest as i64;
        p.log_start_offset = read.bounds.earliest as i64;
        p.records = Some(out.freeze());
    }
    Ok((p, bytes, records))
}

/// Reads what the partitions hold, waiting up to `max_wait_ms` (capped at
/// [`MAX_KAFKA_FETCH_WAIT_MS`]) for `min_bytes` to be there; at most `max_bytes` in all and
/// each partition's `partition_max_bytes` (the first batch found is returned even when it is
/// larger, so a consumer always makes progress). Fetch sessions (KIP-227) are not kept: the
/// answer's session id is 0, and clients send full fetches.
pub async fn fetch(r: &Request, req: FetchRequest) -> (FetchResponse, &'static str) {
    let broker = Arc::clone(r.broker());
    let wait = Duration::from_millis(req.max_wait_ms.clamp(0, MAX_KAFKA_FETCH_WAIT_MS) as u64);
    let until = tokio::time::Instant::now() + wait;
    let budget_all = Broker::fetch_budget(req.max_bytes.max(0) as u32);
    let min_bytes = req.min_bytes.max(0) as usize;
    let wanted: Vec<WantedTopic> = req
        .topics
        .into_iter()
        .map(|t| WantedTopic {
            topic: readable(r, &t.topic),
            name: t.topic,
            partitions: t
                .partitions
                .into_iter()
                .map(|p| Wanted {
                    partition: p.partition,
                    offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes.max(0) as usize,
                })
                .collect(),
        })
        .collect();
    let mut watches: Vec<watch::Receiver<Bounds>> = wanted
        .iter()
        .filter_map(|t| t.topic.as_ref().ok().map(|topic| (t, topic)))
        .flat_map(|(t, topic)| {
            t.partitions
                .iter()
                .filter_map(|p| topic.watch(u32::try_from(p.partition).ok()?).ok())
        })
        .collect();
    loop {
        for w in &mut watches {
            w.borrow_and_update();
        }
        let mut budget = budget_all;
        let mut total = 0usize;
        let mut first_error = FirstError::default();
        let mut responses = Vec::with_capacity(wanted.len());
        for t in &wanted {
            let mut out = FetchableTopicResponse::default();
            out.topic = t.name.clone();
            for w in &t.partitions {
                let part = match &t.topic {
                    Err(code) => Err(*code),
                    Ok(topic) => match read_partition(&broker, topic, w, budget).await {
                        Ok((p, bytes, records)) => {
                            if records > 0 {
                                metrics::global().consumed(&topic.meta.name, records, bytes as u64);
                            }
                            budget = budget.saturating_sub(bytes);
                            total += bytes;
                            Ok(p)
                        }
                        Err(e) => Err(code_of(&e)),
                    },
                };
                out.partitions.push(part.unwrap_or_else(|code| {
                    first_error.note(code);
                    partition_error(w.partition, code)
                }));
            }
            responses.push(out);
        }
        let now = tokio::time::Instant::now();
        if total >= min_bytes.max(1) || !first_error.is_none() || now >= until {
            let mut resp = FetchResponse::default();
            resp.responses = responses;
            return (resp, first_error.name());
        }
        let _ = tokio::time::timeout_at(until, any_changed(&mut watches)).await;
    }
}

/// Resolves Kafka's offset queries: -2 earliest, -1 latest (the high watermark), else the
/// first offset whose record timestamp is at or after the one given, with that record's
/// timestamp (-1 and -1 when there is none, as Kafka answers).
pub async fn list_offsets(
    r: &Request,
    req: ListOffsetsRequest,
) -> (ListOffsetsResponse, &'static str) {
    let broker = Arc::clone(r.broker());
    let mut first_error = FirstError::default();
    let mut resp = ListOffsetsResponse::default();
    for t in req.topics {
        let topic = readable(r, &t.name);
        let mut out = ListOffsetsTopicResponse::default();
        out.name = t.name.clone();
        for p in t.partitions {
            let mut answer = ListOffsetsPartitionResponse::default();
            answer.partition_index = p.partition_index;
            answer.leader_epoch = -1;
            let found = match &topic {
                Err(code) => Err(*code),
                Ok(topic) => lookup(&broker, topic, p.partition_index, p.timestamp)
                    .await
                    .map_err(|e| code_of(&e)),
            };
            match found {
                Ok((offset, timestamp)) => {
                    answer.offset = offset;
                    answer.timestamp = timestamp;
                }
                Err(code) => {
                    first_error.note(code);
                    answer.error_code = code.code();
                    answer.offset = -1;
                    answer.timestamp = -1;
                }
            }
            out.partitions.push(answer);
        }
        resp.topics.push(out);
    }
    (resp, first_error.name())
}

/// One ListOffsets query: `(offset, timestamp)`.
async fn lookup(
    broker: &Broker,
    topic: &Arc<Topic>,
    partition: i32,
    timestamp: i64,
) -> Result<(i64, i64), BrokerError> {
    let partition = u32::try_from(partition).unwrap_or(u32::MAX);
    let query = match timestamp {
        LATEST_TIMESTAMP => OffsetQuery::Latest,
        EARLIEST_TIMESTAMP => OffsetQuery::Earliest,
        ts if ts >= 0 => OffsetQuery::Timestamp(ts),
        other => {
            return Err(BrokerError::InvalidArgument(format!(
                "ListOffsets timestamp {other} is not supported (only -2 earliest, -1 latest \
                 and timestamps)"
            )));
        }
    };
    let (offset, bounds) = broker.list_offset(topic, partition, query).await?;
    let OffsetQuery::Timestamp(_) = query else {
        return Ok((offset as i64, -1));
    };
    if offset >= bounds.latest {
        return Ok((-1, -1));
    }
    // The timestamp of the record found: from the batch holding it.
    let read = broker
        .read(topic, partition, offset, 1, ReadUpTo::HighWatermark)
        .await?;
    let stamp = read
        .batches
        .first()
        .and_then(|b| batch::uncompressed(b).ok())
        .and_then(|plain| {
            batch::record_refs(&plain)
                .ok()?
                .filter_map(Result::ok)
                .find(|rec| rec.offset >= offset)
                .map(|rec| rec.timestamp)
        })
        .unwrap_or(-1);
    Ok((offset as i64, stamp))
}
