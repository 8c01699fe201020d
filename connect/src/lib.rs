//! Connectors (docs/connect.md): `weir connect run CONFIG.toml` runs the sources and sinks a
//! file declares, next to a broker, on top of the Rust SDK.
//!
//! Layout:
//! - [`config`]: the connector file → typed, validated [`config::ConnectConfig`].

pub mod config;
