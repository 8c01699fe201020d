//! The file source's reader: tails a file of lines (or JSON Lines) by inode and byte offset.
//!
//! - Only complete lines are read; a last line without its newline waits for it (or for the
//!   file to be rotated away, when it is read as it is).
//! - **Rotation** (the file renamed and a new one created at the path): the old file is read
//!   to its end first — found again by inode in the same directory after a restart — then the
//!   new one from its start.
//! - **Truncation** in place (`copytruncate`): the file is read again from its start.
//! - A line longer than [`MAX_LINE_BYTES`] is skipped (and counted), not split.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Chunk, Reader, SourceRecord};
use crate::config::{FileSource, LineFormat};
use crate::error::ConnectError;

/// Longest line read as a record.
pub const MAX_LINE_BYTES: usize = super::MAX_CHUNK_BYTES;
/// How often an idle file is looked at again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Where the reader stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Position {
    inode: u64,
    offset: u64,
    /// Inside a line too long to read: pass over bytes up to the next newline.
    #[serde(default)]
    skipping: bool,
}

pub struct FileReader {
    path: PathBuf,
    format: LineFormat,
    key_field: Option<String>,
    /// The file being read and where.
    file: Option<(File, Position)>,
    /// A rotation seen at the last read: the old file's inode and length then.
    rotation_seen: Option<(u64, u64)>,
    /// Longest line read ([`MAX_LINE_BYTES`]; smaller in tests).
    max_line: usize,
}

impl FileReader {
    pub fn new(config: &FileSource) -> Self {
        Self {
            path: config.path.clone(),
            format: config.format,
            key_field: config.key_field.clone(),
            file: None,
            rotation_seen: None,
            max_line: MAX_LINE_BYTES,
        }
    }

    /// The file at the path now, with its inode (`None` while there is none).
    fn open_path(&self) -> Result<Option<(File, u64)>, ConnectError> {
        match File::open(&self.path) {
            Ok(f) => {
                let inode = f
                    .metadata()
                    .map_err(|e| ConnectError::io(&self.path, e))?
                    .ino();
                Ok(Some((f, inode)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ConnectError::io(&self.path, e)),
        }
    }

    /// The inode at the path now.
    fn path_inode(&self) -> Option<u64> {
        std::fs::metadata(&self.path).ok().map(|m| m.ino())
    }

    /// The file with `inode` in the path's directory (the path itself, or where rotation
    /// moved it).
    fn find_inode(&self, inode: u64) -> Option<File> {
        if self.path_inode() == Some(inode) {
            return File::open(&self.path).ok();
        }
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty());
        let entries = std::fs::read_dir(dir.unwrap_or(Path::new("."))).ok()?;
        entries
            .flatten()
            .find(|e| e.metadata().is_ok_and(|m| m.is_file() && m.ino() == inode))
            .and_then(|e| File::open(e.path()).ok())
    }

    /// The inode the path has moved on to from `inode` (rotation), once `inode` has stayed
    /// at `len` bytes for two reads in a row: a writer that has not reopened the path yet
    /// gets one poll interval to finish writing the old file.
    fn rotated(&mut self, inode: u64, len: u64) -> Option<u64> {
        let now = self.path_inode().filter(|&i| i != inode)?;
        if self.rotation_seen == Some((inode, len)) {
            self.rotation_seen = None;
            return Some(now);
        }
        self.rotation_seen = Some((inode, len));
        None
    }

    /// Moves to the start of `file`; the chunk so far ends there.
    fn switch(
        &mut self,
        file: File,
        inode: u64,
        records: Vec<SourceRecord>,
        skipped: u64,
    ) -> Chunk {
        let start = start_of(inode);
        self.file = Some((file, start));
        Chunk {
            records,
            skipped,
            end: encode(start),
        }
    }

    /// Moves from `pos` to `next` within the file (`None` when that is no move at all).
    fn advance(
        &mut self,
        pos: Position,
        next: Position,
        records: Vec<SourceRecord>,
        skipped: u64,
    ) -> Option<Chunk> {
        if next == pos && records.is_empty() {
            return None;
        }
        if let Some(f) = &mut self.file {
            f.1 = next;
        }
        Some(Chunk {
            records,
            skipped,
            end: encode(next),
        })
    }

    fn records(&self, data: &[u8], skipped: &mut u64) -> Vec<SourceRecord> {
        let mut out = Vec::new();
        for line in data.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            match self.format {
                LineFormat::Lines => out.push(SourceRecord {
                    key: None,
                    value: Bytes::copy_from_slice(line),
                }),
                LineFormat::Json => {
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    match super::json_record(line, self.key_field.as_deref()) {
                        Some(r) => out.push(r),
                        None => {
                            *skipped += 1;
                            tracing::warn!(
                                path = %self.path.display(),
                                line = %String::from_utf8_lossy(&line[..line.len().min(200)]),
                                "skipping a line that is not a JSON object"
                            );
                        }
                    }
                }
            }
        }
        out
    }
}

fn decode(position: &Value) -> Result<Position, ConnectError> {
    serde_json::from_value(position.clone())
        .map_err(|e| ConnectError::State(format!("file source position {position}: {e}")))
}

fn encode(p: Position) -> Value {
    serde_json::to_value(p).unwrap_or(Value::Null)
}

impl Reader for FileReader {
    async fn seek(&mut self, position: Option<&Value>) -> Result<(), ConnectError> {
        let pos = position.map(decode).transpose()?;
        if let Some(pos) = pos
            && let Some(f) = self.find_inode(pos.inode)
        {
            self.file = Some((f, pos));
            return Ok(());
        }
        if let Some(pos) = pos {
            tracing::warn!(
                path = %self.path.display(),
                inode = pos.inode,
                offset = pos.offset,
                "the file read before is gone (rotated and deleted?); reading the file at the path from its start"
            );
        }
        self.file = self.open_path()?.map(|(f, inode)| (f, start_of(inode)));
        Ok(())
    }

    async fn read(
        &mut self,
        max_bytes: usize,
        until: Option<&Value>,
    ) -> Result<Option<Chunk>, ConnectError> {
        let until = until.map(decode).transpose()?;
        let Some((file, pos)) = &self.file else {
            // No file yet: start on it once it appears.
            let Some((f, inode)) = self.open_path()? else {
                return Ok(None);
            };
            return Ok(Some(self.switch(f, inode, Vec::new(), 0)));
        };
        let pos = *pos;
        let len = file
            .metadata()
            .map_err(|e| ConnectError::io(&self.path, e))?
            .len();
        if len < pos.offset {
            tracing::warn!(path = %self.path.display(), "the file was truncated; reading it again from its start");
            let f = file
                .try_clone()
                .map_err(|e| ConnectError::io(&self.path, e))?;
            return Ok(Some(self.switch(f, pos.inode, Vec::new(), 0)));
        }
        let left = len - pos.offset;
        let want = match until {
            Some(u) if u.inode == pos.inode => u.offset.saturating_sub(pos.offset).min(left),
            // Replaying a chunk that ended in a rotation: the rest of this file.
            Some(_) => left,
            None => (max_bytes as u64).min(left),
        };
        let mut buf = vec![0; want as usize];
        file.read_exact_at(&mut buf, pos.offset)
            .map_err(|e| ConnectError::io(&self.path, e))?;
        if until.is_none() && want < left && !buf.contains(&b'\n') {
            // A chunk holds at least one whole line (up to the longest read).
            buf.resize(left.min(self.max_line as u64) as usize, 0);
            file.read_exact_at(&mut buf, pos.offset)
                .map_err(|e| ConnectError::io(&self.path, e))?;
        }
        let mut next = pos;
        let mut skipped = 0;
        let mut data: &[u8] = &buf;
        if next.skipping {
            let Some(i) = data.iter().position(|&b| b == b'\n') else {
                next.offset += data.len() as u64;
                return Ok(self.advance(pos, next, Vec::new(), 0));
            };
            data = &data[i + 1..];
            next.offset += i as u64 + 1;
            next.skipping = false;
            skipped += 1;
        }
        let mut records = Vec::new();
        if let Some(i) = data.iter().rposition(|&b| b == b'\n') {
            records = self.records(&data[..i], &mut skipped);
            next.offset += i as u64 + 1;
            data = &data[i + 1..];
        } else if until.is_none() && data.len() >= self.max_line {
            tracing::warn!(path = %self.path.display(), offset = next.offset, "skipping a line longer than {} bytes", self.max_line);
            next.offset += data.len() as u64;
            next.skipping = true;
            return Ok(self.advance(pos, next, records, skipped));
        }
        let at_eof = next.offset + data.len() as u64 == len;
        let rotated_to = match until {
            Some(u) if u.inode != pos.inode => Some(u.inode),
            Some(_) => None,
            None if at_eof => self.rotated(pos.inode, len),
            None => None,
        };
        if let Some(inode) = rotated_to
            && at_eof
        {
            // The old file is finished: its unfinished last line is all there will be.
            if !data.is_empty() {
                records.extend(self.records(data, &mut skipped));
            }
            let Some(f) = self.find_inode(inode) else {
                return Err(ConnectError::State(format!(
                    "{}: the file rotated in (inode {inode}) is gone",
                    self.path.display()
                )));
            };
            return Ok(Some(self.switch(f, inode, records, skipped)));
        }
        Ok(self.advance(pos, next, records, skipped))
    }

    fn describe(&self, position: &Value) -> String {
        match decode(position) {
            Ok(p) => format!("{}@{}", self.path.display(), p.offset),
            Err(_) => position.to_string(),
        }
    }

    fn idle_wait(&self) -> Duration {
        POLL_INTERVAL
    }
}

fn start_of(inode: u64) -> Position {
    Position {
        inode,
        offset: 0,
        skipping: false,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn reader(path: &Path, format: LineFormat, key_field: Option<&str>) -> FileReader {
        FileReader::new(&FileSource {
            name: None,
            path: path.to_path_buf(),
            topic: "t".into(),
            format,
            key_field: key_field.map(String::from),
            plugins: Vec::new(),
        })
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    /// Every record readable now (chunk after chunk), and the position after them.
    async fn drain(r: &mut FileReader, max: usize) -> (Vec<String>, Option<Value>) {
        let mut out = Vec::new();
        let mut end = None;
        while let Some(c) = r.read(max, None).await.unwrap() {
            out.extend(
                c.records
                    .iter()
                    .map(|r| String::from_utf8_lossy(&r.value).into_owned()),
            );
            end = Some(c.end);
        }
        (out, end)
    }

    #[tokio::test]
    async fn complete_lines_are_read_once_and_a_restart_resumes_after_them() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("in.txt");
        let mut r = reader(&path, LineFormat::Lines, None);
        r.seek(None).await.unwrap();
        assert_eq!(drain(&mut r, 1024).await.0, Vec::<String>::new());
        append(&path, "a\nb\r\n\npart");
        let (lines, end) = drain(&mut r, 1024).await;
        assert_eq!(lines, ["a", "b", ""]);
        append(&path, "ial\nc\n");
        assert_eq!(drain(&mut r, 4).await.0, ["partial", "c"]);
        // A restart from the saved position reads nothing twice.
        let mut again = reader(&path, LineFormat::Lines, None);
        again.seek(end.as_ref()).await.unwrap();
        assert_eq!(drain(&mut again, 1024).await.0, ["partial", "c"]);
    }

    #[tokio::test]
    async fn rotation_finishes_the_old_file_then_reads_the_new_one() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("in.txt");
        append(&path, "1\n2\n");
        let mut r = reader(&path, LineFormat::Lines, None);
        r.seek(None).await.unwrap();
        let (lines, end) = drain(&mut r, 1024).await;
        assert_eq!(lines, ["1", "2"]);
        // Rotated while the connector was down: written to, renamed, replaced.
        append(&path, "3\nunfinished");
        std::fs::rename(&path, tmp.path().join("in.txt.1")).unwrap();
        append(&path, "4\n");
        let mut r = reader(&path, LineFormat::Lines, None);
        r.seek(end.as_ref()).await.unwrap();
        let mut lines = drain(&mut r, 1024).await.0;
        // The old file's end waits one more look for a late writer, then it is finished.
        lines.extend(drain(&mut r, 1024).await.0);
        assert_eq!(lines, ["3", "unfinished", "4"]);
        // Truncated in place: read again from the start.
        std::fs::write(&path, "").unwrap();
        assert_eq!(drain(&mut r, 1024).await.0, Vec::<String>::new());
        append(&path, "5\n");
        assert_eq!(drain(&mut r, 1024).await.0, ["5"]);
    }

    #[tokio::test]
    async fn a_chunk_reads_the_same_again_up_to_its_end() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("in.txt");
        append(&path, "a\nb\nc\nd\n");
        let mut r = reader(&path, LineFormat::Lines, None);
        r.seek(None).await.unwrap();
        let first = r.read(5, None).await.unwrap().unwrap();
        assert_eq!(first.records.len(), 2);
        let mut replay = reader(&path, LineFormat::Lines, None);
        replay.seek(None).await.unwrap();
        let again = replay
            .read(usize::MAX, Some(&first.end))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.records, first.records);
        assert_eq!(again.end, first.end);
    }

    #[tokio::test]
    async fn json_lines_take_their_key_and_bad_or_overlong_lines_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("in.jsonl");
        append(
            &path,
            "{\"id\":\"a\",\"v\":1}\nnot json\n[1]\n\n{\"id\":7}\n{\"v\":2}\n",
        );
        let mut r = reader(&path, LineFormat::Json, Some("id"));
        r.max_line = 16;
        r.seek(None).await.unwrap();
        let c = r.read(1024, None).await.unwrap().unwrap();
        let keys: Vec<_> = c.records.iter().map(|r| r.key.clone()).collect();
        assert_eq!(keys, [Some(Bytes::from("a")), Some(Bytes::from("7")), None]);
        assert_eq!(c.skipped, 2);
        // A line longer than a read is passed over whole.
        append(&path, &format!("{}\n{{\"id\":\"b\"}}\n", "x".repeat(40)));
        let mut lines = Vec::new();
        let mut skipped = 0;
        while let Some(c) = r.read(16, None).await.unwrap() {
            lines.extend(c.records);
            skipped += c.skipped;
        }
        assert_eq!(skipped, 1);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].key, Some(Bytes::from("b")));
    }
}
