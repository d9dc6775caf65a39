//! `nadi-server`: the segment store and the server commands of the `nadi` binary.
//!
//! Where an append goes, room by room (each arrow is the only direction imports may take; a
//! test, `tests/tests/module_graph.rs`, fails on an import against it or on a circle):
//!
//! ```text
//!  node ──► net ──► store ──► container ──► replica ──► log, tier2 ──► (error, direct: leaves)
//! ```
//!
//! - [`node`]: process wiring — `nadi standalone`, `nadi controller`, `nadi segment-store`,
//!   their settings, listeners, registration with the controllers.
//! - [`net`]: the gRPC service `nadi.segment.v1.SegmentStore` and typed errors for garbage on
//!   the wire. An append arrives here.
//! - [`store`]: the fixed set of containers and the stable map segment → container; per-segment
//!   load rates for the auto-scaler.
//! - [`container`]: one container = segments sharing one Tier-1 log. Its writer thread
//!   (`container/writer.rs`) batches requests into one log record and commits it through the
//!   [`container::seam::ContainerLog`] seam (today [`container::seam::SingleCopy`]: a Tier-1
//!   append + fsync; later a replicated log), and only then applies it to the state readers
//!   see ([`container::state`], the [`container::seam::ContainerStateMachine`]) and answers.
//! - [`replica`]: a container's consensus group (openraft): its log storage over the Tier-1
//!   log and its state machine; what makes a container replicated (`docs/replication.md`).
//! - [`log`]: the Tier-1 log storage (trait, mmap'd/direct file, memory, conformance suite).
//! - [`tier2`]: chunk objects in object storage and their read cache.
//! - [`metrics`]: the store's Prometheus metrics (a leaf, like `error` and `direct`).

pub mod container;
mod direct;
pub mod error;
pub mod log;
pub mod metrics;
pub mod net;
pub mod node;
pub mod replica;
pub mod store;
pub mod tier2;
