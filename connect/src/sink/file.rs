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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(partition: u32, offset: u64, value: &str) -> ConsumerRecord {
        ConsumerRecord {
            topic: "t".into(),
            partition,
            offset,
            timestamp: 0,
            key: None,
            value: value.to_string().into(),
            headers: Vec::new(),
        }
    }

    fn sink(dir: &std::path::Path, state: &Arc<StateDir>) -> FileWriter {
        let config = FileSink {
            name: None,
            topic: "t".into(),
            group: "g".into(),
            session_timeout_ms: None,
            path: dir.join("out.txt"),
            plugins: Vec::new(),
        };
        FileWriter::new(&config, Arc::clone(state), "out")
    }

    /// A restarted sink finds its file as it left it, cut back to its last saved batch when
    /// longer (lines written after it come again); a file truncated by someone else is refused,
    /// and left as it is.
    #[tokio::test]
    async fn a_restart_cuts_unsaved_lines_and_refuses_a_truncated_output() {
        let tmp = tempfile::tempdir().unwrap();
        let state = Arc::new(StateDir::open(&tmp.path().join("state")).unwrap());
        let out = tmp.path().join("out.txt");
        let mut w = sink(tmp.path(), &state);
        assert!(w.open().await.unwrap().is_empty());
        let positions = BTreeMap::from([(0, 2)]);
        w.write(&[record(0, 0, "a"), record(0, 1, "b")], &positions)
            .await
            .unwrap();
        // Lines that got into the file but not into the saved state (a kill in between).
        std::io::Write::write_all(
            &mut OpenOptions::new().append(true).open(&out).unwrap(),
            b"c\n",
        )
        .unwrap();

        let mut again = sink(tmp.path(), &state);
        assert_eq!(again.open().await.unwrap(), positions);
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "a\nb\n");
        again
            .write(&[record(0, 2, "c")], &BTreeMap::from([(0, 3)]))
            .await
            .unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "a\nb\nc\n");

        // Truncated in place by someone else: refused, nothing touched.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&out)
            .unwrap()
            .set_len(2)
            .unwrap();
        let e = sink(tmp.path(), &state).open().await.unwrap_err();
        let message = e.to_string();
        assert!(
            matches!(e, ConnectError::External(_))
                && message.contains("holds 2 bytes but the sink had written 6")
                && message.contains("truncated outside the sink"),
            "{message}"
        );
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "a\n");
    }
}
