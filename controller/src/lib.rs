//! `nadi-controller`: the source of truth for scopes, streams and their segments.
//!
//! - [`state`]: the deterministic metadata state machine. Every change is a [`state::Command`]
//!   applied in order; replaying the same commands gives the same state. This is what the Raft
//!   log will replicate (issue "Raft-backed controller").
//! - [`meta`]: where commands are made durable. Today a single-node store that applies a
//!   command and persists the whole state crash-safely before answering.
//! - [`service`]: the gRPC API `nadi.controller.v1` and the stream workflows (create, seal,
//!   delete), which call the segment store and are idempotent so they can be resumed.
//! - [`txn`]: transactions in the replicated state; [`txn_service`]: the gRPC API
//!   `nadi.controller.v1.TransactionService` and the commit/abort workflows.
//! - [`http`]: the admin HTTP API (axum).
//! - [`retention`]: the leader truncates streams by their time or size retention policy.
//! - [`time_cut`]: the stream cut at a time (seek by time), a walk over the segment graph.

pub mod access;
pub mod autoscale;
pub mod cluster;
pub mod error;
pub mod fsutil;
pub mod history_svg;
pub mod http;
pub mod meta;
pub mod node;
pub mod raft;
pub mod reader_group;
pub mod reader_group_service;
pub mod registry;
pub mod retention;
pub mod service;
pub mod state;
pub mod time_cut;
pub mod txn;
pub mod txn_service;
pub mod watermark;
pub mod workflow;
/// The JSON views and text forms of the API live in `nadi-proto`, shared with the CLI.
pub use nadi_proto::views;

pub use error::MetaError;
