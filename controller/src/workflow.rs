//! Counts and times the controller's workflows (`nadi_controller_workflows_total`,
//! `nadi_controller_workflow_seconds`): a scale rolled forward on the segment stores, a
//! truncation applied, a transaction committed or aborted. Process-wide (one controller per
//! process), shown on the admin API's `/metrics` of every controller that ran one.
//!
//! Owns: the workflow metric families. Calls: nothing of this crate. Called by: `service`,
//! `txn_service` (start a [`Timer`]), `node` (registers the families).

use std::sync::OnceLock;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    workflow: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    workflow: &'static str,
}

type Latency = Family<Kind, Histogram, fn() -> Histogram>;

struct Families {
    runs: Family<Outcome, Counter>,
    seconds: Latency,
}

fn families() -> &'static Families {
    static F: OnceLock<Families> = OnceLock::new();
    F.get_or_init(|| {
        fn latency() -> Histogram {
            // 1 ms .. ~65 s
            Histogram::new(exponential_buckets(0.001, 2.0, 17))
        }
        Families { runs: Family::default(), seconds: Family::new_with_constructor(latency) }
    })
}

/// Registers the workflow families on `registry`.
pub fn register(registry: &mut prometheus_client::registry::Registry) {
    let f = families();
    registry.register(
        "nadi_controller_workflows",
        "Controller workflows run (scale, truncate, txn_commit, txn_abort) by outcome (ok, failed)",
        f.runs.clone(),
    );
    registry.register(
        "nadi_controller_workflow_seconds",
        "Time of one controller workflow that succeeded",
        f.seconds.clone(),
    );
}

/// One run of a workflow: counted `failed` when dropped, unless [`Timer::ok`] was called.
#[derive(Debug)]
pub struct Timer {
    workflow: &'static str,
    started: Instant,
    done: bool,
}

impl Timer {
    pub fn start(workflow: &'static str) -> Timer {
        Timer { workflow, started: Instant::now(), done: false }
    }

    /// The workflow succeeded: counted `ok`, its time observed.
    pub fn ok(mut self) {
        self.done = true;
        let f = families();
        f.runs.get_or_create(&Outcome { workflow: self.workflow, outcome: "ok" }).inc();
        f.seconds.get_or_create(&Kind { workflow: self.workflow }).observe(self.started.elapsed().as_secs_f64());
    }

    /// Counts `result` and passes it on.
    pub fn finish<T, E>(self, result: Result<T, E>) -> Result<T, E> {
        if result.is_ok() {
            self.ok();
        }
        result
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if !self.done {
            families().runs.get_or_create(&Outcome { workflow: self.workflow, outcome: "failed" }).inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_count_by_outcome_and_successes_are_timed() {
        let mut registry = prometheus_client::registry::Registry::default();
        register(&mut registry);
        Timer::start("test_flow").ok();
        let _ = Timer::start("test_flow").finish(Err::<(), _>("no"));
        drop(Timer::start("test_flow"));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains(r#"nadi_controller_workflows_total{workflow="test_flow",outcome="ok"} 1"#), "{text}");
        assert!(text.contains(r#"nadi_controller_workflows_total{workflow="test_flow",outcome="failed"} 2"#), "{text}");
        assert!(text.contains(r#"nadi_controller_workflow_seconds_count{workflow="test_flow"} 1"#), "{text}");
    }
}
