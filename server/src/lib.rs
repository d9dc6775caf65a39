//! `nadi-server`: the segment store and the `nadi` binary.
//!
//! Where an append goes: gRPC [`service`] → [`store::SegmentStore`] picks the segment's
//! [`container`] by a stable hash of its name → the container's writer task batches operations
//! into one record of its Tier-1 [`log`] (group commit), syncs it, updates the container's
//! metadata and read index, and only then acknowledges.

pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod container;
mod direct;
pub mod error;
pub mod load;
pub mod log;
pub mod ops;
pub mod service;
pub mod standalone;
pub mod store;
pub mod tier2;
pub mod tiering;
pub mod wire;
