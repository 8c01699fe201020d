//! The streaming consumer: a `futures::Stream` of records over the broker's server-streaming
//! `Subscribe`. The broker pushes whole batches as they are written (bounded by `max_bytes`
//! per push and a small queue), so the consumer never waits on a request round trip.
//!
//! If the stream breaks (broker restart, network), the consumer subscribes again from its
//! positions — the next offset it has not yielded — so nothing is skipped or repeated.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use tokio::time::Instant;
use tonic::Streaming;
use weir_common::batch;
use weir_common::limits::DEFAULT_FETCH_MAX_BYTES;
use weir_common::record::Header;
use weir_proto::v1 as pb;

use crate::admin::{OffsetSpec, spec_to_pb};
use crate::client::Client;
use crate::error::{Error, Result};

/// Where a consumer starts reading each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartFrom {
    /// The oldest record still kept.
    #[default]
    Earliest,
    /// Only records written from now on.
    Latest,
    /// This offset in every consumed partition.
    Offset(u64),
    /// The first record with a timestamp `>=` this (unix ms).
    Timestamp(i64),
}

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Partitions to read; `None`: all of them.
    pub partitions: Option<Vec<u32>>,
    /// Where reading starts in each partition (default: earliest).
    pub start: StartFrom,
    /// Most bytes the broker pushes at once (prefetch is a few of these).
    pub max_bytes: u32,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            partitions: None,
            start: StartFrom::Earliest,
            max_bytes: DEFAULT_FETCH_MAX_BYTES,
        }
    }
}

impl ConsumerConfig {
    /// Sets where reading starts.
    pub fn start(mut self, start: StartFrom) -> Self {
        self.start = start;
        self
    }

    /// Reads only these partitions.
    pub fn partitions(mut self, partitions: Vec<u32>) -> Self {
        self.partitions = Some(partitions);
        self
    }
}

/// A consumed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Topic it was read from.
    pub topic: Arc<str>,
    /// Partition it was read from.
    pub partition: u32,
    /// Its offset in the partition.
    pub offset: u64,
    /// Unix ms.
    pub timestamp: i64,
    /// Key, if the record has one.
    pub key: Option<Bytes>,
    /// Payload.
    pub value: Bytes,
    /// Headers, in the order they were produced.
    pub headers: Vec<Header>,
}

/// How long a consumer keeps trying to subscribe again after its stream broke.
pub const RECONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest pause between two reconnection attempts.
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(1);

type SubscribeFuture = Pin<Box<dyn Future<Output = Result<Streaming<pb::FetchResponse>>> + Send>>;

/// Where records come from right now.
enum Feed {
    Open(Box<Streaming<pb::FetchResponse>>),
    Reconnecting(SubscribeFuture),
    Closed,
}

/// A stream of records from one topic. Records of a partition come in offset order.
pub struct Consumer {
    client: Client,
    topic: Arc<str>,
    max_bytes: u32,
    feed: Feed,
    buffered: VecDeque<ConsumerRecord>,
    /// Next offset to yield, per partition.
    positions: BTreeMap<u32, u64>,
}

/// Subscribes, retrying transient failures with backoff until `RECONNECT_TIMEOUT`.
async fn subscribe_with_retry(
    client: Client,
    req: pb::SubscribeRequest,
) -> Result<Streaming<pb::FetchResponse>> {
    let deadline = Instant::now() + RECONNECT_TIMEOUT;
    let mut backoff = Duration::from_millis(50);
    loop {
        let err = match client.log_rpc().subscribe(req.clone()).await {
            Ok(resp) => return Ok(resp.into_inner()),
            Err(status) => Error::from(status),
        };
        if !is_transient(&err) || Instant::now() + backoff > deadline {
            return Err(err);
        }
        tracing::debug!(error = %err, ?backoff, "subscribe failed; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
    }
}

/// Errors after which subscribing again may work (anything but a definite answer about the
/// topic, partition or offset).
fn is_transient(e: &Error) -> bool {
    e.is_retriable() || matches!(e, Error::Broker(_))
}

impl Consumer {
    pub(crate) async fn open(client: Client, topic: &str, config: ConsumerConfig) -> Result<Self> {
        let partitions = match config.partitions {
            Some(p) => p,
            None => {
                let desc = client.admin().describe_topic(topic).await?;
                (0..desc.topic.partitions).collect()
            }
        };
        let positions = resolve_positions(&client, topic, &partitions, config.start).await?;
        let req = pb::SubscribeRequest {
            topic: topic.to_string(),
            positions: positions
                .iter()
                .map(|(&partition, &offset)| pb::FetchPosition { partition, offset })
                .collect(),
            max_bytes: config.max_bytes,
        };
        let stream = client.log_rpc().subscribe(req).await?.into_inner();
        Ok(Self {
            client,
            topic: Arc::from(topic),
            max_bytes: config.max_bytes,
            feed: Feed::Open(Box::new(stream)),
            buffered: VecDeque::new(),
            positions,
        })
    }

    /// Subscribes again from the current positions (the old stream is dropped).
    fn resubscribe(&mut self) {
        let req = pb::SubscribeRequest {
            topic: self.topic.to_string(),
            positions: self
                .positions
                .iter()
                .map(|(&partition, &offset)| pb::FetchPosition { partition, offset })
                .collect(),
            max_bytes: self.max_bytes,
        };
        self.feed = Feed::Reconnecting(Box::pin(subscribe_with_retry(self.client.clone(), req)));
    }

    /// Moves `partition` to `offset`: the next record yielded from it has that offset.
    /// Records of that partition already buffered are dropped.
    pub fn seek(&mut self, partition: u32, offset: u64) -> Result<()> {
        let Some(pos) = self.positions.get_mut(&partition) else {
            return Err(Error::PartitionNotFound(format!(
                "this consumer does not read partition {partition} of {:?}",
                self.topic
            )));
        };
        *pos = offset;
        self.buffered.retain(|r| r.partition != partition);
        self.resubscribe();
        Ok(())
    }

    /// Next offset this consumer will yield from `partition`.
    pub fn position(&self, partition: u32) -> Option<u64> {
        self.positions.get(&partition).copied()
    }

    /// Decodes a pushed response into `buffered`, skipping records before the positions.
    fn absorb(&mut self, resp: pb::FetchResponse) -> Result<()> {
        for part in resp.partitions {
            let Some(pos) = self.positions.get_mut(&part.partition) else {
                return Err(Error::Protocol(format!(
                    "unexpected partition {}",
                    part.partition
                )));
            };
            for bytes in part.batches {
                let (_, records) =
                    batch::decode(&bytes).map_err(|e| Error::Protocol(e.to_string()))?;
                for r in records {
                    if r.offset < *pos {
                        continue;
                    }
                    *pos = r.offset + 1;
                    self.buffered.push_back(ConsumerRecord {
                        topic: Arc::clone(&self.topic),
                        partition: part.partition,
                        offset: r.offset,
                        timestamp: r.timestamp,
                        key: r.key,
                        value: r.value,
                        headers: r.headers,
                    });
                }
            }
        }
        Ok(())
    }
}

async fn resolve_positions(
    client: &Client,
    topic: &str,
    partitions: &[u32],
    start: StartFrom,
) -> Result<BTreeMap<u32, u64>> {
    if let StartFrom::Offset(o) = start {
        return Ok(partitions.iter().map(|&p| (p, o)).collect());
    }
    let spec = match start {
        StartFrom::Earliest => OffsetSpec::Earliest,
        StartFrom::Latest => OffsetSpec::Latest,
        StartFrom::Timestamp(ts) => OffsetSpec::Timestamp(ts),
        StartFrom::Offset(_) => unreachable!("handled above"),
    };
    let req = pb::ListOffsetsRequest {
        topic: topic.to_string(),
        queries: partitions.iter().map(|&p| spec_to_pb(p, spec)).collect(),
    };
    let resp = client.log_rpc().list_offsets(req).await?.into_inner();
    Ok(resp
        .offsets
        .into_iter()
        .map(|o| (o.partition, o.offset))
        .collect())
}

impl Stream for Consumer {
    type Item = Result<ConsumerRecord>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(r) = self.buffered.pop_front() {
                return Poll::Ready(Some(Ok(r)));
            }
            let polled = match &mut self.feed {
                Feed::Closed => return Poll::Ready(None),
                Feed::Reconnecting(fut) => match fut.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(stream)) => {
                        self.feed = Feed::Open(Box::new(stream));
                        continue;
                    }
                    Poll::Ready(Err(e)) => {
                        self.feed = Feed::Closed;
                        return Poll::Ready(Some(Err(e)));
                    }
                },
                Feed::Open(stream) => match Pin::new(stream.as_mut()).poll_next(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(polled) => polled,
                },
            };
            match polled {
                Some(Ok(resp)) => {
                    if let Err(e) = self.absorb(resp) {
                        self.feed = Feed::Closed;
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                Some(Err(status)) => {
                    let err = Error::from(status);
                    if !is_transient(&err) {
                        self.feed = Feed::Closed;
                        return Poll::Ready(Some(Err(err)));
                    }
                    tracing::debug!(error = %err, "record stream broke; subscribing again");
                    self.resubscribe();
                }
                // The broker ended the stream without an error: subscribe again.
                None => self.resubscribe(),
            }
        }
    }
}
