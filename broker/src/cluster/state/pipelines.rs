//! Pipelines in the replicated metadata: each definition, the id its workers' producer ids
//! derive from, and per source partition the last checkpoint a worker wrote.
//!
//! Invariants:
//! - pipeline ids are never reused, so a pipeline deleted and created again under the same
//!   name gets producer ids no destination has seen;
//! - a partition's checkpoint only moves forward: one written under an older source leader
//!   epoch, or under the same epoch at an earlier offset, is refused (a deposed leader's
//!   worker cannot take a pipeline back).

use serde::{Deserialize, Serialize};

use super::{Metadata, Outcome};
use crate::pipelines::{Checkpoint, Failure, PipelineDef};

/// A pipeline in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineState {
    /// Never reused (see the module's invariants).
    pub id: u32,
    /// The definition; `def.failure` is set while it is stopped by a failure.
    pub def: PipelineDef,
    /// One per source partition.
    pub checkpoints: Vec<Checkpoint>,
}

impl Metadata {
    /// Creates pipeline `def` starting each source partition at `starts` (one offset per
    /// partition, asked of the leaders by the proposer).
    pub(super) fn create_pipeline(&mut self, def: PipelineDef, starts: Vec<u64>) -> Outcome {
        if self.pipelines.contains_key(&def.name) {
            return Outcome::PipelineExists;
        }
        let Some(source) = self.topics.get(&def.from_topic) else {
            return Outcome::TopicNotFound;
        };
        if def.outputs().any(|t| !self.topics.contains_key(t)) {
            return Outcome::TopicNotFound;
        }
        if starts.len() != source.partitions.len() {
            return Outcome::Invalid(format!(
                "{} start offsets for {} source partitions",
                starts.len(),
                source.partitions.len()
            ));
        }
        let mut modules = Vec::with_capacity(def.plugins.len());
        for u in &def.plugins {
            match self.plugins.get(&u.plugin) {
                Some(p) => modules.push(p.sha256.clone()),
                None => return Outcome::PluginNotFound,
            }
        }
        let checkpoints = starts
            .into_iter()
            .map(|next_offset| Checkpoint {
                next_offset,
                states: vec![Vec::new(); def.plugins.len()],
                modules: modules.clone(),
                ..Checkpoint::default()
            })
            .collect();
        let id = self.next_pipeline_id;
        self.next_pipeline_id += 1;
        let name = def.name.clone();
        self.pipelines.insert(
            name,
            PipelineState {
                id,
                def,
                checkpoints,
            },
        );
        Outcome::PipelineCreated { id }
    }

    /// The first pipeline (by name) whose chain uses plugin `plugin`.
    pub(super) fn pipeline_using(&self, plugin: &str) -> Option<&str> {
        self.pipelines
            .iter()
            .find(|(_, p)| p.def.plugins.iter().any(|u| u.plugin == plugin))
            .map(|(name, _)| name.as_str())
    }

    /// Topic `topic` was deleted: every running pipeline reading or writing it fails.
    pub(super) fn fail_pipelines_of_topic(&mut self, topic: &str, at_ms: i64) {
        for p in self.pipelines.values_mut() {
            let uses = p.def.from_topic == topic || p.def.outputs().any(|t| t == topic);
            if uses && p.def.failure.is_none() {
                p.def.failure = Some(Failure {
                    error: format!("topic {topic:?} was deleted"),
                    at_ms,
                });
            }
        }
    }

    pub(super) fn delete_pipeline(&mut self, name: &str) -> Outcome {
        match self.pipelines.remove(name) {
            Some(_) => Outcome::Done,
            None => Outcome::PipelineNotFound,
        }
    }

    /// Records why pipeline `id` stopped (`None`: resumed). Refused for another pipeline of
    /// the same name; only the first failure of a run is kept.
    pub(super) fn set_pipeline_failure(
        &mut self,
        name: &str,
        id: u32,
        failure: Option<Failure>,
    ) -> Outcome {
        let source_partitions = self
            .pipelines
            .get(name)
            .and_then(|p| self.topics.get(&p.def.from_topic))
            .map(|t| t.partitions.len());
        match self.pipelines.get_mut(name) {
            Some(p) if p.id == id => {
                if failure.is_none() {
                    // Resuming: its topics must be there, the source as it was.
                    if p.def.outputs().any(|t| !self.topics.contains_key(t)) {
                        return Outcome::TopicNotFound;
                    }
                    match source_partitions {
                        None => return Outcome::TopicNotFound,
                        Some(n) if n != p.checkpoints.len() => {
                            return Outcome::Invalid(format!(
                                "source topic {:?} now has {n} partitions, not {}: delete the \
                                 pipeline and create it again",
                                p.def.from_topic,
                                p.checkpoints.len()
                            ));
                        }
                        Some(_) => {}
                    }
                }
                if failure.is_none() || p.def.failure.is_none() {
                    p.def.failure = failure;
                }
                Outcome::Done
            }
            _ => Outcome::PipelineNotFound,
        }
    }

    /// A worker's checkpoint, if it moves the partition forward (module invariants).
    pub(super) fn put_checkpoint(
        &mut self,
        name: &str,
        id: u32,
        partition: u32,
        checkpoint: Checkpoint,
    ) -> Outcome {
        let Some(p) = self.pipelines.get_mut(name).filter(|p| p.id == id) else {
            return Outcome::PipelineNotFound;
        };
        let Some(current) = p.checkpoints.get_mut(partition as usize) else {
            return Outcome::PartitionNotFound;
        };
        let newer = (checkpoint.leader_epoch, checkpoint.next_offset)
            >= (current.leader_epoch, current.next_offset);
        if !newer {
            return Outcome::StaleCheckpoint {
                leader_epoch: current.leader_epoch,
                next_offset: current.next_offset,
            };
        }
        *current = checkpoint;
        Outcome::Done
    }
}

#[cfg(test)]
mod tests {
    use super::super::Command;
    use super::super::testing::{create, three_brokers};
    use super::*;
    use crate::cluster::state::PluginEntry;
    use crate::pipelines::PluginUseDef;

    fn def(name: &str) -> PipelineDef {
        PipelineDef {
            name: name.into(),
            from_topic: "in".into(),
            to_topic: "out".into(),
            extra_to: Vec::new(),
            plugins: vec![PluginUseDef {
                plugin: "upper".into(),
                params: String::new(),
            }],
            created_ms: 1,
            failure: None,
        }
    }

    fn with_topics_and_plugin() -> Metadata {
        let mut m = three_brokers();
        create(&mut m, "in", 2, 3);
        create(&mut m, "out", 2, 3);
        let entry = PluginEntry {
            sha256: "ab".repeat(32),
            kind: 2,
            size_bytes: 10,
            created_ms: 1,
            memory_bytes: 1 << 20,
            call_timeout_ms: 1000,
            output_bytes: 1 << 20,
            version: 0,
        };
        let put = Command::PutPlugin {
            name: "upper".into(),
            entry,
            replace: false,
        };
        assert_eq!(m.apply(put), Outcome::PluginRegistered { version: 1 });
        m
    }

    fn create_pipeline(m: &mut Metadata, name: &str, starts: &[u64]) -> Outcome {
        m.apply(Command::CreatePipeline {
            def: def(name),
            starts: starts.to_vec(),
        })
    }

    #[test]
    fn pipelines_get_ids_never_reused_and_checkpoints_from_their_starts() {
        let mut m = with_topics_and_plugin();
        assert_eq!(
            create_pipeline(&mut m, "up", &[5, 7]),
            Outcome::PipelineCreated { id: 0 }
        );
        let p = &m.pipelines["up"];
        let offsets: Vec<u64> = p.checkpoints.iter().map(|c| c.next_offset).collect();
        assert_eq!(offsets, [5, 7]);
        assert_eq!(p.checkpoints[0].modules, ["ab".repeat(32)]);
        assert_eq!(p.checkpoints[0].states, [Vec::<u8>::new()]);
        assert_eq!(
            create_pipeline(&mut m, "up", &[0, 0]),
            Outcome::PipelineExists
        );
        let delete = Command::DeletePipeline { name: "up".into() };
        assert_eq!(m.apply(delete.clone()), Outcome::Done);
        assert_eq!(m.apply(delete), Outcome::PipelineNotFound);
        assert_eq!(
            create_pipeline(&mut m, "up", &[0, 0]),
            Outcome::PipelineCreated { id: 1 }
        );

        // What it reads, writes and runs must exist; a start per source partition.
        let before = m.clone();
        assert_eq!(create_pipeline(&mut m, "x", &[0]), {
            Outcome::Invalid("1 start offsets for 2 source partitions".into())
        });
        let mut missing = def("y");
        missing.to_topic = "nope".into();
        let cmd = Command::CreatePipeline {
            def: missing,
            starts: vec![0, 0],
        };
        assert_eq!(m.apply(cmd), Outcome::TopicNotFound);
        let mut missing = def("z");
        missing.plugins[0].plugin = "nope".into();
        let cmd = Command::CreatePipeline {
            def: missing,
            starts: vec![0, 0],
        };
        assert_eq!(m.apply(cmd), Outcome::PluginNotFound);
        assert_eq!(m, before);
    }

    #[test]
    fn checkpoints_only_move_forward_and_only_for_the_same_pipeline() {
        let mut m = with_topics_and_plugin();
        create_pipeline(&mut m, "up", &[0, 0]);
        let put = |partition, leader_epoch, next_offset, id| Command::PutPipelineCheckpoint {
            name: "up".into(),
            id,
            partition,
            checkpoint: Checkpoint {
                leader_epoch,
                next_offset,
                sequences: vec![(0, partition, next_offset as u32)],
                states: vec![vec![0, 255, 7]],
                ..Checkpoint::default()
            },
        };
        assert_eq!(m.apply(put(0, 0, 100, 0)), Outcome::Done);
        assert_eq!(m.apply(put(0, 0, 100, 0)), Outcome::Done);
        // A deposed leader's older epoch, or the same epoch going back: refused.
        assert_eq!(m.apply(put(0, 1, 150, 0)), Outcome::Done);
        let stale = Outcome::StaleCheckpoint {
            leader_epoch: 1,
            next_offset: 150,
        };
        assert_eq!(m.apply(put(0, 0, 400, 0)), stale);
        assert_eq!(m.apply(put(0, 1, 120, 0)), stale);
        // A new leader may restart from an older checkpoint's offset.
        assert_eq!(m.apply(put(0, 2, 150, 0)), Outcome::Done);
        assert_eq!(m.apply(put(2, 2, 1, 0)), Outcome::PartitionNotFound);
        assert_eq!(m.apply(put(1, 0, 1, 9)), Outcome::PipelineNotFound);
        let c = &m.pipelines["up"].checkpoints[0];
        assert_eq!((c.leader_epoch, c.next_offset), (2, 150));
        assert_eq!(c.states, [vec![0, 255, 7]]);

        // Survives the metadata's JSON (snapshots and raft entries), states as base64.
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains("\"AP8H\""), "{json}");
        assert_eq!(serde_json::from_str::<Metadata>(&json).unwrap(), m);
    }

    #[test]
    fn the_first_failure_is_kept_until_a_resume_clears_it() {
        let mut m = with_topics_and_plugin();
        create_pipeline(&mut m, "up", &[0, 0]);
        let fail = |error: &str, id| Command::SetPipelineFailure {
            name: "up".into(),
            id,
            failure: Some(Failure {
                error: error.into(),
                at_ms: 1,
            }),
        };
        assert_eq!(m.apply(fail("first", 0)), Outcome::Done);
        assert_eq!(m.apply(fail("second", 0)), Outcome::Done);
        let error = |m: &Metadata| m.pipelines["up"].def.failure.clone().map(|f| f.error);
        assert_eq!(error(&m).as_deref(), Some("first"));
        assert_eq!(m.apply(fail("other", 7)), Outcome::PipelineNotFound);
        let resume = Command::SetPipelineFailure {
            name: "up".into(),
            id: 0,
            failure: None,
        };
        assert_eq!(m.apply(resume), Outcome::Done);
        assert_eq!(error(&m), None);
    }

    #[test]
    fn a_used_plugin_stays_and_a_deleted_topic_fails_its_pipelines_until_it_is_back() {
        let mut m = with_topics_and_plugin();
        create_pipeline(&mut m, "up", &[0, 0]);
        let delete_plugin = Command::DeletePlugin {
            name: "upper".into(),
        };
        assert_eq!(
            m.apply(delete_plugin),
            Outcome::PluginInUse {
                pipeline: "up".into()
            }
        );
        assert!(m.plugins.contains_key("upper"));

        let delete_topic = Command::DeleteTopic {
            name: "out".into(),
            at_ms: 42,
        };
        assert_eq!(m.apply(delete_topic), Outcome::Done);
        let failure = m.pipelines["up"].def.failure.clone().unwrap();
        assert_eq!(
            (failure.error.as_str(), failure.at_ms),
            ("topic \"out\" was deleted", 42)
        );
        let resume = Command::SetPipelineFailure {
            name: "up".into(),
            id: 0,
            failure: None,
        };
        assert_eq!(m.apply(resume.clone()), Outcome::TopicNotFound);
        create(&mut m, "out", 2, 3);
        assert_eq!(m.apply(resume.clone()), Outcome::Done);
        assert_eq!(m.pipelines["up"].def.failure, None);

        // A source that came back with another partition count cannot resume.
        let delete_topic = Command::DeleteTopic {
            name: "in".into(),
            at_ms: 43,
        };
        assert_eq!(m.apply(delete_topic), Outcome::Done);
        create(&mut m, "in", 3, 3);
        assert!(matches!(m.apply(resume), Outcome::Invalid(why) if why.contains("3 partitions")));
    }
}
