//! Metadata: the brokers Kafka clients talk to and where each partition is led. Standalone,
//! this broker leads everything; in a cluster, partitions are where the metadata quorum
//! placed them and the brokers are the members that announced a Kafka address.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::errors::{self, UNKNOWN_TOPIC_OR_PARTITION};
use super::{Advertised, Request};
use crate::groups::offsets::INTERNAL_PREFIX;
use crate::security::Resource;
use crate::topics::Topic;

/// The cluster id Kafka clients see for a standalone broker.
pub const CLUSTER_ID: &str = "weir";

/// Kafka's broker id of a cluster member (its node id).
fn broker_id(id: u64) -> BrokerId {
    BrokerId(i32::try_from(id).unwrap_or(-1))
}

fn node_ids(ids: &[u64]) -> Vec<BrokerId> {
    ids.iter().map(|&id| broker_id(id)).collect()
}

fn topic_entry(r: &Request, t: &Topic) -> MetadataResponseTopic {
    let me = BrokerId(r.kafka.node_id());
    let mut topic = MetadataResponseTopic::default();
    topic.name = Some(TopicName(StrBytes::from_string(t.meta.name.to_string())));
    // A view's partitions are its source's, led where the source's are.
    let placement = r.broker().placement(t.source_name());
    topic.partitions = match (r.broker().in_cluster(), placement) {
        (false, _) => (0..t.meta.config.partitions as i32)
            .map(|i| {
                let mut p = MetadataResponsePartition::default();
                p.partition_index = i;
                p.leader_id = me;
                p.leader_epoch = 0;
                p.replica_nodes = vec![me];
                p.isr_nodes = vec![me];
                p
            })
            .collect(),
        // Known locally, not yet in the metadata this member applied.
        (true, None) => {
            topic.error_code = errors::LEADER_NOT_AVAILABLE.code();
            Vec::new()
        }
        (true, Some(partitions)) => partitions
            .iter()
            .enumerate()
            .map(|(i, state)| {
                let mut p = MetadataResponsePartition::default();
                p.partition_index = i as i32;
                match state.leader {
                    Some(leader) => p.leader_id = broker_id(leader),
                    None => {
                        p.leader_id = BrokerId(-1);
                        p.error_code = errors::LEADER_NOT_AVAILABLE.code();
                    }
                }
                p.leader_epoch = i32::try_from(state.leader_epoch).unwrap_or(i32::MAX);
                p.replica_nodes = node_ids(&state.replicas);
                p.isr_nodes = node_ids(&state.isr);
                p
            })
            .collect(),
    };
    topic
}

fn error_entry(name: &str, code: errors::Code) -> MetadataResponseTopic {
    let mut topic = MetadataResponseTopic::default();
    topic.name = Some(TopicName(StrBytes::from_string(name.to_string())));
    topic.error_code = code.code();
    topic
}

/// The brokers Kafka clients can reach, the controller and the cluster id.
pub fn brokers(r: &Request) -> (Vec<(BrokerId, Advertised)>, BrokerId, String) {
    match r.broker().kafka_cluster() {
        None => (
            vec![(BrokerId(r.kafka.node_id()), r.kafka.advertised.clone())],
            BrokerId(r.kafka.node_id()),
            CLUSTER_ID.to_string(),
        ),
        Some(c) => (
            c.members
                .iter()
                .filter_map(|m| Some((broker_id(m.id), Advertised::parse(&m.addr)?)))
                .collect(),
            c.controller.map_or(BrokerId(-1), broker_id),
            c.cluster_id.unwrap_or_else(|| CLUSTER_ID.to_string()),
        ),
    }
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
            .list_topics_and_views()
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
    let (members, controller, cluster_id) = brokers(r);
    let mut resp = MetadataResponse::default();
    resp.brokers = members
        .into_iter()
        .map(|(id, at)| {
            let mut b = MetadataResponseBroker::default();
            b.node_id = id;
            b.host = StrBytes::from_string(at.host);
            b.port = i32::from(at.port);
            b
        })
        .collect();
    resp.cluster_id = Some(StrBytes::from_string(cluster_id));
    resp.controller_id = controller;
    resp.topics = topics;
    resp
}
