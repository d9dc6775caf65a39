//! Client commands of the `nadi` binary: scopes, streams, `write` and `read`.
//!
//! Each prints a short result on stdout and, on failure, one line `error: …` on stderr with a
//! non-zero exit code.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use nadi_client::{EventWriter, NadiClient, StreamReader, StreamSpec, WriterConfig};
use nadi_proto::controller::v1 as pb;
use nadi_proto::names::{parse_scoped_stream, validate_scope};
use serde_json::json;
use tokio::io::AsyncBufReadExt;

/// Splits `--controller a,b` into URLs.
pub fn controllers(arg: &str) -> Vec<String> {
    arg.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

pub async fn scope_create(client: &NadiClient, scope: &str) -> anyhow::Result<()> {
    validate_scope(scope)?;
    client.create_scope(scope).await?;
    println!("created scope {scope}");
    Ok(())
}

pub async fn stream_create(client: &NadiClient, name: &str, segments: u32) -> anyhow::Result<()> {
    let (scope, stream) = parse_scoped_stream(name)?;
    if segments == 0 {
        bail!("--segments must be at least 1");
    }
    let info = client.create_stream(scope, stream, StreamSpec::fixed(segments)).await?;
    println!("created stream {scope}/{stream} with {} segments", info.active_segments.len());
    Ok(())
}

pub async fn stream_list(client: &NadiClient, scope: &str) -> anyhow::Result<()> {
    validate_scope(scope)?;
    for s in client.list_streams(scope).await? {
        println!("{s}");
    }
    Ok(())
}

fn state_name(state: i32) -> &'static str {
    match pb::StreamState::try_from(state) {
        Ok(pb::StreamState::Active) => "active",
        Ok(pb::StreamState::Sealed) => "sealed",
        Ok(pb::StreamState::Creating) => "creating",
        _ => "unknown",
    }
}

fn policy_text(c: &pb::StreamConfig) -> (String, String) {
    let s = c.scaling.unwrap_or_default();
    let scaling = match pb::scaling_policy::Kind::try_from(s.kind) {
        Ok(pb::scaling_policy::Kind::EventsPerSec) => {
            format!("events:{},{},{}", s.target_rate, s.scale_factor, s.min_segments)
        }
        Ok(pb::scaling_policy::Kind::KbytesPerSec) => {
            format!("bytes:{},{},{}", s.target_rate, s.scale_factor, s.min_segments)
        }
        _ => "fixed".to_owned(),
    };
    let r = c.retention.unwrap_or_default();
    let retention = match pb::retention_policy::Kind::try_from(r.kind) {
        Ok(pb::retention_policy::Kind::Time) => format!("time:{}ms", r.value),
        Ok(pb::retention_policy::Kind::Size) => format!("size:{}", r.value),
        _ => "none".to_owned(),
    };
    (scaling, retention)
}

pub async fn stream_info(client: &NadiClient, name: &str, as_json: bool) -> anyhow::Result<()> {
    let (scope, stream) = parse_scoped_stream(name)?;
    let info = client.stream_info(scope, stream).await?;
    let (scaling, retention) = policy_text(&info.config.unwrap_or_default());
    let segments: Vec<_> = info
        .active_segments
        .iter()
        .map(|s| {
            let id = nadi_proto::SegmentId::from_packed(s.id);
            json!({
                "id": s.id,
                "number": id.number(),
                "epoch": id.epoch(),
                "name": s.qualified_name,
                "key_range": [s.key_low, s.key_high],
                "state": if s.state == pb::SegmentState::Sealed as i32 { "sealed" } else { "active" },
            })
        })
        .collect();
    if as_json {
        let v = json!({
            "scope": info.scope,
            "stream": info.stream,
            "state": state_name(info.state),
            "epoch": info.epoch,
            "policy": { "scaling": scaling, "retention": retention },
            "segments": segments,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "stream {}/{} ({}), epoch {}, scaling {scaling}, retention {retention}",
            info.scope,
            info.stream,
            state_name(info.state),
            info.epoch
        );
        for s in &info.active_segments {
            println!("  segment {:<24} keys [{:.6}, {:.6})", s.qualified_name, s.key_low, s.key_high);
        }
    }
    Ok(())
}

pub async fn stream_seal(client: &NadiClient, name: &str) -> anyhow::Result<()> {
    let (scope, stream) = parse_scoped_stream(name)?;
    client.seal_stream(scope, stream).await?;
    println!("sealed stream {scope}/{stream}");
    Ok(())
}

pub async fn stream_delete(client: &NadiClient, name: &str) -> anyhow::Result<()> {
    let (scope, stream) = parse_scoped_stream(name)?;
    client.delete_stream(scope, stream).await?;
    println!("deleted stream {scope}/{stream}");
    Ok(())
}

/// How `write` picks each event's routing key.
#[derive(Debug, Clone)]
pub enum KeyMode {
    /// No key: events are spread over segments.
    None,
    /// The same key for every event.
    Fixed(String),
    /// The text before the first separator.
    Separator(String),
}

/// `nadi write`: one event per stdin line; exits 0 only when every event is durable.
pub async fn write(client: &NadiClient, name: &str, keys: KeyMode, writer_id: Option<String>) -> anyhow::Result<()> {
    let (scope, stream) = parse_scoped_stream(name)?;
    let writer = EventWriter::new(client, scope, stream, WriterConfig { writer_id, ..Default::default() }).await?;
    let mut stdin = tokio::io::BufReader::with_capacity(1 << 20, tokio::io::stdin());
    let mut line = Vec::new();
    let mut count = 0u64;
    let result: anyhow::Result<()> = async {
        loop {
            line.clear();
            if stdin.read_until(b'\n', &mut line).await.context("reading stdin")? == 0 {
                break;
            }
            if line.last() == Some(&b'\n') {
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
            }
            let key: Option<&[u8]> = match &keys {
                KeyMode::None => None,
                KeyMode::Fixed(k) => Some(k.as_bytes()),
                KeyMode::Separator(sep) => {
                    let pos = find(&line, sep.as_bytes())
                        .with_context(|| format!("line {} has no key separator {sep:?}", count + 1))?;
                    Some(&line[..pos])
                }
            };
            writer.write(key, Bytes::copy_from_slice(&line)).await?;
            count += 1;
        }
        Ok(())
    }
    .await;
    // Whatever was queued is flushed either way, so the count below is the truth.
    let flushed = writer.close().await;
    match (result, flushed) {
        (Ok(()), Ok(())) => {
            println!("wrote {count} events to {scope}/{stream}");
            Ok(())
        }
        (Err(e), Ok(())) => Err(e.context(format!("stopped after {count} events (all of them were acknowledged)"))),
        (_, Err(e)) => {
            Err(anyhow::Error::new(e).context(format!("{count} events were sent but not all are acknowledged")))
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `nadi read`: prints one payload per line until `max` events or `idle` without events.
pub async fn read(
    client: &NadiClient,
    name: &str,
    from_start: bool,
    max: Option<u64>,
    idle: Option<Duration>,
) -> anyhow::Result<()> {
    let (scope, stream) = parse_scoped_stream(name)?;
    let mut reader = StreamReader::new(client, scope, stream, from_start).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let mut n = 0u64;
    while max.is_none_or(|m| n < m) {
        let next = match idle {
            Some(d) => match tokio::time::timeout(d, reader.next()).await {
                Ok(ev) => ev,
                Err(_) => break,
            },
            None => reader.next().await,
        };
        let Some(ev) = next else { break };
        let ev = ev?;
        out.write_all(&ev.payload)?;
        out.write_all(b"\n")?;
        n += 1;
    }
    out.flush()?;
    Ok(())
}
