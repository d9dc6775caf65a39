//! `peers-loadgen`: the load generator `benches/peers/run.sh` drives NATS JetStream and Redis
//! Streams with, so that they can be set beside `nadi bench` in one table.
//!
//! It keeps `--inflight` publishes outstanding at all times (one task each, in a closed loop:
//! publish, await the acknowledgement, publish the next), spread over `--connections`
//! connections, optionally paced to `--rate` events/s over all of them, for `--duration`
//! seconds, then waits for the outstanding ones. It prints one JSON object with the field
//! names `nadi bench` uses (`events`, `events_per_sec`, `mb_per_sec`,
//! `latency_ms.{p50,p95,p99,p999,max}`, `duration_secs`, `event_size`):
//!
//! - latency: per event, from the publish call to its acknowledgement (NATS: the JetStream
//!   `PubAck`; Redis: the `XADD` reply), in an HdrHistogram of microseconds (3 significant
//!   digits, as `nadi bench`);
//! - throughput: acknowledged events and payload bytes (MB = 10^6 bytes) over the whole run,
//!   the wait for the last acknowledgements included, as `nadi bench` counts them.
//!
//! Durability is the server's configuration, not this program's: run.sh starts NATS with
//! `sync_interval: always` and Redis with `appendfsync always`, so that every acknowledged
//! event was fsync'd first, as in Nadi.
//!
//! - NATS: a JetStream stream `BENCH` (file storage, one replica) on the subjects `bench.>`;
//!   each event `jetstream.publish("bench.events", payload)`, then the returned ack future
//!   awaited.
//! - Redis: multiplexed connections (concurrent requests are pipelined on each); each event
//!   `XADD bench * p <payload>`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::json;

/// Settings of one run.
#[derive(Debug, Parser)]
#[command(about = "Publishes fixed-size events to NATS JetStream or Redis Streams and prints one JSON result")]
struct Args {
    /// The system to load.
    #[arg(long, value_enum)]
    system: System,
    /// Server address: `nats://127.0.0.1:4222` or `redis://127.0.0.1:6379`.
    #[arg(long)]
    url: String,
    /// Payload bytes per event.
    #[arg(long, default_value_t = 1024)]
    event_size: usize,
    /// Seconds to publish.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Publishes outstanding at once (each waits for its acknowledgement before the next).
    #[arg(long, default_value_t = 256)]
    inflight: usize,
    /// Connections the in-flight publishes are spread over (round robin).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Target events per second over all in-flight slots, or `max`.
    #[arg(long, default_value = "max")]
    rate: String,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum System {
    Nats,
    Redis,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Nats => "nats",
            System::Redis => "redis",
        }
    }
}

/// JetStream stream (and its subjects) the NATS runs publish to.
const NATS_STREAM: &str = "BENCH";
const NATS_SUBJECT: &str = "bench.events";
/// Redis stream key.
const REDIS_KEY: &str = "bench";

/// A connection to publish on; each in-flight slot holds a clone of one (both clients
/// multiplex the clones of a connection over it).
#[derive(Clone)]
enum Publisher {
    Nats(async_nats::jetstream::Context),
    Redis(redis::aio::MultiplexedConnection),
}

impl Publisher {
    async fn connect(system: System, url: &str, inflight: usize) -> anyhow::Result<Publisher> {
        match system {
            System::Nats => {
                let client = async_nats::connect(url).await.with_context(|| format!("connecting to {url}"))?;
                // Acks may take long under fsync-per-write; and never refuse a publish for
                // having too many acks pending (we bound them ourselves with --inflight).
                let js = async_nats::jetstream::context::ContextBuilder::new()
                    .timeout(Duration::from_secs(30))
                    .max_ack_inflight(inflight.max(1))
                    .backpressure_on_inflight(true)
                    .build(client);
                js.get_or_create_stream(async_nats::jetstream::stream::Config {
                    name: NATS_STREAM.to_owned(),
                    subjects: vec!["bench.>".to_owned()],
                    storage: async_nats::jetstream::stream::StorageType::File,
                    num_replicas: 1,
                    ..Default::default()
                })
                .await
                .map_err(|e| anyhow::anyhow!("creating stream {NATS_STREAM}: {e}"))?;
                Ok(Publisher::Nats(js))
            }
            System::Redis => {
                let client = redis::Client::open(url)?;
                // The same 30 s as for NATS (the default, 500 ms, fails queued requests under load).
                let cfg = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
                let conn = client
                    .get_multiplexed_async_connection_with_config(&cfg)
                    .await
                    .with_context(|| format!("connecting to {url}"))?;
                Ok(Publisher::Redis(conn))
            }
        }
    }

    /// Publishes one event and returns once the server acknowledged it.
    async fn publish(&mut self, payload: &Bytes) -> anyhow::Result<()> {
        match self {
            Publisher::Nats(js) => {
                let ack =
                    js.publish(NATS_SUBJECT, payload.clone()).await.map_err(|e| anyhow::anyhow!("publish: {e}"))?;
                ack.await.map_err(|e| anyhow::anyhow!("publish ack: {e}"))?;
            }
            Publisher::Redis(conn) => {
                let _id: String =
                    redis::cmd("XADD").arg(REDIS_KEY).arg("*").arg("p").arg(&payload[..]).query_async(conn).await?;
            }
        }
        Ok(())
    }
}

/// Same bounds and precision as `nadi bench`: 1 µs to 600 s, 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

fn summary(h: &Histogram<u64>) -> serde_json::Value {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    json!({ "p50": ms(0.50), "p95": ms(0.95), "p99": ms(0.99), "p999": ms(0.999), "max": h.max() as f64 / 1000.0 })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rate: Option<f64> = match args.rate.as_str() {
        "max" => None,
        r => match r.parse::<f64>() {
            Ok(v) if v > 0.0 => Some(v),
            _ => bail!("--rate must be a positive number of events per second or `max`"),
        },
    };
    if args.inflight == 0
        || args.connections == 0
        || args.event_size == 0
        || args.duration.is_nan()
        || args.duration <= 0.0
    {
        bail!("--inflight, --connections, --event-size and --duration must be positive");
    }
    let mut publishers = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        publishers.push(Publisher::connect(args.system, &args.url, args.inflight).await?);
    }
    // One shared payload (a `Bytes` clone is a reference count), the same bytes `nadi bench`
    // writes.
    let payload: Bytes = (0..args.event_size).map(|i| b'a' + (i % 26) as u8).collect::<Vec<u8>>().into();

    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.duration);
    // With --rate: the n-th event (over all slots) is due at start + n / rate.
    let tickets = Arc::new(AtomicU64::new(0));
    let mut slots = Vec::with_capacity(args.inflight);
    for i in 0..args.inflight {
        let mut publisher = publishers[i % publishers.len()].clone();
        let (payload, tickets) = (payload.clone(), tickets.clone());
        slots.push(tokio::spawn(async move {
            let mut hist = histogram();
            let mut events = 0u64;
            loop {
                if let Some(r) = rate {
                    let due = start + Duration::from_secs_f64(tickets.fetch_add(1, Ordering::Relaxed) as f64 / r);
                    if due >= end {
                        break;
                    }
                    tokio::time::sleep_until(due.into()).await;
                } else if Instant::now() >= end {
                    break;
                }
                let sent = Instant::now();
                publisher.publish(&payload).await?;
                let _ = hist.record((sent.elapsed().as_micros() as u64).max(1));
                events += 1;
            }
            Ok::<_, anyhow::Error>((events, hist))
        }));
    }
    let mut events = 0u64;
    let mut all = histogram();
    for slot in slots {
        let (n, h) = slot.await??;
        events += n;
        all.add(&h)?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let result = json!({
        "system": args.system.name(),
        "inflight": args.inflight,
        "connections": args.connections,
        "event_size": args.event_size,
        "target_rate": rate,
        "duration_secs": elapsed,
        "events": events,
        "events_per_sec": events as f64 / elapsed,
        "mb_per_sec": events as f64 * args.event_size as f64 / elapsed / 1e6,
        "latency_ms": summary(&all),
    });
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}
