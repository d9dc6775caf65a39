//! The segment store's network front: the gRPC service and typed errors for bad bytes.
//!
//! Owns: [`service`] (`nadi.segment.v1.SegmentStore`: appends, reads, segment operations) and
//! [`wire`] (garbage on the wire gets a typed `INVALID_ARGUMENT`), and [`pravega`] (Pravega's
//! segment-store wire protocol over the same containers).
//! Calls: [`crate::store`] (which container holds a segment) and [`crate::container`] (its API).
//! Called by: [`crate::node`], which binds the listeners and serves these.

pub mod access;
pub mod pravega;
pub mod service;
pub mod wire;
