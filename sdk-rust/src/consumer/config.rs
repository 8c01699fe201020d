//! A consumer's settings: where it starts, which partitions, its group and session, auto
//! commit, and the plugin chain the broker runs on its records.

use super::*;

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Partitions to read; `None`: all of them. Ignored with a group (the group assigns).
    pub partitions: Option<Vec<u32>>,
    /// Where reading starts in each partition (default: earliest).
    pub start: StartFrom,
    /// Most bytes the broker pushes at once (prefetch is a few of these).
    pub max_bytes: u32,
    /// Consumer group to read as; `None`: read on its own, commit nothing.
    pub group: Option<String>,
    /// Group: the broker removes this consumer after this long without a heartbeat.
    pub session_timeout: Duration,
    /// Group: how long this consumer may take to give up a revoked partition.
    pub rebalance_timeout: Duration,
    /// Group: commit positions every `auto_commit_interval`, before giving partitions up and
    /// on close. Off: only [`Consumer::commit`] commits.
    pub auto_commit: bool,
    /// Group: how often auto-commit runs.
    pub auto_commit_interval: Duration,
    /// Group: shown by `weir group describe`.
    pub client_id: String,
    /// Plugins the broker applies, in order, to each partition's records before sending them
    /// (a consume-time chain). Outputs keep the offset of the record they came from.
    pub plugins: Vec<PluginUse>,
}

/// A registered plugin applied to a stream, with its JSON params.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginUse {
    /// The name it was registered under.
    pub name: String,
    /// JSON params for the plugin's init (`None`: none).
    pub params: Option<String>,
}

impl PluginUse {
    /// Parses `NAME` or `NAME=JSON` (the CLI's `--plugin` syntax).
    pub fn parse(s: &str) -> Self {
        match s.split_once('=') {
            Some((name, params)) => Self {
                name: name.to_string(),
                params: Some(params.to_string()),
            },
            None => Self {
                name: s.to_string(),
                params: None,
            },
        }
    }
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            partitions: None,
            start: StartFrom::Earliest,
            max_bytes: DEFAULT_FETCH_MAX_BYTES,
            group: None,
            session_timeout: Duration::from_millis(u64::from(DEFAULT_SESSION_TIMEOUT_MS)),
            rebalance_timeout: Duration::from_millis(u64::from(DEFAULT_REBALANCE_TIMEOUT_MS)),
            auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            client_id: "weir-rust".into(),
            plugins: Vec::new(),
        }
    }
}

impl ConsumerConfig {
    /// Sets where reading starts.
    pub fn start(mut self, start: StartFrom) -> Self {
        self.start = start;
        self
    }

    /// Reads only these partitions.
    pub fn partitions(mut self, partitions: Vec<u32>) -> Self {
        self.partitions = Some(partitions);
        self
    }

    /// Reads as a member of consumer group `group`.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Sets the group session timeout.
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// Turns auto-commit on or off.
    pub fn auto_commit(mut self, on: bool) -> Self {
        self.auto_commit = on;
        self
    }

    /// Sets how often auto-commit runs.
    pub fn auto_commit_interval(mut self, every: Duration) -> Self {
        self.auto_commit_interval = every;
        self
    }

    /// Appends a plugin to the consume-time chain (`params`: JSON, or `None`).
    pub fn plugin(mut self, name: impl Into<String>, params: Option<&str>) -> Self {
        self.plugins.push(PluginUse {
            name: name.into(),
            params: params.map(str::to_string),
        });
        self
    }

    /// Sets the client id shown in group descriptions.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = id.into();
        self
    }
}
