//! `nadi bench`: producer (and optional consumer) load against a running store, printing one
//! JSON object.
//!
//! Latency is per event: from the moment `EventWriter::write` accepted it to the moment its
//! batch was acknowledged as durable (recorded in an HdrHistogram, microsecond precision).
//! Throughput counts acknowledged payload bytes over the whole run including the final flush.
//! `mb_per_sec` is in MB (10^6 bytes) of event payload per second.
//!
//! With consumers (tail readers in this process), `end_to_end_ms` is each event's time from
//! `EventWriter::write` to its delivery to a consumer: the producers stamp the first 8 bytes of
//! every payload with the microseconds since the run started (so events of at least 8 bytes;
//! each payload is then its own copy, which costs the producer a copy per event).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use nadi_client::{
    AckObserver, ClientError, ErrorKind, EventWriter, NadiClient, ReaderConfig, ReaderGroup, SegmentReader, StartFrom,
    StreamReader, StreamSpec, WriterConfig,
};
use nadi_proto::names::parse_scoped_stream;
use parking_lot::Mutex;
use serde_json::json;

/// Settings of a benchmark run.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// SCOPE/STREAM to write (created with --segments if missing).
    #[arg(long, required_unless_present = "workload", default_value = "")]
    pub stream: String,
    /// Segments of the stream if it is created.
    #[arg(long, default_value_t = 1)]
    pub segments: u32,
    /// Concurrent producers (one EventWriter each).
    #[arg(long, default_value_t = 1)]
    pub producers: u32,
    /// Concurrent consumers reading the stream from its tail; with events of at least 8 bytes
    /// they measure end-to-end latency (`end_to_end_ms`: write to delivery).
    #[arg(long, default_value_t = 0)]
    pub consumers: u32,
    /// Payload bytes per event.
    #[arg(long, default_value_t = 1024)]
    pub event_size: usize,
    /// Target events per second over all producers, or `max`.
    #[arg(long, default_value = "max")]
    pub rate: String,
    /// Seconds to produce.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Distinct routing keys (0: events without keys).
    #[arg(long, default_value_t = 1024)]
    pub keys: u64,
    /// Scaling policy if the stream is created (`fixed`, `events:RATE,FACTOR,MIN` or
    /// `bytes:RATE,FACTOR,MIN`); `fixed` uses --segments.
    #[arg(long, default_value = "fixed")]
    pub scaling: String,
    /// Also report latency per interval of this many seconds (`intervals` in the JSON), e.g.
    /// to compare the time around a scale with the time before it.
    #[arg(long)]
    pub report_every: Option<f64>,
    /// Instead of producing: read the stream's existing data from its head to its current
    /// end as fast as possible (a catch-up reader; old data comes from Tier-2), every segment
    /// at once, and report the read speed.
    #[arg(long)]
    pub catch_up: bool,
    /// Instead of the flags above: run an OpenMessaging Benchmark workload file (YAML; see
    /// benches/workloads/) and print OMB's result fields.
    #[arg(long, value_name = "FILE")]
    pub workload: Option<std::path::PathBuf>,
    /// With --workload: run it for this many seconds instead of its testDurationMinutes (its
    /// backlog scaled alike).
    #[arg(long, value_name = "SECS", requires = "workload")]
    pub scale_to: Option<f64>,
    /// Worker threads of the benchmark client's runtime. Default: producers + consumers, at
    /// most the machine's cores (each producer and consumer is one task; more threads than
    /// that only add wake-ups across cores, and a store on the same machine needs them). With
    /// --workload or --catch-up: the machine's cores. `TOKIO_WORKER_THREADS` overrides both.
    #[arg(long, value_name = "N")]
    pub client_threads: Option<usize>,
}

impl BenchArgs {
    /// The client runtime's worker threads for this run (see `--client-threads`); `None`: the
    /// runtime's default.
    pub fn runtime_threads(&self) -> Option<usize> {
        if std::env::var_os("TOKIO_WORKER_THREADS").is_some() {
            return None;
        }
        if let Some(n) = self.client_threads {
            return Some(n.max(1));
        }
        if self.workload.is_some() || self.catch_up {
            return None;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Some(((self.producers + self.consumers) as usize).clamp(1, cores))
    }
}

/// Latencies: the whole run, and per interval (by acknowledgement time).
struct Latencies {
    start: Instant,
    every: Option<Duration>,
    inner: Mutex<LatencyState>,
}

pub(crate) struct LatencyState {
    pub(crate) all: Histogram<u64>,
    intervals: Vec<Histogram<u64>>,
    /// When the last acknowledgement arrived.
    last_ack: Option<Instant>,
    /// The longest time an event waited while no acknowledgement at all arrived.
    max_stall: Duration,
    /// Acknowledged batches (one `acked` call each).
    batches: u64,
}

/// Bytes of the timestamp at the start of each payload when consumers measure end to end.
const STAMP_LEN: usize = 8;

impl LatencyState {
    fn new() -> LatencyState {
        LatencyState { all: histogram(), intervals: Vec::new(), last_ack: None, max_stall: Duration::ZERO, batches: 0 }
    }
}

pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

impl AckObserver for Latencies {
    fn acked(&self, written_at: &[Instant], now: Instant) {
        let mut st = self.inner.lock();
        let st = &mut *st;
        if let Some(oldest) = written_at.iter().min() {
            // Nothing was acknowledged between max(last ack, when the oldest of these was
            // written) and now: the writer saw no progress for that long.
            let since = st.last_ack.map_or(*oldest, |l| l.max(*oldest));
            st.max_stall = st.max_stall.max(now.saturating_duration_since(since));
        }
        st.last_ack = Some(now);
        st.batches += 1;
        let slot =
            self.every.map(|e| (now.saturating_duration_since(self.start).as_secs_f64() / e.as_secs_f64()) as usize);
        if let Some(i) = slot {
            while st.intervals.len() <= i {
                st.intervals.push(histogram());
            }
        }
        for t in written_at {
            let us = (now.saturating_duration_since(*t).as_micros() as u64).max(1);
            let _ = st.all.record(us);
            if let Some(i) = slot {
                let _ = st.intervals[i].record(us);
            }
        }
    }
}

fn summary(h: &Histogram<u64>) -> serde_json::Value {
    json!({
        "p50": ms(h, 0.50),
        "p95": ms(h, 0.95),
        "p99": ms(h, 0.99),
        "p999": ms(h, 0.999),
        "max": h.max() as f64 / 1000.0,
    })
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Runs the benchmark and prints its JSON result.
pub async fn run(client: &NadiClient, args: BenchArgs) -> anyhow::Result<()> {
    let (scope, stream) = parse_scoped_stream(&args.stream)?;
    let rate: Option<f64> = match args.rate.as_str() {
        "max" => None,
        r => match r.parse::<f64>() {
            Ok(v) if v > 0.0 => Some(v),
            _ => bail!("--rate must be a positive number of events per second or `max`"),
        },
    };
    if args.catch_up {
        return catch_up(client, scope, stream, &args.stream).await;
    }
    if args.producers == 0 || args.duration <= 0.0 || args.event_size == 0 {
        bail!("--producers, --duration and --event-size must be positive");
    }
    if args.report_every.is_some_and(|e| e.is_nan() || e <= 0.0) {
        bail!("--report-every must be a positive number of seconds");
    }
    let spec = StreamSpec { config: nadi_proto::views::create_config(None, Some(&args.scaling), None)? };
    let spec = if args.scaling.trim() == "fixed" { StreamSpec::fixed(args.segments) } else { spec };
    ignore_exists(client.create_scope(scope).await)?;
    ignore_exists(client.create_stream(scope, stream, spec).await.map(|_| ()))?;
    let segments = client.active_segments(scope, stream).await?.segments.len();

    let load = Load {
        scope,
        stream,
        producers: args.producers,
        subscriptions: args.consumers,
        per_subscription: 1,
        event_size: args.event_size,
        rate,
        duration: Duration::from_secs_f64(args.duration),
        keys: args.keys,
        report_every: args.report_every.map(Duration::from_secs_f64),
        backlog_bytes: 0,
    };
    let out = load.run(client).await?;
    let segments_after = client.active_segments(scope, stream).await?.segments.len();
    let st = &out.latency;
    let events = out.events;
    let elapsed = out.elapsed;
    let bytes = events as f64 * args.event_size as f64;
    let mut result = json!({
        "stream": args.stream,
        "segments": segments,
        "producers": args.producers,
        "consumers": args.consumers,
        "event_size": args.event_size,
        "keys": args.keys,
        "target_rate": rate,
        "duration_secs": elapsed,
        "events": events,
        "events_per_sec": events as f64 / elapsed,
        "mb_per_sec": bytes / elapsed / 1e6,
        "consumed_events": out.consumed,
        "latency_ms": summary(&st.all),
        "max_stall_ms": st.max_stall.as_secs_f64() * 1000.0,
        "batches": st.batches,
        "events_per_batch": events as f64 / st.batches.max(1) as f64,
        "segments_after": segments_after,
    });
    if let Some(e2e) = &out.end_to_end {
        result["end_to_end_ms"] = summary(e2e);
        result["end_to_end_events"] = json!(e2e.len());
    }
    if let Some(every) = args.report_every {
        let intervals: Vec<_> = st
            .intervals
            .iter()
            .enumerate()
            .map(|(i, h)| json!({ "start_secs": i as f64 * every, "events": h.len(), "latency_ms": summary(h) }))
            .collect();
        result["intervals"] = json!(intervals);
    }
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

/// One load on one stream: what `nadi bench` runs, and what a workload runs per topic.
pub(crate) struct Load<'a> {
    pub scope: &'a str,
    pub stream: &'a str,
    /// Producers, one `EventWriter` each.
    pub producers: u32,
    /// Subscriptions: each reads every event, from the tail at the start of the load.
    pub subscriptions: u32,
    /// Readers sharing one subscription (a reader group when more than one).
    pub per_subscription: u32,
    pub event_size: usize,
    /// Events per second over all producers (`None`: as fast as they can).
    pub rate: Option<f64>,
    pub duration: Duration,
    /// Distinct routing keys (0: none).
    pub keys: u64,
    pub report_every: Option<Duration>,
    /// Bytes written before the subscriptions start reading (a backlog they then drain while
    /// the producers go on); 0: they read from the start.
    pub backlog_bytes: u64,
}

/// What a load measured.
pub(crate) struct Outcome {
    /// Events written and acknowledged.
    pub events: u64,
    /// Seconds of producing, the final flush included.
    pub elapsed: f64,
    /// Events delivered to subscriptions (each subscription counts every event it read).
    pub consumed: u64,
    pub latency: LatencyState,
    /// Write → delivery, when subscriptions read stamped events (events of 8 bytes or more).
    pub end_to_end: Option<Histogram<u64>>,
    /// Seconds from the start of reading until every subscription had read the backlog.
    pub backlog_drain_secs: Option<f64>,
}

impl Load<'_> {
    /// Runs the load: producers for `duration`, subscriptions reading from the tail (after the
    /// backlog, if any); then waits for the subscriptions to catch up (at most 10 s, or 120 s
    /// with a backlog).
    pub(crate) async fn run(&self, client: &NadiClient) -> anyhow::Result<Outcome> {
        let (scope, stream) = (self.scope, self.stream);
        let start = Instant::now();
        let hist = Arc::new(Latencies { start, every: self.report_every, inner: Mutex::new(LatencyState::new()) });
        let consumed = Arc::new(AtomicU64::new(0));
        let written = Arc::new(AtomicU64::new(0));
        let stamped = self.subscriptions > 0 && self.event_size >= STAMP_LEN;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Subscriptions are placed at the tail now and read once `go` is set.
        let (go_tx, go_rx) = tokio::sync::watch::channel(false);
        let mut consumers = Vec::new();
        for sub in 0..self.subscriptions {
            let reading = Reading { start, stamped, consumed: consumed.clone(), stop: stop.clone(), go: go_rx.clone() };
            if self.per_subscription <= 1 {
                let reader = StreamReader::new(client, scope, stream, false).await?;
                consumers.push(tokio::spawn(reading.stream_reader(reader)));
            } else {
                let group = format!("bench-{sub}-{:08x}", rand::random::<u32>());
                let rg = ReaderGroup::create(client, scope, &group, &[stream], StartFrom::Tail).await?;
                for _ in 0..self.per_subscription {
                    let reading =
                        Reading { start, stamped, consumed: consumed.clone(), stop: stop.clone(), go: go_rx.clone() };
                    consumers.push(tokio::spawn(reading.group_reader(rg.clone())));
                }
            }
        }
        // The backlog: reading starts once this many bytes were written.
        let backlog_events = self.backlog_bytes.div_ceil(self.event_size as u64);
        let gate = {
            let (written, consumed, stop) = (written.clone(), consumed.clone(), stop.clone());
            let subscriptions = u64::from(self.subscriptions);
            tokio::spawn(async move {
                while written.load(Ordering::Relaxed) < backlog_events {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let at = Instant::now();
                let backlog = written.load(Ordering::Relaxed);
                let _ = go_tx.send(true);
                if backlog_events == 0 || subscriptions == 0 {
                    return None;
                }
                while consumed.load(Ordering::Relaxed) < backlog * subscriptions {
                    if stop.load(Ordering::Relaxed) {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Some(at.elapsed().as_secs_f64())
            })
        };

        let duration = self.duration;
        let mut producers = Vec::new();
        for _ in 0..self.producers {
            let cfg = WriterConfig { observer: Some(hist.clone()), ..Default::default() };
            let writer = EventWriter::new(client, scope, stream, cfg).await?;
            let per_producer = self.rate.map(|r| r / self.producers as f64);
            let (size, keys, written) = (self.event_size, self.keys, written.clone());
            producers.push(tokio::spawn(async move {
                let keys: Vec<Bytes> = (0..keys).map(|k| Bytes::from(format!("key-{k}"))).collect();
                // One shared payload (cloning `Bytes` is a reference count), as Kafka's producer
                // perf tool does: the benchmark measures the store, not payload generation.
                let mut template = BytesMut::zeroed(size);
                for (i, b) in template.iter_mut().enumerate() {
                    *b = b'a' + (i % 26) as u8;
                }
                let payload = template.freeze();
                let mut n = 0u64;
                let tick = Duration::from_millis(1);
                let mut next_tick = Instant::now();
                loop {
                    let now = Instant::now();
                    if now.duration_since(start) >= duration {
                        break;
                    }
                    // How many events this producer should have written by now.
                    let burst = match per_producer {
                        None => 64,
                        Some(r) => {
                            let due = (now.duration_since(start).as_secs_f64() * r) as u64;
                            if due <= n {
                                next_tick += tick;
                                tokio::time::sleep_until(next_tick.into()).await;
                                continue;
                            }
                            due - n
                        }
                    };
                    for _ in 0..burst {
                        let key =
                            if keys.is_empty() { None } else { Some(&keys[(n % keys.len() as u64) as usize][..]) };
                        let event = if stamped {
                            let mut p = BytesMut::from(&payload[..]);
                            p[..STAMP_LEN].copy_from_slice(&(start.elapsed().as_micros() as u64).to_le_bytes());
                            p.freeze()
                        } else {
                            payload.clone()
                        };
                        writer.write(key, event).await?;
                        n += 1;
                    }
                    written.fetch_add(burst, Ordering::Relaxed);
                }
                writer.close().await?;
                Ok::<u64, ClientError>(n)
            }));
        }
        let mut events = 0u64;
        for p in producers {
            events += p.await??;
        }
        let elapsed = start.elapsed().as_secs_f64();
        // Give the subscriptions time to catch up with the last acknowledged events.
        if self.subscriptions > 0 {
            let target = events * u64::from(self.subscriptions);
            let wait = if self.backlog_bytes > 0 { 120 } else { 10 };
            let deadline = Instant::now() + Duration::from_secs(wait);
            while consumed.load(Ordering::Relaxed) < target && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        stop.store(true, Ordering::Relaxed);
        let backlog_drain_secs = gate.await?;
        let mut end_to_end = histogram();
        for c in consumers {
            let _ = end_to_end.add(c.await??);
        }
        let latency = std::mem::replace(&mut *hist.inner.lock(), LatencyState::new());
        Ok(Outcome {
            events,
            elapsed,
            consumed: consumed.load(Ordering::Relaxed),
            latency,
            end_to_end: stamped.then_some(end_to_end),
            backlog_drain_secs: if self.backlog_bytes > 0 { backlog_drain_secs } else { None },
        })
    }
}

/// One reader's share of a subscription: waits for `go`, then counts (and, with stamped
/// events, times) what it reads until `stop`.
struct Reading {
    start: Instant,
    stamped: bool,
    consumed: Arc<AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    go: tokio::sync::watch::Receiver<bool>,
}

impl Reading {
    fn record(&self, e2e: &mut Histogram<u64>, payload: &[u8]) {
        if self.stamped
            && let Some(stamp) = payload.get(..STAMP_LEN)
        {
            let written = u64::from_le_bytes(stamp.try_into().expect("8 bytes"));
            let now = self.start.elapsed().as_micros() as u64;
            let _ = e2e.record(now.saturating_sub(written).max(1));
        }
        self.consumed.fetch_add(1, Ordering::Relaxed);
    }

    async fn wait_for_go(&mut self) -> bool {
        while !*self.go.borrow() {
            if self.stop.load(Ordering::Relaxed) || self.go.changed().await.is_err() {
                return *self.go.borrow();
            }
        }
        true
    }

    async fn stream_reader(mut self, mut reader: StreamReader) -> Result<Histogram<u64>, ClientError> {
        let mut e2e = histogram();
        if !self.wait_for_go().await {
            return Ok(e2e);
        }
        while !self.stop.load(Ordering::Relaxed) {
            match tokio::time::timeout(Duration::from_millis(50), reader.next()).await {
                Err(_) => continue,
                Ok(Some(Ok(event))) => self.record(&mut e2e, &event.payload),
                Ok(_) => break,
            }
        }
        Ok(e2e)
    }

    /// A reader of a group, joined once reading starts (a reader that does not read for a
    /// while would be declared offline).
    async fn group_reader(mut self, group: ReaderGroup) -> Result<Histogram<u64>, ClientError> {
        let mut e2e = histogram();
        if !self.wait_for_go().await {
            return Ok(e2e);
        }
        let mut reader = group.reader(ReaderConfig::default()).await?;
        while !self.stop.load(Ordering::Relaxed) {
            match tokio::time::timeout(Duration::from_millis(50), reader.read_next()).await {
                Err(_) => continue,
                Ok(Ok(Some(event))) => self.record(&mut e2e, &event.payload),
                Ok(Ok(None)) => break,
                Ok(Err(e)) => return Err(e),
            }
        }
        let _ = reader.close().await;
        Ok(e2e)
    }
}

/// What one segment's catch-up read: its bytes and events, and how long its Tier-2 prefix and
/// its Tier-1 suffix took.
struct Phases {
    bytes: u64,
    events: u64,
    tier2_bytes: u64,
    tier2_time: Duration,
    tier1_time: Duration,
}

/// Reads every head segment from its start to its end at the time of the call (not following
/// the tail), all at once, straight from the segment stores' Read streams. Counts the segment
/// bytes (framed events) and events read, and reports the Tier-2 part (the bytes that had moved
/// when it started, read first) and the Tier-1 part apart: each phase's MB/s is its bytes over
/// the time its slowest segment spent in it.
async fn catch_up(client: &NadiClient, scope: &str, stream: &str, name: &str) -> anyhow::Result<()> {
    let head = client.head_segments(scope, stream).await?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for loc in head {
        let Some(seg) = loc.segment.clone() else { continue };
        let info = client.segment_info(&loc.endpoint, &seg.qualified_name).await?;
        // What each head segment holds now, without following its tail.
        let mut reader = SegmentReader::new(client, &loc.endpoint, &seg.qualified_name, info.start_offset)
            .up_to(info.length)
            .max_bytes_per_message(1 << 20);
        // Older bytes are in Tier-2, the newest in Tier-1: a segment's Tier-1 bytes are its
        // suffix (what has not moved yet).
        let boundary = info.length.saturating_sub(info.tier1_bytes).max(info.start_offset);
        let mut at = info.start_offset;
        tasks.push(tokio::spawn(async move {
            let (mut bytes, mut events) = (0u64, 0u64);
            let mut crossed = (at >= boundary).then_some(Duration::ZERO);
            while let Some(chunk) = reader.next_chunk().await? {
                events += chunk.events.len() as u64;
                bytes += chunk.bytes;
                at += chunk.bytes;
                if crossed.is_none() && at >= boundary {
                    crossed = Some(start.elapsed());
                }
            }
            let crossed = crossed.unwrap_or_else(|| start.elapsed());
            Ok::<_, anyhow::Error>(Phases {
                bytes,
                events,
                tier2_bytes: boundary - info.start_offset,
                tier2_time: crossed,
                tier1_time: start.elapsed().saturating_sub(crossed),
            })
        }));
    }
    let (mut bytes, mut events, mut tier2_bytes) = (0u64, 0u64, 0u64);
    let (mut tier2_time, mut tier1_time) = (Duration::ZERO, Duration::ZERO);
    for t in tasks {
        let p = t.await??;
        bytes += p.bytes;
        events += p.events;
        tier2_bytes += p.tier2_bytes;
        // Segments are read at once: a phase lasts as long as its slowest segment's.
        tier2_time = tier2_time.max(p.tier2_time);
        tier1_time = tier1_time.max(p.tier1_time);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let tier1_bytes = bytes.saturating_sub(tier2_bytes);
    let rate = |b: u64, t: Duration| if t.is_zero() { 0.0 } else { b as f64 / t.as_secs_f64() / 1e6 };
    let result = json!({
        "stream": name,
        "mode": "catch-up",
        "bytes": bytes,
        "events": events,
        "duration_secs": elapsed,
        "events_per_sec": events as f64 / elapsed,
        "mb_per_sec": bytes as f64 / elapsed / 1e6,
        "tier2": { "bytes": tier2_bytes, "secs": tier2_time.as_secs_f64(), "mb_per_sec": rate(tier2_bytes, tier2_time) },
        "tier1": { "bytes": tier1_bytes, "secs": tier1_time.as_secs_f64(), "mb_per_sec": rate(tier1_bytes, tier1_time) },
    });
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

/// Creating the scope or stream is skipped when it exists, or when the caller may not create
/// it (a principal with write on an existing stream only): the next call says whether the
/// stream is there and usable.
fn ignore_exists(r: Result<(), ClientError>) -> Result<(), ClientError> {
    match r {
        Err(e) if e.kind == ErrorKind::AlreadyExists || e.kind == ErrorKind::PermissionDenied => Ok(()),
        other => other,
    }
}
