//! `nadi stream stats` and `nadi reader-group stats`: a live view of a stream's segments and of
//! a reader group's lag, built only from what the controller and the segment stores already
//! answer (no RPC of its own).
//!
//! Where each figure comes from:
//!
//! ```text
//!   controller GetStream / GetStreamHistory ─► every segment the stream had (id, key range, state)
//!   controller GetClusterInfo               ─► which store serves each segment's container
//!   store GetSegmentInfo                    ─► start_offset (head), length, sealed, writers
//!   controller GetReaderGroup               ─► each reader's segments, positions, tail lengths
//!
//!              head (start_offset)                 length (tail)
//!                    |                                 |
//!   .....truncated...[len|payload][len|payload]...[..]|
//!                    |<-------- size_bytes ----------->|
//! ```
//!
//! Lengths and offsets are in the store's own units: bytes of framed events (an 8-byte header
//! plus the payload, see `segment.proto`), so a segment that took N events of P bytes
//! has length `N × (8 + P)`. Rates are the difference of two samples over the time between
//! them. Event counts come from the writers' event numbers the store keeps per segment (each
//! writer numbers its events on a segment consecutively from 0): conditional appends carry no
//! writer and are not counted. Tier-1 and Tier-2 bytes per segment come from the store's
//! `GetSegmentInfo` (`tier1_bytes`, `tier2_bytes`).
//!
//! Output: an aligned table, or with `--json` one JSON object per sample on one line.
//! `--watch` samples every interval until Ctrl-C (or `--count` samples); on a terminal the
//! table is redrawn in place (ANSI cursor-up and clear), elsewhere each sample is printed
//! after the previous one, with no escape codes.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write as _};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nadi_client::{ClientError, ErrorKind, NadiClient, ReaderGroup};
use nadi_proto::SegmentId;
use nadi_proto::controller::v1 as pb;
use serde::Serialize;

/// How a stats command samples and prints.
#[derive(Debug, Clone, Copy)]
pub struct StatsOptions {
    /// One JSON object per sample instead of a table.
    pub json: bool,
    /// Sample again every this long until Ctrl-C (`--watch`); `None`: one sample.
    pub watch: Option<Duration>,
    /// Stop after this many printed samples (with `--watch`).
    pub count: Option<u64>,
    /// Time between the two samples that give the rates of a single (not watched) sample.
    pub interval: Duration,
}

/// One segment of `nadi stream stats --json`. Field names are stable.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentStats {
    /// Packed id `(epoch << 32) | number`.
    pub id: u64,
    /// The segment's number within the stream.
    pub number: u32,
    /// The epoch that created it.
    pub epoch: u32,
    /// Qualified name, as the segment store knows it.
    pub name: String,
    /// Its slice of the routing-key space, `[low, high)`.
    pub key_range: [f64; 2],
    /// `open` (takes appends) or `sealed`.
    pub state: &'static str,
    /// First readable offset (moves forward with truncation).
    pub head_offset: u64,
    /// Durable length: one past the last acknowledged byte (framed events).
    pub length: u64,
    /// Readable bytes: `length - head_offset`.
    pub size_bytes: u64,
    /// Events appended by writers (sum over the writers of their event count on this segment).
    pub writer_events: u64,
    /// Of its bytes, how many are in the store's Tier-1 log and how many in Tier-2.
    pub tier1_bytes: u64,
    pub tier2_bytes: u64,
    /// Bytes appended per second between the last two samples (`null` on the first).
    pub bytes_per_sec: Option<f64>,
    /// Writer events appended per second between the last two samples (`null` on the first).
    pub events_per_sec: Option<f64>,
    /// The segment store serving the segment's container when the sample began.
    pub endpoint: String,
}

/// One sample of `nadi stream stats --json`.
#[derive(Debug, Clone, Serialize)]
pub struct StreamStats {
    pub scope: String,
    pub stream: String,
    /// `active`, `sealed` (the controller's view of the stream).
    pub state: String,
    /// The current epoch.
    pub epoch: u32,
    /// When the sample was taken, milliseconds since the Unix epoch.
    pub sampled_at_ms: u64,
    /// Seconds between this sample and the one the rates compare with (`null` on the first).
    pub interval_secs: Option<f64>,
    /// Every segment the stream still has (truncated-away segments are gone), oldest first.
    pub segments: Vec<SegmentStats>,
    /// Sums over `segments`.
    pub total: StreamTotals,
}

/// Sums over a stream's segments.
#[derive(Debug, Clone, Serialize)]
pub struct StreamTotals {
    pub segments: usize,
    pub open_segments: usize,
    pub length: u64,
    pub size_bytes: u64,
    pub writer_events: u64,
    pub tier1_bytes: u64,
    pub tier2_bytes: u64,
    pub bytes_per_sec: Option<f64>,
    pub events_per_sec: Option<f64>,
}

/// One segment a reader owns (or that waits for a reader) in `nadi reader-group stats --json`.
#[derive(Debug, Clone, Serialize)]
pub struct GroupSegmentStats {
    pub stream: String,
    /// Packed segment id.
    pub segment_id: u64,
    /// The group's recorded position: the offset of the next event to read.
    pub position: u64,
    /// The segment's durable length, if its store answered.
    pub tail: Option<u64>,
    /// `tail - position`, if the tail is known.
    pub lag_bytes: Option<u64>,
}

/// One reader of a group.
#[derive(Debug, Clone, Serialize)]
pub struct ReaderStats {
    pub reader_id: String,
    pub segments: Vec<GroupSegmentStats>,
    /// Sum of the known `lag_bytes` of its segments.
    pub lag_bytes: u64,
}

/// One sample of `nadi reader-group stats --json`.
#[derive(Debug, Clone, Serialize)]
pub struct GroupStats {
    pub scope: String,
    pub group: String,
    pub streams: Vec<String>,
    pub generation: u64,
    pub sampled_at_ms: u64,
    pub readers: Vec<ReaderStats>,
    /// Segments ready to be read that no reader owns.
    pub unassigned: Vec<GroupSegmentStats>,
    /// Sum of the known lags of every segment, assigned or not.
    pub lag_bytes: u64,
    /// Segments whose tail the stores did not report (their lag is not in `lag_bytes`).
    pub unknown_lag_segments: usize,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// What the store serving one segment said about it.
struct Raw {
    seg: pb::Segment,
    endpoint: String,
    info: nadi_proto::segment::v1::SegmentInfo,
}

/// Asks the controller for every segment of `scope/stream` and each segment's store for its
/// figures. Segments the store no longer has (truncated away, merged) are left out. A store
/// that cannot answer now (restarting, leadership moving) is asked again where the controller
/// says the segment is served, for about 10 s, before the sample fails.
async fn sample_stream(client: &NadiClient, scope: &str, stream: &str) -> anyhow::Result<(pb::StreamInfo, Vec<Raw>)> {
    let info = client.stream_info(scope, stream).await?;
    let history = client.stream_history(scope, stream).await?;
    // Each segment once, with its state now (every epoch lists its segments' current state).
    let mut segments: BTreeMap<u64, pb::Segment> = BTreeMap::new();
    for e in history.epochs {
        for s in e.segments {
            segments.insert(s.id, s);
        }
    }
    let cluster = client.cluster_info().await?;
    let count = cluster.containers.len() as u32;
    let mut out = Vec::with_capacity(segments.len());
    for (_, seg) in segments {
        let container = nadi_proto::names::container_of(&seg.qualified_name, count);
        let Some(endpoint) =
            cluster.containers.iter().find(|a| a.container == container && !a.endpoint.is_empty()).map(|a| &a.endpoint)
        else {
            anyhow::bail!("no segment store serves segment {} now (container {container})", seg.qualified_name);
        };
        match client.segment_info_following(endpoint, &seg.qualified_name).await {
            Ok(i) => out.push(Raw { seg, endpoint: endpoint.clone(), info: i }),
            Err(ClientError { kind: ErrorKind::NotFound, .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok((info, out))
}

/// Events the writers appended to a segment: each writer's last event number + 1.
fn writer_events(info: &nadi_proto::segment::v1::SegmentInfo) -> u64 {
    info.writers.iter().map(|w| (w.last_event_number + 1).max(0) as u64).sum()
}

/// A previous stream sample: per segment id, `(length, writer events)`, and when.
type Previous = (Instant, HashMap<u64, (u64, u64)>);

fn stream_stats(
    scope: &str,
    stream: &str,
    info: &pb::StreamInfo,
    raw: &[Raw],
    at: Instant,
    prev: Option<&Previous>,
) -> StreamStats {
    let elapsed = prev.map(|(t, _)| at.saturating_duration_since(*t).as_secs_f64()).filter(|s| *s > 0.0);
    let mut segments = Vec::with_capacity(raw.len());
    for r in raw {
        let id = SegmentId::from_packed(r.seg.id);
        let events = writer_events(&r.info);
        let before = prev.and_then(|(_, m)| m.get(&r.seg.id));
        let rate = |now: u64, then: u64| elapsed.map(|s| now.saturating_sub(then) as f64 / s);
        segments.push(SegmentStats {
            id: r.seg.id,
            number: id.number(),
            epoch: id.epoch(),
            name: r.seg.qualified_name.clone(),
            key_range: [r.seg.key_low, r.seg.key_high],
            state: if r.info.sealed { "sealed" } else { "open" },
            head_offset: r.info.start_offset,
            length: r.info.length,
            size_bytes: r.info.length.saturating_sub(r.info.start_offset),
            writer_events: events,
            tier1_bytes: r.info.tier1_bytes,
            tier2_bytes: r.info.tier2_bytes,
            // A segment first seen now grew from nothing since the last sample.
            bytes_per_sec: rate(r.info.length, before.map_or(0, |b| b.0)),
            events_per_sec: rate(events, before.map_or(0, |b| b.1)),
            endpoint: r.endpoint.clone(),
        });
    }
    let sum_rate = |f: fn(&SegmentStats) -> Option<f64>| elapsed.map(|_| segments.iter().filter_map(f).sum());
    let total = StreamTotals {
        segments: segments.len(),
        open_segments: segments.iter().filter(|s| s.state == "open").count(),
        length: segments.iter().map(|s| s.length).sum(),
        size_bytes: segments.iter().map(|s| s.size_bytes).sum(),
        writer_events: segments.iter().map(|s| s.writer_events).sum(),
        tier1_bytes: segments.iter().map(|s| s.tier1_bytes).sum(),
        tier2_bytes: segments.iter().map(|s| s.tier2_bytes).sum(),
        bytes_per_sec: sum_rate(|s| s.bytes_per_sec),
        events_per_sec: sum_rate(|s| s.events_per_sec),
    };
    StreamStats {
        scope: scope.to_owned(),
        stream: stream.to_owned(),
        state: nadi_proto::views::state_name(info.state).to_owned(),
        epoch: info.epoch,
        sampled_at_ms: now_ms(),
        interval_secs: elapsed,
        segments,
        total,
    }
}

/// `nadi stream stats SCOPE/STREAM [--watch [SECS]] [--json]`.
pub async fn stream(client: &NadiClient, name: &str, opts: StatsOptions) -> anyhow::Result<()> {
    let (scope, stream) = nadi_proto::names::parse_scoped_stream(name)?;
    let mut prev: Option<Previous> = None;
    let every = opts.watch.unwrap_or(opts.interval);
    let mut screen = Screen::new(opts.json);
    let mut printed = 0u64;
    let mut next = tokio::time::Instant::now();
    loop {
        let (info, raw) = sample_stream(client, scope, stream).await?;
        let at = Instant::now();
        if prev.is_some() {
            let stats = stream_stats(scope, stream, &info, &raw, at, prev.as_ref());
            if opts.json {
                screen.show(&serde_json::to_string(&stats)?)?;
            } else {
                screen.show(&stream_table(&stats))?;
            }
            printed += 1;
            if opts.watch.is_none() || opts.count.is_some_and(|c| printed >= c) {
                return Ok(());
            }
        }
        prev = Some((at, raw.iter().map(|r| (r.seg.id, (r.info.length, writer_events(&r.info)))).collect()));
        next += every;
        if !sleep_or_interrupted(next).await {
            return Ok(());
        }
    }
}

/// Sleeps until `until`; false if Ctrl-C came first.
async fn sleep_or_interrupted(until: tokio::time::Instant) -> bool {
    tokio::select! {
        _ = tokio::time::sleep_until(until) => true,
        _ = tokio::signal::ctrl_c() => false,
    }
}

/// `1.5 MiB`-style sizes for the table.
fn human_bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{v:.0} {}", UNITS[0]) } else { format!("{v:.1} {}", UNITS[u]) }
}

fn rate_text(r: Option<f64>, bytes: bool) -> String {
    match r {
        None => "-".to_owned(),
        Some(v) if bytes => format!("{}/s", human_bytes(v)),
        Some(v) => format!("{v:.0}/s"),
    }
}

/// Lays out rows (first one the header) in columns: the first `left` columns left-aligned,
/// the others right-aligned.
fn columns(rows: &[Vec<String>], left: usize) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..n).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, s)| if i < left { format!("{s:<w$}", w = widths[i]) } else { format!("{s:>w$}", w = widths[i]) })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn stream_table(s: &StreamStats) -> String {
    let t = &s.total;
    let mut out = format!(
        "stream {}/{} ({}), epoch {}: {} segments ({} open), {} readable, {} writer events, {} events/s, {}\n",
        s.scope,
        s.stream,
        s.state,
        s.epoch,
        t.segments,
        t.open_segments,
        human_bytes(t.size_bytes as f64),
        t.writer_events,
        t.events_per_sec.map_or("-".to_owned(), |v| format!("{v:.0}")),
        rate_text(t.bytes_per_sec, true),
    );
    let mut rows = vec![
        [
            "SEGMENT", "ID", "KEYS", "STATE", "HEAD", "LENGTH", "SIZE", "TIER-1", "TIER-2", "EVENTS", "EVENTS/S",
            "BYTES/S",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for g in &s.segments {
        rows.push(vec![
            format!("{}.#epoch.{}", g.number, g.epoch),
            g.id.to_string(),
            format!("[{:.4}, {:.4})", g.key_range[0], g.key_range[1]),
            g.state.to_owned(),
            g.head_offset.to_string(),
            g.length.to_string(),
            human_bytes(g.size_bytes as f64),
            human_bytes(g.tier1_bytes as f64),
            human_bytes(g.tier2_bytes as f64),
            g.writer_events.to_string(),
            rate_text(g.events_per_sec, false),
            rate_text(g.bytes_per_sec, true),
        ]);
    }
    out.push_str(&columns(&rows, 4));
    out
}

fn group_segment(p: &pb::SegmentProgress) -> GroupSegmentStats {
    let v = nadi_proto::views::SegmentPositionView::from(p);
    GroupSegmentStats {
        stream: v.stream,
        segment_id: v.segment_id,
        position: v.offset,
        tail: v.length,
        lag_bytes: v.lag,
    }
}

fn group_stats(g: &pb::ReaderGroupInfo) -> GroupStats {
    let readers: Vec<ReaderStats> = g
        .readers
        .iter()
        .map(|r| {
            let segments: Vec<GroupSegmentStats> = r.segments.iter().map(group_segment).collect();
            let lag_bytes = segments.iter().filter_map(|s| s.lag_bytes).sum();
            ReaderStats { reader_id: r.reader_id.clone(), segments, lag_bytes }
        })
        .collect();
    let unassigned: Vec<GroupSegmentStats> = g.unassigned.iter().map(group_segment).collect();
    let all = || readers.iter().flat_map(|r| r.segments.iter()).chain(unassigned.iter());
    GroupStats {
        scope: g.scope.clone(),
        group: g.group.clone(),
        streams: g.streams.clone(),
        generation: g.generation,
        sampled_at_ms: now_ms(),
        lag_bytes: all().filter_map(|s| s.lag_bytes).sum(),
        unknown_lag_segments: all().filter(|s| s.lag_bytes.is_none()).count(),
        readers,
        unassigned,
    }
}

fn group_table(s: &GroupStats) -> String {
    let mut out = format!(
        "reader group {}/{} on {} (generation {}): {} readers, lag {} ({} bytes){}\n",
        s.scope,
        s.group,
        s.streams.join(","),
        s.generation,
        s.readers.len(),
        human_bytes(s.lag_bytes as f64),
        s.lag_bytes,
        if s.unknown_lag_segments > 0 {
            format!(", {} segments of unknown length", s.unknown_lag_segments)
        } else {
            String::new()
        }
    );
    let mut rows = vec![["READER", "STREAM", "SEGMENT", "POSITION", "TAIL", "LAG"].map(str::to_owned).to_vec()];
    let mut row = |who: &str, seg: &GroupSegmentStats| {
        let id = SegmentId::from_packed(seg.segment_id);
        rows.push(vec![
            who.to_owned(),
            seg.stream.clone(),
            format!("{}.#epoch.{}", id.number(), id.epoch()),
            seg.position.to_string(),
            seg.tail.map_or("?".to_owned(), |t| t.to_string()),
            seg.lag_bytes.map_or("?".to_owned(), |l| l.to_string()),
        ]);
    };
    for r in &s.readers {
        for seg in &r.segments {
            row(&r.reader_id, seg);
        }
    }
    for seg in &s.unassigned {
        row("(unassigned)", seg);
    }
    // Readers that own nothing still get a line.
    for r in s.readers.iter().filter(|r| r.segments.is_empty()) {
        rows.push(vec![r.reader_id.clone(), "-".into(), "-".into(), "-".into(), "-".into(), "0".into()]);
    }
    out.push_str(&columns(&rows, 3));
    out
}

/// `nadi reader-group stats SCOPE/GROUP [--watch [SECS]] [--json]`.
pub async fn group(client: &NadiClient, name: &str, opts: StatsOptions) -> anyhow::Result<()> {
    let (scope, group) = crate::commands::group_names(name)?;
    let handle = ReaderGroup::handle(client, scope, group);
    let mut screen = Screen::new(opts.json);
    let mut printed = 0u64;
    let mut next = tokio::time::Instant::now();
    loop {
        let stats = group_stats(&handle.info().await?);
        if opts.json {
            screen.show(&serde_json::to_string(&stats)?)?;
        } else {
            screen.show(&group_table(&stats))?;
        }
        printed += 1;
        let Some(every) = opts.watch else { return Ok(()) };
        if opts.count.is_some_and(|c| printed >= c) {
            return Ok(());
        }
        next += every;
        if !sleep_or_interrupted(next).await {
            return Ok(());
        }
    }
}

/// Prints samples on stdout: on a terminal (and not JSON) each replaces the one before,
/// elsewhere each follows the one before.
struct Screen {
    redraw: bool,
    /// Lines the last sample took, to move back over.
    lines: usize,
}

impl Screen {
    fn new(json: bool) -> Screen {
        Screen { redraw: !json && std::io::stdout().is_terminal(), lines: 0 }
    }

    fn show(&mut self, text: &str) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        if self.redraw && self.lines > 0 {
            // Cursor up over the previous sample, to the first column, then clear to the end.
            write!(out, "\x1b[{}A\r\x1b[J", self.lines)?;
        }
        out.write_all(text.as_bytes())?;
        if !text.ends_with('\n') {
            out.write_all(b"\n")?;
        }
        out.flush()?;
        self.lines = text.trim_end_matches('\n').lines().count();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use nadi_proto::segment::v1::{SegmentInfo, WriterState};

    use super::*;

    fn raw(id: u64, start: u64, length: u64, writers: &[i64], sealed: bool) -> Raw {
        Raw {
            seg: pb::Segment { id, qualified_name: format!("a/b/{id}.#epoch.0"), key_high: 1.0, ..Default::default() },
            endpoint: "http://store".into(),
            info: SegmentInfo {
                start_offset: start,
                length,
                sealed,
                writers: writers
                    .iter()
                    .enumerate()
                    .map(|(i, n)| WriterState { writer_id: format!("w{i}"), last_event_number: *n })
                    .collect(),
                ..Default::default()
            },
        }
    }

    #[test]
    fn rates_are_the_difference_of_two_samples_over_the_time_between() {
        let info = pb::StreamInfo { state: pb::StreamState::Active as i32, ..Default::default() };
        let t0 = Instant::now();
        let prev: Previous = (t0, HashMap::from([(0, (1_000, 10))]));
        // Segment 0 grew by 2,000 bytes and 20 events in 2 s; segment 1 is new; 2 is sealed.
        let now = [raw(0, 100, 3_000, &[9, 19], false), raw(1, 0, 400, &[3], false), raw(2, 0, 0, &[-1], true)];
        let s = stream_stats("a", "b", &info, &now, t0 + Duration::from_secs(2), Some(&prev));
        let seg = &s.segments[0];
        assert_eq!((seg.head_offset, seg.length, seg.size_bytes, seg.writer_events), (100, 3_000, 2_900, 30));
        assert_eq!((seg.bytes_per_sec, seg.events_per_sec), (Some(1_000.0), Some(10.0)));
        assert_eq!((s.segments[1].bytes_per_sec, s.segments[1].events_per_sec), (Some(200.0), Some(2.0)));
        assert_eq!((s.segments[2].state, s.segments[2].writer_events), ("sealed", 0));
        assert_eq!((s.total.segments, s.total.open_segments, s.total.length), (3, 2, 3_400));
        assert_eq!((s.total.bytes_per_sec, s.total.events_per_sec), (Some(1_200.0), Some(12.0)));
        assert_eq!(s.state, "active");
        // Without a previous sample there are no rates.
        let first = stream_stats("a", "b", &info, &now, t0, None);
        assert_eq!((first.total.bytes_per_sec, first.interval_secs), (None, None));
        assert!(stream_table(&first).lines().count() == 5);
    }

    #[test]
    fn group_lag_is_tail_minus_position_and_unknown_tails_are_counted_apart() {
        let progress = |segment_id, offset, length: Option<u64>| pb::SegmentProgress {
            position: Some(pb::SegmentPosition { stream: "s".into(), segment_id, offset }),
            segment_length: length,
        };
        let g = pb::ReaderGroupInfo {
            scope: "a".into(),
            group: "g".into(),
            readers: vec![pb::ReaderInfo {
                reader_id: "r1".into(),
                segments: vec![progress(0, 10, Some(110)), progress(1, 5, None)],
                joined_at_ms: 0,
            }],
            unassigned: vec![progress(2, 0, Some(7))],
            ..Default::default()
        };
        let s = group_stats(&g);
        assert_eq!(s.readers[0].lag_bytes, 100);
        assert_eq!(s.readers[0].segments[1].lag_bytes, None);
        assert_eq!((s.lag_bytes, s.unknown_lag_segments), (107, 1));
        let table = group_table(&s);
        assert!(table.contains("lag 107 B (107 bytes), 1 segments of unknown length"), "{table}");
    }
}
