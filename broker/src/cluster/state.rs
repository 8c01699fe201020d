//! The cluster's metadata as a deterministic state machine: every broker applies the same
//! commands in the same (raft log) order and reaches the same state. No I/O here.
//!
//! Invariants:
//! - a partition's leader, when it has one, is in its ISR, and its ISR is a subset of its
//!   replicas;
//! - `leader_epoch` grows by one with every leader change, `partition_epoch` with every change
//!   of leader or ISR; a change proposed against an older `partition_epoch` is refused (so a
//!   deposed leader cannot shrink the ISR it no longer owns).

mod pipelines;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use self::pipelines::PipelineState;
use super::peers::NodeId;
use crate::pipelines::{Checkpoint, Failure, PipelineDef};
use crate::security;
use crate::topics::views::ViewDef;
use crate::types::TopicConfig;

/// A broker known to the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    pub addr: String,
    /// Where Kafka clients reach it (`--kafka-advertise`, else its `--kafka-listen`);
    /// `None`: it serves no Kafka listener.
    #[serde(default)]
    pub kafka: Option<String>,
}

/// Where a partition lives and who leads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// Every broker that holds a copy, in preference order (the first is the preferred leader).
    pub replicas: Vec<NodeId>,
    /// `None` while no in-sync replica is alive.
    pub leader: Option<NodeId>,
    pub leader_epoch: u32,
    /// In-sync replicas: those that have everything up to the high watermark.
    pub isr: Vec<NodeId>,
    pub partition_epoch: u32,
}

/// A topic's settings and partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicState {
    pub config: TopicConfig,
    pub partitions: Vec<PartitionState>,
}

/// A registered plugin (docs/cluster.md, "Plugins"): the module itself is not here but on
/// the members, found by its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginEntry {
    /// Lowercase hex SHA-256 of the module.
    pub sha256: String,
    /// The kind's ABI code (`PluginKind::code`).
    pub kind: u8,
    pub size_bytes: u64,
    pub created_ms: i64,
    pub memory_bytes: u64,
    pub call_timeout_ms: u64,
    pub output_bytes: u64,
    /// 1 when registered, one more with each replacement (set when applied).
    pub version: u64,
}

/// The whole replicated metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub brokers: BTreeMap<NodeId, BrokerInfo>,
    pub topics: BTreeMap<String, TopicState>,
    /// Where the next topic's replica placement starts (spreads leaders over brokers).
    pub next_placement: u64,
    /// Users and ACLs (`--auth`; docs/security.md), replaced whole by
    /// [`Command::SetSecurity`].
    #[serde(default, with = "security::shared")]
    pub security: Arc<security::State>,
    /// How many times `security` was replaced: a replacement proposed against an older
    /// version is refused, so two members changing users at once cannot lose one change.
    #[serde(default)]
    pub security_version: u64,
    /// The cluster's id, set by the first [`Command::Join`] (docs/cluster.md, "Cluster
    /// identity").
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// Members that have joined: each wrote the cluster id into its data dir. A member listed
    /// here that starts with no cluster id lost its data, and is refused.
    #[serde(default)]
    pub joined: BTreeSet<NodeId>,
    /// Registered plugins by name.
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginEntry>,
    /// Pipelines by name, with their checkpoints.
    #[serde(default)]
    pub pipelines: BTreeMap<String, PipelineState>,
    /// The next pipeline's id.
    #[serde(default)]
    pub next_pipeline_id: u32,
    /// Views by name (docs/views.md); their names are not topics'.
    #[serde(default)]
    pub views: BTreeMap<String, ViewDef>,
}

/// A change to the metadata (one raft log entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A broker announces (or updates) its address.
    RegisterBroker {
        id: NodeId,
        addr: String,
    },
    /// A broker announces where Kafka clients reach it (`None`: it serves no Kafka
    /// listener), for the Kafka listeners' Metadata and FindCoordinator answers.
    AdvertiseKafka {
        id: NodeId,
        kafka: Option<String>,
    },
    /// Creates a topic; replicas are placed over the registered brokers.
    CreateTopic {
        name: String,
        config: TopicConfig,
        replication_factor: u32,
    },
    /// Deletes a topic; pipelines reading or writing it fail (with `at_ms` as the time).
    DeleteTopic {
        name: String,
        #[serde(default)]
        at_ms: i64,
    },
    /// Sets a partition's leader and ISR (the controller, on failover or when a replica comes
    /// back), if the partition is still at `partition_epoch`.
    ChangePartition {
        topic: String,
        partition: u32,
        partition_epoch: u32,
        leader: Option<NodeId>,
        isr: Vec<NodeId>,
    },
    /// Member `id` has written `cluster_id` into its data dir. The first one sets the
    /// cluster's id; a later one with another id is refused.
    Join {
        id: NodeId,
        cluster_id: String,
    },
    /// Registers plugin `name` (`replace`: replaces its module, which must exist). The
    /// module was put on a majority of the members before this was proposed.
    PutPlugin {
        name: String,
        entry: PluginEntry,
        replace: bool,
    },
    DeletePlugin {
        name: String,
    },
    /// Replaces the users and ACLs, if they are still at version `base`.
    SetSecurity {
        base: u64,
        #[serde(with = "security::shared")]
        state: Arc<security::State>,
    },
    /// Creates a view of a topic (its name must be free, its source a topic).
    CreateView {
        def: ViewDef,
    },
    DeleteView {
        name: String,
    },
    /// Creates a pipeline, each source partition starting at its offset in `starts`.
    CreatePipeline {
        def: PipelineDef,
        starts: Vec<u64>,
    },
    DeletePipeline {
        name: String,
    },
    /// Stops pipeline `id` with a failure, or (`None`) resumes it.
    SetPipelineFailure {
        name: String,
        id: u32,
        failure: Option<Failure>,
    },
    /// A worker's checkpoint on one source partition (kept only if it moves forward).
    PutPipelineCheckpoint {
        name: String,
        id: u32,
        partition: u32,
        checkpoint: Checkpoint,
    },
}

impl Command {
    /// Whether applying the command a second time changes nothing: it announces an address,
    /// or is compare-and-set on an epoch or a version. Such a command may be sent again when
    /// its first attempt got no answer.
    pub fn safe_to_repeat(&self) -> bool {
        matches!(
            self,
            Command::RegisterBroker { .. }
                | Command::AdvertiseKafka { .. }
                | Command::Join { .. }
                | Command::ChangePartition { .. }
                | Command::SetSecurity { .. }
                | Command::PutPipelineCheckpoint { .. }
        )
    }
}

/// What applying a command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Done,
    TopicExists,
    TopicNotFound,
    PartitionNotFound,
    /// Not enough brokers for the replication factor.
    NotEnoughBrokers {
        wanted: u32,
        brokers: u32,
    },
    /// The partition moved on since the proposer looked (its epoch is newer).
    StaleEpoch {
        current: u32,
    },
    /// The proposed leader/ISR break an invariant (not replicas, leader outside the ISR).
    Invalid(String),
    /// The users and ACLs changed since the proposer read them (they are at `current`).
    StaleSecurity {
        current: u64,
    },
    /// A member joining with another cluster's id (the cluster's is `current`).
    WrongCluster {
        current: String,
    },
    /// The plugin is registered, now at `version`.
    PluginRegistered {
        version: u64,
    },
    PluginExists,
    PluginNotFound,
    /// A pipeline's chain uses the plugin.
    PluginInUse {
        pipeline: String,
    },
    /// The pipeline is created with this id.
    PipelineCreated {
        id: u32,
    },
    PipelineExists,
    PipelineNotFound,
    ViewNotFound,
    /// Views read the topic (so it cannot be deleted), or use the plugin.
    InUseByViews {
        views: Vec<String>,
    },
    /// The partition's checkpoint is further on (or from a newer leader epoch).
    StaleCheckpoint {
        leader_epoch: u32,
        next_offset: u64,
    },
}

impl Metadata {
    /// One partition's state, if the topic and partition exist.
    pub fn partition(&self, topic: &str, partition: u32) -> Option<&PartitionState> {
        self.topics
            .get(topic)
            .and_then(|t| t.partitions.get(partition as usize))
    }

    /// Every partition of every topic: (topic, partition, state), in topic order.
    pub fn partitions(&self) -> impl Iterator<Item = (&String, u32, &PartitionState)> {
        self.topics.iter().flat_map(|(name, t)| {
            t.partitions
                .iter()
                .enumerate()
                .map(move |(i, p)| (name, i as u32, p))
        })
    }

    /// Applies one command. Deterministic: the outcome depends only on the state and command.
    pub fn apply(&mut self, cmd: Command) -> Outcome {
        match cmd {
            Command::RegisterBroker { id, addr } => {
                // Keeps what else the broker announced (its Kafka address).
                self.brokers
                    .entry(id)
                    .or_insert_with(|| BrokerInfo {
                        addr: String::new(),
                        kafka: None,
                    })
                    .addr = addr;
                Outcome::Done
            }
            Command::AdvertiseKafka { id, kafka } => {
                match self.brokers.get_mut(&id) {
                    Some(b) => b.kafka = kafka,
                    None => {
                        self.brokers.insert(
                            id,
                            BrokerInfo {
                                addr: String::new(),
                                kafka,
                            },
                        );
                    }
                }
                Outcome::Done
            }
            Command::Join { id, cluster_id } => match &self.cluster_id {
                Some(current) if *current != cluster_id => Outcome::WrongCluster {
                    current: current.clone(),
                },
                _ => {
                    self.cluster_id = Some(cluster_id);
                    self.joined.insert(id);
                    Outcome::Done
                }
            },
            Command::CreateTopic {
                name,
                config,
                replication_factor,
            } => self.create_topic(name, config, replication_factor),
            Command::DeleteTopic { name, at_ms } => {
                let views = self.views_where(|v| v.source == name);
                if !views.is_empty() && self.topics.contains_key(&name) {
                    return Outcome::InUseByViews { views };
                }
                match self.topics.remove(&name) {
                    Some(_) => {
                        self.fail_pipelines_of_topic(&name, at_ms);
                        Outcome::Done
                    }
                    None => Outcome::TopicNotFound,
                }
            }
            Command::CreateView { def } => {
                if self.topics.contains_key(&def.name) || self.views.contains_key(&def.name) {
                    return Outcome::TopicExists;
                }
                if !self.topics.contains_key(&def.source) {
                    return Outcome::TopicNotFound;
                }
                self.views.insert(def.name.clone(), def);
                Outcome::Done
            }
            Command::DeleteView { name } => match self.views.remove(&name) {
                Some(_) => Outcome::Done,
                None => Outcome::ViewNotFound,
            },
            Command::ChangePartition {
                topic,
                partition,
                partition_epoch,
                leader,
                isr,
            } => {
                let Some(t) = self.topics.get_mut(&topic) else {
                    return Outcome::TopicNotFound;
                };
                let Some(p) = t.partitions.get_mut(partition as usize) else {
                    return Outcome::PartitionNotFound;
                };
                if p.partition_epoch != partition_epoch {
                    return Outcome::StaleEpoch {
                        current: p.partition_epoch,
                    };
                }
                if let Some(bad) = isr.iter().find(|r| !p.replicas.contains(r)) {
                    return Outcome::Invalid(format!("{bad} is not a replica"));
                }
                if let Some(l) = leader
                    && !isr.contains(&l)
                {
                    return Outcome::Invalid(format!("leader {l} is not in the ISR"));
                }
                if p.leader != leader {
                    p.leader_epoch += 1;
                }
                p.leader = leader;
                p.isr = isr;
                p.partition_epoch += 1;
                Outcome::Done
            }
            Command::PutPlugin {
                name,
                mut entry,
                replace,
            } => {
                let current = self.plugins.get(&name).map(|p| p.version);
                entry.version = match (current, replace) {
                    (Some(_), false) => return Outcome::PluginExists,
                    (None, true) => return Outcome::PluginNotFound,
                    (v, _) => v.map_or(1, |v| v + 1),
                };
                let version = entry.version;
                self.plugins.insert(name, entry);
                Outcome::PluginRegistered { version }
            }
            Command::DeletePlugin { name } => {
                if let Some(user) = self.pipeline_using(&name) {
                    return Outcome::PluginInUse {
                        pipeline: user.to_string(),
                    };
                }
                let views = self.views_where(|v| v.uses_plugin(&name));
                if !views.is_empty() {
                    return Outcome::InUseByViews { views };
                }
                match self.plugins.remove(&name) {
                    Some(_) => Outcome::Done,
                    None => Outcome::PluginNotFound,
                }
            }
            Command::SetSecurity { base, state } => {
                if base != self.security_version {
                    return Outcome::StaleSecurity {
                        current: self.security_version,
                    };
                }
                self.security = state;
                self.security_version += 1;
                Outcome::Done
            }
            Command::CreatePipeline { def, starts } => self.create_pipeline(def, starts),
            Command::DeletePipeline { name } => self.delete_pipeline(&name),
            Command::SetPipelineFailure { name, id, failure } => {
                self.set_pipeline_failure(&name, id, failure)
            }
            Command::PutPipelineCheckpoint {
                name,
                id,
                partition,
                checkpoint,
            } => self.put_checkpoint(&name, id, partition, checkpoint),
        }
    }

    /// The names of the views `matching`.
    fn views_where(&self, matching: impl Fn(&ViewDef) -> bool) -> Vec<String> {
        self.views
            .values()
            .filter(|v| matching(v))
            .map(|v| v.name.clone())
            .collect()
    }

    fn create_topic(&mut self, name: String, config: TopicConfig, rf: u32) -> Outcome {
        if self.topics.contains_key(&name) || self.views.contains_key(&name) {
            return Outcome::TopicExists;
        }
        let brokers: Vec<NodeId> = self.brokers.keys().copied().collect();
        if rf == 0 || rf as usize > brokers.len() {
            return Outcome::NotEnoughBrokers {
                wanted: rf,
                brokers: brokers.len() as u32,
            };
        }
        let start = self.next_placement;
        self.next_placement += 1;
        let partitions = (0..config.partitions)
            .map(|p| {
                let replicas = place(&brokers, start + u64::from(p), rf);
                PartitionState {
                    leader: replicas.first().copied(),
                    leader_epoch: 0,
                    isr: replicas.clone(),
                    replicas,
                    partition_epoch: 0,
                }
            })
            .collect();
        self.topics.insert(name, TopicState { config, partitions });
        Outcome::Done
    }
}

impl TopicState {
    /// Whether `node` holds a replica of any partition (and so keeps a local copy).
    pub fn has_replica_on(&self, node: NodeId) -> bool {
        self.partitions.iter().any(|p| p.replicas.contains(&node))
    }
}

/// `rf` consecutive brokers (in id order, wrapping) starting at position `start`: Kafka's
/// round-robin placement, so leaders (the first replica) spread evenly.
fn place(brokers: &[NodeId], start: u64, rf: u32) -> Vec<NodeId> {
    let n = brokers.len() as u64;
    (0..u64::from(rf))
        .map(|j| brokers[((start + j) % n) as usize])
        .collect()
}

/// Metadata for unit tests: three brokers, and topics made with [`create`].
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub fn config(partitions: u32) -> TopicConfig {
        TopicConfig {
            partitions,
            retention_ms: None,
            retention_bytes: None,
            segment_bytes: 1 << 20,
            segment_ms: 1000,
            min_insync_replicas: 1,
        }
    }

    /// Brokers 1, 2 and 3 at `127.0.0.1:9001..=9003`.
    pub fn three_brokers() -> Metadata {
        let mut m = Metadata::default();
        for id in 1..=3 {
            let addr = format!("127.0.0.1:{}", 9000 + id);
            assert_eq!(m.apply(Command::RegisterBroker { id, addr }), Outcome::Done);
        }
        m
    }

    pub fn create(m: &mut Metadata, name: &str, partitions: u32, rf: u32) -> Outcome {
        m.apply(Command::CreateTopic {
            name: name.into(),
            config: config(partitions),
            replication_factor: rf,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{create, three_brokers};
    use super::*;

    #[test]
    fn replicas_are_spread_and_the_first_leads() {
        let mut m = three_brokers();
        assert_eq!(create(&mut m, "orders", 3, 3), Outcome::Done);
        let t = &m.topics["orders"];
        let leaders: Vec<_> = t.partitions.iter().map(|p| p.leader.unwrap()).collect();
        assert_eq!(leaders, [1, 2, 3]);
        assert_eq!(t.partitions[1].replicas, [2, 3, 1]);
        for p in &t.partitions {
            assert_eq!(p.isr, p.replicas);
            assert_eq!((p.leader_epoch, p.partition_epoch), (0, 0));
        }
        // The next topic starts one broker further.
        assert_eq!(create(&mut m, "audit", 1, 2), Outcome::Done);
        assert_eq!(m.topics["audit"].partitions[0].replicas, [2, 3]);
        let replicas_on = |node| {
            m.topics
                .values()
                .flat_map(|t| &t.partitions)
                .filter(|p| p.replicas.contains(&node))
                .count()
        };
        assert_eq!(replicas_on(1), 3);
        assert_eq!(replicas_on(3), 4);
        assert!(m.topics["audit"].has_replica_on(3));
        assert!(!m.topics["audit"].has_replica_on(1));
    }

    #[test]
    fn bad_creates_change_nothing() {
        let mut m = three_brokers();
        assert_eq!(
            create(&mut m, "t", 1, 4),
            Outcome::NotEnoughBrokers {
                wanted: 4,
                brokers: 3
            }
        );
        assert!(matches!(
            create(&mut m, "t", 1, 0),
            Outcome::NotEnoughBrokers { .. }
        ));
        assert_eq!(create(&mut m, "t", 1, 1), Outcome::Done);
        let before = m.clone();
        assert_eq!(create(&mut m, "t", 2, 1), Outcome::TopicExists);
        assert_eq!(m, before);
        assert_eq!(
            m.apply(Command::DeleteTopic {
                name: "x".into(),
                at_ms: 0
            }),
            Outcome::TopicNotFound
        );
    }

    #[test]
    fn leader_changes_bump_epochs_and_stale_proposals_are_refused() {
        let mut m = three_brokers();
        create(&mut m, "t", 1, 3);
        let change = |epoch, leader, isr: &[NodeId]| Command::ChangePartition {
            topic: "t".into(),
            partition: 0,
            partition_epoch: epoch,
            leader,
            isr: isr.to_vec(),
        };
        // Broker 1 dies: 2 leads.
        assert_eq!(m.apply(change(0, Some(2), &[2, 3])), Outcome::Done);
        let p = &m.topics["t"].partitions[0];
        assert_eq!(
            (p.leader, p.leader_epoch, p.partition_epoch),
            (Some(2), 1, 1)
        );
        // A proposal made before that change is refused.
        assert_eq!(
            m.apply(change(0, Some(1), &[1])),
            Outcome::StaleEpoch { current: 1 }
        );
        // An ISR change alone keeps the leader epoch.
        assert_eq!(m.apply(change(1, Some(2), &[1, 2, 3])), Outcome::Done);
        let p = &m.topics["t"].partitions[0];
        assert_eq!((p.leader_epoch, p.partition_epoch), (1, 2));
        // Invariants hold.
        assert!(matches!(
            m.apply(change(2, Some(1), &[2, 3])),
            Outcome::Invalid(_)
        ));
        assert!(matches!(
            m.apply(change(2, Some(2), &[2, 7])),
            Outcome::Invalid(_)
        ));
        // No live in-sync replica: no leader, and the epoch still moves.
        assert_eq!(m.apply(change(2, None, &[])), Outcome::Done);
        assert_eq!(m.topics["t"].partitions[0].leader_epoch, 2);
    }

    #[test]
    fn security_is_replaced_only_from_the_version_it_was_read_at() {
        let mut m = three_brokers();
        let doc = |users: &[&str]| {
            let mut s = security::State::default();
            for u in users {
                s.add_test_user(u);
            }
            Arc::new(s)
        };
        let set = |base, state| Command::SetSecurity { base, state };
        assert_eq!(m.apply(set(0, doc(&["a"]))), Outcome::Done);
        assert_eq!(m.security_version, 1);
        // Two members read version 1 and both propose: the second is refused, unapplied.
        assert_eq!(m.apply(set(1, doc(&["a", "b"]))), Outcome::Done);
        assert_eq!(
            m.apply(set(1, doc(&["a", "c"]))),
            Outcome::StaleSecurity { current: 2 }
        );
        assert_eq!(*m.security, *doc(&["a", "b"]));
        // The document travels with the metadata (raft log entries and snapshots).
        let json = serde_json::to_vec(&m).unwrap();
        assert_eq!(serde_json::from_slice::<Metadata>(&json).unwrap(), m);
        let old: serde_json::Value =
            serde_json::json!({"brokers": {}, "topics": {}, "next_placement": 0});
        let old: Metadata = serde_json::from_value(old).unwrap();
        assert_eq!(old.security_version, 0);
        assert_eq!(*old.security, security::State::default());
    }

    #[test]
    fn replaying_the_same_commands_gives_the_same_state() {
        let cmds = |m: &mut Metadata| {
            for id in [3, 1, 2] {
                m.apply(Command::RegisterBroker {
                    id,
                    addr: format!("h:{id}"),
                });
            }
            create(m, "a", 4, 2);
            create(m, "b", 2, 3);
            m.apply(Command::DeleteTopic {
                name: "a".into(),
                at_ms: 0,
            });
            create(m, "c", 3, 1);
        };
        let (mut x, mut y) = (Metadata::default(), Metadata::default());
        cmds(&mut x);
        cmds(&mut y);
        assert_eq!(x, y);
        let json = serde_json::to_vec(&x).unwrap();
        assert_eq!(serde_json::from_slice::<Metadata>(&json).unwrap(), x);
    }

    #[test]
    fn plugins_are_registered_replaced_and_deleted_by_name() {
        let mut m = three_brokers();
        let entry = |sha: &str| PluginEntry {
            sha256: sha.into(),
            kind: 2,
            size_bytes: 10,
            created_ms: 1,
            memory_bytes: 1 << 20,
            call_timeout_ms: 100,
            output_bytes: 1 << 20,
            version: 0,
        };
        let put = |sha: &str, replace| Command::PutPlugin {
            name: "up".into(),
            entry: entry(sha),
            replace,
        };
        assert_eq!(m.apply(put("a", true)), Outcome::PluginNotFound);
        assert_eq!(
            m.apply(put("a", false)),
            Outcome::PluginRegistered { version: 1 }
        );
        assert_eq!(m.apply(put("b", false)), Outcome::PluginExists);
        assert_eq!(m.plugins["up"].sha256, "a");
        assert_eq!(
            m.apply(put("b", true)),
            Outcome::PluginRegistered { version: 2 }
        );
        assert_eq!(
            (m.plugins["up"].sha256.as_str(), m.plugins["up"].version),
            ("b", 2)
        );
        let json = serde_json::to_vec(&m).unwrap();
        assert_eq!(serde_json::from_slice::<Metadata>(&json).unwrap(), m);
        let delete = || Command::DeletePlugin { name: "up".into() };
        assert_eq!(m.apply(delete()), Outcome::Done);
        assert_eq!(m.apply(delete()), Outcome::PluginNotFound);
        assert!(m.plugins.is_empty());
    }

    #[test]
    fn the_first_join_names_the_cluster_and_another_clusters_member_is_refused() {
        let mut m = Metadata::default();
        let join = |id, c: &str| Command::Join {
            id,
            cluster_id: c.into(),
        };
        assert_eq!(m.apply(join(1, "a")), Outcome::Done);
        assert_eq!(m.apply(join(2, "a")), Outcome::Done);
        // Again (a retry) changes nothing.
        assert_eq!(m.apply(join(2, "a")), Outcome::Done);
        assert!(join(2, "a").safe_to_repeat());
        assert_eq!(
            m.apply(join(3, "b")),
            Outcome::WrongCluster {
                current: "a".into()
            }
        );
        assert_eq!(m.cluster_id.as_deref(), Some("a"));
        assert_eq!(m.joined, BTreeSet::from([1, 2]));
        // Metadata from before cluster ids reads with neither.
        let old: Metadata =
            serde_json::from_str(r#"{"brokers":{},"topics":{},"next_placement":0}"#).unwrap();
        assert_eq!((old.cluster_id, old.joined.len()), (None, 0));
    }
}
