// The Nadi web console: a client of the admin API's /v1 endpoints only (the same calls,
// permissions and error bodies as curl or the CLI's HTTP twin), embedded in the binary.
//
// Invariants:
// - Text from the server (names, payload previews, error messages) reaches the page only as
//   text nodes (`h()` below, `textContent`), never as markup: nothing here parses HTML from a string.
// - Pages refresh by polling while they are shown and the tab is visible; a closed or hidden
//   console asks nothing. Each page render returns a `refresh` function; navigating away bumps
//   `generation`, and a stale answer is dropped.
// - Every action that changes something asks first in the confirmation dialog, saying the
//   HTTP call it will make.
import { historyPicture } from "./history.js";

const POLL_MS = 2000;
const TOKEN_KEY = "nadi-console-token";

// ---------------------------------------------------------------------------------------------
// Small helpers

/** An element with attributes (`on…` keys become listeners) and children (strings → text). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function bytes(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = Number(n);
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return (i === 0 ? String(Math.round(v)) : v.toFixed(1)) + " " + units[i];
}

function rate(n, unit) {
  if (n === null || n === undefined) return "—";
  return unit === "B" ? bytes(n) + "/s" : (n >= 100 ? Math.round(n) : n.toFixed(1)) + " ev/s";
}

function time(ms) {
  return ms ? new Date(Number(ms)).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "—";
}

const enc = encodeURIComponent;
const streamPath = (scope, stream) => `/v1/scopes/${enc(scope)}/streams/${enc(stream)}`;
const groupPath = (scope, group) => `/v1/scopes/${enc(scope)}/reader-groups/${enc(group)}`;

class ApiError extends Error {
  constructor(status, code, message) {
    super(`${status} ${code || ""} ${message || ""}`.trim());
    this.status = status;
    this.code = code;
  }
}

/** One call of the admin API with this tab's token. */
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (r.status === 204) return null;
  const text = await r.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = null;
  }
  if (!r.ok) throw new ApiError(r.status, json && json.code, json ? json.message : text);
  return json === null ? text : json;
}

function setStatus(text, bad) {
  const s = document.getElementById("status");
  s.textContent = text;
  s.className = bad ? "status bad" : "status";
}

function errorBox(e) {
  const hint = e.status === 401 ? " — type a token above" : e.status === 403 ? " — the token lacks the permission" : "";
  return h("p", { class: "error" }, String(e.message || e) + hint);
}

/** The confirmation dialog: resolves true only on "Confirm". */
function confirmAction(title, text, detail) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-detail").textContent = detail || "";
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

/**
 * Runs `call` after confirmation; shows its error, or `done` and then goes to `then` (a page
 * hash, for an action that removes what the page shows) or refreshes the page. True if done.
 */
async function act(title, text, detail, call, done, then) {
  if (!(await confirmAction(title, text, detail))) return false;
  try {
    await call();
    setStatus(done || "done", false);
    if (then) location.hash = then;
    else if (current.refresh) current.refresh();
    return true;
  } catch (e) {
    setStatus(String(e.message || e), true);
    return false;
  }
}

function table(headers, rows, attrs = {}) {
  return h(
    "table",
    attrs,
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: headers.length, class: "muted" }, "none"))),
  );
}

function field(label, input) {
  return h("label", { class: "field" }, h("span", {}, label), input);
}

/** Rates from two samples of a counter: `prev` is {at, values: Map}. */
function rates(prev, at, values) {
  const out = new Map();
  if (!prev || at <= prev.at) return out;
  const secs = (at - prev.at) / 1000;
  for (const [k, v] of values) {
    if (prev.values.has(k)) out.set(k, Math.max(0, v - prev.values.get(k)) / secs);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Pages: each renders into `main` and returns its refresh function.

async function clusterPage(main) {
  main.replaceChildren(h("h1", {}, "Cluster"), h("div", { id: "cluster" }));
  return async () => {
    const c = await api("GET", "/v1/cluster");
    let term = "—";
    try {
      const m = await api("GET", "/metrics");
      const line = String(m).split("\n").find((l) => l.startsWith("nadi_raft_term "));
      if (line) term = line.split(" ")[1];
    } catch {
      // /metrics may need a token with read on the cluster; the term is then not shown.
    }
    const members = c.members.map((m) =>
      h(
        "tr",
        { "data-member": m.id },
        h("td", {}, String(m.id)),
        h("td", {}, m.id === c.leader_id ? h("span", { class: "badge ok" }, "leader") : "follower"),
        h("td", {}, m.grpc_address),
        h("td", {}, m.http_address),
      ),
    );
    const stores = c.segment_stores.map((s) =>
      h("tr", {}, h("td", {}, s.store_id), h("td", {}, s.endpoint)),
    );
    const containers = c.containers.map((k) =>
      h(
        "tr",
        {},
        h("td", {}, String(k.container)),
        h("td", {}, k.endpoint || h("span", { class: "badge bad" }, "unserved")),
        h("td", {}, k.store_id),
        h("td", {}, (k.replicas || []).join(", ") || "—"),
        h("td", {}, (k.voters || []).join(", ") || "—"),
        h("td", {}, k.term ? String(k.term) : "—"),
        h("td", {}, (k.lag || []).map((l) => `${l.store_id}: ${l.entries_behind} entries, ${bytes(l.bytes_behind)}`).join("; ") || "—"),
        h("td", {}, k.changing ? h("span", { class: "badge warn" }, "changing") : ""),
      ),
    );
    document.getElementById("cluster").replaceChildren(
      h("h2", {}, "Controllers"),
      h("p", {}, `Leader: ${c.leader_id || "none"} · term (this node): ${term} · replication factor: ${c.replication_factor || 1}`),
      table(["id", "role", "gRPC", "HTTP"], members, { id: "members" }),
      h("h2", {}, "Segment stores"),
      table(["store id", "endpoint"], stores, { id: "stores" }),
      h("h2", {}, "Containers"),
      table(["container", "served by", "store id", "replicas", "voters", "term", "follower lag", ""], containers, { id: "containers" }),
    );
  };
}

/** Every stream of every scope: scope → [names]. */
async function allStreams() {
  const scopes = (await api("GET", "/v1/scopes")).scopes;
  const out = [];
  for (const scope of scopes) {
    const streams = (await api("GET", `/v1/scopes/${enc(scope)}/streams`)).streams;
    out.push({ scope, streams });
  }
  return out;
}

/** Reader positions summed per stream (`scope/stream` → bytes read), over every group. */
async function positionsByStream(scopes) {
  const out = new Map();
  for (const scope of scopes) {
    const groups = (await api("GET", `/v1/scopes/${enc(scope)}/reader-groups`)).groups;
    for (const g of groups) {
      const v = await api("GET", groupPath(scope, g));
      const add = (p) => {
        const k = `${scope}/${p.stream}#${g}`;
        out.set(k, (out.get(k) || 0) + p.offset);
      };
      v.readers.forEach((r) => r.segments.forEach(add));
      v.unassigned.forEach(add);
    }
  }
  return out;
}

async function streamsPage(main) {
  let prev = null;
  let prevRead = null;
  const list = h("div", { id: "streams" });
  const scopeInput = h("input", { id: "new-scope-name", placeholder: "scope", required: true });
  const newScope = h(
    "form",
    {
      class: "inline",
      onsubmit: async (e) => {
        e.preventDefault();
        const scope = scopeInput.value.trim();
        await act("Create scope", `Create scope ${scope}?`, `POST /v1/scopes {"scope": ${JSON.stringify(scope)}}`, () =>
          api("POST", "/v1/scopes", { scope }),
        );
      },
    },
    field("New scope", scopeInput),
    h("button", { type: "submit", id: "new-scope-create" }, "Create scope"),
  );
  const sScope = h("select", { id: "new-stream-scope" });
  const sName = h("input", { id: "new-stream-name", placeholder: "stream", required: true });
  const sSegments = h("input", { id: "new-stream-segments", type: "number", min: 1, max: 1024, value: 1 });
  const sScaling = h("input", { id: "new-stream-scaling", placeholder: "fixed | events:RATE,FACTOR,MIN | bytes:…" });
  const sRetention = h("input", { id: "new-stream-retention", placeholder: "none | time:1h | size:512MiB" });
  const newStream = h(
    "form",
    {
      class: "inline",
      onsubmit: async (e) => {
        e.preventDefault();
        const body = { stream: sName.value.trim(), segments: Number(sSegments.value) || 1 };
        if (sScaling.value.trim()) body.scaling = sScaling.value.trim();
        if (sRetention.value.trim()) body.retention = sRetention.value.trim();
        const path = `/v1/scopes/${enc(sScope.value)}/streams`;
        await act("Create stream", `Create stream ${sScope.value}/${body.stream}?`, `POST ${path} ${JSON.stringify(body)}`, () =>
          api("POST", path, body),
        "stream created");
      },
    },
    field("Scope", sScope),
    field("New stream", sName),
    field("Segments", sSegments),
    field("Scaling", sScaling),
    field("Retention", sRetention),
    h("button", { type: "submit", id: "new-stream-create" }, "Create stream"),
  );
  main.replaceChildren(h("h1", {}, "Scopes and streams"), list, h("h2", {}, "Create"), newScope, newStream);
  return async () => {
    const scopes = await allStreams();
    const chosen = sScope.value;
    sScope.replaceChildren(...scopes.map((s) => h("option", { value: s.scope, selected: s.scope === chosen }, s.scope)));
    const at = Date.now();
    const rows = [];
    const lengths = new Map();
    const events = new Map();
    const info = [];
    for (const { scope, streams } of scopes) {
      for (const stream of streams) {
        const key = `${scope}/${stream}`;
        try {
          const [v, st] = await Promise.all([api("GET", streamPath(scope, stream)), api("GET", streamPath(scope, stream) + "/stats")]);
          lengths.set(key, st.totals.length);
          events.set(key, st.totals.event_count);
          info.push({ scope, stream, key, v, st });
        } catch (e) {
          info.push({ scope, stream, key, error: e });
        }
      }
    }
    let read = new Map();
    try {
      read = await positionsByStream(scopes.map((s) => s.scope));
    } catch {
      // Without permission on the groups the "out" rate is not shown.
    }
    const byteRates = rates(prev && { at: prev.at, values: prev.lengths }, at, lengths);
    const eventRates = rates(prev && { at: prev.at, values: prev.events }, at, events);
    const readRates = rates(prevRead, at, read);
    prev = { at, lengths, events };
    prevRead = { at, values: read };
    for (const x of info) {
      const link = h("a", { href: `#/stream/${enc(x.scope)}/${enc(x.stream)}` }, x.stream);
      if (x.error) {
        rows.push(h("tr", { "data-stream": x.key }, h("td", {}, x.scope), h("td", {}, link), h("td", { colspan: 8, class: "error" }, x.error.message)));
        continue;
      }
      let out = null;
      for (const [k, r] of readRates) if (k.startsWith(x.key + "#")) out = (out || 0) + r;
      rows.push(
        h(
          "tr",
          { "data-stream": x.key },
          h("td", {}, x.scope),
          h("td", {}, link),
          h("td", {}, h("span", { class: `badge ${x.v.state === "active" ? "ok" : "warn"}` }, x.v.state)),
          h("td", {}, x.v.policy.scaling),
          h("td", {}, x.v.policy.retention),
          h("td", { class: "num" }, String(x.v.segments.length)),
          h("td", { class: "num" }, rate(byteRates.get(x.key), "B"), h("br"), rate(eventRates.get(x.key), "ev")),
          h("td", { class: "num" }, rate(out, "B")),
          h("td", { class: "num" }, bytes(x.st.totals.tier1_bytes)),
          h("td", { class: "num" }, bytes(x.st.totals.tier2_bytes)),
        ),
      );
    }
    list.replaceChildren(
      table(["scope", "stream", "state", "scaling", "retention", "segments", "in", "out (groups)", "Tier-1", "Tier-2"], rows, {
        id: "stream-table",
      }),
      scopes.length ? "" : h("p", { class: "muted" }, "No scopes yet: create one below."),
    );
  };
}

/** A stream's page: key space over time, segments, retention and truncation, tail, actions. */
async function streamPage(main, scope, stream) {
  const path = streamPath(scope, stream);
  let prev = null;
  const parts = {
    head: h("div", { id: "stream-head" }),
    picture: h("div", { id: "history", class: "picture" }),
    segments: h("div", { id: "segments" }),
    retention: h("div", { id: "retention" }),
    tail: h("div", { id: "tail" }),
    actions: h("div", { id: "actions" }),
  };
  main.replaceChildren(
    h("h1", {}, h("a", { href: "#/streams" }, scope), " / ", stream),
    parts.head,
    h("h2", {}, "Key space over time"),
    h("p", { class: "muted" }, "Key space upwards, time to the right; the darker a segment, the more bytes per second it takes (active: now; sealed: its mean)."),
    parts.picture,
    h("h2", {}, "Segments"),
    parts.segments,
    h("h2", {}, "Retention and truncation"),
    parts.retention,
    h("h2", {}, "Latest events"),
    parts.tail,
    h("h2", {}, "Actions"),
    parts.actions,
  );
  let stream_view = null;
  let tail = null;
  parts.actions.replaceChildren(streamActions(scope, stream, () => stream_view));
  return async () => {
    const [v, hist, stats, headCut] = await Promise.all([
      api("GET", path),
      api("GET", path + "/history"),
      api("GET", path + "/stats").catch((error) => ({ error })),
      api("GET", path + "/cut?at=head"),
    ]);
    stream_view = v;
    // The stores' figures need read on the cluster too: a token that may read only the
    // stream still sees the rest of the page.
    if (stats.error && stats.error.status !== 403) throw stats.error;
    const st = stats.error ? { epoch: v.epoch, sampled_at_ms: Date.now(), segments: [], totals: null } : stats;
    // The tail is read again only when the stream grew or its segments changed.
    const tailKey = st.totals ? `${st.epoch}:${st.totals.length}:${st.totals.size_bytes}` : String(Date.now());
    if (!tail || tail.key !== tailKey) {
      tail = { key: tailKey, evs: await api("GET", path + "/events?limit=10&preview=256") };
    }
    const evs = tail.evs;
    const lengths = new Map(st.segments.map((s) => [s.id, s.length]));
    const counts = new Map(st.segments.map((s) => [s.id, s.event_count]));
    const byteRates = rates(prev && { at: prev.at, values: prev.lengths }, st.sampled_at_ms, lengths);
    const eventRates = rates(prev && { at: prev.at, values: prev.counts }, st.sampled_at_ms, counts);
    prev = { at: st.sampled_at_ms, lengths, counts };
    parts.head.replaceChildren(
      h(
        "p",
        {},
        h("span", { class: `badge ${v.state === "active" ? "ok" : "warn"}`, id: "stream-state" }, v.state),
        ` epoch ${v.epoch} · scaling ${v.policy.scaling} · retention ${v.policy.retention} · created ${time(v.created_at_ms)} · `,
        st.totals
          ? `${st.totals.open_segments} open of ${st.totals.segments} segments · ${bytes(st.totals.size_bytes)} readable · ` +
              `Tier-1 ${bytes(st.totals.tier1_bytes)} · Tier-2 ${bytes(st.totals.tier2_bytes)}`
          : `${v.segments.length} open segments`,
      ),
    );
    parts.picture.replaceChildren(historyPicture(hist, st, byteRates));
    const open = new Set(v.segments.map((s) => s.id));
    const rows = st.segments
      .slice()
      .sort((a, b) => (open.has(b.id) - open.has(a.id)) || a.key_range[0] - b.key_range[0] || a.id - b.id)
      .map((s) =>
        h(
          "tr",
          { "data-segment": s.id, "data-state": s.state },
          h("td", { class: "num" }, String(s.id)),
          h("td", { class: "num" }, `${s.number}`),
          h("td", { class: "num" }, `${s.epoch}`),
          h("td", {}, `[${s.key_range[0].toFixed(3)}, ${s.key_range[1].toFixed(3)})`),
          h("td", {}, h("span", { class: `badge ${s.state === "open" ? "ok" : "muted"}` }, s.state)),
          h("td", { class: "num" }, String(s.head_offset)),
          h("td", { class: "num" }, String(s.length)),
          h("td", { class: "num" }, String(s.event_count)),
          h("td", { class: "num" }, rate(byteRates.get(s.id), "B")),
          h("td", { class: "num" }, rate(eventRates.get(s.id), "ev")),
          h("td", { class: "num" }, bytes(s.tier1_bytes)),
          h("td", { class: "num" }, bytes(s.tier2_bytes)),
          h("td", {}, s.endpoint),
        ),
      );
    parts.segments.replaceChildren(
      stats.error ? errorBox(stats.error) : "",
      table(["id", "number", "epoch", "key range", "state", "head", "length", "events", "bytes in", "events in", "Tier-1", "Tier-2", "store"], rows, {
        id: "segment-table",
      }),
    );
    parts.retention.replaceChildren(
      h("p", {}, `Retention policy: ${v.policy.retention}. Head (truncation point), segment:offset:`),
      h("p", { class: "mono", id: "head-cut" }, headCut.cut.map((c) => `${c.segment_id}:${c.offset}`).join(", ") || "—"),
    );
    parts.tail.replaceChildren(tailTable(evs));
  };
}

/** Hex of the first bytes of a payload, for previews that are not UTF-8. */
function hex(b64) {
  const bin = atob(b64);
  const out = [];
  for (let i = 0; i < bin.length && i < 64; i++) out.push(bin.charCodeAt(i).toString(16).padStart(2, "0"));
  return out.join(" ") + (bin.length > 64 ? " …" : "");
}

function tailTable(evs) {
  const rows = evs.events.map((e) => {
    const text = e.preview_utf8 !== null && e.preview_utf8 !== undefined;
    return h(
      "tr",
      { "data-offset": e.offset },
      h("td", { class: "num" }, String(e.segment_id)),
      h("td", { class: "num" }, String(e.offset)),
      h("td", { class: "num" }, String(e.size)),
      h("td", {}, h("span", { class: `badge ${text ? "muted" : "warn"}` }, text ? "text" : "binary")),
      h("td", { class: text ? "preview" : "preview mono" }, text ? e.preview_utf8 : hex(e.preview_base64), e.truncated ? " …" : ""),
    );
  });
  return table(["segment", "offset", "size", "kind", "payload (preview)"], rows, { id: "tail-table" });
}

function streamActions(scope, stream, view) {
  const path = streamPath(scope, stream);
  const scaling = h("input", { id: "policy-scaling", placeholder: "fixed | events:100,2,1 | bytes:1024,2,1" });
  const retention = h("input", { id: "policy-retention", placeholder: "none | time:1h | size:512MiB" });
  const split = h("input", { id: "scale-split", placeholder: "segment id to split" });
  const into = h("input", { id: "scale-into", type: "number", min: 2, value: 2 });
  const merge = h("input", { id: "scale-merge", placeholder: "adjacent ids, comma-separated" });
  const cutAt = h("input", { id: "truncate-at", placeholder: "tail | RFC 3339 time | ms", value: "tail" });
  return h(
    "div",
    { class: "actions" },
    h(
      "form",
      {
        class: "inline",
        onsubmit: async (e) => {
          e.preventDefault();
          const body = {};
          if (scaling.value.trim()) body.scaling = scaling.value.trim();
          if (retention.value.trim()) body.retention = retention.value.trim();
          await act("Update policy", `Change the policies of ${scope}/${stream}?`, `PATCH ${path} ${JSON.stringify(body)}`, () =>
            api("PATCH", path, body),
          );
        },
      },
      field("Scaling", scaling),
      field("Retention", retention),
      h("button", { type: "submit", id: "policy-update" }, "Update policy"),
    ),
    h(
      "form",
      {
        class: "inline",
        onsubmit: async (e) => {
          e.preventDefault();
          let body;
          if (merge.value.trim()) body = { merge: merge.value.split(",").map((x) => Number(x.trim())) };
          else body = { split: Number(split.value.trim()), into: Number(into.value) || 2 };
          await act("Scale", `Scale ${scope}/${stream}?`, `POST ${path}/scale ${JSON.stringify(body)}`, () =>
            api("POST", path + "/scale", body),
          );
        },
      },
      field("Split", split),
      field("into", into),
      field("or merge", merge),
      h("button", { type: "submit", id: "scale-go" }, "Scale"),
    ),
    h(
      "form",
      {
        class: "inline",
        onsubmit: async (e) => {
          e.preventDefault();
          try {
            const cut = await api("GET", `${path}/cut?at=${enc(cutAt.value.trim() || "tail")}`);
            const body = { cut: cut.cut };
            await act(
              "Truncate",
              `Truncate ${scope}/${stream} at this cut? Everything before it is deleted.`,
              `POST ${path}/truncate ${JSON.stringify(body)}`,
              () => api("POST", path + "/truncate", body),
            );
          } catch (err) {
            setStatus(String(err.message || err), true);
          }
        },
      },
      field("Truncate at the cut at", cutAt),
      h("button", { type: "submit", id: "truncate-go", class: "danger" }, "Truncate"),
    ),
    h(
      "div",
      { class: "inline" },
      h(
        "button",
        {
          id: "seal-go",
          class: "danger",
          onclick: () =>
            act("Seal", `Seal ${scope}/${stream}? No more writes.`, `POST ${path}/seal`, () => api("POST", path + "/seal")),
        },
        "Seal stream",
      ),
      h(
        "button",
        {
          id: "delete-go",
          class: "danger",
          onclick: async () => {
            const v = view();
            const note = v && v.state !== "sealed" ? " (only a sealed stream can be deleted)" : "";
            await act(
              "Delete",
              `Delete ${scope}/${stream} and all its data?${note}`,
              `DELETE ${path}`,
              () => api("DELETE", path),
              "stream deleted",
              "#/streams",
            );
          },
        },
        "Delete stream",
      ),
    ),
  );
}

async function groupsPage(main) {
  const list = h("div", { id: "groups" });
  main.replaceChildren(h("h1", {}, "Reader groups"), list);
  return async () => {
    const scopes = (await api("GET", "/v1/scopes")).scopes;
    const rows = [];
    for (const scope of scopes) {
      const groups = (await api("GET", `/v1/scopes/${enc(scope)}/reader-groups`)).groups;
      for (const g of groups) {
        const v = await api("GET", groupPath(scope, g));
        rows.push(
          h(
            "tr",
            { "data-group": `${scope}/${g}` },
            h("td", {}, scope),
            h("td", {}, h("a", { href: `#/group/${enc(scope)}/${enc(g)}` }, g)),
            h("td", {}, v.streams.join(", ")),
            h("td", { class: "num" }, String(v.readers.length)),
            h("td", { class: "num lag" }, bytes(v.lag)),
            h("td", {}, v.subscriber ? "subscriber" : ""),
          ),
        );
      }
    }
    list.replaceChildren(table(["scope", "group", "streams", "readers", "lag", ""], rows, { id: "group-table" }));
  };
}

async function groupPage(main, scope, group) {
  const path = groupPath(scope, group);
  let prev = null;
  const body = h("div", { id: "group" });
  const cpName = h("input", { id: "checkpoint-name", placeholder: "checkpoint name" });
  main.replaceChildren(
    h("h1", {}, h("a", { href: "#/groups" }, scope), " / ", group),
    body,
    h("h2", {}, "Actions"),
    h(
      "form",
      {
        class: "inline",
        onsubmit: async (e) => {
          e.preventDefault();
          const b = { name: cpName.value.trim() };
          await act("Checkpoint", `Start checkpoint ${b.name}?`, `POST ${path}/checkpoints ${JSON.stringify(b)}`, () =>
            api("POST", path + "/checkpoints", b),
          );
        },
      },
      field("Checkpoint", cpName),
      h("button", { type: "submit", id: "checkpoint-go" }, "Start checkpoint"),
      h(
        "button",
        {
          type: "button",
          id: "group-delete",
          class: "danger",
          onclick: async () => {
            await act("Delete group", `Delete reader group ${scope}/${group}?`, `DELETE ${path}`, () => api("DELETE", path), "group deleted", "#/groups");
          },
        },
        "Delete group",
      ),
    ),
  );
  const segRow = (p, rateOf) =>
    h(
      "tr",
      {},
      h("td", {}, `${p.stream}/${p.segment_id}`),
      h("td", { class: "num" }, String(p.offset)),
      h("td", { class: "num" }, p.length === null || p.length === undefined ? "—" : String(p.length)),
      h("td", { class: "num" }, p.lag === null || p.lag === undefined ? "—" : bytes(p.lag)),
      h("td", { class: "num" }, rate(rateOf(p), "B")),
    );
  return async () => {
    const v = await api("GET", path);
    const at = Date.now();
    const offsets = new Map();
    v.readers.forEach((r) => r.segments.forEach((p) => offsets.set(`${p.stream}/${p.segment_id}`, p.offset)));
    v.unassigned.forEach((p) => offsets.set(`${p.stream}/${p.segment_id}`, p.offset));
    const readRates = rates(prev, at, offsets);
    prev = { at, values: offsets };
    const rateOf = (p) => readRates.get(`${p.stream}/${p.segment_id}`);
    const readers = v.readers.map((r) => {
      const lag = r.segments.reduce((a, p) => a + (p.lag || 0), 0);
      return h(
        "div",
        { class: "reader", "data-reader": r.reader_id },
        h(
          "h3",
          {},
          `Reader ${r.reader_id} · joined ${time(r.joined_at_ms)} · lag `,
          h("span", { class: "lag" }, bytes(lag)),
          " ",
          h(
            "button",
            {
              class: "small danger",
              onclick: () =>
                act(
                  "Reader offline",
                  `Declare reader ${r.reader_id} offline? Its segments go back at its last synced positions.`,
                  `POST ${path}/readers/${enc(r.reader_id)}/offline`,
                  () => api("POST", `${path}/readers/${enc(r.reader_id)}/offline`),
                ),
            },
            "offline",
          ),
        ),
        table(["segment", "position", "tail", "lag", "read rate"], r.segments.map((p) => segRow(p, rateOf))),
      );
    });
    body.replaceChildren(
      h(
        "p",
        {},
        `Streams: ${v.streams.join(", ")} · generation ${v.generation} · created ${time(v.created_at_ms)} · total lag `,
        h("strong", { id: "group-lag", "data-bytes": v.lag }, bytes(v.lag)),
        v.subscriber ? " · subscriber" : "",
      ),
      h("h2", {}, `Readers (${v.readers.length})`),
      readers.length ? readers : h("p", { class: "muted" }, "No reader has joined."),
      h("h2", {}, "Unassigned segments"),
      table(["segment", "position", "tail", "lag", "read rate"], v.unassigned.map((p) => segRow(p, rateOf)), { id: "unassigned" }),
      h("h2", {}, "Checkpoints"),
      h(
        "p",
        { id: "checkpoints" },
        v.checkpoints.length ? `Complete: ${v.checkpoints.join(", ")}` : "No completed checkpoint.",
        v.pending_checkpoint ? ` · pending: ${v.pending_checkpoint}, waiting for ${v.checkpoint_waiting_for.join(", ")}` : "",
      ),
    );
  };
}

// ---------------------------------------------------------------------------------------------
// Routing and polling

const current = { generation: 0, refresh: null, timer: null };

async function route() {
  const generation = ++current.generation;
  clearTimeout(current.timer);
  current.refresh = null;
  const main = document.getElementById("main");
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  let page = "cluster";
  let refresh;
  if (parts[0] === "streams") {
    page = "streams";
    refresh = await streamsPage(main);
  } else if (parts[0] === "stream" && parts.length === 3) {
    page = "streams";
    refresh = await streamPage(main, parts[1], parts[2]);
  } else if (parts[0] === "groups") {
    page = "groups";
    refresh = await groupsPage(main);
  } else if (parts[0] === "group" && parts.length === 3) {
    page = "groups";
    refresh = await groupPage(main, parts[1], parts[2]);
  } else {
    refresh = await clusterPage(main);
  }
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.nav === page));
  const errors = h("div", { id: "page-error" });
  main.prepend(errors);
  const tick = async () => {
    if (generation !== current.generation) return;
    if (!document.hidden) {
      try {
        await refresh();
        if (generation !== current.generation) return;
        errors.replaceChildren();
        setStatus(`updated ${new Date().toLocaleTimeString()}`, false);
        document.body.dataset.loaded = String(generation);
        document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
      } catch (e) {
        if (generation !== current.generation) return;
        errors.replaceChildren(errorBox(e));
        setStatus("error", true);
      }
    }
    if (generation === current.generation) current.timer = setTimeout(tick, POLL_MS);
  };
  current.refresh = () => {
    clearTimeout(current.timer);
    tick();
  };
  tick();
}

function start() {
  const input = document.getElementById("token");
  input.value = sessionStorage.getItem(TOKEN_KEY) || "";
  document.getElementById("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (input.value) sessionStorage.setItem(TOKEN_KEY, input.value);
    else sessionStorage.removeItem(TOKEN_KEY);
    if (current.refresh) current.refresh();
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && current.refresh) current.refresh();
  });
  window.addEventListener("hashchange", route);
  route();
}

start();
