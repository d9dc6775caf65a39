//! A Pravega-compatible front end (issue 20; docs/pravega-compat.md): an unmodified Pravega
//! client (the Python `pravega` package, built on pravega-client-rust) points its controller
//! URI at Nadi and keeps working, on the same data as Nadi's own clients.
//!
//! Owns: [`wire`] (the segment-store wire protocol's framing and commands, `WireCommands`),
//! [`controller`] (Pravega's `Controller.proto` service over Nadi's controllers, as their
//! client), [`delegation`] (delegation tokens that carry the caller's own token to the segment
//! port) and [`txn_id`] (Pravega transaction ids ↔ Nadi's, without a table). The
//! segment-store side that serves the wire protocol lives in the segment store
//! (`nadi-server`), which owns the data. Calls: `nadi-proto`, `nadi-client`. Called by:
//! `nadi-server`.

pub mod controller;
pub mod delegation;
pub mod txn_id;
pub mod wire;
