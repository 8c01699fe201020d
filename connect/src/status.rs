//! What each connector is doing, for `weir connect status`: kept in memory by the runner and
//! written to `status.json` in the state directory every [`STATUS_INTERVAL`] and at exit.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConnectError;
use crate::state::{self, StateDir};

/// How often the runner rewrites `status.json`.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(1);
const STATUS_FILE: &str = "status";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Starting,
    Running,
    /// Failed; the runner starts it again after a backoff.
    Failed,
    Stopped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running => "running",
            State::Failed => "failed",
            State::Stopped => "stopped",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorStatus {
    pub name: String,
    /// `source` or `sink`.
    pub role: String,
    /// `file`, `http` or `postgres`.
    pub kind: String,
    pub topic: String,
    pub state: State,
    /// Records produced (source) or written out (sink) since the runner started.
    pub records: u64,
    /// Input a source could not turn into records (e.g. a line that is not a JSON object).
    pub skipped: u64,
    /// Where it stands, readably (a file and byte offset, the offsets written per partition).
    pub position: String,
    /// The last failure, while it is failed (and until it runs again).
    pub error: Option<String>,
    /// How often it failed and was started again since the runner started.
    pub restarts: u32,
    pub updated_ms: i64,
}

/// The runner's status file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunnerStatus {
    pub pid: u32,
    pub started_ms: i64,
    pub connectors: Vec<ConnectorStatus>,
}

/// The statuses of every connector of a runner.
#[derive(Clone)]
pub struct Board {
    started_ms: i64,
    connectors: Arc<Mutex<BTreeMap<String, ConnectorStatus>>>,
}

impl Board {
    pub fn new() -> Self {
        Self {
            started_ms: weir::now_ms(),
            connectors: Arc::default(),
        }
    }

    /// Adds a connector (state `starting`) and returns its reporter.
    pub fn add(&self, name: &str, role: &str, kind: &str, topic: &str) -> Reporter {
        let status = ConnectorStatus {
            name: name.to_string(),
            role: role.to_string(),
            kind: kind.to_string(),
            topic: topic.to_string(),
            state: State::Starting,
            records: 0,
            skipped: 0,
            position: String::new(),
            error: None,
            restarts: 0,
            updated_ms: weir::now_ms(),
        };
        self.lock().insert(name.to_string(), status);
        Reporter {
            name: name.to_string(),
            board: self.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ConnectorStatus>> {
        self.connectors.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshot(&self) -> RunnerStatus {
        RunnerStatus {
            pid: std::process::id(),
            started_ms: self.started_ms,
            connectors: self.lock().values().cloned().collect(),
        }
    }

    pub fn save(&self, state: &StateDir) -> Result<(), ConnectError> {
        state.save(STATUS_FILE, &self.snapshot())
    }
}

impl Default for Board {
    fn default() -> Self {
        Self::new()
    }
}

/// One connector's handle on its status.
#[derive(Clone)]
pub struct Reporter {
    name: String,
    board: Board,
}

impl Reporter {
    fn update(&self, f: impl FnOnce(&mut ConnectorStatus)) {
        if let Some(s) = self.board.lock().get_mut(&self.name) {
            f(s);
            s.updated_ms = weir::now_ms();
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn set_state(&self, state: State) {
        self.update(|s| {
            s.state = state;
            if state == State::Running {
                s.error = None;
            }
        });
    }

    pub fn failed(&self, error: &ConnectError) {
        let message = error.to_string();
        self.update(|s| {
            s.state = State::Failed;
            s.error = Some(message);
            s.restarts += 1;
        });
    }

    /// Adds `records` done and `skipped`, and sets where the connector stands.
    pub fn progress(&self, records: u64, skipped: u64, position: String) {
        self.update(|s| {
            s.records += records;
            s.skipped += skipped;
            s.position = position;
        });
    }
}

/// What `weir connect status` shows: the last status a runner wrote to `dir`, and whether a
/// runner holds `dir` now (if not, every connector is shown as stopped).
pub fn read(dir: &Path) -> Result<Option<(RunnerStatus, bool)>, ConnectError> {
    let running = state::is_running(dir);
    let Some(mut status) = state::load::<RunnerStatus>(dir, STATUS_FILE)? else {
        return Ok(None);
    };
    if !running {
        for c in &mut status.connectors {
            if c.state != State::Failed {
                c.state = State::Stopped;
            }
        }
    }
    Ok(Some((status, running)))
}
