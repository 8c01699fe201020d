//! A chain of plugins applied per partition: the consume-time transformation of one
//! subscription. Each partition gets its own instances (stages), created when its first
//! records arrive and reused for every later batch, so aggregates keep their state per
//! partition for the life of the subscription.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use bytes::Bytes;
use weir_common::batch;

use super::{Plugin, PluginError, Stage, Staged};

pub struct Chain {
    uses: Vec<(Plugin, Vec<u8>)>,
    stages: HashMap<u32, Vec<Stage>>,
}

impl Chain {
    /// Instantiates the chain once for `first_partition` (blocking), so bad params or a
    /// failing init are reported before any record is read.
    pub fn new(uses: Vec<(Plugin, Vec<u8>)>, first_partition: u32) -> Result<Self, PluginError> {
        let mut chain = Self {
            uses,
            stages: HashMap::new(),
        };
        chain.stages_for(first_partition)?;
        Ok(chain)
    }

    /// Each stage's aggregate state for `partition` (empty for other kinds, or before the
    /// partition's first records).
    pub fn states(&self, partition: u32) -> Vec<Bytes> {
        self.stages.get(&partition).map_or_else(Vec::new, |stages| {
            stages
                .iter()
                .map(|s| Bytes::copy_from_slice(s.state()))
                .collect()
        })
    }

    pub fn is_empty(&self) -> bool {
        self.uses.is_empty()
    }

    fn stages_for(&mut self, partition: u32) -> Result<&mut Vec<Stage>, PluginError> {
        match self.stages.entry(partition) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(v) => {
                let stages = self
                    .uses
                    .iter()
                    .map(|(plugin, params)| plugin.stage(params))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(v.insert(stages))
            }
        }
    }

    /// As [`Chain::apply`], leaving the failure for the caller to report.
    pub fn apply_quietly(
        &mut self,
        partition: u32,
        batches: Vec<Bytes>,
        skip_below: u64,
    ) -> Result<Staged, PluginError> {
        run_stages(self.stages_for(partition)?, batches, skip_below)
    }

    /// Runs the batches of one partition through every stage, in order (blocking: wasm):
    /// one call per stage for all of them.
    pub fn apply(
        &mut self,
        partition: u32,
        batches: Vec<Bytes>,
        skip_below: u64,
    ) -> Result<Staged, PluginError> {
        self.apply_quietly(partition, batches, skip_below)
            .inspect_err(|e| {
                tracing::warn!(
                    plugin = e.plugin().unwrap_or(""),
                    partition,
                    offset = e.offset(),
                    error = %e,
                    "a consume-time plugin failed; the subscription ends with the error"
                );
            })
    }
}

/// Runs stored `batches` (in offset order; records below `skip_below` are left out) through
/// `stages` in order, one call per stage. Compressed batches are decompressed first: plugins
/// read plain batches. `unchanged` is set when every stage passed every record on as it was;
/// `batches` are then the input itself.
pub fn run_stages(
    stages: &mut [Stage],
    batches: Vec<Bytes>,
    skip_below: u64,
) -> Result<Staged, PluginError> {
    let plain = batches
        .iter()
        .map(batch::uncompressed)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PluginError::Invalid(format!("stored batch: {e}")))?;
    let mut out = Staged {
        batches: plain,
        unchanged: true,
        routed: Vec::new(),
    };
    for stage in stages {
        if out.batches.is_empty() {
            break;
        }
        let next = stage.run(out.batches, skip_below)?;
        // Records a stage sends to another output leave the chain there.
        let mut routed = out.routed;
        for (k, batches) in next.routed {
            match routed.iter_mut().find(|(o, _)| *o == k) {
                Some((_, to)) => to.extend(batches),
                None => routed.push((k, batches)),
            }
        }
        out = Staged {
            batches: next.batches,
            unchanged: out.unchanged && next.unchanged,
            routed,
        };
    }
    if out.unchanged {
        // The stored bytes as they were (compressed ones stay compressed on the wire).
        out.batches = batches;
    }
    Ok(out)
}
