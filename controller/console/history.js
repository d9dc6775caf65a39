// The key space of a stream over time, drawn in the browser from `GET …/history` (epochs and
// their segments) and `GET …/stats` (lengths): key space upwards, time to the right, one
// rectangle per segment from its creation to the epoch that replaced it (or now), shaded by
// load. Like controller/src/history_svg.rs, but live and with load: an active segment's
// shade is its append rate between the last two samples, a sealed one's its mean rate over
// its life (bytes / lifetime). Only text nodes carry server strings (in <title> tooltips).

const NS = "http://www.w3.org/2000/svg";
const W = 960;
const H = 260;
const M = { left: 40, right: 10, top: 10, bottom: 28 };

function el(tag, attrs, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function fmtBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return (i ? n.toFixed(1) : Math.round(n)) + " " + units[i];
}

/** Each segment's life `[start, end)` in ms and whether it is still active. */
export function lifetimes(hist, now) {
  const out = new Map();
  const epochs = hist.epochs;
  epochs.forEach((e, i) => {
    for (const s of e.segments) {
      if (out.has(s.id)) continue;
      let end = null;
      for (let j = i + 1; j < epochs.length; j++) {
        if (!epochs[j].segments.some((x) => x.id === s.id)) {
          end = epochs[j].created_at_ms;
          break;
        }
      }
      out.set(s.id, { seg: s, start: s.created_at_ms || e.created_at_ms, end: end === null ? now : end, active: end === null });
    }
  });
  return out;
}

/** The picture: an <svg> element. `rates` maps active segment ids to bytes per second. */
export function historyPicture(hist, stats, rates) {
  const now = stats.sampled_at_ms || Date.now();
  const lives = lifetimes(hist, now);
  const lengths = new Map(stats.segments.map((s) => [s.id, s.length]));
  const t0 = Math.min(...[...lives.values()].map((l) => l.start), now - 1000);
  const span = Math.max(now - t0, 1000);
  const x = (t) => M.left + ((t - t0) / span) * (W - M.left - M.right);
  const y = (k) => M.top + (1 - k) * (H - M.top - M.bottom);
  const load = new Map();
  for (const [id, l] of lives) {
    let r = l.active ? rates.get(id) : undefined;
    if (r === undefined && lengths.has(id)) r = lengths.get(id) / Math.max((l.end - l.start) / 1000, 1);
    load.set(id, r === undefined ? null : r);
  }
  const max = Math.max(1, ...[...load.values()].filter((v) => v !== null));
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, class: "history", role: "img", "aria-label": "key space over time" });
  svg.append(el("rect", { x: M.left, y: M.top, width: W - M.left - M.right, height: H - M.top - M.bottom, class: "frame" }));
  for (const [id, l] of lives) {
    const [lo, hi] = l.seg.key_range;
    const r = load.get(id);
    const shade = r === null ? 0.08 : 0.12 + 0.78 * Math.sqrt(r / max);
    const g = el("g", { "data-segment": id, class: l.active ? "seg active" : "seg sealed" });
    const rx = x(l.start);
    const rw = Math.max(x(l.end) - rx, 1);
    const rect = el("rect", { x: rx, y: y(hi), width: rw, height: Math.max(y(lo) - y(hi), 1), "fill-opacity": shade.toFixed(3) });
    rect.append(
      el(
        "title",
        {},
        `segment ${id} (number ${l.seg.number}, epoch ${l.seg.epoch}) [${lo.toFixed(3)}, ${hi.toFixed(3)}) ` +
          `${l.active ? "active" : "sealed"}; ${r === null ? "no load figure" : fmtBytes(r) + "/s" + (l.active ? "" : " mean")}`,
      ),
    );
    g.append(rect);
    if (rw > 24 && y(lo) - y(hi) > 14) {
      g.append(el("text", { x: rx + 4, y: (y(lo) + y(hi)) / 2 + 4, class: "label" }, String(l.seg.number)));
    }
    svg.append(g);
  }
  for (const k of [0, 0.5, 1]) svg.append(el("text", { x: M.left - 6, y: y(k) + 4, class: "axis end" }, k.toFixed(1)));
  const when = (t) => new Date(t).toISOString().slice(11, 19) + "Z";
  svg.append(el("text", { x: M.left, y: H - 8, class: "axis" }, when(t0)));
  svg.append(el("text", { x: W - M.right, y: H - 8, class: "axis end" }, `${when(now)} (now)`));
  for (const e of hist.epochs.slice(1)) {
    svg.append(el("line", { x1: x(e.created_at_ms), x2: x(e.created_at_ms), y1: M.top, y2: H - M.bottom, class: "epoch" }));
  }
  return svg;
}
