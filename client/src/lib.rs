//! `nadi-client`: the library applications use to talk to Nadi.
//!
//! - [`NadiClient`]: connects to the controller (failing over between several URLs) and caches
//!   connections to segment stores; creates scopes and streams.
//! - [`EventWriter`]: routes each event by key (the documented hash in
//!   `nadi_proto::routing`) to its segment, batches and pipelines appends, and acknowledges
//!   only durable events.
//! - [`StreamReader`]: reads every segment of a stream, from the start, the tail or a stream
//!   cut (such as the cut at a time, [`StreamManager::cut_at`]).
//! - [`SegmentReader`]: reads one segment (fetch, decode, position, retry); every reader here
//!   is built on it. `StreamReader::read_until` and `Reader::read_until` are the one read
//!   loop (limits, idle timeout, stop signal) that applications and the CLI share.
//! - [`TransactionalWriter`]: events that become readable all at once on commit, or never;
//!   resumable by id from another process.
//! - [`ReaderGroup`] and [`Reader`]: readers that share the segments of streams, follow splits
//!   and merges in per-key order, and record positions and checkpoints in the controller.
//! - [`StreamManager`]: scopes, streams, policies, seal, delete, stream cuts and truncation.
//!
//! Errors are [`ClientError`]s with a coarse, prescriptive [`ErrorKind`].
//!
//! Everything here is async and runs on Tokio: create the [`NadiClient`] inside a Tokio
//! runtime. Wire types of the controller API (`StreamInfo`, `StreamConfig`, …) come from the
//! `nadi-proto` crate (`nadi_proto::controller::v1`).
//!
//! Runnable programs are in `client/examples/` (see `docs/client.md`, "Examples").
//!
//! # Example
//!
//! Create a scope and a stream, write two events with the same key, make them durable, and
//! read the stream back from its head:
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use bytes::Bytes;
//! use nadi_client::{ClientError, ErrorKind, EventWriter, NadiClient, StreamReader, StreamSpec, WriterConfig};
//!
//! async fn example() -> Result<(), ClientError> {
//!     let client = NadiClient::new(&["http://127.0.0.1:9090".to_owned()])?;
//!     // Create the scope and the stream unless they exist.
//!     match client.create_scope("demo").await {
//!         Err(e) if e.kind != ErrorKind::AlreadyExists => return Err(e),
//!         _ => {}
//!     }
//!     match client.create_stream("demo", "orders", StreamSpec::fixed(2)).await {
//!         Err(e) if e.kind != ErrorKind::AlreadyExists => return Err(e),
//!         _ => {}
//!     }
//!
//!     let config = WriterConfig { writer_id: Some("orders-producer-1".into()), ..WriterConfig::default() };
//!     let writer = EventWriter::new(&client, "demo", "orders", config).await?;
//!     writer.write(Some(b"customer-42"), Bytes::from("order 1")).await?;
//!     writer.write(Some(b"customer-42"), Bytes::from("order 2")).await?;
//!     writer.flush().await?; // both events are durable now, in this order
//!     writer.close().await?;
//!
//!     // The reader follows the tail of an open stream, so stop after a second of silence.
//!     let mut reader = StreamReader::new(&client, "demo", "orders", true).await?;
//!     while let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(1), reader.next()).await {
//!         let event = event?;
//!         println!("{}@{}: {}", event.segment, event.offset, String::from_utf8_lossy(&event.payload));
//!     }
//!     Ok(())
//! }
//! ```

mod append_codec;
mod client;
mod error;
mod manager;
mod read_loop;
mod reader;
mod reader_group;
mod segment_reader;
mod tasks;
#[cfg(feature = "test-hooks")]
pub mod test_hooks;
mod txn;
mod watermark;
mod writer;

/// The protocol types this crate's signatures use (`StreamConfig`, `SegmentLocation`, …), so
/// applications need no separate dependency on `nadi-proto`.
pub use nadi_proto;
/// TLS trust and bearer tokens for [`NadiClient::with_security`].
pub use nadi_security::channel::{Channel, ClientSecurity};
pub use nadi_security::tls::{ClientTls, TlsFiles};

pub use client::{CONTROLLER_RETRY_FOR, NadiClient, StreamSpec};
pub use error::{ClientError, ErrorKind};
pub use manager::StreamManager;
pub use read_loop::{ReadLimits, ReadLoopError, ReadStop, ReadSummary};
pub use reader::{EventRead, StreamReader};
pub use reader_group::{EventPosition, GroupEvent, Reader, ReaderConfig, ReaderGroup, StartFrom, StreamCut};
pub use segment_reader::{SegmentChunk, SegmentEvent, SegmentReader};
pub use txn::{TransactionalWriter, TxnState, TxnStatus};
pub use writer::{AckObserver, EventWriter, WriterConfig};
