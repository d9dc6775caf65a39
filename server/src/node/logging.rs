//! Where a process's `tracing` events go: stderr, as text (the default) or as JSON lines
//! (`--log-format json`, `NADI_LOG_FORMAT=json`).
//!
//! Which events: the `NADI_LOG` filter (`tracing_subscriber`'s `EnvFilter` syntax), else the
//! default the caller gives (servers `info,openraft=warn`, client commands `warn`). The
//! control-plane spans (`nadi_client` calls, the controller's gRPC handlers, the segment
//! store's segment operations) are at `debug`: with the defaults they are filtered out at the
//! callsite and cost one relaxed load each.
//!
//! A closing span logs one line (`close`, with `time.busy` and `time.idle`) at its own level.
//!
//! A server's own lines (ready, shutting down) go through [`banner`].
//!
//! OTLP: with the `otlp` cargo feature (off by default) and `--otlp-endpoint URL`, the spans are
//! also exported to an OpenTelemetry collector over OTLP/gRPC. Without the endpoint no exporter
//! layer exists at all.
//!
//! JSON: one object per line, with `timestamp`, `level`, `target`, `message` and the event's
//! own fields at the top level, and `span`/`spans` naming the spans it happened in (with their
//! fields: scope, stream, segment, …).

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;

use super::config::LogFormat;

/// The format [`init`] installed (for [`banner`]).
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Prints one of a server's own lines (`nadi standalone ready: …`, `… shutting down`) on
/// stderr, whatever `NADI_LOG` filters: as it is with text logs, as a JSON object (`level`
/// `INFO`, `target` `nadi`, the line as `message`) with JSON logs, so that every line of a
/// JSON-logging process parses.
pub fn banner(line: &str) {
    match FORMAT.get() {
        Some(LogFormat::Json) => {
            let v = serde_json::json!({
                "timestamp": humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
                "level": "INFO",
                "message": line,
                "target": "nadi",
            });
            eprintln!("{v}");
        }
        _ => eprintln!("{line}"),
    }
}

/// Installs the global subscriber. Call once, before anything logs, inside the runtime's
/// context when `otlp` is given (the exporter's gRPC channel runs on it).
///
/// With `otlp` (`--otlp-endpoint`), the spans of nadi's own crates, from `debug` up, are also
/// exported over OTLP/gRPC (batched, on a background thread) to that collector; the returned
/// guard flushes them when dropped. Without the `otlp` cargo feature, asking for it is an error.
pub fn init(format: LogFormat, default_filter: &str, otlp: Option<&str>) -> anyhow::Result<Option<OtlpGuard>> {
    let _ = FORMAT.set(format);
    let filter = EnvFilter::try_from_env("NADI_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    // A span that closes logs one line with its time (`time.busy`, `time.idle`), at the span's
    // own level: the control-plane calls' latencies, visible once their targets are at debug.
    let close = tracing_subscriber::fmt::format::FmtSpan::CLOSE;
    if let Some(endpoint) = otlp {
        return with_otlp(format, filter, close, endpoint).map(Some);
    }
    // Without export: one global filter, so that a disabled callsite (every debug span by
    // default) is never asked again and the level hint keeps `trace!`/`debug!` out early.
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_span_events(close);
    match format {
        // Colours only on a terminal: logs redirected to files stay plain text.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(true).try_init(),
    }
    .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))?;
    Ok(None)
}

/// The log layer (filtered by `filter`) beside the OTLP layer (nadi's crates from `debug`).
fn with_otlp(
    format: LogFormat,
    filter: EnvFilter,
    close: tracing_subscriber::fmt::format::FmtSpan,
    endpoint: &str,
) -> anyhow::Result<OtlpGuard> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_span_events(close);
    let fmt = match format {
        LogFormat::Text => fmt.with_ansi(std::io::stderr().is_terminal()).with_filter(filter).boxed(),
        LogFormat::Json => {
            fmt.json().flatten_event(true).with_current_span(true).with_span_list(true).with_filter(filter).boxed()
        }
    };
    let (otel, guard) = otlp_layer(endpoint)?;
    let layers: Vec<BoxedLayer> = vec![fmt, otel];
    tracing_subscriber::registry().with(layers).try_init()?;
    Ok(guard)
}

/// Flushes and stops the OTLP exporter when dropped.
#[derive(Debug)]
pub struct OtlpGuard {
    #[cfg(feature = "otlp")]
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
}

impl Drop for OtlpGuard {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Err(e) = self.provider.shutdown() {
            eprintln!("nadi: flushing the OTLP exporter failed: {e}");
        }
    }
}

type BoxedLayer = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

/// The layer exporting nadi's spans (`debug` and up) to the OTLP/gRPC collector at `endpoint`.
#[cfg(feature = "otlp")]
fn otlp_layer(endpoint: &str) -> anyhow::Result<(BoxedLayer, OtlpGuard)> {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig as _;
    use tracing_subscriber::Layer as _;

    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| anyhow::anyhow!("--otlp-endpoint {endpoint}: {e}"))?;
    let resource = opentelemetry_sdk::Resource::builder().with_service_name("nadi").build();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("nadi");
    let targets = tracing_subscriber::filter::Targets::new()
        .with_target("nadi_client", tracing::Level::DEBUG)
        .with_target("nadi_controller", tracing::Level::DEBUG)
        .with_target("nadi_server", tracing::Level::DEBUG)
        .with_default(tracing::Level::INFO);
    let layer = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(targets).boxed();
    Ok((layer, OtlpGuard { provider }))
}

#[cfg(not(feature = "otlp"))]
fn otlp_layer(endpoint: &str) -> anyhow::Result<(BoxedLayer, OtlpGuard)> {
    anyhow::bail!(
        "--otlp-endpoint {endpoint}: this nadi was built without OTLP export (build it with `cargo build --release -p nadi-server --features otlp`)"
    )
}
