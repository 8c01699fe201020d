//! A chain of plugins applied per partition: the consume-time transformation of one
//! subscription. Each partition gets its own instances (stages), created when its first
//! records arrive and reused for every later batch, so aggregates keep their state per
//! partition for the life of the subscription.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use bytes::Bytes;
use weir_common::batch::{BatchBuilder, TimestampType, set_base_offset};
use weir_common::record::Record;

use super::runtime::{Plugin, PluginError, Stage, Staged};

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

    /// Runs `records` of one partition through every stage, in order (blocking: wasm). One
    /// call per stage for the whole batch of records.
    pub fn apply(&mut self, partition: u32, records: Vec<Record>) -> Result<Staged, PluginError> {
        run_stages(self.stages_for(partition)?, records)
    }
}

/// Runs `records` through `stages` in order: one call per stage for the whole batch.
/// `unchanged` is set when every stage passed every record on as it was.
pub fn run_stages(stages: &mut [Stage], records: Vec<Record>) -> Result<Staged, PluginError> {
    let mut out = Staged {
        records,
        unchanged: true,
    };
    for stage in stages {
        if out.records.is_empty() {
            break;
        }
        let next = stage.run(out.records)?;
        out = Staged {
            records: next.records,
            unchanged: out.unchanged && next.unchanged,
        };
    }
    Ok(out)
}

/// Encodes plugin output as a batch with explicit offsets (records keep their source
/// offsets, which may repeat); `None` when there is nothing to send.
pub fn encode_output(records: &[Record]) -> Option<Bytes> {
    let base = records.first()?.offset;
    let bytes: usize = records.iter().map(|r| r.value.len() + 32).sum();
    let mut b = BatchBuilder::with_explicit_offsets(TimestampType::CreateTime, bytes);
    for r in records {
        b.push_at(
            r.offset.saturating_sub(base),
            r.timestamp,
            r.key.as_deref(),
            &r.value,
            r.headers.iter().map(|h| (h.key.as_str(), &h.value[..])),
        );
    }
    let mut out = b.finish().to_vec();
    set_base_offset(&mut out, base);
    Some(Bytes::from(out))
}
