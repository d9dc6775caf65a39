//! A count of the client's live background tasks, so that tests can check that nothing a
//! writer started outlives it (see `test_hooks`, behind the `test-hooks` feature).
//!
//! Owns one process-wide counter; called by the writer (`writer.rs`) for each task it spawns.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Writer tasks (segment tasks and the helpers that answer re-routed flushes) alive now.
static WRITER_TASKS: AtomicUsize = AtomicUsize::new(0);

/// Held by a writer task for as long as it runs: counts it in while alive, out when dropped
/// (also when the task is aborted or panics).
pub(crate) struct WriterTaskGuard(());

impl WriterTaskGuard {
    pub(crate) fn new() -> Self {
        WRITER_TASKS.fetch_add(1, Ordering::SeqCst);
        WriterTaskGuard(())
    }
}

impl Drop for WriterTaskGuard {
    fn drop(&mut self) {
        WRITER_TASKS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How many writer tasks are alive in this process.
#[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
pub(crate) fn live_writer_tasks() -> usize {
    WRITER_TASKS.load(Ordering::SeqCst)
}

/// How many tasks each segment (by qualified name) got over the process's life. A writer
/// keeps one task per segment, sealed ones included, so each count stays at 1. Kept only
/// with the `test-hooks` feature: a map that only grows has no place in an application.
#[cfg(feature = "test-hooks")]
static STARTED: parking_lot::Mutex<Option<std::collections::HashMap<String, usize>>> = parking_lot::Mutex::new(None);

/// Counts a task started for `segment`.
#[cfg_attr(not(feature = "test-hooks"), allow(unused_variables))]
pub(crate) fn task_started(segment: &str) {
    #[cfg(feature = "test-hooks")]
    {
        *STARTED.lock().get_or_insert_default().entry(segment.to_owned()).or_default() += 1;
    }
}

/// Tasks started for `segment` so far.
#[cfg(feature = "test-hooks")]
pub(crate) fn tasks_started(segment: &str) -> usize {
    STARTED.lock().as_ref().and_then(|m| m.get(segment).copied()).unwrap_or(0)
}
