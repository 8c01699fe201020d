//! Connectors (docs/connect.md): `weir connect run CONFIG.toml` runs the sources and sinks a
//! file declares, next to a broker, on top of the Rust SDK.
//!
//! Layout:
//! - [`config`]: the connector file → typed, validated [`config::ConnectConfig`].
//! - [`runtime`]: the runner: one task per connector, restarts with backoff, status board.
//! - [`context`]: what every connector shares (client, state directory, stop grace).
//! - [`record`]: a record read from outside, before plugins.
//! - [`source`]: the exactly-once driver of replayable sources; [`source::file`] tails files;
//!   [`source::http`] takes POSTed records; [`source::postgres`] polls a table.
//! - [`sink`]: the consumer-group driver of sinks; [`sink::file`] appends to a file,
//!   [`sink::http`] POSTs to a webhook, [`sink::postgres`] upserts rows.
//! - [`postgres`]: what the PostgreSQL source and sink share.
//! - [`transform`]: a source's plugin chain, run by the broker.
//! - [`state`]: the state directory (positions, saved atomically; one runner at a time).
//! - [`status`]: what `weir connect status` shows.
//! - [`json`]: records as JSON (shared with `weir consume`).

pub mod config;
pub mod context;
pub mod error;
pub mod json;
pub mod postgres;
pub mod record;
pub mod runtime;
pub mod sink;
pub mod source;
pub mod state;
pub mod status;
pub mod transform;

pub use config::ConnectConfig;
pub use error::ConnectError;
