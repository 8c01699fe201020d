//! The file sink: one record value per line, appended to a file, exactly once across
//! `kill -9`.
//!
//! After each batch it fsyncs the file, then saves (durably) the file's length and the
//! positions the batch reached. At start it truncates whatever lies past the saved length —
//! lines written after the last saved position, which the driver hands it again — and
//! reports the saved positions, below which the driver never hands it anything again.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weir::ConsumerRecord;

use super::Writer;
use crate::config::FileSink;
use crate::error::ConnectError;
use crate::state::{self, StateDir};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct FileSinkState {
    inode: u64,
    /// The file's length after the last saved batch.
    len: u64,
    positions: BTreeMap<u32, u64>,
}

pub struct FileWriter {
    path: PathBuf,
    state: Arc<StateDir>,
    key: String,
    file: Option<File>,
    saved: FileSinkState,
}

impl FileWriter {
    pub fn new(config: &FileSink, state: Arc<StateDir>, name: &str) -> Self {
        Self {
            path: config.path.clone(),
            state,
            key: format!("{name}.sink"),
            file: None,
            saved: FileSinkState::default(),
        }
    }
}

impl Writer for FileWriter {
    async fn open(&mut self) -> Result<BTreeMap<u32, u64>, ConnectError> {
        let io = |e| ConnectError::io(&self.path, e);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            state::sync_dir(dir)?;
        }
        let saved: Option<FileSinkState> = self.state.load(&self.key)?;
        self.saved = match saved {
            None => FileSinkState {
                inode: meta.ino(),
                len: meta.len(),
                positions: BTreeMap::new(),
            },
            Some(s) if s.inode != meta.ino() => {
                tracing::warn!(path = %self.path.display(), "the output file was replaced since the sink last wrote it; appending to the new one");
                FileSinkState {
                    inode: meta.ino(),
                    len: meta.len(),
                    positions: s.positions,
                }
            }
            Some(s) if meta.len() < s.len => {
                return Err(ConnectError::External(format!(
                    "{} holds {} bytes but the sink had written {}: it was truncated outside the sink; move it away (the sink then starts a new file) or delete {} to start over",
                    self.path.display(),
                    meta.len(),
                    s.len,
                    self.state
                        .path()
                        .join(format!("{}.json", self.key))
                        .display()
                )));
            }
            Some(s) => {
                if meta.len() > s.len {
                    tracing::info!(path = %self.path.display(), bytes = meta.len() - s.len, "dropping lines written after the last saved position (they are written again)");
                    file.set_len(s.len)
                        .and_then(|()| file.sync_data())
                        .map_err(io)?;
                }
                s
            }
        };
        self.file = Some(file);
        Ok(self.saved.positions.clone())
    }

    async fn write(
        &mut self,
        records: &[ConsumerRecord],
        positions: &BTreeMap<u32, u64>,
    ) -> Result<u64, ConnectError> {
        let Some(file) = &self.file else {
            return Err(ConnectError::State("the file sink is not open".into()));
        };
        let mut buf = Vec::with_capacity(records.iter().map(|r| r.value.len() + 1).sum());
        for r in records {
            buf.extend_from_slice(&r.value);
            buf.push(b'\n');
        }
        file.write_all_at(&buf, self.saved.len)
            .and_then(|()| file.sync_data())
            .map_err(|e| ConnectError::io(&self.path, e))?;
        self.saved.len += buf.len() as u64;
        self.saved.positions = positions.clone();
        self.state.save(&self.key, &self.saved)?;
        Ok(0)
    }
}
