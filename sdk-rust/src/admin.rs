//! Topic administration and offset look-ups.

use weir_proto::v1 as pb;

use crate::client::Client;
use crate::error::Result;

/// Settings for a new topic; unset fields take the broker's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// Topic name: 1-249 of `[A-Za-z0-9._-]`.
    pub name: String,
    /// Number of partitions, 1..=10000.
    pub partitions: u32,
    /// -1: keep forever.
    pub retention_ms: Option<i64>,
    /// -1: no size limit.
    pub retention_bytes: Option<i64>,
    /// Roll a new segment once the active one holds this many bytes.
    pub segment_bytes: Option<u64>,
    /// Roll a new segment once the active one is this old.
    pub segment_ms: Option<i64>,
}

impl NewTopic {
    /// A topic with `partitions` partitions and the broker's default settings.
    pub fn new(name: impl Into<String>, partitions: u32) -> Self {
        Self {
            name: name.into(),
            partitions,
            retention_ms: None,
            retention_bytes: None,
            segment_bytes: None,
            segment_ms: None,
        }
    }

    /// Drop segments whose newest record is older than this (-1: keep forever).
    pub fn retention_ms(mut self, ms: i64) -> Self {
        self.retention_ms = Some(ms);
        self
    }

    /// Drop the oldest segments while a partition is bigger than this (-1: no limit).
    pub fn retention_bytes(mut self, bytes: i64) -> Self {
        self.retention_bytes = Some(bytes);
        self
    }

    /// Segment size at which a partition rolls to a new segment.
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = Some(bytes);
        self
    }

    /// Segment age at which a partition rolls to a new segment.
    pub fn segment_ms(mut self, ms: i64) -> Self {
        self.segment_ms = Some(ms);
        self
    }
}

/// A topic's effective settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Number of partitions.
    pub partitions: u32,
    /// `None`: kept forever.
    pub retention_ms: Option<i64>,
    /// `None`: no size limit.
    pub retention_bytes: Option<u64>,
    /// Segment size that triggers a roll.
    pub segment_bytes: u64,
    /// Segment age that triggers a roll.
    pub segment_ms: i64,
}

/// One partition's offsets and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition number.
    pub partition: u32,
    /// Oldest offset still kept.
    pub earliest_offset: u64,
    /// Next offset to be written.
    pub latest_offset: u64,
    /// Bytes of record batches kept.
    pub size_bytes: u64,
    /// Segments kept (the active one included).
    pub segments: u32,
}

/// A topic's settings and the state of each partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// Effective settings.
    pub topic: TopicInfo,
    /// Offsets and sizes, by partition number.
    pub partitions: Vec<PartitionInfo>,
}

/// Which offset [`Admin::list_offset`] looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The oldest offset still kept.
    Earliest,
    /// The next offset to be written.
    Latest,
    /// First offset whose timestamp is `>=` this (unix ms); the latest offset if none.
    Timestamp(i64),
}

fn info_of(t: pb::TopicInfo) -> TopicInfo {
    let c = t.config.unwrap_or_default();
    TopicInfo {
        name: t.name,
        partitions: c.partitions,
        retention_ms: c.retention_ms.filter(|&v| v >= 0),
        retention_bytes: c.retention_bytes.filter(|&v| v >= 0).map(|v| v as u64),
        segment_bytes: c.segment_bytes.unwrap_or_default(),
        segment_ms: c.segment_ms.unwrap_or_default(),
    }
}

pub(crate) fn spec_to_pb(partition: u32, spec: OffsetSpec) -> pb::OffsetQuery {
    let (spec, timestamp) = match spec {
        OffsetSpec::Earliest => (pb::OffsetSpec::Earliest, 0),
        OffsetSpec::Latest => (pb::OffsetSpec::Latest, 0),
        OffsetSpec::Timestamp(ts) => (pb::OffsetSpec::Timestamp, ts),
    };
    pb::OffsetQuery {
        partition,
        spec: spec as i32,
        timestamp,
    }
}

/// Admin operations. Get one with [`Client::admin`].
#[derive(Clone, Debug)]
pub struct Admin {
    client: Client,
}

impl Admin {
    pub(crate) fn new(client: Client) -> Self {
        Self { client }
    }

    /// Creates a topic. Fails with [`Error::TopicExists`](crate::Error::TopicExists) or
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument).
    pub async fn create_topic(&self, topic: NewTopic) -> Result<TopicInfo> {
        let req = pb::CreateTopicRequest {
            name: topic.name,
            config: Some(pb::TopicConfig {
                partitions: topic.partitions,
                retention_ms: topic.retention_ms,
                retention_bytes: topic.retention_bytes,
                segment_bytes: topic.segment_bytes,
                segment_ms: topic.segment_ms,
            }),
        };
        let resp = self
            .client
            .topics_rpc()
            .create_topic(req)
            .await?
            .into_inner();
        Ok(info_of(resp.topic.unwrap_or_default()))
    }

    /// Every topic, sorted by name.
    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>> {
        let resp = self
            .client
            .topics_rpc()
            .list_topics(pb::ListTopicsRequest {})
            .await?
            .into_inner();
        Ok(resp.topics.into_iter().map(info_of).collect())
    }

    /// A topic's settings and per-partition offsets and sizes.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        let req = pb::DescribeTopicRequest {
            name: name.to_string(),
        };
        let resp = self
            .client
            .topics_rpc()
            .describe_topic(req)
            .await?
            .into_inner();
        let partitions = resp
            .partitions
            .into_iter()
            .map(|p| PartitionInfo {
                partition: p.partition,
                earliest_offset: p.earliest_offset,
                latest_offset: p.latest_offset,
                size_bytes: p.size_bytes,
                segments: p.segments,
            })
            .collect();
        Ok(TopicDescription {
            topic: info_of(resp.topic.unwrap_or_default()),
            partitions,
        })
    }

    /// Deletes a topic and all its records; its subscriptions end.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let req = pb::DeleteTopicRequest {
            name: name.to_string(),
        };
        self.client.topics_rpc().delete_topic(req).await?;
        Ok(())
    }

    /// Looks up an offset of one partition.
    pub async fn list_offset(&self, topic: &str, partition: u32, spec: OffsetSpec) -> Result<u64> {
        let req = pb::ListOffsetsRequest {
            topic: topic.to_string(),
            queries: vec![spec_to_pb(partition, spec)],
        };
        let resp = self.client.log_rpc().list_offsets(req).await?.into_inner();
        resp.offsets
            .first()
            .map(|o| o.offset)
            .ok_or_else(|| crate::Error::Protocol("empty list-offsets response".into()))
    }
}
