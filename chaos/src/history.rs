//! A history: what the workloads did and saw, one event per line (JSON), in the order they
//! happened. Values are unique per send (the harness never sends one twice), so a value names
//! the send it came from.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

/// One thing a client did or saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A producer starts sending `value` to `partition`.
    Invoke {
        process: String,
        partition: u32,
        value: u64,
    },
    /// The send was acknowledged: `value` is at `offset`.
    Ok {
        process: String,
        partition: u32,
        value: u64,
        offset: u64,
    },
    /// The send definitely wrote nothing (refused before anything was written).
    Fail {
        process: String,
        partition: u32,
        value: u64,
        error: String,
    },
    /// The send's outcome is unknown (a timeout, a lost connection): it may be written once,
    /// or not at all.
    Info {
        process: String,
        partition: u32,
        value: u64,
        error: String,
    },
    /// A consumer read `value` at `offset` of `partition`.
    Read {
        process: String,
        partition: u32,
        offset: u64,
        value: u64,
    },
    /// A group member's assignment became `partitions` (recorded before it commits anything
    /// under the new assignment).
    Assigned {
        process: String,
        group: String,
        partitions: Vec<u32>,
        /// The member id and member epoch of the assignment, when the client tells them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        membership: Option<(String, i64)>,
    },
    /// A group member's commit of `offset` (the next one to read) of `partition` was
    /// accepted.
    Commit {
        process: String,
        group: String,
        partition: u32,
        offset: u64,
        /// The member id and member epoch the commit was accepted under, when the client
        /// tells them. The broker bumps a member's epoch at each change of its assignment.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        membership: Option<(String, i64)>,
        /// The commit got no answer (or an error): it may have been applied or not. Another
        /// member may then start the partition from it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        uncertain: bool,
    },
    /// After every fault healed: the whole of `partition` from its first offset, as
    /// `(offset, value)`.
    Final {
        partition: u32,
        records: Vec<(u64, u64)>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("reading the history: {0}")]
    Io(#[from] std::io::Error),
    #[error("history line {line}: {source}")]
    Parse {
        line: usize,
        source: serde_json::Error,
    },
}

/// Writes events as JSON lines.
pub struct Recorder<W: Write> {
    out: W,
}

impl<W: Write> Recorder<W> {
    pub fn new(out: W) -> Self {
        Self { out }
    }

    pub fn record(&mut self, event: &Event) -> Result<(), HistoryError> {
        serde_json::to_writer(&mut self.out, event).map_err(std::io::Error::from)?;
        self.out.write_all(b"\n")?;
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), HistoryError> {
        self.out.flush()?;
        Ok(())
    }
}

/// Reads a history written by [`Recorder`] (empty lines are skipped).
pub fn read(input: impl BufRead) -> Result<Vec<Event>, HistoryError> {
    let mut events = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let event = serde_json::from_str(&line).map_err(|source| HistoryError::Parse {
            line: i + 1,
            source,
        })?;
        events.push(event);
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_reads_back_as_written() {
        let events = vec![
            Event::Invoke {
                process: "p0".into(),
                partition: 1,
                value: 7,
            },
            Event::Ok {
                process: "p0".into(),
                partition: 1,
                value: 7,
                offset: 0,
            },
            Event::Final {
                partition: 1,
                records: vec![(0, 7)],
            },
        ];
        let mut r = Recorder::new(Vec::new());
        for e in &events {
            r.record(e).unwrap();
        }
        let text = String::from_utf8(r.out).unwrap();
        assert!(
            text.starts_with(r#"{"type":"invoke","process":"p0""#),
            "{text}"
        );
        assert_eq!(read(text.as_bytes()).unwrap(), events);
        let bad = read("{\"type\":\"nope\"}\n".as_bytes()).unwrap_err();
        assert!(bad.to_string().starts_with("history line 1:"), "{bad}");
    }
}
