//! The streaming consumer: a `futures::Stream` of records over the broker's server-streaming
//! `Subscribe`. The broker pushes whole batches as they are written (bounded by `max_bytes`
//! per push and a small queue), so the consumer never waits on a request round trip.

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
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
    pub fn start(mut self, start: StartFrom) -> Self {
        self.start = start;
        self
    }

    pub fn partitions(mut self, partitions: Vec<u32>) -> Self {
        self.partitions = Some(partitions);
        self
    }
}

/// A consumed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: u64,
    /// Unix ms.
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<Header>,
}

/// A stream of records from one topic. Records of a partition come in offset order.
pub struct Consumer {
    topic: Arc<str>,
    stream: Streaming<pb::FetchResponse>,
    buffered: VecDeque<ConsumerRecord>,
    /// Next offset to yield, per partition.
    positions: BTreeMap<u32, u64>,
    done: bool,
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
            topic: Arc::from(topic),
            stream,
            buffered: VecDeque::new(),
            positions,
            done: false,
        })
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
            if self.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut self.stream).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(resp))) => {
                    if let Err(e) = self.absorb(resp) {
                        self.done = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                Poll::Ready(Some(Err(status))) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(Error::from(status))));
                }
                Poll::Ready(None) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(Error::Unavailable(
                        "the broker closed the stream".into(),
                    ))));
                }
            }
        }
    }
}
