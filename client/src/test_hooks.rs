//! Hooks for the integration tests (`nadi-tests` enables the `test-hooks` feature): views of
//! the client's internals that a test needs to check what an application cannot see, such as
//! background tasks left running. Not part of the stable API.
//!
//! Owns nothing; reads the counters of `tasks.rs`.

/// Writer tasks alive in this process, over every `EventWriter` and `TransactionalWriter`.
/// Once every writer is closed (`close()` returned), it is 0: nothing a writer started
/// outlives it.
pub fn live_writer_tasks() -> usize {
    crate::tasks::live_writer_tasks()
}

/// How many writer tasks were started for `segment` (its qualified name,
/// `scope/stream/N.#epoch.E`) in this process so far, over every writer.
pub fn writer_tasks_started(segment: &str) -> usize {
    crate::tasks::tasks_started(segment)
}
