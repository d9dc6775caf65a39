//! The read loop every consumer shares: take the next event, hand it to the caller, and stop at
//! a count, after a silence, at the end of the stream (or group), or when told to.
//!
//! Owns the stopping rules ([`ReadLimits`], [`ReadStop`]) and what a loop reports
//! ([`ReadSummary`], [`ReadLoopError`]). Calls [`StreamReader::next`] and
//! [`Reader::read_next`] (which read segments through `segment_reader.rs`). Called by
//! applications and by the `nadi read` command (plain and `--group`).
//!
//! The event handler runs between two reads: for a group member, an event the handler has
//! returned from is what the next sync reports as consumed.

use std::future::Future;
use std::time::Duration;

use crate::error::ClientError;
use crate::reader::{EventRead, StreamReader};
use crate::reader_group::{GroupEvent, Reader};

/// When a read loop stops on its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadLimits {
    /// After this many events (`None`: no limit).
    pub max: Option<u64>,
    /// After this long without an event (`None`: wait for ever; an open stream's tail never
    /// ends by itself).
    pub idle: Option<Duration>,
}

/// Why a read loop stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadStop {
    /// [`ReadLimits::max`] events were handed out.
    Max,
    /// Nothing arrived for [`ReadLimits::idle`].
    Idle,
    /// The end: every segment sealed and read (a sealed stream; for a group, every stream).
    End,
    /// The stop future completed (for example Ctrl-C).
    Stopped,
}

/// What a read loop did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadSummary {
    /// Events handed to the handler (each returned `Ok`).
    pub events: u64,
    /// Why it stopped.
    pub stop: ReadStop,
}

/// Why a read loop failed: reading, or the caller's handler.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadLoopError<E> {
    /// Reading failed (see [`StreamReader::next`] and [`Reader::read_next`]).
    #[error(transparent)]
    Read(ClientError),
    /// The handler returned this error. The event it was given counts as handed out (a group
    /// member's position is already past it).
    #[error("event handler failed: {0}")]
    Handler(E),
}

impl<E> ReadLoopError<E> {
    /// Whether trying again may help (a read error that is retryable; never a handler error).
    pub fn is_retryable(&self) -> bool {
        match self {
            ReadLoopError::Read(e) => e.is_retryable(),
            ReadLoopError::Handler(_) => false,
        }
    }
}

/// Something that hands out events one at a time: `Ok(None)` at the end. `next` must be
/// cancel-safe (an event not returned stays for the next call).
trait EventSource {
    type Event;
    fn next_event(&mut self) -> impl Future<Output = Result<Option<Self::Event>, ClientError>>;
}

impl EventSource for StreamReader {
    type Event = EventRead;
    async fn next_event(&mut self) -> Result<Option<EventRead>, ClientError> {
        self.next().await.transpose()
    }
}

impl EventSource for Reader {
    type Event = GroupEvent;
    async fn next_event(&mut self) -> Result<Option<GroupEvent>, ClientError> {
        self.read_next().await
    }
}

/// The loop itself, the same for every source.
async fn run<S, E, F>(
    source: &mut S,
    limits: ReadLimits,
    stop: impl Future<Output = ()>,
    mut handle: F,
) -> Result<ReadSummary, ReadLoopError<E>>
where
    S: EventSource,
    F: FnMut(S::Event) -> Result<(), E>,
{
    let mut stop = std::pin::pin!(stop);
    let mut events = 0u64;
    loop {
        if limits.max.is_some_and(|m| events >= m) {
            return Ok(ReadSummary { events, stop: ReadStop::Max });
        }
        let next = async {
            match limits.idle {
                Some(d) => tokio::time::timeout(d, source.next_event()).await.ok(),
                None => Some(source.next_event().await),
            }
        };
        let next = tokio::select! {
            next = next => next,
            () = &mut stop => return Ok(ReadSummary { events, stop: ReadStop::Stopped }),
        };
        let Some(next) = next else { return Ok(ReadSummary { events, stop: ReadStop::Idle }) };
        let Some(event) = next.map_err(ReadLoopError::Read)? else {
            return Ok(ReadSummary { events, stop: ReadStop::End });
        };
        handle(event).map_err(ReadLoopError::Handler)?;
        events += 1;
    }
}

impl StreamReader {
    /// Hands each event to `handle` until `limits` or the stream's end stop it, or `stop`
    /// completes (pass `std::future::pending()` for never).
    ///
    /// # Errors
    ///
    /// [`ReadLoopError::Read`] as [`next`](Self::next) (stop at the first), or
    /// [`ReadLoopError::Handler`] with the handler's error.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// use nadi_client::{NadiClient, ReadLimits, StreamReader};
    ///
    /// async fn example() -> Result<(), Box<dyn std::error::Error>> {
    ///     let client = NadiClient::new(&["http://127.0.0.1:9090".to_owned()])?;
    ///     let mut reader = StreamReader::new(&client, "demo", "orders", true).await?;
    ///     let limits = ReadLimits { max: Some(100), idle: Some(Duration::from_secs(2)) };
    ///     let summary = reader
    ///         .read_until(limits, std::future::pending(), |ev| {
    ///             println!("{}", String::from_utf8_lossy(&ev.payload));
    ///             Ok::<_, std::convert::Infallible>(())
    ///         })
    ///         .await?;
    ///     println!("{} events, stopped: {:?}", summary.events, summary.stop);
    ///     Ok(())
    /// }
    /// ```
    pub async fn read_until<E>(
        &mut self,
        limits: ReadLimits,
        stop: impl Future<Output = ()>,
        handle: impl FnMut(EventRead) -> Result<(), E>,
    ) -> Result<ReadSummary, ReadLoopError<E>> {
        run(self, limits, stop, handle).await
    }
}

impl Reader {
    /// Hands each event to `handle` until `limits` or the end of the group stop it, or `stop`
    /// completes. The reader stays in the group: call [`close`](Self::close) afterwards to
    /// hand its segments on exactly after the last event `handle` returned from.
    ///
    /// # Errors
    ///
    /// [`ReadLoopError::Read`] as [`read_next`](Self::read_next), or
    /// [`ReadLoopError::Handler`] with the handler's error.
    pub async fn read_until<E>(
        &mut self,
        limits: ReadLimits,
        stop: impl Future<Output = ()>,
        handle: impl FnMut(GroupEvent) -> Result<(), E>,
    ) -> Result<ReadSummary, ReadLoopError<E>> {
        run(self, limits, stop, handle).await
    }
}
