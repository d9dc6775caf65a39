//! `nadi-client`: the library applications use to talk to Nadi.
//!
//! - [`NadiClient`]: connects to the controller (failing over between several URLs) and caches
//!   connections to segment stores; creates scopes and streams.
//! - [`EventWriter`]: routes each event by key (the documented hash in
//!   `nadi_proto::routing`) to its segment, batches and pipelines appends, and acknowledges
//!   only durable events.
//! - [`StreamReader`]: reads every segment of a stream, from the start or the tail.
//! - [`TransactionalWriter`]: events that become readable all at once on commit, or never;
//!   resumable by id from another process.
//! - [`ReaderGroup`] and [`Reader`]: readers that share the segments of streams, follow splits
//!   and merges in per-key order, and record positions and checkpoints in the controller.
//!
//! Errors are [`ClientError`]s with a coarse, prescriptive [`ErrorKind`].

mod client;
mod error;
mod manager;
mod reader;
mod reader_group;
mod txn;
mod writer;

pub use client::{NadiClient, StreamSpec};
pub use error::{ClientError, ErrorKind};
pub use manager::StreamManager;
pub use reader::{EventRead, StreamReader};
pub use reader_group::{EventPosition, GroupEvent, Reader, ReaderConfig, ReaderGroup, StartFrom, StreamCut};
pub use txn::{TransactionalWriter, TxnState, TxnStatus};
pub use writer::{AckObserver, EventWriter, WriterConfig};
