//! A stream's history as a picture: its segments over time, like Pravega's scaling figures.
//! Time runs left to right, the routing-key space bottom (0) to top (1); each segment is a
//! box from its creation until it was sealed (or now), coloured by why it was created.
//! Served at `GET /v1/scopes/{scope}/streams/{stream}/history.svg`.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::views::HistoryView;

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 480.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 64.0;
const BOTTOM: f64 = 56.0;

/// Colour of segments created for each reason.
const REASONS: [(&str, &str); 5] = [
    ("created", "#4e79a7"),
    ("manual", "#f28e2b"),
    ("split-by-load", "#e15759"),
    ("merge-by-load", "#59a14f"),
    ("txn-commit", "#b07aa1"),
];

fn colour(reason: &str) -> &'static str {
    REASONS.iter().find(|(r, _)| *r == reason).map_or("#9c9c9c", |(_, c)| c)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// "+90s", "+12m", "+3h" after the stream's creation.
fn elapsed(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..120 => format!("+{s}s"),
        120..7200 => format!("+{}m", s / 60),
        _ => format!("+{}h", s / 3600),
    }
}

struct Box_ {
    number: u32,
    name: String,
    low: f64,
    high: f64,
    from_ms: u64,
    to_ms: u64,
    reason: String,
    state: String,
}

/// Renders `h` as an SVG document; `now_ms` ends the boxes of segments still active.
pub fn render(h: &HistoryView, now_ms: u64) -> String {
    // Each segment's life: from the epoch that created it to the first epoch without it.
    let mut boxes: BTreeMap<u64, Box_> = BTreeMap::new();
    for (i, e) in h.epochs.iter().enumerate() {
        let end = h.epochs.get(i + 1).map_or(now_ms.max(e.created_at_ms), |n| n.created_at_ms);
        for s in &e.segments {
            let b = boxes.entry(s.id).or_insert_with(|| Box_ {
                number: s.number,
                name: s.name.clone(),
                low: s.key_range[0],
                high: s.key_range[1],
                from_ms: e.created_at_ms,
                to_ms: end,
                reason: e.reason.clone(),
                state: s.state.clone(),
            });
            b.to_ms = end;
        }
    }
    let t0 = h.epochs.first().map_or(now_ms, |e| e.created_at_ms);
    let t1 = boxes.values().map(|b| b.to_ms).max().unwrap_or(now_ms).max(t0 + 1);
    let (pw, ph) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let x = |t: u64| LEFT + pw * (t.saturating_sub(t0)) as f64 / (t1 - t0) as f64;
    let y = |k: f64| TOP + ph * (1.0 - k);

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let title = format!("{}/{}", h.scope, h.stream);
    let _ = write!(
        svg,
        r#"<title>{}: segments over time</title><rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="22" font-size="16" font-weight="bold">{}</text>"#,
        escape(&title),
        escape(&title)
    );
    // Legend.
    let mut lx = LEFT;
    for (reason, c) in REASONS {
        let _ = write!(
            svg,
            r#"<rect x="{lx}" y="34" width="12" height="12" fill="{c}"/><text x="{}" y="44">{reason}</text>"#,
            lx + 16.0
        );
        lx += 30.0 + 6.6 * reason.len() as f64;
    }
    for b in boxes.values() {
        let (bx, by) = (x(b.from_ms), y(b.high));
        let (bw, bh) = ((x(b.to_ms) - bx).max(1.0), (y(b.low) - by).max(1.0));
        let opacity = if b.state == "active" { "1" } else { "0.75" };
        let _ = write!(
            svg,
            r#"<rect x="{bx:.1}" y="{by:.1}" width="{bw:.1}" height="{bh:.1}" fill="{}" fill-opacity="{opacity}" stroke="white" stroke-width="1"><title>segment {} ({}) keys [{:.6}, {:.6}) {} {} → {}, {}</title></rect>"#,
            colour(&b.reason),
            b.number,
            escape(&b.name),
            b.low,
            b.high,
            b.reason,
            elapsed(b.from_ms - t0),
            elapsed(b.to_ms - t0),
            b.state
        );
        if bw > 22.0 && bh > 14.0 {
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" fill="white" text-anchor="middle">{}</text>"#,
                bx + bw / 2.0,
                by + bh / 2.0 + 4.0,
                b.number
            );
        }
    }
    // Axes: key space on the left, time below.
    let _ = write!(
        svg,
        r#"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{}" stroke="black"/><line x1="{LEFT}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#,
        TOP + ph,
        TOP + ph,
        LEFT + pw,
        TOP + ph
    );
    for k in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let _ = write!(svg, r#"<text x="{}" y="{:.1}" text-anchor="end">{k}</text>"#, LEFT - 6.0, y(k) + 4.0);
    }
    for i in 0..=5u64 {
        let t = t0 + (t1 - t0) * i / 5;
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            x(t),
            TOP + ph + 18.0,
            elapsed(t - t0)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">time since the stream was created ({}); key space 0 to 1 upwards</text>"#,
        LEFT + pw / 2.0,
        HEIGHT - 12.0,
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(t0))
    );
    // Held-back decisions: a mark on the time axis.
    for n in &h.notes {
        let nx = x(n.at_ms.clamp(t0, t1));
        let _ = write!(
            svg,
            r#"<path d="M{nx:.1} {} l-5 9 h10 z" fill="black"><title>{}</title></path>"#,
            TOP + ph + 1.0,
            escape(&n.text)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::{EpochView, ScalingNoteView, SegmentView};

    fn seg(id: u64, low: f64, high: f64, state: &str) -> SegmentView {
        SegmentView {
            id,
            number: id as u32,
            epoch: (id >> 32) as u32,
            name: format!("s/t/{id}"),
            key_range: [low, high],
            state: state.into(),
            created_at_ms: 0,
        }
    }

    #[test]
    fn one_box_per_segment_spanning_its_epochs() {
        let h = HistoryView {
            scope: "s".into(),
            stream: "t<&>".into(),
            epochs: vec![
                EpochView {
                    epoch: 0,
                    created_at_ms: 1_000,
                    reason: "created".into(),
                    segments: vec![seg(0, 0.0, 0.5, "sealed"), seg(1, 0.5, 1.0, "active")],
                },
                EpochView {
                    epoch: 1,
                    created_at_ms: 61_000,
                    reason: "split-by-load".into(),
                    segments: vec![
                        seg(2, 0.0, 0.25, "active"),
                        seg(3, 0.25, 0.5, "active"),
                        seg(1, 0.5, 1.0, "active"),
                    ],
                },
            ],
            notes: vec![ScalingNoteView { at_ms: 70_000, segment_id: 2, text: "capped <here>".into() }],
        };
        let svg = render(&h, 121_000);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        // Four segments, four boxes with tooltips (plus the legend's five squares).
        assert_eq!(svg.matches("<title>segment ").count(), 4);
        // Segment 0 lives from +0s to +60s (half the 880 px plot), keys 0 to 0.5 (the lower
        // half of the 360 px plot).
        assert!(svg.contains(r#"<rect x="56.0" y="244.0" width="440.0" height="180.0""#), "{svg}");
        assert!(svg.contains("segment 0 (s/t/0) keys [0.000000, 0.500000) created +0s → +60s, sealed"));
        // Segment 1 spans both epochs: one box to the end.
        assert!(svg.contains("segment 1 (s/t/1) keys [0.500000, 1.000000) created +0s → +2m, active"));
        assert!(svg.contains("segment 3 (s/t/3) keys [0.250000, 0.500000) split-by-load +60s → +2m"));
        assert!(svg.contains("capped &lt;here&gt;") && svg.contains("t&lt;&amp;&gt;"), "text is escaped");
    }
}
