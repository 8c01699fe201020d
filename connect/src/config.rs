//! The connector file (SPEC.md, "Connectors"): one `[[source]]` or `[[sink]]` table per
//! connector, `type` choosing which. Parsed strictly (unknown keys are errors, with their line)
//! and validated whole before anything runs, so a typo fails at start, not mid-stream.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use weir_common::limits::{MAX_SESSION_TIMEOUT_MS, MIN_SESSION_TIMEOUT_MS};
use weir_common::{GroupName, PluginName, TopicName};

/// Most connectors one file may declare.
pub const MAX_CONNECTORS: usize = 64;
/// Most plugins in one connector's chain.
pub const MAX_PLUGINS_PER_CONNECTOR: usize = 8;
/// Most delivery attempts an HTTP sink makes for one batch before failing.
pub const MAX_HTTP_RETRIES: u32 = 100;
/// HTTP sink defaults: attempts, and the first backoff (doubled per attempt, capped).
pub const DEFAULT_HTTP_RETRIES: u32 = 10;
pub const DEFAULT_HTTP_BACKOFF_MS: u64 = 200;
/// How often a PostgreSQL source polls its table by default.
pub const DEFAULT_POLL_INTERVAL_MS: u64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Parse(String),
    #[error("{connector}: {message}")]
    Invalid { connector: String, message: String },
    #[error("{0}")]
    Empty(String),
}

/// A whole connector file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectConfig {
    /// Where the runner keeps its positions and status (default: `<file stem>.state` beside
    /// the connector file). Relative paths here and in connectors are relative to the file.
    pub state_dir: Option<PathBuf>,
    #[serde(default, rename = "source")]
    pub sources: Vec<Source>,
    #[serde(default, rename = "sink")]
    pub sinks: Vec<Sink>,
}

/// One connector of a file, as the runner and `weir connect status` list it.
#[derive(Debug, Clone)]
pub struct Connector<'a> {
    /// Its `name`, or `<role>-<type>-<index>`.
    pub name: String,
    /// `source` or `sink`.
    pub role: &'static str,
    /// `file`, `http` or `postgres`.
    pub kind: &'static str,
    pub topic: &'a str,
    pub config: ConnectorConfig<'a>,
}

#[derive(Debug, Clone, Copy)]
pub enum ConnectorConfig<'a> {
    Source(&'a Source),
    Sink(&'a Sink),
}

/// One plugin of a chain: `["name", { params }]` (params may be left out).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum PluginUse {
    Bare((String,)),
    WithParams((String, toml::Table)),
}

impl PluginUse {
    pub fn name(&self) -> &str {
        match self {
            PluginUse::Bare((n,)) | PluginUse::WithParams((n, _)) => n,
        }
    }

    /// The params as the JSON a plugin receives; `None` without any.
    pub fn params_json(&self) -> Option<String> {
        match self {
            PluginUse::WithParams((_, t)) if !t.is_empty() => serde_json::to_string(t).ok(),
            _ => None,
        }
    }
}

/// What a source reads lines as.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LineFormat {
    /// Each line is a record value.
    #[default]
    Lines,
    /// Each line is a JSON object, checked; `key_field` may name the record key.
    Json,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Source {
    File(FileSource),
    Http(HttpSource),
    Postgres(PostgresSource),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Sink {
    File(FileSink),
    Http(HttpSink),
    Postgres(PostgresSink),
}

/// Tails a file of lines (or JSON Lines), following rotation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSource {
    pub name: Option<String>,
    pub path: PathBuf,
    pub topic: String,
    #[serde(default)]
    pub format: LineFormat,
    /// JSON Lines: the field whose value becomes the record key.
    pub key_field: Option<String>,
    #[serde(default)]
    pub plugins: Vec<PluginUse>,
}

/// An HTTP endpoint that accepts POSTed records and answers once the broker acknowledged them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSource {
    pub name: Option<String>,
    pub listen: String,
    pub topic: String,
    #[serde(default)]
    pub format: LineFormat,
    pub key_field: Option<String>,
    #[serde(default)]
    pub plugins: Vec<PluginUse>,
}

/// Polls a table by an increasing column.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSource {
    pub name: Option<String>,
    /// `postgres://user@host:port/db`.
    pub url: String,
    pub table: String,
    /// The increasing column rows are read in order of (and resumed after).
    pub column: String,
    /// The column whose value becomes the record key.
    pub key_column: Option<String>,
    pub topic: String,
    pub poll_interval_ms: Option<u64>,
    #[serde(default)]
    pub plugins: Vec<PluginUse>,
}

/// Writes one record value per line, exactly once across restarts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSink {
    pub name: Option<String>,
    pub topic: String,
    pub group: String,
    /// The group member's session timeout (ms): how soon a sink that died gives its
    /// partitions to a new one.
    pub session_timeout_ms: Option<u32>,
    pub path: PathBuf,
    #[serde(default)]
    pub plugins: Vec<PluginUse>,
}

/// POSTs batches of records to a webhook, retrying with backoff.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSink {
    pub name: Option<String>,
    pub topic: String,
    pub group: String,
    /// The group member's session timeout (ms): how soon a sink that died gives its
    /// partitions to a new one.
    pub session_timeout_ms: Option<u32>,
    pub url: String,
    pub retries: Option<u32>,
    pub backoff_ms: Option<u64>,
    #[serde(default)]
    pub plugins: Vec<PluginUse>,
}

/// Upserts JSON records as rows by a key, so redelivery is harmless.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSink {
    pub name: Option<String>,
    pub topic: String,
    pub group: String,
    /// The group member's session timeout (ms): how soon a sink that died gives its
    /// partitions to a new one.
    pub session_timeout_ms: Option<u32>,
    pub url: String,
    pub table: String,
    /// The columns of the upsert key (each a JSON field of the record).
    pub key: Vec<String>,
    /// The columns written; each filled from the JSON field of the same name. Empty: every
    /// field of the record.
    #[serde(default)]
    pub columns: Vec<String>,
    #[serde(default)]
    pub plugins: Vec<PluginUse>,
}

impl ConnectConfig {
    /// Reads and checks a connector file; relative paths in it become relative to the file's
    /// directory, and `state_dir` gets its default.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut c = Self::parse(&text)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let stem = path.file_stem().unwrap_or(path.as_os_str());
        let state = c.state_dir.take().unwrap_or_else(|| {
            let mut name = stem.to_os_string();
            name.push(".state");
            PathBuf::from(name)
        });
        c.state_dir = Some(base.join(state));
        for s in &mut c.sources {
            if let Source::File(f) = s {
                f.path = base.join(&f.path);
            }
        }
        for s in &mut c.sinks {
            if let Sink::File(f) = s {
                f.path = base.join(&f.path);
            }
        }
        Ok(c)
    }

    /// The state directory (set by [`load`](Self::load); `.` for a parsed text without one).
    pub fn state_dir(&self) -> &Path {
        self.state_dir.as_deref().unwrap_or(Path::new("."))
    }

    /// Parses and checks a connector file's text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let c: ConnectConfig =
            toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    /// Every connector, in file order (sources first).
    pub fn connectors(&self) -> Vec<Connector<'_>> {
        let sources = self.sources.iter().enumerate().map(|(i, s)| Connector {
            name: s.name(i),
            role: "source",
            kind: s.kind(),
            topic: s.topic(),
            config: ConnectorConfig::Source(s),
        });
        let sinks = self.sinks.iter().enumerate().map(|(i, s)| Connector {
            name: s.name(i),
            role: "sink",
            kind: s.kind(),
            topic: s.topic(),
            config: ConnectorConfig::Sink(s),
        });
        sources.chain(sinks).collect()
    }

    /// Every connector's name, in file order (sources first).
    pub fn names(&self) -> Vec<String> {
        self.connectors().into_iter().map(|c| c.name).collect()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let count = self.sources.len() + self.sinks.len();
        if count == 0 {
            return Err(ConfigError::Empty(
                "the file declares no connector: add a [[source]] or [[sink]] table".into(),
            ));
        }
        if count > MAX_CONNECTORS {
            return Err(ConfigError::Empty(format!(
                "the file declares {count} connectors; the limit is {MAX_CONNECTORS}"
            )));
        }
        let mut seen = BTreeSet::new();
        for name in self.names() {
            if !seen.insert(name.clone()) {
                return Err(invalid(
                    &name,
                    "two connectors have this name; give one a `name`",
                ));
            }
        }
        for (i, s) in self.sources.iter().enumerate() {
            s.validate(&s.name(i))?;
        }
        for (i, s) in self.sinks.iter().enumerate() {
            s.validate(&s.name(i))?;
        }
        Ok(())
    }
}

fn invalid(connector: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        connector: connector.to_string(),
        message: message.into(),
    }
}

/// Checks what every connector has: its name, topic and plugin chain.
fn check_common(connector: &str, c: &Common<'_>) -> Result<(), ConfigError> {
    let bad = |e: weir_common::NameError| invalid(connector, e.to_string());
    if let Some(n) = c.name {
        TopicName::new(n.as_str()).map_err(|_| {
            invalid(
                connector,
                "`name` may only contain [A-Za-z0-9._-] (1 to 249 bytes)",
            )
        })?;
    }
    TopicName::new(c.topic).map_err(bad)?;
    if c.plugins.len() > MAX_PLUGINS_PER_CONNECTOR {
        return Err(invalid(
            connector,
            format!(
                "{} plugins; the limit is {MAX_PLUGINS_PER_CONNECTOR}",
                c.plugins.len()
            ),
        ));
    }
    for p in c.plugins {
        PluginName::new(p.name()).map_err(bad)?;
    }
    Ok(())
}

fn check_group(connector: &str, group: &str) -> Result<(), ConfigError> {
    GroupName::new(group).map_err(|e| invalid(connector, e.to_string()))?;
    Ok(())
}

fn check_path(connector: &str, path: &Path) -> Result<(), ConfigError> {
    if path.as_os_str().is_empty() {
        return Err(invalid(connector, "`path` is empty"));
    }
    Ok(())
}

fn check_url(connector: &str, url: &str, schemes: &[&str]) -> Result<(), ConfigError> {
    if !schemes.iter().any(|s| url.starts_with(&format!("{s}://"))) {
        return Err(invalid(
            connector,
            format!(
                "`url` {url:?} must start with {}",
                schemes.join("://, ") + "://"
            ),
        ));
    }
    Ok(())
}

fn check_key_field(
    connector: &str,
    format: LineFormat,
    key: Option<&String>,
) -> Result<(), ConfigError> {
    if key.is_some() && format != LineFormat::Json {
        return Err(invalid(connector, "`key_field` needs format = \"json\""));
    }
    Ok(())
}

/// What every connector has, whatever its type.
struct Common<'a> {
    kind: &'static str,
    name: Option<&'a String>,
    topic: &'a str,
    plugins: &'a [PluginUse],
}

impl Common<'_> {
    /// The given name, or `<role>-<type>-<index>`.
    fn name(&self, role: &str, index: usize) -> String {
        self.name
            .cloned()
            .unwrap_or_else(|| format!("{role}-{}-{index}", self.kind))
    }
}

impl Source {
    fn common(&self) -> Common<'_> {
        let (kind, name, topic, plugins) = match self {
            Source::File(s) => ("file", &s.name, &s.topic, &s.plugins),
            Source::Http(s) => ("http", &s.name, &s.topic, &s.plugins),
            Source::Postgres(s) => ("postgres", &s.name, &s.topic, &s.plugins),
        };
        Common {
            kind,
            name: name.as_ref(),
            topic,
            plugins,
        }
    }

    /// `file`, `http` or `postgres`.
    pub fn kind(&self) -> &'static str {
        self.common().kind
    }

    pub fn topic(&self) -> &str {
        self.common().topic
    }

    /// Its `name`, or `source-<type>-<index>`.
    pub fn name(&self, index: usize) -> String {
        self.common().name("source", index)
    }

    fn validate(&self, name: &str) -> Result<(), ConfigError> {
        check_common(name, &self.common())?;
        match self {
            Source::File(s) => {
                check_path(name, &s.path)?;
                check_key_field(name, s.format, s.key_field.as_ref())
            }
            Source::Http(s) => {
                s.listen.parse::<SocketAddr>().map_err(|_| {
                    invalid(name, format!("`listen` {:?} is not HOST:PORT", s.listen))
                })?;
                check_key_field(name, s.format, s.key_field.as_ref())
            }
            Source::Postgres(s) => {
                check_url(name, &s.url, &["postgres", "postgresql"])?;
                if s.poll_interval_ms == Some(0) {
                    return Err(invalid(name, "`poll_interval_ms` must be at least 1"));
                }
                Ok(())
            }
        }
    }
}

impl Sink {
    fn common(&self) -> (Common<'_>, &str) {
        let (kind, name, topic, plugins, group) = match self {
            Sink::File(s) => ("file", &s.name, &s.topic, &s.plugins, &s.group),
            Sink::Http(s) => ("http", &s.name, &s.topic, &s.plugins, &s.group),
            Sink::Postgres(s) => ("postgres", &s.name, &s.topic, &s.plugins, &s.group),
        };
        let common = Common {
            kind,
            name: name.as_ref(),
            topic,
            plugins,
        };
        (common, group)
    }

    /// `file`, `http` or `postgres`.
    pub fn kind(&self) -> &'static str {
        self.common().0.kind
    }

    pub fn topic(&self) -> &str {
        self.common().0.topic
    }

    pub fn plugins(&self) -> &[PluginUse] {
        self.common().0.plugins
    }

    /// Its group and the session timeout its member asks for.
    pub fn group(&self) -> (&str, Option<u32>) {
        match self {
            Sink::File(s) => (&s.group, s.session_timeout_ms),
            Sink::Http(s) => (&s.group, s.session_timeout_ms),
            Sink::Postgres(s) => (&s.group, s.session_timeout_ms),
        }
    }

    /// Its `name`, or `sink-<type>-<index>`.
    pub fn name(&self, index: usize) -> String {
        self.common().0.name("sink", index)
    }

    fn validate(&self, name: &str) -> Result<(), ConfigError> {
        let (common, group) = self.common();
        check_common(name, &common)?;
        check_group(name, group)?;
        if let Some(ms) = self.group().1
            && !(MIN_SESSION_TIMEOUT_MS..=MAX_SESSION_TIMEOUT_MS).contains(&ms)
        {
            return Err(invalid(
                name,
                format!(
                    "`session_timeout_ms` must be {MIN_SESSION_TIMEOUT_MS} to {MAX_SESSION_TIMEOUT_MS}"
                ),
            ));
        }
        match self {
            Sink::File(s) => check_path(name, &s.path),
            Sink::Http(s) => {
                // TLS for webhooks arrives with the broker's TLS support (rustls).
                check_url(name, &s.url, &["http"])?;
                if s.retries.is_some_and(|r| r > MAX_HTTP_RETRIES) {
                    return Err(invalid(
                        name,
                        format!("`retries` may be at most {MAX_HTTP_RETRIES}"),
                    ));
                }
                Ok(())
            }
            Sink::Postgres(s) => {
                check_url(name, &s.url, &["postgres", "postgresql"])?;
                if s.key.is_empty() {
                    return Err(invalid(name, "`key` must name at least one column"));
                }
                if let Some(k) = s
                    .key
                    .iter()
                    .find(|k| !s.columns.is_empty() && !s.columns.contains(k))
                {
                    return Err(invalid(
                        name,
                        format!("key column {k:?} is not in `columns`"),
                    ));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        ConnectConfig::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn the_spec_example_parses() {
        let c = ConnectConfig::parse(
            r#"
[[source]]                 # one table per connector; `type` picks it
type = "file"
path = "in.txt"
topic = "events"
plugins = [["uppercase", {}]]

[[sink]]
type = "file"
topic = "events"
group = "export-events"
path = "out.txt"
"#,
        )
        .unwrap();
        let Source::File(s) = &c.sources[0] else {
            panic!("{c:?}")
        };
        assert_eq!(s.path, PathBuf::from("in.txt"));
        assert_eq!(s.format, LineFormat::Lines);
        assert_eq!(s.plugins[0].name(), "uppercase");
        assert_eq!(s.plugins[0].params_json(), None);
        assert!(matches!(&c.sinks[0], Sink::File(f) if f.group == "export-events"));
        assert_eq!(c.names(), ["source-file-0", "sink-file-0"]);
    }

    #[test]
    fn every_connector_type_parses_with_its_settings() {
        let c = ConnectConfig::parse(
            r#"
[[source]]
type = "http"
name = "ingest"
listen = "127.0.0.1:8080"
topic = "events"
format = "json"
key_field = "id"
plugins = [["redact", { fields = ["ssn"] }], ["uppercase"]]

[[source]]
type = "postgres"
url = "postgres://weir@127.0.0.1:5432/app"
table = "orders"
column = "id"
topic = "orders"

[[sink]]
type = "http"
topic = "events"
group = "hook"
url = "http://127.0.0.1:9000/hook"
retries = 5

[[sink]]
type = "postgres"
topic = "orders"
group = "pg"
url = "postgresql://weir@127.0.0.1/app"
table = "orders_copy"
key = ["id"]
columns = ["id", "total"]
"#,
        )
        .unwrap();
        let Source::Http(h) = &c.sources[0] else {
            panic!()
        };
        assert_eq!(
            h.plugins[0].params_json().as_deref(),
            Some(r#"{"fields":["ssn"]}"#)
        );
        assert_eq!(h.plugins[1].params_json(), None);
        assert_eq!(
            c.names(),
            [
                "ingest",
                "source-postgres-1",
                "sink-http-0",
                "sink-postgres-1"
            ]
        );
    }

    #[test]
    fn mistakes_are_refused_with_where_they_are() {
        assert!(err("").contains("no connector"));
        let typo = err("[[source]]\ntype = \"file\"\npaht = \"x\"\ntopic = \"t\"\n");
        // The line of the table the key is in (serde buffers a tagged table whole).
        assert!(typo.contains("paht") && typo.contains("line 1"), "{typo}");
        assert!(err("[[source]]\ntype = \"ftp\"\ntopic = \"t\"\n").contains("ftp"));
        assert!(err("[[sinks]]\ntype = \"file\"\n").contains("sinks"));
        let no_group = err("[[sink]]\ntype = \"file\"\ntopic = \"t\"\npath = \"o\"\n");
        assert!(no_group.contains("group"), "{no_group}");
        let bad_topic = err("[[source]]\ntype = \"file\"\npath = \"i\"\ntopic = \"a b\"\n");
        assert!(bad_topic.contains("source-file-0") && bad_topic.contains("[A-Za-z0-9._-]"));
        let listen = err("[[source]]\ntype = \"http\"\nlisten = \"8080\"\ntopic = \"t\"\n");
        assert!(listen.contains("HOST:PORT"), "{listen}");
        let key =
            err("[[source]]\ntype = \"file\"\npath = \"i\"\ntopic = \"t\"\nkey_field = \"id\"\n");
        assert!(key.contains("format"), "{key}");
        let url =
            err("[[sink]]\ntype = \"http\"\ntopic = \"t\"\ngroup = \"g\"\nurl = \"ftp://x\"\n");
        assert!(url.contains("http://"), "{url}");
        let pk = err(
            "[[sink]]\ntype = \"postgres\"\ntopic = \"t\"\ngroup = \"g\"\nurl = \"postgres://x\"\ntable = \"t\"\nkey = []\n",
        );
        assert!(pk.contains("`key`"), "{pk}");
        let twice = err(
            "[[source]]\ntype = \"file\"\nname = \"a\"\npath = \"i\"\ntopic = \"t\"\n[[sink]]\ntype = \"file\"\nname = \"a\"\ntopic = \"t\"\ngroup = \"g\"\npath = \"o\"\n",
        );
        assert!(twice.contains("two connectors"), "{twice}");
    }

    #[test]
    fn the_example_files_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/connect");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "toml") {
                let c = ConnectConfig::load(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(c.state_dir().starts_with(&dir));
                n += 1;
            }
        }
        assert!(n >= 4);
    }
}
