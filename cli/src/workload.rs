//! `nadi bench --workload FILE`: the OpenMessaging Benchmark's workload files (YAML), run
//! against Nadi, with OMB's result fields.
//!
//! How a workload maps onto Nadi: each topic is a stream `omb/{name}-{i}` of
//! `partitionsPerTopic` fixed segments; `producersPerTopic` event writers per stream share
//! `producerRate` (events per second over the whole workload, as OMB; 0 or less: as fast as
//! they can); `subscriptionsPerTopic` subscriptions per stream each read every event from the
//! tail, with `consumerPerSubscription` readers sharing one (a reader group when more than
//! one); `consumerBacklogSizeGB` is written before the subscriptions start reading, and the
//! time they take to read it (while the producers go on) is `backlogDrainSeconds`. Routing
//! keys: 1,024 round robin, none with `keyDistributor: NO_KEY`. Not used: `payloadFile` and the
//! randomized payload settings (payloads are fixed bytes of `messageSize`), warm-up (none),
//! and OMB's rate discovery (`producerRate` is used as given).
//!
//! Owns: [`Workload`] and running one. Calls: `bench` (the load on each stream). Called by:
//! the `bench` command (`ClientCommand::Bench` with `--workload`).

use std::time::Duration;

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use nadi_client::{ErrorKind, NadiClient, StreamSpec};
use serde::Deserialize;
use serde_json::json;

use crate::bench::{Load, histogram};

/// An OMB workload file: the fields Nadi uses (others are accepted and ignored).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    pub name: String,
    pub topics: u32,
    pub partitions_per_topic: u32,
    pub message_size: usize,
    pub subscriptions_per_topic: u32,
    pub consumer_per_subscription: u32,
    pub producers_per_topic: u32,
    /// Events per second over the whole workload.
    pub producer_rate: f64,
    #[serde(default, rename = "consumerBacklogSizeGB")]
    pub consumer_backlog_size_gb: f64,
    /// A number, or OMB's `${ombTestDuration:-N}` (N is taken).
    pub test_duration_minutes: duration_field::Minutes,
    #[serde(default)]
    pub key_distributor: Option<String>,
}

/// `testDurationMinutes` as OMB's files write it.
pub mod duration_field {
    use serde::Deserialize;

    /// Minutes: a number, or `${VAR:-N}` (its default N).
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct Minutes(pub f64);

    impl<'de> Deserialize<'de> for Minutes {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            #[derive(Deserialize)]
            #[serde(untagged)]
            enum Raw {
                Number(f64),
                Text(String),
            }
            match Raw::deserialize(d)? {
                Raw::Number(n) => Ok(Minutes(n)),
                Raw::Text(t) => {
                    let n = t
                        .trim()
                        .strip_prefix("${")
                        .and_then(|r| r.strip_suffix('}'))
                        .and_then(|r| r.split_once(":-"))
                        .map_or(t.as_str(), |(_, default)| default);
                    n.trim().parse().map(Minutes).map_err(|_| {
                        serde::de::Error::custom(format!("testDurationMinutes: {t:?} is not a number of minutes"))
                    })
                }
            }
        }
    }
}

impl Workload {
    /// Reads and checks a workload file.
    pub fn load(path: &std::path::Path) -> anyhow::Result<Workload> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading workload {}", path.display()))?;
        Workload::parse(&text).with_context(|| format!("workload {}", path.display()))
    }

    /// Parses and checks a workload.
    pub fn parse(text: &str) -> anyhow::Result<Workload> {
        let w: Workload = yaml_serde::from_str(text)?;
        if w.topics == 0 || w.partitions_per_topic == 0 || w.producers_per_topic == 0 || w.message_size == 0 {
            bail!("topics, partitionsPerTopic, producersPerTopic and messageSize must be positive");
        }
        let backlog_ok = w.consumer_backlog_size_gb.is_finite() && w.consumer_backlog_size_gb >= 0.0;
        let minutes_ok = w.test_duration_minutes.0.is_finite() && w.test_duration_minutes.0 > 0.0;
        if !(minutes_ok && backlog_ok) {
            bail!("testDurationMinutes must be positive and consumerBacklogSizeGB not negative");
        }
        Ok(w)
    }

    /// The stream name of topic `i`: the workload's name in Nadi's name characters.
    fn stream(&self, i: u32) -> String {
        let base: String = self
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '-' })
            .collect();
        let base = base.trim_matches('-');
        let base = if base.is_empty() { "workload" } else { base };
        format!("{}-{i}", &base[..base.len().min(100)])
    }
}

/// Runs `w` (for `seconds` instead of its `testDurationMinutes`, the backlog scaled alike, when
/// given) and prints OMB's result fields as one JSON object.
pub async fn run(client: &NadiClient, w: &Workload, seconds: Option<f64>) -> anyhow::Result<()> {
    let full = w.test_duration_minutes.0 * 60.0;
    let secs = seconds.unwrap_or(full);
    if !secs.is_finite() || secs <= 0.0 {
        bail!("--scale-to must be a positive number of seconds");
    }
    let scale = secs / full;
    let backlog_bytes = (w.consumer_backlog_size_gb * 1e9 * scale.min(1.0)) as u64;
    let scope = "omb";
    match client.create_scope(scope).await {
        Err(e) if e.kind != ErrorKind::AlreadyExists => return Err(e.into()),
        _ => {}
    }
    let rate = (w.producer_rate > 0.0).then(|| w.producer_rate / f64::from(w.topics));
    let keys = if w.key_distributor.as_deref() == Some("NO_KEY") { 0 } else { 1024 };
    let streams: Vec<String> = (0..w.topics).map(|i| w.stream(i)).collect();
    for s in &streams {
        match client.create_stream(scope, s, StreamSpec::fixed(w.partitions_per_topic)).await {
            Err(e) if e.kind != ErrorKind::AlreadyExists => return Err(e.into()),
            _ => {}
        }
    }
    let loads: Vec<Load<'_>> = streams
        .iter()
        .map(|s| Load {
            scope,
            stream: s,
            producers: w.producers_per_topic,
            subscriptions: w.subscriptions_per_topic,
            per_subscription: w.consumer_per_subscription,
            event_size: w.message_size,
            rate,
            duration: Duration::from_secs_f64(secs),
            keys,
            report_every: None,
            backlog_bytes: backlog_bytes / u64::from(w.topics),
        })
        .collect();
    let outcomes = futures::future::try_join_all(loads.iter().map(|l| l.run(client))).await?;
    let mut publish = histogram();
    let mut e2e: Option<Histogram<u64>> = None;
    let (mut events, mut consumed, mut elapsed, mut drain) = (0u64, 0u64, 0f64, None::<f64>);
    for o in &outcomes {
        let _ = publish.add(&o.latency.all);
        if let Some(h) = &o.end_to_end {
            let _ = e2e.get_or_insert_with(histogram).add(h);
        }
        events += o.events;
        consumed += o.consumed;
        elapsed = elapsed.max(o.elapsed);
        if let Some(d) = o.backlog_drain_secs {
            drain = Some(drain.map_or(d, |x: f64| x.max(d)));
        }
    }
    let mut result = json!({
        "workload": w.name,
        "driver": "nadi",
        "topics": w.topics,
        "partitions": w.partitions_per_topic,
        "messageSize": w.message_size,
        "producersPerTopic": w.producers_per_topic,
        "consumersPerTopic": w.subscriptions_per_topic * w.consumer_per_subscription,
        "producerRate": w.producer_rate,
        "testDurationSeconds": elapsed,
        "messages": events,
        "publishRate": events as f64 / elapsed,
        "publishThroughputMBps": events as f64 * w.message_size as f64 / elapsed / 1e6,
        "consumeRate": consumed as f64 / elapsed,
    });
    put_latency(&mut result, "aggregatedPublishLatency", &publish);
    if let Some(h) = &e2e {
        put_latency(&mut result, "aggregatedEndToEndLatency", h);
    }
    if backlog_bytes > 0 {
        result["consumerBacklogBytes"] = json!(backlog_bytes);
        result["backlogDrainSeconds"] = json!(drain);
    }
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

/// OMB's latency fields (milliseconds): `{prefix}Avg`, `50pct`, `75pct`, `95pct`, `99pct`,
/// `999pct`, `9999pct`, `Max`.
fn put_latency(out: &mut serde_json::Value, prefix: &str, h: &Histogram<u64>) {
    let ms = |us: u64| us as f64 / 1000.0;
    out[format!("{prefix}Avg")] = json!(h.mean() / 1000.0);
    for (name, q) in
        [("50pct", 0.5), ("75pct", 0.75), ("95pct", 0.95), ("99pct", 0.99), ("999pct", 0.999), ("9999pct", 0.9999)]
    {
        out[format!("{prefix}{name}")] = json!(ms(h.value_at_quantile(q)));
    }
    out[format!("{prefix}Max")] = json!(ms(h.max()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn omb_files_parse_and_bad_ones_are_refused() {
        let w = Workload::parse(
            "name: 1 producer / 1 consumers on 1 topic\ntopics: 1\npartitionsPerTopic: 16\nmessageSize: 1024\n\
             payloadFile: \"payload/payload-1Kb.data\"\nsubscriptionsPerTopic: 1\nconsumerPerSubscription: 1\n\
             producersPerTopic: 1\nproducerRate: 50000\nconsumerBacklogSizeGB: 0\ntestDurationMinutes: 15\n",
        )
        .unwrap();
        assert_eq!((w.topics, w.partitions_per_topic, w.message_size), (1, 16, 1024));
        assert_eq!((w.producer_rate, w.test_duration_minutes.0), (50000.0, 15.0));
        assert_eq!(w.stream(0), "1-producer---1-consumers-on-1-topic-0");
        let w = Workload::parse(
            "name: b\ntopics: 10\npartitionsPerTopic: 3\nmessageSize: 1024\nuseRandomizedPayloads: true\n\
             subscriptionsPerTopic: 1\nconsumerPerSubscription: 1\nproducersPerTopic: 1\nproducerRate: 100000\n\
             consumerBacklogSizeGB: 1\ntestDurationMinutes: ${ombTestDuration:-15}\n",
        )
        .unwrap();
        assert_eq!((w.consumer_backlog_size_gb, w.test_duration_minutes.0), (1.0, 15.0));
        // The files shipped in benches/workloads/ all parse.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/workloads");
        let mut n = 0;
        for f in std::fs::read_dir(&dir).unwrap() {
            let path = f.unwrap().path();
            Workload::load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            n += 1;
        }
        assert!(n >= 5, "workload files in {}", dir.display());
        for bad in [
            "",
            "name: x",
            "name: x\ntopics: 0\npartitionsPerTopic: 1\nmessageSize: 1\nsubscriptionsPerTopic: 1\nconsumerPerSubscription: 1\nproducersPerTopic: 1\nproducerRate: 1\ntestDurationMinutes: 1",
        ] {
            assert!(Workload::parse(bad).is_err(), "{bad:?}");
        }
    }
}
