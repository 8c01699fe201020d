//! Metadata: the brokers Kafka clients talk to and where each partition is led.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::Request;
use super::errors::{self, UNKNOWN_TOPIC_OR_PARTITION};
use crate::groups::offsets::INTERNAL_PREFIX;
use crate::security::Resource;
use crate::topics::Topic;

/// The cluster id Kafka clients see for a standalone broker.
pub const CLUSTER_ID: &str = "weir";

fn topic_entry(r: &Request, t: &Topic) -> MetadataResponseTopic {
    let me = BrokerId(r.kafka.node_id());
    let mut topic = MetadataResponseTopic::default();
    topic.name = Some(TopicName(StrBytes::from_string(t.meta.name.to_string())));
    topic.partitions = (0..t.partitions.len() as i32)
        .map(|i| {
            let mut p = MetadataResponsePartition::default();
            p.partition_index = i;
            p.leader_id = me;
            p.leader_epoch = 0;
            p.replica_nodes = vec![me];
            p.isr_nodes = vec![me];
            p
        })
        .collect();
    topic
}

fn error_entry(name: &str, code: errors::Code) -> MetadataResponseTopic {
    let mut topic = MetadataResponseTopic::default();
    topic.name = Some(TopicName(StrBytes::from_string(name.to_string())));
    topic.error_code = code.code();
    topic
}

/// All topics the caller may see (the broker's internal ones never), or the ones asked for.
/// Topics are not created on request (`allow_auto_topic_creation` is ignored, as with
/// Redpanda's default): a missing topic is UNKNOWN_TOPIC_OR_PARTITION.
pub fn metadata(r: &Request, req: MetadataRequest) -> MetadataResponse {
    let broker = r.broker();
    let security = broker.security();
    let may_see = |name: &str| security.visible(&r.who, Resource::topic(name));
    let topics = match req.topics {
        None => broker
            .list_topics()
            .iter()
            .filter(|t| !t.meta.name.starts_with(INTERNAL_PREFIX) && may_see(&t.meta.name))
            .map(|t| topic_entry(r, t))
            .collect(),
        Some(asked) => asked
            .iter()
            .filter_map(|t| t.name.as_ref())
            .map(|name| {
                let name = name.as_str();
                if !may_see(name) {
                    return error_entry(name, errors::TOPIC_AUTHORIZATION_FAILED);
                }
                match broker.topic(name) {
                    Ok(t) if !name.starts_with(INTERNAL_PREFIX) => topic_entry(r, &t),
                    _ => error_entry(name, UNKNOWN_TOPIC_OR_PARTITION),
                }
            })
            .collect(),
    };
    let mut me = MetadataResponseBroker::default();
    me.node_id = BrokerId(r.kafka.node_id());
    me.host = StrBytes::from_string(r.kafka.advertised.host.clone());
    me.port = i32::from(r.kafka.advertised.port);
    let mut resp = MetadataResponse::default();
    resp.brokers = vec![me];
    resp.cluster_id = Some(StrBytes::from_static_str(CLUSTER_ID));
    resp.controller_id = BrokerId(r.kafka.node_id());
    resp.topics = topics;
    resp
}
