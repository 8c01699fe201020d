//! Every limit the broker enforces, as a named constant. Checked where input enters
//! (the gRPC edge or the SDK), never deep inside.

/// Default cap on one record: key + value + header keys and values (broker flag
/// `--max-record-bytes`).
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1024 * 1024;

/// Largest gRPC message the broker accepts or sends (a produce request or fetch response).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// Largest request frame the Kafka listener reads (`--kafka-listen`); a larger size prefix
/// closes the connection. Kafka's own `socket.request.max.bytes` is 100 MiB; this is the
/// gRPC cap, so both front doors take the same requests.
pub const MAX_KAFKA_REQUEST_BYTES: usize = MAX_REQUEST_BYTES;

/// Longest a Kafka Fetch waits for `min_bytes` (its `max_wait_ms` is capped here; clients
/// default to 500 ms).
pub const MAX_KAFKA_FETCH_WAIT_MS: i32 = 30_000;

/// Largest single record batch (one partition's share of a produce request).
pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// Most records one batch may carry.
pub const MAX_RECORDS_PER_BATCH: u32 = 1_000_000;

/// Most headers one record may carry.
pub const MAX_HEADERS_PER_RECORD: usize = 1024;

/// Partitions per topic: `1..=MAX_PARTITIONS`.
pub const MAX_PARTITIONS: u32 = 10_000;

/// Brokers in one cluster (every one is a voter of the metadata quorum, so more would only
/// slow its commits).
pub const MAX_CLUSTER_NODES: usize = 9;
/// Largest `--node-id`: a cluster member's producer ids carry its id in their top bits
/// (`PRODUCER_ID_NODE_SHIFT`), so ids issued by different brokers never collide.
pub const MAX_NODE_ID: u64 = (1 << 15) - 1;
/// Where a cluster member's id sits in the producer ids it issues.
pub const PRODUCER_ID_NODE_SHIFT: u32 = 48;
/// Set in the producer ids of pipeline workers in a cluster (and in no id a broker issues:
/// node ids stay below 2^15, so theirs stay below 2^63).
pub const PIPELINE_PRODUCER_ID_BIT: u64 = 1 << 63;

/// Longest topic or consumer-group name (Kafka's limit for topics).
pub const MAX_NAME_LEN: usize = 249;

/// Default and largest `max_bytes` of one fetch response / subscription push.
pub const DEFAULT_FETCH_MAX_BYTES: u32 = 4 * 1024 * 1024;
pub const MAX_FETCH_MAX_BYTES: u32 = 32 * 1024 * 1024;

/// Smallest segment size a topic may ask for (a smaller one would roll on every batch).
pub const MIN_SEGMENT_BYTES: u64 = 1024;

/// Most bytes the records of one compressed batch may decompress to (guards the broker and
/// consumers against decompression bombs).
pub const MAX_UNCOMPRESSED_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// Most batches an idempotent producer may have unacknowledged per partition. The broker
/// remembers exactly this many of a producer's last batches per partition to recognise retries
/// and tells producers its number (`InitProducerResponse.dedupe_window`; brokers before it
/// remembered [`LEGACY_DEDUPE_WINDOW`]). 10, not Kafka's 5: with 5 batches of 1000 records in
/// flight one partition was latency-bound at 2.6–2.9 M rec/s here; 10 gave 3.0–3.5 M.
pub const MAX_IN_FLIGHT_BATCHES_PER_PARTITION: usize = 10;

/// The dedupe window of brokers that do not announce theirs.
pub const LEGACY_DEDUPE_WINDOW: usize = 5;

/// A group member that sends no heartbeat for this long is removed and its partitions move
/// (settable per member within the bounds below).
pub const DEFAULT_SESSION_TIMEOUT_MS: u32 = 10_000;
pub const MIN_SESSION_TIMEOUT_MS: u32 = 500;
pub const MAX_SESSION_TIMEOUT_MS: u32 = 300_000;

/// A member asked to give partitions up must do so (report them released) within this long,
/// or it is removed from the group (settable per member, same bounds as the session timeout).
pub const DEFAULT_REBALANCE_TIMEOUT_MS: u32 = 60_000;

/// Longest metadata string a consumer may commit with an offset.
pub const MAX_COMMIT_METADATA_BYTES: usize = 4096;

/// Most topics one group member may subscribe to.
pub const MAX_TOPICS_PER_MEMBER: usize = 1000;

/// Largest plugin module (`.wasm` bytes) the broker accepts.
pub const MAX_PLUGIN_MODULE_BYTES: usize = 16 * 1024 * 1024;

/// Linear memory one plugin instance may grow to, unless its registration says otherwise;
/// beyond it the call traps.
pub const PLUGIN_MEMORY_LIMIT_BYTES: usize = 64 * 1024 * 1024;
/// Most memory a registration may allow one instance.
pub const MAX_PLUGIN_MEMORY_LIMIT_BYTES: usize = 1024 * 1024 * 1024;

/// Wall-clock CPU budget of one plugin call (one batch), unless its registration says
/// otherwise; a plugin that runs longer is interrupted (epoch deadline) and the call fails.
pub const PLUGIN_CALL_TIMEOUT_MS: u64 = 2_000;
/// Bounds of a registration's CPU budget per call.
pub const MIN_PLUGIN_CALL_TIMEOUT_MS: u64 = 10;
pub const MAX_PLUGIN_CALL_TIMEOUT_MS: u64 = 60_000;

/// Largest output one plugin call may return (a registration may set a lower limit).
pub const MAX_PLUGIN_OUTPUT_BYTES: usize = 64 * 1024 * 1024;

/// Longest params JSON given with a plugin at use time.
pub const MAX_PLUGIN_PARAMS_BYTES: usize = 64 * 1024;

/// Most plugins one consumer or pipeline may chain.
pub const MAX_PLUGIN_CHAIN: usize = 16;

/// Outputs a pipeline writes to at most (Redpanda's limit for a transform): output 0, the
/// main one, and the side outputs a `route` stage sends records to (plugin ABI version 4).
pub const MAX_PIPELINE_OUTPUTS: usize = 8;

/// Plugin output is cut into batches of about this size (consume responses, next stages).
pub const PLUGIN_OUTPUT_BATCH_BYTES: usize = 1024 * 1024;

/// Most source bytes one pipeline reads from a partition per round (one plugin call per
/// stage, one atomic write of outputs and progress).
pub const PIPELINE_READ_MAX_BYTES: usize = 1024 * 1024;

/// Pipeline output is cut into batches of about this size (all written in one atomic write).
pub const PIPELINE_OUTPUT_BATCH_BYTES: usize = 1024 * 1024;

/// Most pipelines one broker runs.
pub const MAX_PIPELINES: usize = 256;

/// Largest checkpoint of a cluster pipeline's partition (position, sequences and aggregate
/// states, as encoded into the replicated metadata): each travels in a raft entry, and
/// every snapshot holds them all. A worker whose states outgrow it fails the pipeline.
pub const MAX_PIPELINE_CHECKPOINT_BYTES: usize = 256 * 1024;

/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// The longest password accepted (argon2 takes any length; this bounds the work per call).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// The longest `authorization` value a broker reads.
pub const MAX_AUTHORIZATION_BYTES: usize = 4096;

/// Users at most: the whole users-and-ACLs document travels in one raft entry in a cluster
/// (~1 MiB at these limits).
pub const MAX_USERS: usize = 1_000;

/// ACLs at most (see [`MAX_USERS`]).
pub const MAX_ACLS: usize = 10_000;
