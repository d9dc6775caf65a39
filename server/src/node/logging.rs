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

/// Installs the global subscriber. Call once, before anything logs.
pub fn init(format: LogFormat, default_filter: &str) {
    let _ = FORMAT.set(format);
    let filter = EnvFilter::try_from_env("NADI_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    // A span that closes logs one line with its time (`time.busy`, `time.idle`), at the span's
    // own level: the control-plane calls' latencies, visible once their targets are at debug.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE);
    match format {
        // Colours only on a terminal: logs redirected to files stay plain text.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(true).init(),
    }
}
