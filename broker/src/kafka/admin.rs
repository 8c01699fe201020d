//! Topic administration for Kafka tools: CreateTopics, DeleteTopics, DescribeConfigs,
//! DescribeCluster. Topics are Weir's: created and deleted through the facade, with the same
//! limits and permissions (Admin on the topic) as `weir topic create/delete`.

use std::sync::Arc;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeClusterRequest, DescribeClusterResponse, DescribeConfigsRequest,
    DescribeConfigsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use weir_common::limits::MAX_BATCH_BYTES;

use super::Request;
use super::errors::{self, Code, FirstError, code_of};
use super::metadata::brokers;
use crate::broker::NewTopic;
use crate::error::BrokerError;
use crate::groups::offsets::INTERNAL_PREFIX;
use crate::security::{Operation, Resource};
use crate::types::TopicConfig;

/// Kafka's config resource types (DescribeConfigs).
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// Kafka's config sources: set on the topic, or the broker's default.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;

/// Kafka's config types.
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_BOOLEAN: i8 = 1;
const TYPE_LIST: i8 = 7;

/// One config entry: name, value, type, whether it can be set.
struct Entry {
    name: &'static str,
    value: String,
    kind: i8,
    read_only: bool,
}

fn entry(name: &'static str, value: impl ToString, kind: i8, read_only: bool) -> Entry {
    Entry {
        name,
        value: value.to_string(),
        kind,
        read_only,
    }
}

/// A topic's settings under Kafka's names: what DescribeConfigs and CreateTopics (v5+)
/// answer. `cleanup.policy` is always `delete` (no compaction); `max.message.bytes` is the
/// largest batch the broker takes, `message.timestamp.type` the producer's choice.
fn topic_entries(c: &TopicConfig) -> Vec<Entry> {
    vec![
        entry("cleanup.policy", "delete", TYPE_LIST, true),
        entry(
            "retention.ms",
            c.retention_ms.unwrap_or(-1),
            TYPE_LONG,
            true,
        ),
        entry(
            "retention.bytes",
            c.retention_bytes.map_or(-1, |b| b as i64),
            TYPE_LONG,
            true,
        ),
        entry("segment.bytes", c.segment_bytes, TYPE_INT, true),
        entry("segment.ms", c.segment_ms, TYPE_LONG, true),
        entry("min.insync.replicas", c.min_insync_replicas, TYPE_INT, true),
        entry("max.message.bytes", MAX_BATCH_BYTES, TYPE_INT, true),
        entry("message.timestamp.type", "CreateTime", TYPE_STRING, true),
    ]
}

/// The settings a Kafka client may give when it creates a topic; anything else is
/// INVALID_CONFIG, naming the key.
fn apply_config(new: &mut NewTopic, name: &str, value: Option<&str>) -> Result<(), String> {
    let Some(value) = value else {
        return Ok(()); // null: the default
    };
    let number = |v: &str| {
        v.parse::<i64>()
            .map_err(|_| format!("{name} must be a number, got {v:?}"))
    };
    match name {
        "retention.ms" => new.retention_ms = Some(number(value)?),
        "retention.bytes" => new.retention_bytes = Some(number(value)?),
        "segment.bytes" => {
            new.segment_bytes = Some(
                u64::try_from(number(value)?).map_err(|_| format!("{name} must be positive"))?,
            )
        }
        "segment.ms" => new.segment_ms = Some(number(value)?),
        "min.insync.replicas" => {
            new.min_insync_replicas = Some(
                u32::try_from(number(value)?).map_err(|_| format!("{name} must be positive"))?,
            )
        }
        "cleanup.policy" if value == "delete" => {}
        "cleanup.policy" => {
            return Err(format!(
                "cleanup.policy {value:?} is not supported: Weir topics only delete old \
                 segments (no compaction)"
            ));
        }
        other => {
            return Err(format!(
                "config {other:?} is not supported (retention.ms, retention.bytes, \
                 segment.bytes, segment.ms, min.insync.replicas, cleanup.policy=delete)"
            ));
        }
    }
    Ok(())
}

fn may_admin(r: &Request, topic: &str) -> Result<(), Code> {
    match r
        .broker()
        .security()
        .authorize(&r.who, Resource::topic(topic), Operation::Admin)
    {
        Ok(()) => Ok(()),
        Err(BrokerError::PermissionDenied(_)) => Err(errors::TOPIC_AUTHORIZATION_FAILED),
        Err(e) => Err(code_of(&e)),
    }
}

/// Creates each topic (or, with `validate_only`, checks it could be).
pub async fn create_topics(
    r: &Request,
    req: CreateTopicsRequest,
) -> (CreateTopicsResponse, &'static str) {
    let broker = Arc::clone(r.broker());
    let mut first_error = FirstError::default();
    let mut resp = CreateTopicsResponse::default();
    for t in req.topics {
        let mut out = CreatableTopicResult::default();
        out.name = t.name.clone();
        out.num_partitions = -1;
        out.replication_factor = -1;
        let name = t.name.0.to_string();
        let result = async {
            may_admin(r, &name).map_err(|c| (c, format!("not allowed to create {name:?}")))?;
            if !t.assignments.is_empty() {
                return Err((
                    errors::INVALID_REQUEST,
                    "manual replica assignments are not supported; give a partition count \
                     and replication factor"
                        .to_string(),
                ));
            }
            let mut new = NewTopic {
                // -1: the broker's default, one partition as Kafka's num.partitions.
                partitions: if t.num_partitions == -1 {
                    1
                } else {
                    u32::try_from(t.num_partitions).unwrap_or(0)
                },
                replication_factor: (t.replication_factor != -1)
                    .then(|| u32::try_from(t.replication_factor).unwrap_or(0)),
                ..NewTopic::default()
            };
            for c in &t.configs {
                apply_config(&mut new, c.name.as_str(), c.value.as_deref())
                    .map_err(|m| (errors::INVALID_CONFIG, m))?;
            }
            let rf = new.replication_factor.unwrap_or(1);
            let config = if req.validate_only {
                broker
                    .check_new_topic(&name, &new)
                    .map_err(|e| (code_of(&e), e.to_string()))?;
                None
            } else {
                let view = broker
                    .create_topic(&name, new)
                    .await
                    .map_err(|e| (code_of(&e), e.to_string()))?;
                Some(view.config)
            };
            Ok((rf, config))
        }
        .await;
        match result {
            Ok((rf, config)) => {
                out.replication_factor = rf as i16;
                if let Some(config) = config {
                    out.num_partitions = config.partitions as i32;
                    out.configs = Some(
                        topic_entries(&config)
                            .into_iter()
                            .map(|e| {
                                let mut c = CreatableTopicConfigs::default();
                                c.name = StrBytes::from_static_str(e.name);
                                c.value = Some(StrBytes::from_string(e.value));
                                c.read_only = e.read_only;
                                c.config_source = SOURCE_TOPIC;
                                c
                            })
                            .collect(),
                    );
                }
            }
            Err((code, message)) => {
                first_error.note(code);
                out.error_code = code.code();
                out.error_message = Some(StrBytes::from_string(message));
            }
        }
        resp.topics.push(out);
    }
    (resp, first_error.name())
}

/// Deletes each topic named (by name: Weir's topics have no Kafka topic ids).
pub async fn delete_topics(
    r: &Request,
    req: DeleteTopicsRequest,
) -> (DeleteTopicsResponse, &'static str) {
    let broker = Arc::clone(r.broker());
    let names: Vec<Option<TopicName>> = req
        .topic_names
        .into_iter()
        .map(Some)
        .chain(req.topics.into_iter().map(|t| t.name))
        .collect();
    let mut first_error = FirstError::default();
    let mut resp = DeleteTopicsResponse::default();
    for name in names {
        let mut out = DeletableTopicResult::default();
        let result = match &name {
            None => Err((
                errors::UNKNOWN_TOPIC_ID,
                "topics are deleted by name here; Weir topics have no Kafka topic id".to_string(),
            )),
            Some(n) => match may_admin(r, n) {
                Err(code) => Err((code, format!("not allowed to delete {:?}", n.as_str()))),
                Ok(()) => broker
                    .delete_topic(n)
                    .await
                    .map_err(|e| (code_of(&e), e.to_string())),
            },
        };
        out.name = name;
        if let Err((code, message)) = result {
            first_error.note(code);
            out.error_code = code.code();
            out.error_message = Some(StrBytes::from_string(message));
        }
        resp.responses.push(out);
    }
    (resp, first_error.name())
}

/// The configs of topics (their settings) and of this broker (the topic defaults), all of
/// them or the keys asked for.
pub fn describe_configs(
    r: &Request,
    req: DescribeConfigsRequest,
) -> (DescribeConfigsResponse, &'static str) {
    let broker = r.broker();
    let mut first_error = FirstError::default();
    let mut resp = DescribeConfigsResponse::default();
    for res in req.resources {
        let mut out = DescribeConfigsResult::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        let entries = match res.resource_type {
            RESOURCE_TOPIC => {
                let name = res.resource_name.as_str();
                let visible = broker.security().visible(&r.who, Resource::topic(name));
                match broker.topic(name) {
                    _ if !visible => Err((
                        errors::TOPIC_AUTHORIZATION_FAILED,
                        format!("not allowed to see topic {name:?}"),
                    )),
                    Ok(t) if !name.starts_with(INTERNAL_PREFIX) => {
                        Ok((topic_entries(&t.meta.config), SOURCE_TOPIC))
                    }
                    _ => Err((
                        errors::UNKNOWN_TOPIC_OR_PARTITION,
                        format!("topic {name:?} does not exist"),
                    )),
                }
            }
            RESOURCE_BROKER => {
                let d = broker.topic_defaults();
                Ok((
                    vec![
                        entry(
                            "log.retention.ms",
                            d.retention_ms.unwrap_or(-1),
                            TYPE_LONG,
                            true,
                        ),
                        entry(
                            "log.retention.bytes",
                            d.retention_bytes.map_or(-1, |b| b as i64),
                            TYPE_LONG,
                            true,
                        ),
                        entry("log.segment.bytes", d.segment_bytes, TYPE_INT, true),
                        entry("log.roll.ms", d.segment_ms, TYPE_LONG, true),
                        entry("message.max.bytes", MAX_BATCH_BYTES, TYPE_INT, true),
                        entry(
                            "max.record.bytes",
                            broker.max_record_bytes(),
                            TYPE_INT,
                            true,
                        ),
                        entry("auto.create.topics.enable", "false", TYPE_BOOLEAN, true),
                        entry("num.partitions", 1, TYPE_INT, true),
                    ],
                    SOURCE_DEFAULT,
                ))
            }
            other => Err((
                errors::INVALID_REQUEST,
                format!("config resource type {other} is not supported (2 topic, 4 broker)"),
            )),
        };
        match entries {
            Ok((entries, source)) => {
                let wanted = res.configuration_keys.as_ref();
                out.configs = entries
                    .into_iter()
                    .filter(|e| wanted.is_none_or(|keys| keys.iter().any(|k| k.as_str() == e.name)))
                    .map(|e| {
                        let mut c = DescribeConfigsResourceResult::default();
                        c.name = StrBytes::from_static_str(e.name);
                        c.value = Some(StrBytes::from_string(e.value));
                        c.read_only = e.read_only;
                        c.config_source = source;
                        c.config_type = e.kind;
                        c
                    })
                    .collect();
            }
            Err((code, message)) => {
                first_error.note(code);
                out.error_code = code.code();
                out.error_message = Some(StrBytes::from_string(message));
            }
        }
        resp.results.push(out);
    }
    (resp, first_error.name())
}

/// The brokers and the controller (standalone: this broker).
pub fn describe_cluster(r: &Request, _req: DescribeClusterRequest) -> DescribeClusterResponse {
    let (members, controller, cluster_id) = brokers(r);
    let mut resp = DescribeClusterResponse::default();
    resp.cluster_id = StrBytes::from_string(cluster_id);
    resp.controller_id = controller;
    resp.brokers = members
        .into_iter()
        .map(|(id, at)| {
            let mut b = DescribeClusterBroker::default();
            b.broker_id = id;
            b.host = StrBytes::from_string(at.host);
            b.port = i32::from(at.port);
            b
        })
        .collect();
    resp.endpoint_type = 1;
    resp
}
