//! Client commands of the `nadi` binary: scopes, streams, scaling, cluster, `write` and `read`.
//!
//! `--json` output is the same document the admin HTTP API returns (both use
//! `nadi_controller::views`).
//!
//! Each prints a short result on stdout and, on failure, one line `error: …` on stderr with a
//! non-zero exit code.

use std::io::Write as _;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use nadi_client::{
    EventWriter, NadiClient, ReadLimits, ReadLoopError, ReaderConfig, ReaderGroup, StartFrom, StreamCut, StreamReader,
    StreamSpec, TransactionalWriter, WriterConfig,
};
use nadi_proto::controller::v1 as pb;
use nadi_proto::names::{parse_scoped_stream, validate_scope};
use nadi_proto::views::{
    self, CheckpointView, ClusterView, HistoryView, InvalidInput, ReaderGroupListView, ReaderGroupView, ScaleBody,
    ScopeListView, StreamListView, StreamView, TxnListView, TxnView,
};
use tokio::io::AsyncBufReadExt;

use crate::progress::Progress;

/// An argument refused before any request is sent, with the stable code a server would give.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArgError {
    #[error(transparent)]
    Name(#[from] nadi_proto::names::NameError),
    #[error("{0}")]
    InvalidName(String),
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
}

impl ArgError {
    /// The stable error code of this error.
    pub fn code(&self) -> nadi_proto::ErrorCode {
        match self {
            ArgError::Name(_) | ArgError::InvalidName(_) => nadi_proto::ErrorCode::InvalidName,
            ArgError::Invalid(e) => e.code(),
        }
    }
}

/// Splits `--controller a,b` into URLs.
pub fn controllers(arg: &str) -> Vec<String> {
    arg.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

fn names(name: &str) -> Result<(&str, &str), ArgError> {
    Ok(parse_scoped_stream(name)?)
}

/// Prints `v` as pretty JSON; a closed stdout (`| head`) is an error, not a panic.
fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string_pretty(v)?)?;
    out.flush()?;
    Ok(())
}

pub async fn scope_create(client: &NadiClient, scope: &str) -> anyhow::Result<()> {
    validate_scope(scope).map_err(ArgError::from)?;
    client.create_scope(scope).await?;
    println!("created scope {scope}");
    Ok(())
}

pub async fn scope_list(client: &NadiClient, as_json: bool) -> anyhow::Result<()> {
    let scopes = client.list_scopes().await?;
    if as_json {
        return print_json(&ScopeListView { scopes });
    }
    for s in scopes {
        println!("{s}");
    }
    Ok(())
}

pub async fn scope_delete(client: &NadiClient, scope: &str) -> anyhow::Result<()> {
    validate_scope(scope).map_err(ArgError::from)?;
    client.delete_scope(scope).await?;
    println!("deleted scope {scope}");
    Ok(())
}

pub async fn stream_create(
    client: &NadiClient,
    name: &str,
    segments: Option<u32>,
    scaling: Option<&str>,
    retention: Option<&str>,
) -> anyhow::Result<()> {
    let (scope, stream) = names(name)?;
    let config = views::create_config(segments, scaling, retention)?;
    let info = client.create_stream(scope, stream, StreamSpec { config }).await?;
    println!("created stream {scope}/{stream} with {} segments", info.active_segments.len());
    subscriber_note(client, scope, stream, scaling, retention).await;
    Ok(())
}

/// For a policy that follows subscriber groups (`consumption:`, `readers:`) given at creation,
/// says on stderr what it does while no subscriber group reads the stream (an update setting
/// one is refused then: `NO_SUBSCRIBER`).
async fn subscriber_note(
    client: &NadiClient,
    scope: &str,
    stream: &str,
    scaling: Option<&str>,
    retention: Option<&str>,
) {
    let consumption = retention.is_some_and(|r| r.trim().starts_with("consumption:"));
    let readers = scaling.is_some_and(|s| s.trim().starts_with("readers:"));
    if !consumption && !readers {
        return;
    }
    let mut subscribed = false;
    for g in client.list_reader_groups(scope).await.unwrap_or_default() {
        if let Ok(info) = ReaderGroup::handle(client, scope, &g).info().await
            && info.subscriber
            && info.streams.iter().any(|s| s == stream)
        {
            subscribed = true;
        }
    }
    if !subscribed {
        let what = match (consumption, readers) {
            (true, true) => "it keeps data up to MAX and keeps MIN segments",
            (true, false) => "it keeps data up to MAX",
            _ => "it keeps MIN segments",
        };
        eprintln!(
            "note: no subscriber reader group reads {scope}/{stream} yet, so {what}; create one with \
             `nadi reader-group create {scope}/GROUP --stream {stream} --subscriber`"
        );
    }
}

pub async fn stream_list(client: &NadiClient, scope: &str, as_json: bool) -> anyhow::Result<()> {
    validate_scope(scope).map_err(ArgError::from)?;
    let streams = client.list_streams(scope).await?;
    if as_json {
        return print_json(&StreamListView { scope: scope.to_owned(), streams });
    }
    for s in streams {
        println!("{s}");
    }
    Ok(())
}

fn print_stream(info: &pb::StreamInfo, as_json: bool) -> anyhow::Result<()> {
    let v = StreamView::from(info);
    if as_json {
        return print_json(&v);
    }
    println!(
        "stream {}/{} ({}), epoch {}, scaling {}, retention {}",
        v.scope, v.stream, v.state, v.epoch, v.policy.scaling, v.policy.retention
    );
    for s in &v.segments {
        println!("  segment {:<24} id {:<14} keys [{:.6}, {:.6})", s.name, s.id, s.key_range[0], s.key_range[1]);
    }
    Ok(())
}

pub async fn stream_info(client: &NadiClient, name: &str, as_json: bool) -> anyhow::Result<()> {
    let (scope, stream) = names(name)?;
    print_stream(&client.stream_info(scope, stream).await?, as_json)
}

pub async fn stream_update(
    client: &NadiClient,
    name: &str,
    scaling: Option<&str>,
    retention: Option<&str>,
    as_json: bool,
) -> anyhow::Result<()> {
    let (scope, stream) = names(name)?;
    let current = client.stream_info(scope, stream).await?;
    let config = views::update_config(&current, scaling, retention)?;
    // The controller refuses to set such a policy while no subscriber reads the stream
    // (NO_SUBSCRIBER); at creation no group can exist yet, so `stream create` notes it instead.
    print_stream(&client.update_stream(scope, stream, config).await?, as_json)?;
    Ok(())
}

/// `stream scale`: `--split ID [--into N]` or `--merge ID,ID[,…]`, planned exactly like the
/// HTTP API's scale request.
pub async fn stream_scale(
    client: &NadiClient,
    name: &str,
    split: Option<u64>,
    into: Option<u32>,
    merge: Option<&str>,
    as_json: bool,
) -> anyhow::Result<()> {
    let (scope, stream) = names(name)?;
    let merge = merge
        .map(|m| {
            m.split(',')
                .map(|id| id.trim().parse::<u64>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| ArgError::Invalid(InvalidInput(format!("--merge {m:?} is not a list of segment ids"))))
        })
        .transpose()?;
    let body = ScaleBody { split, into, merge, sealed: None, new_ranges: None };
    let current = client.stream_info(scope, stream).await?;
    let req = views::plan_scale(&current, &body)?;
    let info = client.scale_stream(req).await?;
    if !as_json {
        println!("scaled stream {scope}/{stream} to epoch {}", info.epoch);
    }
    print_stream(&info, as_json)
}

/// `stream cut SCOPE/STREAM [--tail | --at TIME] [--json]`.
pub async fn stream_cut(
    client: &NadiClient,
    name: &str,
    tail: bool,
    at: Option<&str>,
    as_json: bool,
) -> anyhow::Result<()> {
    let (scope, stream) = names(name)?;
    let cut = match at {
        Some(at) => client.stream_cut_at(scope, stream, crate::time::parse_time("--at", at)?).await?,
        None => client.stream_cut(scope, stream, tail).await?,
    };
    let v = views::StreamCutView::new(scope, stream, &cut);
    if as_json {
        return print_json(&v);
    }
    let text: Vec<String> = v.cut.iter().map(|c| format!("{}:{}", c.segment_id, c.offset)).collect();
    println!("{}", text.join(","));
    Ok(())
}

/// `stream watermarks SCOPE/STREAM [--json]`.
pub async fn stream_watermarks(client: &NadiClient, name: &str, as_json: bool) -> anyhow::Result<()> {
    let (scope, stream) = names(name)?;
    let v = views::WatermarksView::new(scope, stream, &client.watermarks(scope, stream, 0).await?);
    if as_json {
        return print_json(&v);
    }
    match v.watermark_ms {
        Some(ms) => println!("watermark {ms} ms"),
        None => println!("no watermark yet (no writer has noted its time)"),
    }
    println!("writers: {} active, {} idle", v.active_writers, v.idle_writers);
    Ok(())
}

/// `stream truncate SCOPE/STREAM (--cut ID:OFFSET,… | --at-tail | --before TIME) [--json]`.
pub async fn stream_truncate(
    client: &NadiClient,
    name: &str,
    cut: Option<&str>,
    at_tail: bool,
    before_ms: Option<u64>,
    as_json: bool,
) -> anyhow::Result<()> {
    let (scope, stream) = names(name)?;
    let cut: Vec<pb::SegmentOffset> = match (cut, at_tail, before_ms) {
        (Some(c), false, None) => views::parse_cut(c)?
            .into_iter()
            .map(|p| pb::SegmentOffset { segment_id: p.segment_id, offset: p.offset })
            .collect(),
        (None, true, None) => client.stream_cut(scope, stream, true).await?,
        (None, false, Some(ms)) => client.stream_cut_at(scope, stream, ms).await?,
        _ => anyhow::bail!(ArgError::Invalid(InvalidInput("give exactly one of --cut, --at-tail and --before".into()))),
    };
    let r = client.truncate_stream(scope, stream, cut).await?;
    let v = views::TruncatedView {
        scope: scope.to_owned(),
        stream: stream.to_owned(),
        head: views::StreamCutView::new(scope, stream, &r.head).cut,
        deleted_segments: r.deleted_segments,
    };
    if as_json {
        return print_json(&v);
    }
    println!("truncated {scope}/{stream}; {} segments before the cut deleted", v.deleted_segments);
    Ok(())
}

pub async fn stream_history(client: &NadiClient, name: &str, as_json: bool) -> anyhow::Result<()> {
    let (scope, stream) = names(name)?;
    let h = HistoryView::new(scope, stream, &client.stream_history(scope, stream).await?);
    if as_json {
        return print_json(&h);
    }
    let at = |ms: u64| humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms));
    for e in &h.epochs {
        println!("epoch {} ({}, at {})", e.epoch, e.reason, at(e.created_at_ms));
        for s in &e.segments {
            println!(
                "  segment {:<24} id {:<14} keys [{:.6}, {:.6}) {}",
                s.name, s.id, s.key_range[0], s.key_range[1], s.state
            );
        }
    }
    for n in &h.notes {
        println!("note at {}: {}", at(n.at_ms), n.text);
    }
    Ok(())
}

pub async fn cluster_info(client: &NadiClient, as_json: bool) -> anyhow::Result<()> {
    let c = ClusterView::from(&client.cluster_info().await?);
    if as_json {
        return print_json(&c);
    }
    for m in &c.members {
        let leader = if m.id == c.leader_id { " (leader)" } else { "" };
        println!("controller {} grpc {} http {}{leader}", m.id, m.grpc_address, m.http_address);
    }
    for s in &c.segment_stores {
        let n = c.containers.iter().filter(|a| a.endpoint == s.endpoint).count();
        let replicas = c.containers.iter().filter(|a| a.replicas.contains(&s.store_id)).count();
        if c.replication_factor > 0 {
            println!("segment store {} ({}) leads {n} containers, holds {replicas} replicas", s.endpoint, s.store_id);
        } else {
            println!("segment store {} owns {n} containers", s.endpoint);
        }
    }
    if c.replication_factor > 0 {
        println!("replication factor {}", c.replication_factor);
        for a in &c.containers {
            let lag: Vec<String> = a
                .lag
                .iter()
                .map(|l| format!("{} {} entries/{} B", l.store_id, l.entries_behind, l.bytes_behind))
                .collect();
            println!(
                "container {} leader {} term {} replicas [{}] voters [{}]{} lag [{}]",
                a.container,
                if a.term > 0 { a.store_id.as_str() } else { "-" },
                a.term,
                a.replicas.join(", "),
                a.voters.join(", "),
                if a.changing { " (changing)" } else { "" },
                lag.join(", ")
            );
        }
    }
    Ok(())
}

pub async fn stream_seal(client: &NadiClient, name: &str) -> anyhow::Result<()> {
    let (scope, stream) = names(name)?;
    client.seal_stream(scope, stream).await?;
    println!("sealed stream {scope}/{stream}");
    Ok(())
}

pub async fn stream_delete(client: &NadiClient, name: &str) -> anyhow::Result<()> {
    let (scope, stream) = names(name)?;
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

/// Where `write` puts events.
enum Sink {
    Stream(EventWriter),
    Txn(TransactionalWriter),
}

impl Sink {
    async fn write(&self, key: Option<&[u8]>, payload: Bytes) -> Result<(), nadi_client::ClientError> {
        match self {
            Sink::Stream(w) => w.write(key, payload).await,
            Sink::Txn(t) => t.write(key, payload).await,
        }
    }
}

/// `nadi write`: one event per stdin line; exits 0 only when every event is durable. With
/// `txn`, all lines form one transaction (leased for `txn_lease`): it exits 0 only after the
/// commit, and aborts the transaction if anything fails before.
pub async fn write(
    client: &NadiClient,
    name: &str,
    keys: KeyMode,
    writer_id: Option<String>,
    txn: Option<Duration>,
) -> anyhow::Result<()> {
    let (scope, stream) = parse_scoped_stream(name)?;
    let Some(lease) = txn else {
        // A stable writer id makes the write idempotent: a rerun over the same input (say after
        // the process was killed) stores no event twice.
        let replay = writer_id.is_some();
        let config = WriterConfig { writer_id, replay, ..Default::default() };
        let writer = EventWriter::new(client, scope, stream, config).await?;
        let mut sink = Sink::Stream(writer);
        let mut progress = Progress::new("wrote");
        let (count, result) = write_lines(&mut sink, &keys, &mut progress).await;
        let Sink::Stream(writer) = sink else { unreachable!("built as a stream sink") };
        // Whatever was queued is flushed either way, so the count below is the truth.
        let flushed = writer.close().await;
        return match (result, flushed) {
            (Ok(()), Ok(())) => {
                progress.finish();
                println!("wrote {count} events to {scope}/{stream}");
                Ok(())
            }
            (Err(e), Ok(())) => Err(e.context(format!("stopped after {count} events (all of them were acknowledged)"))),
            (_, Err(e)) => {
                Err(anyhow::Error::new(e).context(format!("{count} events were sent but not all are acknowledged")))
            }
        };
    };
    if writer_id.is_some() {
        anyhow::bail!(ArgError::Invalid(InvalidInput(
            "--writer-id does not apply to --txn (the txn id is the writer id)".into()
        )));
    }
    let txn = TransactionalWriter::begin(client, scope, stream, lease).await?;
    let id = txn.txn_id().to_owned();
    let mut sink = Sink::Txn(txn);
    let mut progress = Progress::new("wrote");
    let (count, result) = write_lines(&mut sink, &keys, &mut progress).await;
    let Sink::Txn(mut txn) = sink else { unreachable!("built as a transaction sink") };
    if let Err(e) = result {
        let aborted = txn.abort().await;
        let what = if aborted.is_ok() { "aborted" } else { "left to expire" };
        return Err(e.context(format!("transaction {id} {what} after {count} events; none of them will be readable")));
    }
    txn.commit().await.with_context(|| format!("committing transaction {id} of {count} events"))?;
    progress.finish();
    println!("wrote {count} events to {scope}/{stream} in transaction {id} (committed)");
    Ok(())
}

/// `nadi txn write`: adds stdin lines to open transaction `id`, begun by any process, and waits
/// until they are durable. Does not commit.
pub async fn txn_write(client: &NadiClient, id: &str, keys: KeyMode) -> anyhow::Result<()> {
    nadi_proto::names::validate_txn_id(id).map_err(ArgError::from)?;
    let mut sink = Sink::Txn(TransactionalWriter::resume(client, id).await?);
    let mut progress = Progress::new("wrote");
    let (count, result) = write_lines(&mut sink, &keys, &mut progress).await;
    let Sink::Txn(txn) = sink else { unreachable!("built as a transaction sink") };
    let flushed = txn.flush().await;
    result?;
    flushed.with_context(|| format!("{count} events were sent but not all are acknowledged"))?;
    progress.finish();
    println!("wrote {count} events to transaction {id} (not committed)");
    Ok(())
}

/// Reads stdin lines into `sink`; returns how many were handed over and how reading ended.
async fn write_lines(sink: &mut Sink, keys: &KeyMode, progress: &mut Progress) -> (u64, anyhow::Result<()>) {
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
            let key: Option<&[u8]> = match keys {
                KeyMode::None => None,
                KeyMode::Fixed(k) => Some(k.as_bytes()),
                KeyMode::Separator(sep) => {
                    let pos = find(&line, sep.as_bytes())
                        .with_context(|| format!("line {} has no key separator {sep:?}", count + 1))?;
                    Some(&line[..pos])
                }
            };
            sink.write(key, Bytes::copy_from_slice(&line)).await?;
            count += 1;
            progress.add(line.len());
        }
        Ok(())
    }
    .await;
    (count, result)
}

fn print_txn(t: &nadi_proto::controller::v1::TxnInfo, as_json: bool) -> anyhow::Result<()> {
    let v = TxnView::from(t);
    if as_json {
        return print_json(&v);
    }
    let reason = if v.abort_reason.is_empty() { String::new() } else { format!(" ({})", v.abort_reason) };
    let rolled = if v.rolled { ", rolled into a new epoch" } else { "" };
    println!("transaction {} on {}/{}: {}{reason}{rolled}, epoch {}", v.txn_id, v.scope, v.stream, v.state, v.epoch);
    Ok(())
}

fn txn_id(id: &str) -> Result<&str, ArgError> {
    nadi_proto::names::validate_txn_id(id)?;
    Ok(id)
}

/// `nadi txn begin`: opens a transaction and prints its id alone on stdout (for scripts).
pub async fn txn_begin(client: &NadiClient, name: &str, lease: Duration, as_json: bool) -> anyhow::Result<()> {
    let (scope, stream) = names(name)?;
    let t = client.begin_txn(scope, stream, lease).await?;
    if as_json {
        return print_txn(&t, true);
    }
    println!("{}", t.txn_id);
    Ok(())
}

/// `nadi txn status|commit|abort|ping`.
pub async fn txn_op(
    client: &NadiClient,
    op: &str,
    id: &str,
    lease: Option<Duration>,
    as_json: bool,
) -> anyhow::Result<()> {
    let id = txn_id(id)?;
    match op {
        "commit" => {
            client.commit_txn(id).await?;
        }
        "abort" => {
            client.abort_txn(id).await?;
        }
        "ping" => {
            client.ping_txn(id, lease).await?;
        }
        _ => {}
    }
    print_txn(&client.get_txn(id).await?, as_json)
}

/// `nadi txn list SCOPE/STREAM`.
pub async fn txn_list(client: &NadiClient, name: &str, as_json: bool) -> anyhow::Result<()> {
    let (scope, stream) = names(name)?;
    let txns = client.list_txns(scope, stream).await?;
    if as_json {
        let transactions = txns.iter().map(TxnView::from).collect();
        return print_json(&TxnListView { scope: scope.to_owned(), stream: stream.to_owned(), transactions });
    }
    for t in &txns {
        print_txn(t, false)?;
    }
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Where `nadi read` starts (`--from-start`, `--from-time`, or by default the tail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// The head of the stream.
    Head,
    /// Only events written from now on.
    Tail,
    /// The events appended at or after this time (ms since the Unix epoch): the stream cut at it.
    Time(u64),
}

/// The stream cut of `scope/stream` at `time_ms`, for a reader to start from.
async fn cut_at(client: &NadiClient, scope: &str, stream: &str, time_ms: u64) -> anyhow::Result<StreamCut> {
    Ok(StreamCut::of_stream(stream, &client.stream_cut_at(scope, stream, time_ms).await?))
}

/// `nadi read`: prints one payload per line until `max` events or `idle` without events, through
/// the client's read loop (`StreamReader::read_until`).
pub async fn read(
    client: &NadiClient,
    name: &str,
    from: ReadFrom,
    max: Option<u64>,
    idle: Option<Duration>,
) -> anyhow::Result<()> {
    let (scope, stream) = parse_scoped_stream(name)?;
    let mut reader = match from {
        ReadFrom::Head => StreamReader::new(client, scope, stream, true).await?,
        ReadFrom::Tail => StreamReader::new(client, scope, stream, false).await?,
        ReadFrom::Time(ms) => {
            StreamReader::from_cut(client, scope, stream, &cut_at(client, scope, stream, ms).await?).await?
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let mut progress = Progress::reading();
    reader
        .read_until(ReadLimits { max, idle }, std::future::pending(), |ev| {
            progress.add(ev.payload.len());
            out.write_all(&ev.payload)?;
            out.write_all(b"\n")
        })
        .await
        .map_err(read_error)?;
    out.flush()?;
    progress.finish();
    Ok(())
}

/// A read loop's error as the command reports it: a `ClientError` stays one (its code is the
/// exit status), an output error is itself.
fn read_error(e: ReadLoopError<std::io::Error>) -> anyhow::Error {
    match e {
        ReadLoopError::Read(e) => e.into(),
        ReadLoopError::Handler(e) => e.into(),
        other => anyhow::anyhow!("{other}"),
    }
}

/// Splits `SCOPE/GROUP` into its two checked parts.
pub(crate) fn group_names(name: &str) -> Result<(&str, &str), ArgError> {
    let (scope, group) =
        name.split_once('/').ok_or_else(|| ArgError::InvalidName(format!("{name:?} is not SCOPE/GROUP")))?;
    validate_scope(scope)?;
    nadi_proto::names::validate_named("reader group", group)?;
    Ok((scope, group))
}

/// How `reader-group create` and `read --group` start a new group.
fn start_from(from: &str) -> Result<StartFrom, ArgError> {
    Ok(match from {
        "head" => StartFrom::Head,
        "tail" => StartFrom::Tail,
        cut => {
            let mut c = StreamCut::default();
            for p in views::parse_stream_cut(cut)? {
                c.insert(&p.stream, nadi_proto::SegmentId::from_packed(p.segment_id), p.offset);
            }
            StartFrom::Cut(c)
        }
    })
}

fn print_group(info: &pb::ReaderGroupInfo, as_json: bool) -> anyhow::Result<()> {
    let v = ReaderGroupView::from(info);
    if as_json {
        return print_json(&v);
    }
    println!(
        "reader group {}/{} on {} (generation {}, lag {} bytes)",
        v.scope,
        v.group,
        v.streams.join(","),
        v.generation,
        v.lag
    );
    let seg = |s: &views::SegmentPositionView| {
        let lag = s.lag.map_or("?".to_owned(), |l| l.to_string());
        format!("{}/{}@{} (lag {lag})", s.stream, s.segment_id, s.offset)
    };
    for r in &v.readers {
        println!("  reader {}: {}", r.reader_id, r.segments.iter().map(seg).collect::<Vec<_>>().join(", "));
    }
    if !v.unassigned.is_empty() {
        println!("  unassigned: {}", v.unassigned.iter().map(seg).collect::<Vec<_>>().join(", "));
    }
    if let Some(c) = &v.pending_checkpoint {
        println!("  checkpoint {c} waits for {}", v.checkpoint_waiting_for.join(", "));
    }
    if !v.checkpoints.is_empty() {
        println!("  checkpoints: {}", v.checkpoints.join(", "));
    }
    Ok(())
}

/// `reader-group create SCOPE/GROUP --stream S… [--from head|tail|CUT | --from-time TIME]`
/// (`from_time` in ms since the Unix epoch: every stream starts at its cut at that time).
pub async fn group_create(
    client: &NadiClient,
    name: &str,
    streams: &[String],
    from: &str,
    from_time: Option<u64>,
    subscriber: bool,
    as_json: bool,
) -> anyhow::Result<()> {
    let (scope, group) = group_names(name)?;
    let streams: Vec<&str> = streams.iter().map(String::as_str).collect();
    let start = match from_time {
        Some(ms) => {
            let mut cut = StreamCut::default();
            for stream in &streams {
                cut.positions.extend(cut_at(client, scope, stream, ms).await?.positions);
            }
            StartFrom::Cut(cut)
        }
        None => start_from(from)?,
    };
    let g = ReaderGroup::create_with(client, scope, group, &streams, start, subscriber).await?;
    if !as_json {
        let sub = if subscriber { " (a subscriber)" } else { "" };
        println!("created reader group {scope}/{group}{sub}");
    }
    print_group(&g.info().await?, as_json)
}

/// `reader-group list SCOPE`.
pub async fn group_list(client: &NadiClient, scope: &str, as_json: bool) -> anyhow::Result<()> {
    validate_scope(scope).map_err(ArgError::from)?;
    let groups = client.list_reader_groups(scope).await?;
    if as_json {
        return print_json(&ReaderGroupListView { scope: scope.to_owned(), groups });
    }
    for g in groups {
        println!("{g}");
    }
    Ok(())
}

/// `reader-group info SCOPE/GROUP`.
pub async fn group_info(client: &NadiClient, name: &str, as_json: bool) -> anyhow::Result<()> {
    let (scope, group) = group_names(name)?;
    print_group(&ReaderGroup::handle(client, scope, group).info().await?, as_json)
}

/// `reader-group delete SCOPE/GROUP`.
pub async fn group_delete(client: &NadiClient, name: &str) -> anyhow::Result<()> {
    let (scope, group) = group_names(name)?;
    ReaderGroup::handle(client, scope, group).delete().await?;
    println!("deleted reader group {scope}/{group}");
    Ok(())
}

/// `reader-group checkpoint SCOPE/GROUP NAME [--wait SECS]`: initiates a checkpoint and, with
/// `wait`, waits until every reader recorded its position.
pub async fn group_checkpoint(
    client: &NadiClient,
    name: &str,
    checkpoint: &str,
    wait: Option<Duration>,
    as_json: bool,
) -> anyhow::Result<()> {
    let (scope, group) = group_names(name)?;
    let g = ReaderGroup::handle(client, scope, group);
    let mut c = g.initiate_checkpoint(checkpoint).await?;
    if let Some(wait) = wait {
        g.wait_for_checkpoint(checkpoint, wait).await?;
        c = g.checkpoint(checkpoint).await?;
    }
    let v = CheckpointView::from(&c);
    if as_json {
        return print_json(&v);
    }
    if v.complete {
        let cut: Vec<String> =
            v.positions.iter().map(|p| format!("{}/{}={}", p.stream, p.segment_id, p.offset)).collect();
        println!("checkpoint {} complete: {}", v.name, cut.join(","));
    } else {
        println!("checkpoint {} waits for {}", v.name, v.waiting_for.join(", "));
    }
    Ok(())
}

/// `reader-group reset SCOPE/GROUP (--checkpoint NAME | --cut CUT)`.
pub async fn group_reset(
    client: &NadiClient,
    name: &str,
    checkpoint: Option<&str>,
    cut: Option<&str>,
    as_json: bool,
) -> anyhow::Result<()> {
    let (scope, group) = group_names(name)?;
    let g = ReaderGroup::handle(client, scope, group);
    let info = match (checkpoint, cut) {
        (Some(c), _) => g.reset_to_checkpoint(c).await?,
        (None, Some(cut)) => {
            let StartFrom::Cut(cut) = start_from(cut)? else {
                anyhow::bail!("--cut takes STREAM/SEGMENT_ID=OFFSET,…");
            };
            g.reset_to_cut(&cut).await?
        }
        (None, None) => anyhow::bail!("give --checkpoint NAME or --cut STREAM/SEGMENT_ID=OFFSET,…"),
    };
    if !as_json {
        println!("reset reader group {scope}/{group}");
    }
    print_group(&info, as_json)
}

/// `reader-group offline SCOPE/GROUP READER`: the reader died; its segments go back at its
/// last synced positions.
pub async fn group_offline(client: &NadiClient, name: &str, reader: &str) -> anyhow::Result<()> {
    let (scope, group) = group_names(name)?;
    ReaderGroup::handle(client, scope, group).reader_offline(reader).await?;
    println!("reader {reader} of {scope}/{group} is offline");
    Ok(())
}

/// Options of `nadi read --group`.
#[derive(Debug, Clone, Default)]
pub struct GroupReadOptions {
    /// The reader's id (random if `None`).
    pub reader_id: Option<String>,
    /// Prefix each payload with `STREAM/SEGMENT_ID@OFFSET\t`, and print `#checkpoint NAME`
    /// before the first event after this reader recorded a checkpoint.
    pub with_position: bool,
}

/// `nadi read --group NAME`: joins the group (creating it, if it does not exist, from the head
/// with `--from-start`, from the cut at a time with `--from-time`, else from the tail) and
/// prints what this reader is given. Stops after
/// `max` events, `idle` without an event, at the end of the group (all streams sealed and read),
/// or on Ctrl-C, and then leaves the group, giving its segments back at what it printed.
pub async fn read_group(
    client: &NadiClient,
    name: &str,
    group: &str,
    from: ReadFrom,
    max: Option<u64>,
    idle: Option<Duration>,
    opts: GroupReadOptions,
) -> anyhow::Result<()> {
    let (scope, stream) = parse_scoped_stream(name)?;
    nadi_proto::names::validate_named("reader group", group).map_err(ArgError::from)?;
    let g = match from {
        ReadFrom::Head => ReaderGroup::create_or_open(client, scope, group, &[stream], StartFrom::Head).await?,
        ReadFrom::Tail => ReaderGroup::create_or_open(client, scope, group, &[stream], StartFrom::Tail).await?,
        // The cut is only needed (and only asked for) when the group is new.
        ReadFrom::Time(ms) => match ReaderGroup::open(client, scope, group).await {
            Ok(g) => g,
            Err(e) if e.kind == nadi_client::ErrorKind::NotFound => {
                let start = StartFrom::Cut(cut_at(client, scope, stream, ms).await?);
                ReaderGroup::create_or_open(client, scope, group, &[stream], start).await?
            }
            Err(e) => return Err(e.into()),
        },
    };
    let mut reader = g.reader(ReaderConfig { reader_id: opts.reader_id, ..Default::default() }).await?;
    let stdout = std::io::stdout();
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let mut progress = Progress::reading();
    let result = reader
        .read_until(ReadLimits { max, idle }, ctrl_c, |ev| {
            progress.add(ev.payload.len());
            // Printed and flushed before the next read, whose sync may report it as consumed.
            let mut out = stdout.lock();
            if opts.with_position {
                if let Some(c) = &ev.checkpoint {
                    writeln!(out, "#checkpoint {c}")?;
                }
                write!(out, "{}/{}@{}\t", ev.position.stream, ev.position.segment.packed(), ev.position.offset)?;
            }
            out.write_all(&ev.payload)?;
            out.write_all(b"\n")?;
            out.flush()
        })
        .await
        .map_err(read_error);
    let closed = reader.close().await;
    result?;
    closed?;
    progress.finish();
    Ok(())
}
