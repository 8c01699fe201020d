//! Broker settings: command-line flags and an optional TOML file (`--config`) with the same
//! keys (`data-dir = "..."`, `fsync = "always"`, ...). Flags override the file; unknown keys in
//! the file are an error. Defaults are the documented constants below.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::Deserialize;
use weir_common::limits::{DEFAULT_MAX_RECORD_BYTES, MAX_BATCH_BYTES, MIN_SEGMENT_BYTES};

use crate::cluster::peers::{ClusterSpec, cluster_spec};
use crate::storage::SyncMode;

/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "./weir-data";
/// Default listen address (`--listen 127.0.0.1:0` picks a free port).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9292";
/// How often `--fsync interval` fsyncs the WAL.
pub const DEFAULT_FSYNC_INTERVAL_MS: u64 = 200;
/// How often retention runs over every partition.
pub const DEFAULT_RETENTION_CHECK_MS: u64 = 5_000;
/// Topic defaults (Kafka's, except a smaller segment: segments here are key ranges, and
/// retention drops whole segments, so smaller ones make retention finer-grained).
pub const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
pub const DEFAULT_SEGMENT_MS: i64 = 7 * 24 * 3600 * 1000;
/// Produce batches the broker holds at once (received, not yet written), in bytes. Past it an
/// ordered produce stream waits (its client is held back by HTTP/2 flow control) and a unary
/// produce is refused with RESOURCE_EXHAUSTED (Kafka's `queued.max.request.bytes`).
pub const DEFAULT_MAX_PRODUCE_BYTES_IN_FLIGHT: u64 = 256 * 1024 * 1024;
/// The smallest `--max-produce-bytes-in-flight` accepted: one largest batch.
pub const MIN_PRODUCE_BYTES_IN_FLIGHT: u64 = MAX_BATCH_BYTES as u64;
/// The largest `--max-produce-bytes-in-flight` accepted (the budget is counted in `u32`).
pub const MAX_PRODUCE_BYTES_IN_FLIGHT: u64 = u32::MAX as u64;
/// gRPC calls handled at once over all connections (open streams included); past it client
/// calls are refused with RESOURCE_EXHAUSTED before their request is read. Health checks and
/// cluster-internal calls are never refused.
pub const DEFAULT_MAX_IN_FLIGHT_REQUESTS: usize = 4096;
/// HTTP/2 streams (calls) one connection may have open at once; a client past it waits for a
/// slot (it is the peer's limit to respect, not an error).
pub const DEFAULT_MAX_STREAMS_PER_CONNECTION: u32 = 256;
/// Cluster mode: how long an in-sync follower may go without catching up to its leader's
/// log end before it leaves the ISR (Kafka's `replica.lag.time.max.ms`).
pub const DEFAULT_REPLICA_LAG_MAX_MS: u64 = 10_000;
/// The shortest `--replica-lag-max-ms` accepted.
pub const MIN_REPLICA_LAG_MAX_MS: u64 = 1_000;
/// Cluster mode: how long a follower's fetch waits at the leader when there is nothing new
/// (Kafka's `replica.fetch.wait.max.ms`). Only an idle fetch waits: new records, or a moved
/// high watermark, answer it at once.
pub const DEFAULT_REPLICA_FETCH_WAIT_MS: u64 = 500;
/// The longest `--replica-fetch-wait-ms` accepted (a leader also caps what followers ask).
/// It must stay below `--replica-lag-max-ms`: an idle follower is caught up as of its last
/// fetch.
pub const MAX_REPLICA_FETCH_WAIT_MS: u64 = 30_000;
/// Cluster mode: how long a broker may not answer the controller's probes before it is
/// fenced and its partitions fail over (Kafka's `broker.session.timeout.ms` is 9 s).
pub const DEFAULT_SESSION_TIMEOUT_MS: u64 = 6_000;
/// Cluster mode: how often the controller gives leadership back to each partition's
/// preferred replica (the first of its replicas) when that one is alive and in sync again
/// (Kafka's `auto.leader.rebalance.enable` with `leader.imbalance.check.interval.seconds`).
/// 0 turns it off.
pub const DEFAULT_LEADER_REBALANCE_INTERVAL_MS: u64 = 60_000;
/// The shortest non-zero `--leader-rebalance-interval-ms` accepted.
pub const MIN_LEADER_REBALANCE_INTERVAL_MS: u64 = 1_000;
/// The shortest `--session-timeout-ms` accepted (the controller probes every 250 ms).
pub const MIN_SESSION_TIMEOUT_MS: u64 = 1_000;

/// When the write-ahead log is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// Only the OS flushes: an acknowledged record survives a broker crash (`kill -9`) but
    /// not a power loss.
    Never,
    /// Fsync every `--fsync-interval-ms` (default): survives a crash; a power loss may lose
    /// the last interval.
    Interval,
    /// Fsync before acknowledging each write group: survives power loss; slowest.
    Always,
}

/// `weir-broker`: the Weir event-streaming broker.
#[derive(Debug, Default, Parser, Deserialize)]
#[command(name = "weir-broker", version, about)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Args {
    /// TOML file with any of these settings (same names as the flags, without `--`).
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Where the data lives [default: ./weir-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to serve gRPC on; port 0 picks a free port [default: 127.0.0.1:9292].
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// When to fsync the write-ahead log [default: interval].
    #[arg(long, value_enum)]
    pub fsync: Option<FsyncPolicy>,
    /// Fsync period for `--fsync interval`, in ms [default: 200].
    #[arg(long, value_name = "MS")]
    pub fsync_interval_ms: Option<u64>,
    /// Largest record (key + value + headers) accepted, in bytes [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    pub max_record_bytes: Option<usize>,
    /// How often retention runs, in ms [default: 5000].
    #[arg(long, value_name = "MS")]
    pub retention_check_ms: Option<u64>,
    /// Retention time of topics that do not set one; -1 keeps forever [default: 7 days].
    #[arg(long, value_name = "MS", allow_negative_numbers = true)]
    pub default_retention_ms: Option<i64>,
    /// Retention size per partition of topics that do not set one; -1: none [default: -1].
    #[arg(long, value_name = "BYTES", allow_negative_numbers = true)]
    pub default_retention_bytes: Option<i64>,
    /// Segment size of topics that do not set one [default: 67108864].
    #[arg(long, value_name = "BYTES")]
    pub default_segment_bytes: Option<u64>,
    /// Segment age after which it rolls, for topics that do not set one [default: 7 days].
    #[arg(long, value_name = "MS")]
    pub default_segment_ms: Option<i64>,
    /// Cluster mode: this broker's id in --cluster.
    #[arg(long, value_name = "N")]
    pub node_id: Option<u64>,
    /// Cluster mode: every member as ID=HOST:PORT, comma-separated (this one included).
    /// Without it the broker runs alone (the default).
    #[arg(long, value_name = "ID=HOST:PORT,...")]
    pub cluster: Option<String>,
    /// Cluster mode: an in-sync follower that has not caught up with its leader for this
    /// long leaves the in-sync replicas, in ms [default: 10000].
    #[arg(long, value_name = "MS")]
    pub replica_lag_max_ms: Option<u64>,
    /// Cluster mode: how long a follower's fetch waits at its leader when there is nothing
    /// new, in ms; less than --replica-lag-max-ms [default: 500].
    #[arg(long, value_name = "MS")]
    pub replica_fetch_wait_ms: Option<u64>,
    /// Cluster mode: a broker that has not answered the controller for this long is fenced
    /// and its partitions move to other in-sync replicas, in ms [default: 6000].
    #[arg(long, value_name = "MS")]
    pub session_timeout_ms: Option<u64>,
    /// Cluster mode: how often the controller moves leadership back to each partition's
    /// preferred replica once it is alive and in sync, in ms; 0: never [default: 60000].
    #[arg(long, value_name = "MS")]
    pub leader_rebalance_interval_ms: Option<u64>,
    /// Serve Prometheus metrics over HTTP at `http://HOST:PORT/metrics` (port 0 picks a free
    /// port). Off unless given.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_listen: Option<String>,
    /// Also serve the Kafka wire protocol on HOST:PORT (port 0 picks a free port), on the
    /// same topics, offsets and users as gRPC (docs/kafka.md). Off unless given.
    #[arg(long, value_name = "HOST:PORT")]
    pub kafka_listen: Option<String>,
    /// The address Kafka clients are told to connect to, when it is not --kafka-listen's
    /// (a container, a NAT, a listener on 0.0.0.0).
    #[arg(long, value_name = "HOST:PORT")]
    pub kafka_advertise: Option<String>,
    /// Produce batches held at once, received and not yet written, in bytes; past it ordered
    /// produce streams wait and unary produces get RESOURCE_EXHAUSTED [default: 268435456].
    #[arg(long, value_name = "BYTES")]
    pub max_produce_bytes_in_flight: Option<u64>,
    /// gRPC calls handled at once over all connections, open streams included; past it calls
    /// get RESOURCE_EXHAUSTED (health checks and cluster traffic excepted) [default: 4096].
    #[arg(long, value_name = "N")]
    pub max_in_flight_requests: Option<usize>,
    /// Calls (HTTP/2 streams) one connection may have open at once; more wait [default: 256].
    #[arg(long, value_name = "N")]
    pub max_streams_per_connection: Option<u32>,
    /// Serve gRPC over TLS with this certificate chain (PEM); needs --tls-key. Plain-text
    /// clients are then refused.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// With TLS: require client certificates signed by this CA (PEM); clients without one
    /// are refused during the handshake.
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Cluster mode with TLS: trust the other members' certificates when signed by this CA
    /// (PEM). Members present their own --tls-cert to each other.
    #[arg(long, value_name = "FILE")]
    pub tls_peer_ca: Option<PathBuf>,
    /// Require every call (health checks excepted) to authenticate as a user, and check its
    /// permissions (docs/security.md). With no superuser yet, the broker makes `admin` and
    /// writes its token to DATA_DIR/admin.token (in a cluster: the member with the lowest id,
    /// and every member needs TLS). `--auth=false` turns it off [default: off].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub auth: Option<bool>,
}

/// Settings a topic gets when its creator leaves them out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDefaults {
    pub retention_ms: Option<i64>,
    pub retention_bytes: Option<u64>,
    pub segment_bytes: u64,
    pub segment_ms: i64,
}

/// Fully resolved broker configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: String,
    pub fsync: FsyncPolicy,
    pub fsync_interval: Duration,
    pub max_record_bytes: usize,
    pub retention_check_interval: Duration,
    pub topic_defaults: TopicDefaults,
    /// `None`: a standalone broker.
    pub cluster: Option<ClusterSpec>,
    pub replica_lag_max: Duration,
    pub replica_fetch_wait: Duration,
    pub session_timeout: Duration,
    /// `None`: leadership is not moved back to preferred replicas.
    pub leader_rebalance_interval: Option<Duration>,
    /// Where to serve `/metrics`; `None`: no metrics endpoint.
    pub metrics_listen: Option<String>,
    /// Where to serve the Kafka protocol; `None`: not served.
    pub kafka_listen: Option<String>,
    /// What Kafka clients are told to connect to (`None`: the bound address).
    pub kafka_advertise: Option<String>,
    pub limits: RequestLimits,
    /// `None`: plain-text gRPC.
    pub tls: Option<TlsFiles>,
    /// Whether calls must authenticate (`--auth`).
    pub auth: bool,
}

/// The release and git commit a broker was built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildInfo {
    pub version: &'static str,
    pub commit: &'static str,
}

impl BuildInfo {
    /// This build's (`weir-build-info`).
    pub const CURRENT: Self = Self {
        version: weir_build_info::VERSION,
        commit: weir_build_info::COMMIT,
    };
}

impl std::fmt::Display for BuildInfo {
    /// `VERSION (COMMIT)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.version, self.commit)
    }
}

/// Where the TLS certificate, key and (for client-certificate auth) client CA are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    /// Cluster mode: the CA of the other members' certificates.
    pub peer_ca: Option<PathBuf>,
}

/// TLS material read from [`TlsFiles`] (PEM).
#[derive(Clone)]
pub struct TlsPem {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub client_ca: Option<Vec<u8>>,
    pub peer_ca: Option<Vec<u8>>,
}

impl TlsFiles {
    /// Reads the files.
    pub fn load(&self) -> Result<TlsPem, ConfigError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| ConfigError::Read {
                path: path.into(),
                source,
            })
        };
        Ok(TlsPem {
            cert: read(&self.cert)?,
            key: read(&self.key)?,
            client_ca: self.client_ca.as_deref().map(read).transpose()?,
            peer_ca: self.peer_ca.as_deref().map(read).transpose()?,
        })
    }
}

/// Caps on what clients may have the broker hold at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    pub produce_bytes_in_flight: u64,
    pub in_flight_requests: usize,
    pub streams_per_connection: u32,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            produce_bytes_in_flight: DEFAULT_MAX_PRODUCE_BYTES_IN_FLIGHT,
            in_flight_requests: DEFAULT_MAX_IN_FLIGHT_REQUESTS,
            streams_per_connection: DEFAULT_MAX_STREAMS_PER_CONNECTION,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl FsyncPolicy {
    pub fn sync_mode(self) -> SyncMode {
        match self {
            FsyncPolicy::Never => SyncMode::Never,
            FsyncPolicy::Interval => SyncMode::Interval,
            FsyncPolicy::Always => SyncMode::Always,
        }
    }
}

fn load_file(path: &Path) -> Result<Args, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.into(),
        message: e.to_string(),
    })
}

/// -1 means "none"; other negatives are invalid.
fn optional_limit(v: i64, what: &str) -> Result<Option<i64>, ConfigError> {
    match v {
        -1 => Ok(None),
        v if v > 0 => Ok(Some(v)),
        v => Err(ConfigError::Invalid(format!(
            "{what} must be -1 (none) or positive, got {v}"
        ))),
    }
}

impl Config {
    /// Resolves flags over the config file over the defaults, and validates the result.
    pub fn resolve(args: Args) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => Args::default(),
        };
        macro_rules! pick {
            ($f:ident, $default:expr) => {
                args.$f.or(file.$f).unwrap_or($default)
            };
        }
        let max_record_bytes = pick!(max_record_bytes, DEFAULT_MAX_RECORD_BYTES);
        if max_record_bytes == 0 || max_record_bytes > MAX_BATCH_BYTES {
            return Err(ConfigError::Invalid(format!(
                "--max-record-bytes must be between 1 and {MAX_BATCH_BYTES}"
            )));
        }
        let segment_bytes = pick!(default_segment_bytes, DEFAULT_SEGMENT_BYTES);
        if segment_bytes < MIN_SEGMENT_BYTES {
            return Err(ConfigError::Invalid(format!(
                "--default-segment-bytes must be at least {MIN_SEGMENT_BYTES}"
            )));
        }
        let segment_ms = pick!(default_segment_ms, DEFAULT_SEGMENT_MS);
        if segment_ms <= 0 {
            return Err(ConfigError::Invalid(
                "--default-segment-ms must be positive".into(),
            ));
        }
        let retention_ms = optional_limit(
            pick!(default_retention_ms, DEFAULT_RETENTION_MS),
            "--default-retention-ms",
        )?;
        let retention_bytes = optional_limit(
            pick!(default_retention_bytes, -1),
            "--default-retention-bytes",
        )?
        .map(|b| b as u64);
        let interval_ms = pick!(fsync_interval_ms, DEFAULT_FSYNC_INTERVAL_MS).max(1);
        let retention_ms_check = pick!(retention_check_ms, DEFAULT_RETENTION_CHECK_MS).max(1);
        let cluster = cluster_spec(
            args.node_id.or(file.node_id),
            args.cluster.as_deref().or(file.cluster.as_deref()),
        )
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let replica_lag_max_ms = pick!(replica_lag_max_ms, DEFAULT_REPLICA_LAG_MAX_MS);
        if replica_lag_max_ms < MIN_REPLICA_LAG_MAX_MS {
            return Err(ConfigError::Invalid(format!(
                "--replica-lag-max-ms must be at least {MIN_REPLICA_LAG_MAX_MS}"
            )));
        }
        let replica_fetch_wait_ms = pick!(replica_fetch_wait_ms, DEFAULT_REPLICA_FETCH_WAIT_MS);
        if !(1..=MAX_REPLICA_FETCH_WAIT_MS).contains(&replica_fetch_wait_ms)
            || replica_fetch_wait_ms >= replica_lag_max_ms
        {
            return Err(ConfigError::Invalid(format!(
                "--replica-fetch-wait-ms must be between 1 and {MAX_REPLICA_FETCH_WAIT_MS}, and \
                 less than --replica-lag-max-ms ({replica_lag_max_ms})"
            )));
        }
        let rebalance_ms = pick!(
            leader_rebalance_interval_ms,
            DEFAULT_LEADER_REBALANCE_INTERVAL_MS
        );
        if rebalance_ms != 0 && rebalance_ms < MIN_LEADER_REBALANCE_INTERVAL_MS {
            return Err(ConfigError::Invalid(format!(
                "--leader-rebalance-interval-ms must be 0 (off) or at least \
                 {MIN_LEADER_REBALANCE_INTERVAL_MS}"
            )));
        }
        let session_timeout_ms = pick!(session_timeout_ms, DEFAULT_SESSION_TIMEOUT_MS);
        if session_timeout_ms < MIN_SESSION_TIMEOUT_MS {
            return Err(ConfigError::Invalid(format!(
                "--session-timeout-ms must be at least {MIN_SESSION_TIMEOUT_MS}"
            )));
        }
        let limits = RequestLimits {
            produce_bytes_in_flight: pick!(
                max_produce_bytes_in_flight,
                DEFAULT_MAX_PRODUCE_BYTES_IN_FLIGHT
            ),
            in_flight_requests: pick!(max_in_flight_requests, DEFAULT_MAX_IN_FLIGHT_REQUESTS),
            streams_per_connection: pick!(
                max_streams_per_connection,
                DEFAULT_MAX_STREAMS_PER_CONNECTION
            ),
        };
        if !(MIN_PRODUCE_BYTES_IN_FLIGHT..=MAX_PRODUCE_BYTES_IN_FLIGHT)
            .contains(&limits.produce_bytes_in_flight)
        {
            return Err(ConfigError::Invalid(format!(
                "--max-produce-bytes-in-flight must be between {MIN_PRODUCE_BYTES_IN_FLIGHT} (one largest batch) and {MAX_PRODUCE_BYTES_IN_FLIGHT}"
            )));
        }
        if limits.in_flight_requests == 0 || limits.streams_per_connection == 0 {
            return Err(ConfigError::Invalid(
                "--max-in-flight-requests and --max-streams-per-connection must be at least 1"
                    .into(),
            ));
        }
        let peer_ca = args.tls_peer_ca.or(file.tls_peer_ca);
        let tls = match (
            args.tls_cert.or(file.tls_cert),
            args.tls_key.or(file.tls_key),
            args.tls_client_ca.or(file.tls_client_ca),
        ) {
            (None, None, None) if peer_ca.is_none() => None,
            (Some(cert), Some(key), client_ca) => Some(TlsFiles {
                cert,
                key,
                client_ca,
                peer_ca,
            }),
            _ => {
                return Err(ConfigError::Invalid(
                    "TLS needs both --tls-cert and --tls-key (--tls-client-ca and --tls-peer-ca need them too)"
                        .into(),
                ));
            }
        };
        match (&tls, &cluster) {
            (Some(t), Some(_)) if t.peer_ca.is_none() => {
                return Err(ConfigError::Invalid(
                    "TLS in cluster mode needs --tls-peer-ca: the CA that signed the other members' certificates".into(),
                ));
            }
            (Some(t), None) if t.peer_ca.is_some() => {
                return Err(ConfigError::Invalid(
                    "--tls-peer-ca is for cluster mode (--cluster)".into(),
                ));
            }
            _ => {}
        }
        let auth = pick!(auth, false);
        if auth && cluster.is_some() && tls.is_none() {
            return Err(ConfigError::Invalid(
                "--auth in cluster mode needs TLS between the members (--tls-cert, --tls-key, --tls-peer-ca): members prove who they are to each other with their certificates".into(),
            ));
        }
        let kafka_listen = args.kafka_listen.or(file.kafka_listen);
        let kafka_advertise = args.kafka_advertise.or(file.kafka_advertise);
        if let Some(a) = &kafka_advertise {
            let well_formed = a
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !well_formed {
                return Err(ConfigError::Invalid(format!(
                    "--kafka-advertise must be HOST:PORT, got {a:?}"
                )));
            }
        }
        if kafka_listen.is_none() && kafka_advertise.is_some() {
            return Err(ConfigError::Invalid(
                "--kafka-advertise needs --kafka-listen".into(),
            ));
        }
        Ok(Self {
            data_dir: pick!(data_dir, PathBuf::from(DEFAULT_DATA_DIR)),
            listen: pick!(listen, DEFAULT_LISTEN.to_string()),
            fsync: pick!(fsync, FsyncPolicy::Interval),
            fsync_interval: Duration::from_millis(interval_ms),
            max_record_bytes,
            retention_check_interval: Duration::from_millis(retention_ms_check),
            topic_defaults: TopicDefaults {
                retention_ms,
                retention_bytes,
                segment_bytes,
                segment_ms,
            },
            cluster,
            replica_lag_max: Duration::from_millis(replica_lag_max_ms),
            replica_fetch_wait: Duration::from_millis(replica_fetch_wait_ms),
            session_timeout: Duration::from_millis(session_timeout_ms),
            leader_rebalance_interval: (rebalance_ms > 0)
                .then(|| Duration::from_millis(rebalance_ms)),
            metrics_listen: args.metrics_listen.or(file.metrics_listen),
            kafka_listen,
            kafka_advertise,
            limits,
            tls,
            auth,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["weir-broker"];
        argv.extend_from_slice(args);
        Config::resolve(Args::try_parse_from(argv).expect("flags parse"))
    }

    #[test]
    fn defaults_match_the_spec() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("./weir-data"));
        assert_eq!(c.listen, "127.0.0.1:9292");
        assert_eq!(c.fsync, FsyncPolicy::Interval);
        assert_eq!(c.max_record_bytes, 1024 * 1024);
        assert_eq!(c.topic_defaults.retention_bytes, None);
    }

    #[test]
    fn flags_override_the_file_and_unknown_keys_fail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:1\"\nfsync = \"always\"\ndefault-retention-ms = -1\n",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let c = parse(&["--config", p, "--listen", "127.0.0.1:2"]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:2");
        assert_eq!(c.fsync, FsyncPolicy::Always);
        assert_eq!(c.topic_defaults.retention_ms, None);
        std::fs::write(&path, "lissten = 1\n").unwrap();
        assert!(matches!(
            parse(&["--config", p]),
            Err(ConfigError::Parse { .. })
        ));
    }

    #[test]
    fn the_example_file_names_every_flag_and_gives_the_defaults() {
        use clap::CommandFactory;
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/weir.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        for arg in Args::command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long == "config" || long == "help" || long == "version" {
                continue;
            }
            let named = text.lines().any(|l| {
                let l = l.trim_start_matches(['#', ' ']);
                l.strip_prefix(long)
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
            });
            assert!(named, "examples/weir.toml does not mention `{long}`");
        }
        let file = parse(&["--config", path.to_str().unwrap()]).unwrap();
        let defaults = parse(&[]).unwrap();
        assert_eq!(format!("{file:?}"), format!("{defaults:?}"));
    }

    #[test]
    fn the_packaged_config_is_the_example_with_the_packages_data_dir() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let example = std::fs::read_to_string(dir.join("examples/weir.toml")).unwrap();
        let packaged = std::fs::read_to_string(dir.join("packaging/weir.toml")).unwrap();
        let (e, p): (Vec<&str>, Vec<&str>) =
            (example.lines().collect(), packaged.lines().collect());
        assert_eq!(e.len(), p.len(), "packaging/weir.toml: a line more or less");
        let differ: Vec<usize> = (0..e.len()).filter(|&i| e[i] != p[i]).collect();
        assert_eq!(differ, [0, 6], "only the title and data-dir lines differ");
        let path = dir.join("packaging/weir.toml");
        let c = parse(&["--config", path.to_str().unwrap()]).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/weir"));
    }

    #[test]
    fn cluster_flags_resolve_together() {
        assert!(parse(&[]).unwrap().cluster.is_none());
        let c = parse(&["--node-id", "2", "--cluster", "1=a:1,2=b:2,3=c:3"]).unwrap();
        let spec = c.cluster.unwrap();
        assert_eq!((spec.node_id, spec.peers.len()), (2, 3));
        assert!(parse(&["--node-id", "2"]).is_err());
        assert!(parse(&["--node-id", "4", "--cluster", "1=a:1"]).is_err());
        let d = parse(&[]).unwrap();
        assert_eq!(
            d.session_timeout,
            Duration::from_millis(DEFAULT_SESSION_TIMEOUT_MS)
        );
        assert_eq!(
            d.replica_lag_max,
            Duration::from_millis(DEFAULT_REPLICA_LAG_MAX_MS)
        );
        let t = parse(&[
            "--session-timeout-ms",
            "2000",
            "--replica-lag-max-ms",
            "3000",
        ])
        .unwrap();
        assert_eq!(t.session_timeout, Duration::from_secs(2));
        assert_eq!(t.replica_lag_max, Duration::from_secs(3));
        assert!(parse(&["--session-timeout-ms", "999"]).is_err());
        assert!(parse(&["--replica-lag-max-ms", "10"]).is_err());
        assert_eq!(
            d.replica_fetch_wait,
            Duration::from_millis(DEFAULT_REPLICA_FETCH_WAIT_MS)
        );
        let w = parse(&[
            "--replica-fetch-wait-ms",
            "20000",
            "--replica-lag-max-ms",
            "60000",
        ])
        .unwrap();
        assert_eq!(w.replica_fetch_wait, Duration::from_secs(20));
        assert!(parse(&["--replica-fetch-wait-ms", "0"]).is_err());
        assert_eq!(
            d.leader_rebalance_interval,
            Some(Duration::from_millis(DEFAULT_LEADER_REBALANCE_INTERVAL_MS))
        );
        let r = parse(&["--leader-rebalance-interval-ms", "5000"]).unwrap();
        assert_eq!(r.leader_rebalance_interval, Some(Duration::from_secs(5)));
        let off = parse(&["--leader-rebalance-interval-ms", "0"]).unwrap();
        assert_eq!(off.leader_rebalance_interval, None);
        assert!(parse(&["--leader-rebalance-interval-ms", "999"]).is_err());
        assert!(
            parse(&["--replica-fetch-wait-ms", "10000"]).is_err(),
            "not below the lag max"
        );
        assert!(
            parse(&[
                "--replica-fetch-wait-ms",
                "30001",
                "--replica-lag-max-ms",
                "60000"
            ])
            .is_err()
        );
    }

    #[test]
    fn cluster_tls_needs_the_peer_ca_and_the_peer_ca_needs_both() {
        let tls = ["--tls-cert", "c.pem", "--tls-key", "k.pem"];
        let cluster = ["--node-id", "1", "--cluster", "1=a:1"];
        let peer = ["--tls-peer-ca", "ca.pem"];
        let e = parse(&[&tls[..], &cluster[..]].concat()).unwrap_err();
        assert!(e.to_string().contains("--tls-peer-ca"), "{e}");
        let c = parse(&[&tls[..], &cluster[..], &peer[..]].concat()).unwrap();
        assert_eq!(c.tls.unwrap().peer_ca, Some(PathBuf::from("ca.pem")));
        assert!(parse(&[&tls[..], &peer[..]].concat()).is_err());
        assert!(parse(&[&cluster[..], &peer[..]].concat()).is_err());
    }

    #[test]
    fn auth_is_off_unless_asked_for() {
        assert!(!parse(&[]).unwrap().auth);
        assert!(parse(&["--auth"]).unwrap().auth);
        assert!(parse(&["--auth=true"]).unwrap().auth);
        assert!(!parse(&["--auth=false"]).unwrap().auth);
        // In a cluster the members prove who they are with certificates: TLS is required.
        let cluster = ["--auth", "--node-id", "1", "--cluster", "1=a:1"];
        let e = parse(&cluster).unwrap_err();
        assert!(e.to_string().contains("--tls-peer-ca"), "{e}");
        let tls = [
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--tls-peer-ca",
            "ca.pem",
        ];
        assert!(parse(&[&cluster[..], &tls[..]].concat()).unwrap().auth);
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(parse(&["--default-segment-bytes", "10"]).is_err());
        assert!(parse(&["--default-retention-ms", "-5"]).is_err());
        assert!(parse(&["--max-record-bytes", "0"]).is_err());
        assert!(parse(&["--max-produce-bytes-in-flight", "1000"]).is_err());
        assert!(parse(&["--max-produce-bytes-in-flight", "4294967296"]).is_err());
        assert!(parse(&["--max-produce-bytes-in-flight", "4294967295"]).is_ok());
    }
}
