//! Consumer groups for Kafka clients: the classic protocol (FindCoordinator, JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup; the client's own assignors), committed offsets
//! (OffsetCommit, OffsetFetch: the same offsets Weir's groups keep, so `weir group describe`
//! shows them with their lag) and ListGroups / DescribeGroups. Membership lives in
//! `groups::classic`; here requests become its calls and its answers responses, and the
//! consumer protocol's subscription and assignment bytes are read for the partitions they
//! name.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    BrokerId, ConsumerProtocolAssignment, ConsumerProtocolSubscription, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
    SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use weir_common::limits::{MAX_SESSION_TIMEOUT_MS, MIN_SESSION_TIMEOUT_MS};

use super::errors::{self, Code, FirstError, code_of};
use super::{Advertised, Request, metadata};
use crate::error::BrokerError;
use crate::groups::classic::Classic;
use crate::groups::{ClassicAssignment, ClassicJoin, CommitArgs, GroupSummary, TopicPartition};
use crate::security::{Operation, Resource};

/// FindCoordinator's key type for groups (1 is transactions, not served).
const KEY_TYPE_GROUP: i8 = 0;

/// Highest versions of the consumer protocol's subscription and assignment this codec reads;
/// a newer one is read as this one (later versions only append fields, Kafka's rule).
const MAX_CONSUMER_PROTOCOL_VERSION: i16 = 3;

const NONE: &str = "NONE";

/// The code of a group call's error: a bad group name is INVALID_GROUP_ID here, and a
/// permission a group's.
fn group_code(e: &BrokerError) -> Code {
    match e {
        BrokerError::InvalidName(_) => errors::INVALID_GROUP_ID,
        BrokerError::PermissionDenied(_) => errors::GROUP_AUTHORIZATION_FAILED,
        e => code_of(e),
    }
}

fn may_read_group(r: &Request, group: &str) -> Result<(), BrokerError> {
    r.broker()
        .security()
        .authorize(&r.who, Resource::group(group), Operation::Read)
}

/// Reads `bytes` as a consumer-protocol message (version prefix, then the body).
fn consumer_protocol<T: Decodable>(bytes: &Bytes) -> Option<T> {
    let mut buf = bytes.clone();
    if buf.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]);
    buf = buf.slice(2..);
    T::decode(&mut buf, version.clamp(0, MAX_CONSUMER_PROTOCOL_VERSION)).ok()
}

/// Where a group's coordinator is: this broker standalone; in a cluster, the leader of
/// the group's `__consumer_offsets` partition, at the Kafka address it announced.
async fn coordinator_of(
    r: &Request,
    group: &str,
) -> Result<(BrokerId, Advertised), (Code, String)> {
    may_read_group(r, group).map_err(|e| (group_code(&e), e.to_string()))?;
    if !r.broker().in_cluster() {
        return Ok((BrokerId(r.kafka.node_id()), r.kafka.advertised.clone()));
    }
    let (node, _) = r
        .broker()
        .find_coordinator(group)
        .await
        .map_err(|e| (group_code(&e), e.to_string()))?;
    let (members, _, _) = metadata::brokers(r);
    members
        .into_iter()
        .find(|(id, _)| i64::from(id.0) == node as i64)
        .ok_or_else(|| {
            (
                errors::COORDINATOR_NOT_AVAILABLE,
                format!("group {group:?}'s coordinator, node {node}, serves no Kafka listener"),
            )
        })
}

/// FindCoordinator for groups (v4's batched keys too).
pub async fn find_coordinator(
    r: &Request,
    req: FindCoordinatorRequest,
) -> (FindCoordinatorResponse, &'static str) {
    let keys: Vec<StrBytes> = if r.version >= 4 {
        req.coordinator_keys
    } else {
        vec![req.key]
    };
    let mut first_error = FirstError::default();
    let mut coordinators = Vec::with_capacity(keys.len());
    for key in keys {
        let mut c = Coordinator::default();
        let found = if req.key_type != KEY_TYPE_GROUP {
            Err((
                errors::INVALID_REQUEST,
                "only group coordinators are served (no transactions)".to_string(),
            ))
        } else {
            coordinator_of(r, &key).await
        };
        match found {
            Ok((id, at)) => {
                c.node_id = id;
                c.host = StrBytes::from_string(at.host);
                c.port = i32::from(at.port);
            }
            Err((code, message)) => {
                first_error.note(code);
                c.node_id = BrokerId(-1);
                c.port = -1;
                c.error_code = code.code();
                c.error_message = Some(StrBytes::from_string(message));
            }
        }
        c.key = key;
        coordinators.push(c);
    }
    let mut resp = FindCoordinatorResponse::default();
    if r.version < 4 {
        if let Some(c) = coordinators.first() {
            resp.error_code = c.error_code;
            resp.error_message = c.error_message.clone();
            resp.node_id = c.node_id;
            resp.host = c.host.clone();
            resp.port = c.port;
        }
    } else {
        resp.coordinators = coordinators;
    }
    (resp, first_error.name())
}

fn session_timeout(ms: i32) -> Result<Duration, BrokerError> {
    let ms = u32::try_from(ms).unwrap_or(0);
    if !(MIN_SESSION_TIMEOUT_MS..=MAX_SESSION_TIMEOUT_MS).contains(&ms) {
        return Err(BrokerError::InvalidArgument(format!(
            "session timeout must be between {MIN_SESSION_TIMEOUT_MS} and \
             {MAX_SESSION_TIMEOUT_MS} ms, got {ms}"
        )));
    }
    Ok(Duration::from_millis(u64::from(ms)))
}

/// JoinGroup: answered when the group's rebalance completes.
pub async fn join_group(r: &Request, req: JoinGroupRequest) -> (JoinGroupResponse, &'static str) {
    let mut resp = JoinGroupResponse::default();
    resp.generation_id = -1;
    resp.member_id = req.member_id.clone();
    let group = req.group_id.0.to_string();
    let result = async {
        may_read_group(r, &group)?;
        let session = session_timeout(req.session_timeout_ms)?;
        // v0 has no rebalance timeout: the session timeout stands in, as in Kafka.
        let rebalance = match req.rebalance_timeout_ms {
            ms if ms > 0 => Duration::from_millis(ms as u64),
            _ => session,
        };
        let topics: BTreeSet<String> = req
            .protocols
            .first()
            .and_then(|p| consumer_protocol::<ConsumerProtocolSubscription>(&p.metadata))
            .map(|s| s.topics.iter().map(|t| t.to_string()).collect())
            .unwrap_or_default();
        r.broker()
            .join_classic(ClassicJoin {
                group: group.clone(),
                member_id: req.member_id.to_string(),
                group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
                client_id: r.client_id.clone(),
                client_host: r.peer.clone(),
                session_timeout: session,
                rebalance_timeout: rebalance,
                protocol_type: req.protocol_type.to_string(),
                protocols: req
                    .protocols
                    .iter()
                    .map(|p| (p.name.to_string(), p.metadata.clone()))
                    .collect(),
                topics,
            })
            .await
    }
    .await;
    match result {
        Ok(j) => {
            resp.generation_id = j.generation;
            resp.protocol_type = Some(StrBytes::from_string(j.protocol_type));
            resp.protocol_name = Some(StrBytes::from_string(j.protocol));
            resp.leader = StrBytes::from_string(j.leader);
            resp.member_id = StrBytes::from_string(j.member_id);
            resp.members = j
                .members
                .into_iter()
                .map(|(id, instance, metadata)| {
                    let mut m = JoinGroupResponseMember::default();
                    m.member_id = StrBytes::from_string(id);
                    m.group_instance_id = instance.map(StrBytes::from_string);
                    m.metadata = metadata;
                    m
                })
                .collect();
            (resp, NONE)
        }
        Err(e) => {
            let code = group_code(&e);
            resp.error_code = code.code();
            (resp, code.1)
        }
    }
}

/// SyncGroup: the leader's carries the assignments; each member gets its own once the
/// leader's came.
pub async fn sync_group(r: &Request, req: SyncGroupRequest) -> (SyncGroupResponse, &'static str) {
    let mut resp = SyncGroupResponse::default();
    let group = req.group_id.0.to_string();
    let assignments = req
        .assignments
        .iter()
        .map(|a| ClassicAssignment {
            member_id: a.member_id.to_string(),
            bytes: a.assignment.clone(),
            partitions: consumer_protocol::<ConsumerProtocolAssignment>(&a.assignment)
                .map(|c| {
                    c.assigned_partitions
                        .iter()
                        .flat_map(|tp| {
                            tp.partitions.iter().filter_map(|&p| {
                                Some((tp.topic.to_string(), u32::try_from(p).ok()?))
                            })
                        })
                        .collect::<BTreeSet<TopicPartition>>()
                })
                .unwrap_or_default(),
        })
        .collect();
    let result = match may_read_group(r, &group) {
        Ok(()) => {
            r.broker()
                .sync_classic(&group, &req.member_id, req.generation_id, assignments)
                .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(assignment) => {
            resp.protocol_type = req.protocol_type;
            resp.protocol_name = req.protocol_name;
            resp.assignment = assignment;
            (resp, NONE)
        }
        Err(e) => {
            let code = group_code(&e);
            resp.error_code = code.code();
            (resp, code.1)
        }
    }
}

pub fn heartbeat(r: &Request, req: HeartbeatRequest) -> (HeartbeatResponse, &'static str) {
    let group = req.group_id.0.to_string();
    let result = may_read_group(r, &group).and_then(|()| {
        r.broker()
            .heartbeat_classic(&group, &req.member_id, req.generation_id)
    });
    let mut resp = HeartbeatResponse::default();
    match result {
        Ok(()) => (resp, NONE),
        Err(e) => {
            let code = group_code(&e);
            resp.error_code = code.code();
            (resp, code.1)
        }
    }
}

/// LeaveGroup: one member (v0–2) or several (v3+).
pub fn leave_group(r: &Request, req: LeaveGroupRequest) -> (LeaveGroupResponse, &'static str) {
    let group = req.group_id.0.to_string();
    let members: Vec<(StrBytes, Option<StrBytes>)> = if r.version >= 3 {
        req.members
            .iter()
            .map(|m| (m.member_id.clone(), m.group_instance_id.clone()))
            .collect()
    } else {
        vec![(req.member_id.clone(), None)]
    };
    let mut resp = LeaveGroupResponse::default();
    let mut first_error = FirstError::default();
    if let Err(e) = may_read_group(r, &group) {
        let code = group_code(&e);
        resp.error_code = code.code();
        return (resp, code.1);
    }
    for (id, instance) in members {
        let result = r.broker().leave_classic(&group, &id);
        let code = result.err().map(|e| group_code(&e));
        if let Some(c) = code {
            first_error.note(c);
        }
        if r.version >= 3 {
            let mut m = MemberResponse::default();
            m.member_id = id;
            m.group_instance_id = instance;
            m.error_code = code.map_or(0, |c| c.code());
            resp.members.push(m);
        } else if let Some(c) = code {
            resp.error_code = c.code();
        }
    }
    (resp, first_error.name())
}

/// OffsetCommit: a member of the current generation, or (generation -1, no member id) a
/// consumer outside any group, as Kafka's `commitSync` after `assign`.
pub async fn offset_commit(
    r: &Request,
    req: OffsetCommitRequest,
) -> (OffsetCommitResponse, &'static str) {
    let group = req.group_id.0.to_string();
    let broker = Arc::clone(r.broker());
    let allowed = may_read_group(r, &group);
    let mut first_error = FirstError::default();
    let mut resp = OffsetCommitResponse::default();
    // Each topic's partitions are committed together (one write); their answers follow.
    for t in req.topics {
        let topic = t.name.0.to_string();
        let topic_allowed = allowed.as_ref().map_err(group_code).and_then(|()| {
            broker
                .security()
                .authorize(&r.who, Resource::topic(&topic), Operation::Read)
                .map_err(|e| match e {
                    BrokerError::PermissionDenied(_) => errors::TOPIC_AUTHORIZATION_FAILED,
                    e => code_of(&e),
                })
        });
        let mut bad = Vec::new();
        let mut offsets = Vec::new();
        for p in &t.partitions {
            match (
                u32::try_from(p.partition_index),
                u64::try_from(p.committed_offset),
            ) {
                (Ok(partition), Ok(offset)) => offsets.push(CommitArgs {
                    topic: topic.clone(),
                    partition,
                    offset,
                    metadata: p
                        .committed_metadata
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                }),
                _ => bad.push(p.partition_index),
            }
        }
        let result: Result<(), Code> = match topic_allowed {
            Err(code) => Err(code),
            Ok(()) if offsets.is_empty() => Ok(()),
            Ok(()) => broker
                .commit_offsets(
                    group.clone(),
                    req.member_id.to_string(),
                    i64::from(req.generation_id_or_member_epoch),
                    offsets,
                )
                .await
                .map_err(|e| group_code(&e)),
        };
        let mut out = OffsetCommitResponseTopic::default();
        out.name = t.name;
        out.partitions = t
            .partitions
            .iter()
            .map(|p| {
                let mut o = OffsetCommitResponsePartition::default();
                o.partition_index = p.partition_index;
                let code = if bad.contains(&p.partition_index) {
                    Some(if p.partition_index < 0 {
                        errors::UNKNOWN_TOPIC_OR_PARTITION
                    } else {
                        errors::OFFSET_OUT_OF_RANGE
                    })
                } else {
                    result.err()
                };
                if let Some(c) = code {
                    first_error.note(c);
                    o.error_code = c.code();
                }
                o
            })
            .collect();
        resp.topics.push(out);
    }
    (resp, first_error.name())
}

/// One partition's committed offset and metadata (-1 and no metadata when none).
type Fetched = (i32, i64, Option<StrBytes>, i16);

/// The committed offsets of `group` for `topics` (`None`: every partition it has one for).
async fn fetch_group(
    r: &Request,
    group: &str,
    topics: Option<Vec<(TopicName, Vec<i32>)>>,
) -> Result<Vec<(TopicName, Vec<Fetched>)>, Code> {
    may_read_group(r, group).map_err(|e| group_code(&e))?;
    let broker = r.broker();
    let Some(topics) = topics else {
        // Every partition with a committed offset.
        let view = match broker.describe_group(group).await {
            Ok(v) => v,
            Err(BrokerError::GroupNotFound(_)) => return Ok(Vec::new()),
            Err(e) => return Err(group_code(&e)),
        };
        let mut out: Vec<(TopicName, Vec<Fetched>)> = Vec::new();
        for p in view.partitions {
            let Some(c) = p.committed else { continue };
            let row = (
                p.partition as i32,
                c.offset as i64,
                Some(StrBytes::from_string(c.metadata)),
                0,
            );
            match out.last_mut() {
                Some((name, rows)) if name.0.as_str() == p.topic => rows.push(row),
                _ => out.push((TopicName(StrBytes::from_string(p.topic)), vec![row])),
            }
        }
        return Ok(out);
    };
    let mut out = Vec::with_capacity(topics.len());
    for (name, partitions) in topics {
        let wanted: Vec<u32> = partitions
            .iter()
            .filter_map(|&p| u32::try_from(p).ok())
            .collect();
        let found = broker.fetch_offsets(group, &name, &wanted).await;
        let rows = partitions
            .iter()
            .map(|&p| match &found {
                Ok(views) => match views
                    .iter()
                    .find(|v| i64::from(v.partition) == i64::from(p))
                {
                    Some(v) => match &v.committed {
                        Some(c) => (
                            p,
                            c.offset as i64,
                            Some(StrBytes::from_string(c.metadata.clone())),
                            0,
                        ),
                        None => (p, -1, None, 0),
                    },
                    None => (p, -1, None, errors::UNKNOWN_TOPIC_OR_PARTITION.code()),
                },
                // A group with no offsets yet: none committed.
                Err(BrokerError::GroupNotFound(_)) => (p, -1, None, 0),
                Err(e) => (p, -1, None, code_of(e).code()),
            })
            .collect();
        out.push((name, rows));
    }
    Ok(out)
}

/// The response topics of one group's offsets, in v0–7's or v8's types (the same fields).
macro_rules! fetched_topics {
    ($found:expr, $topic:ty, $partition:ty) => {
        $found
            .into_iter()
            .map(|(name, rows)| {
                let mut t = <$topic>::default();
                t.name = name;
                t.partitions = rows
                    .into_iter()
                    .map(|(p, offset, metadata, code)| {
                        let mut o = <$partition>::default();
                        o.partition_index = p;
                        o.committed_offset = offset;
                        o.committed_leader_epoch = -1;
                        o.metadata = metadata;
                        o.error_code = code;
                        o
                    })
                    .collect();
                t
            })
            .collect()
    };
}

/// OffsetFetch: one group (v0–7) or several (v8+).
pub async fn offset_fetch(
    r: &Request,
    req: OffsetFetchRequest,
) -> (OffsetFetchResponse, &'static str) {
    let mut resp = OffsetFetchResponse::default();
    let mut first_error = FirstError::default();
    if r.version < 8 {
        let topics = req.topics.map(|ts| {
            ts.into_iter()
                .map(|t| (t.name, t.partition_indexes))
                .collect()
        });
        match fetch_group(r, &req.group_id, topics).await {
            Ok(found) => {
                resp.topics = fetched_topics!(
                    found,
                    OffsetFetchResponseTopic,
                    OffsetFetchResponsePartition
                )
            }
            Err(code) => {
                first_error.note(code);
                resp.error_code = code.code();
            }
        }
        return (resp, first_error.name());
    }
    for g in req.groups {
        let topics = g.topics.map(|ts| {
            ts.into_iter()
                .map(|t| (t.name, t.partition_indexes))
                .collect()
        });
        let mut out = OffsetFetchResponseGroup::default();
        match fetch_group(r, &g.group_id, topics).await {
            Ok(found) => {
                out.topics = fetched_topics!(
                    found,
                    OffsetFetchResponseTopics,
                    OffsetFetchResponsePartitions
                )
            }
            Err(code) => {
                first_error.note(code);
                out.error_code = code.code();
            }
        }
        out.group_id = g.group_id;
        resp.groups.push(out);
    }
    (resp, first_error.name())
}

/// A group's state as Kafka tools name it, its protocol type and protocol: a group of
/// Kafka-protocol members has the classic states; one of Weir's own members shows as a
/// stable consumer group (protocol type `consumer`, as Kafka admin tools list consumer
/// groups; no protocol, its members not shown: they speak Weir's protocol); one with only
/// offsets is Empty, an unknown one Dead.
fn kafka_state(
    classic: Option<&Classic>,
    summary: Option<&GroupSummary>,
) -> (&'static str, String, String) {
    if let Some(c) = classic
        && c.has_members()
    {
        return (
            c.phase.name(),
            c.protocol_type.clone().unwrap_or_default(),
            c.protocol.clone().unwrap_or_default(),
        );
    }
    match summary {
        Some(s) if s.members > 0 => ("Stable", "consumer".into(), String::new()),
        Some(_) => ("Empty", String::new(), String::new()),
        None => ("Dead", String::new(), String::new()),
    }
}

pub fn list_groups(r: &Request, req: ListGroupsRequest) -> (ListGroupsResponse, &'static str) {
    let security = r.broker().security();
    let mut resp = ListGroupsResponse::default();
    for g in r.broker().list_groups() {
        if !security.visible(&r.who, Resource::group(&g.name)) {
            continue;
        }
        let classic = r.broker().classic_group(&g.name);
        let (state, protocol_type, _) = kafka_state(classic.as_ref(), Some(&g));
        if !req.states_filter.is_empty() && !req.states_filter.iter().any(|s| s.as_str() == state) {
            continue;
        }
        let mut l = ListedGroup::default();
        l.group_id = GroupId(StrBytes::from_string(g.name));
        l.protocol_type = StrBytes::from_string(protocol_type);
        l.group_state = StrBytes::from_static_str(state);
        l.group_type = StrBytes::from_static_str("classic");
        resp.groups.push(l);
    }
    (resp, NONE)
}

pub fn describe_groups(
    r: &Request,
    req: DescribeGroupsRequest,
) -> (DescribeGroupsResponse, &'static str) {
    let groups = r.broker().list_groups();
    let mut resp = DescribeGroupsResponse::default();
    let mut first_error = FirstError::default();
    for id in req.groups {
        let mut d = DescribedGroup::default();
        if let Err(e) =
            r.broker()
                .security()
                .authorize(&r.who, Resource::group(&id), Operation::Read)
        {
            let code = group_code(&e);
            first_error.note(code);
            d.error_code = code.code();
            d.group_id = id;
            resp.groups.push(d);
            continue;
        }
        let summary = groups.iter().find(|g| g.name == id.as_str());
        let classic = r.broker().classic_group(&id);
        let (state, protocol_type, protocol) = kafka_state(classic.as_ref(), summary);
        d.group_state = StrBytes::from_static_str(state);
        d.protocol_type = StrBytes::from_string(protocol_type);
        d.protocol_data = StrBytes::from_string(protocol.clone());
        if let Some(c) = classic {
            d.members = c
                .members()
                .cloned()
                .map(|m| {
                    let mut dm = DescribedGroupMember::default();
                    dm.member_metadata = m.metadata(&protocol);
                    dm.member_id = StrBytes::from_string(m.id);
                    dm.group_instance_id = m.instance_id.map(StrBytes::from_string);
                    dm.client_id = StrBytes::from_string(m.client_id);
                    dm.client_host = StrBytes::from_string(m.client_host);
                    dm.member_assignment = m.assignment;
                    dm
                })
                .collect();
        }
        d.group_id = id;
        resp.groups.push(d);
    }
    (resp, first_error.name())
}
