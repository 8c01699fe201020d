//! The Weir wire protocol, `weir.v1`: types and tonic services generated from
//! `proto/weir/v1/*.proto`. No logic lives here.
//!
//! Architecture invariant: only the broker's `server/` module and the SDK use these types;
//! everything else speaks domain types.

/// Generated code for package `weir.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("weir.v1");
}
