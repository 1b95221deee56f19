// Weft dashboard: a hash router over the JSON API, tables built with the DOM (never
// innerHTML: names and identities come from the cluster) and the call graph as SVG.
"use strict";

const main = document.getElementById("main");
const REFRESH_MS = 5000;
let timer = null;

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}
function svgEl(tag, attrs, text) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
const pct = (v) => (v == null ? "-" : (100 * v).toFixed(2) + "%");
const ms = (v) => (v == null ? "-" : v < 10 ? v.toFixed(1) + "ms" : v.toFixed(0) + "ms");
const rps = (v) => v.toFixed(1);

async function getJSON(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function table(headers, rows) {
  const t = el("table");
  t.append(el("tr", {}, ...headers.map((h) => (h instanceof Node ? h : el("th", {}, h)))));
  for (const r of rows) t.append(el("tr", {}, ...r.map((c) => (c instanceof Node && c.tagName === "TD" ? c : el("td", {}, c)))));
  return t;
}
function link(href, text) { return el("a", { href }, text); }
function rate(v) { const td = el("td", {}, pct(v)); if (v != null && v < 0.95) td.className = "bad"; return td; }
// SOURCES names where a page's golden metrics come from (the API's source field).
const SOURCES = { prometheus: "from Prometheus", proxies: "from the proxies" };
function stamp(page) {
  const u = document.getElementById("updated");
  u.textContent = page.time ? "updated " + new Date(page.time).toLocaleTimeString() + (page.windowSeconds ? ", window " + page.windowSeconds.toFixed(1) + "s" : "") +
    (page.source ? ", " + (SOURCES[page.source] || page.source) : "") : "";
  u.dataset.source = page.source || "";
}
function errorLine(page) { return page.error ? el("p", { class: "error" }, "metrics: " + page.error) : ""; }

const GOLDEN = ["RPS", "Success", "P50", "P95", "P99", "mTLS"];
function golden(g) { return [rps(g.rps), rate(g.successRate), ms(g.p50Ms), ms(g.p95Ms), ms(g.p99Ms), pct(g.mtlsShare)]; }

async function namespacesPage() {
  const page = await getJSON("/api/namespaces");
  stamp(page);
  const rows = page.rows.map((r) => [link("#/ns/" + encodeURIComponent(r.name), r.name), r.meshed + "/" + r.pods, ...golden(r.inbound)]);
  return [el("h2", {}, "Namespaces"), errorLine(page), el("p", { class: "note" }, "Inbound golden metrics of each namespace's meshed pods."),
    table(["Namespace", "Meshed", ...GOLDEN], rows)];
}

async function workloadsPage(ns) {
  const page = await getJSON("/api/workloads?ns=" + encodeURIComponent(ns));
  stamp(page);
  const rows = page.rows.map((r) => {
    const tr = [r.name, r.meshed + "/" + r.pods, ...golden(r.inbound), rps(r.outbound.rps), rate(r.outbound.successRate)];
    return tr;
  });
  const t = table(["Workload", "Meshed", ...GOLDEN, "Out RPS", "Out success"], rows);
  t.id = "workloads";
  return [el("h2", {}, "Workloads of " + ns), errorLine(page),
    el("p", {}, link("#/graph/" + encodeURIComponent(ns), "call graph"), " · ", link("#/routes/" + encodeURIComponent(ns), "routes")),
    t];
}

// nodeOf names a graph node: a Service and the Deployment of the same name are drawn
// as one (the common convention), so that chains read left to right.
function nodeOf(id) { const p = id.split("/"); return p.length === 3 ? p[0] + "/" + p[2] : id; }

async function graphPage(ns) {
  const page = await getJSON("/api/edges" + (ns ? "?ns=" + encodeURIComponent(ns) : ""));
  stamp(page);
  // One arrow per pair of nodes: a caller's plaintext and mTLS series (and a Service's
  // several ports) add up.
  const byPair = new Map();
  for (const e of page.rows) {
    const a = nodeOf(e.from), b = nodeOf(e.to);
    if (a === b) continue;
    const k = a + "\n" + b;
    const m = byPair.get(k) || { a, b, rps: 0, from: e.from, to: e.to };
    m.rps += e.rps;
    byPair.set(k, m);
  }
  const edges = [...byPair.values()];
  const nodes = new Set();
  edges.forEach((e) => { nodes.add(e.a); nodes.add(e.b); });
  // Column = the longest chain of callers in front of a node (cycles cut at |nodes|).
  const depth = {};
  nodes.forEach((n) => (depth[n] = 0));
  for (let i = 0; i < nodes.size; i++) edges.forEach((e) => { if (depth[e.b] < depth[e.a] + 1 && depth[e.a] + 1 < nodes.size) depth[e.b] = depth[e.a] + 1; });
  const cols = {};
  [...nodes].sort().forEach((n) => (cols[depth[n]] = cols[depth[n]] || []).push(n));
  const W = 260, H = 70, BW = 170, BH = 34;
  const pos = {};
  let maxRows = 1, maxCol = 0;
  for (const [c, ns2] of Object.entries(cols)) { ns2.forEach((n, i) => (pos[n] = { x: 20 + c * W, y: 20 + i * H })); maxRows = Math.max(maxRows, ns2.length); maxCol = Math.max(maxCol, +c); }
  const svg = svgEl("svg", { id: "graph", width: 60 + (maxCol + 1) * W, height: 40 + maxRows * H, role: "img", "aria-label": "call graph" });
  const defs = svgEl("defs");
  const marker = svgEl("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 8, markerHeight: 8, orient: "auto" });
  marker.append(svgEl("path", { d: "M0,0 L10,5 L0,10 z", fill: "#5b7db1" }));
  defs.append(marker); svg.append(defs);
  edges.forEach((e) => {
    const a = pos[e.a], b = pos[e.b];
    const x1 = a.x + BW, y1 = a.y + BH / 2, x2 = b.x, y2 = b.y + BH / 2;
    const g = svgEl("g", { class: "edge", "data-from": e.a, "data-to": e.b });
    g.append(svgEl("path", { d: `M${x1},${y1} C${x1 + 30},${y1} ${x2 - 30},${y2} ${x2},${y2}`, "marker-end": "url(#arrow)" }));
    g.append(svgEl("text", { x: x1 + 6, y: y1 + (y2 > y1 ? 16 : -6) }, rps(e.rps) + " rps"));
    g.append(svgEl("title", {}, e.from + " → " + e.to + ": " + rps(e.rps) + " rps"));
    svg.append(g);
  });
  nodes.forEach((n) => {
    const p = pos[n];
    const g = svgEl("g", { class: "node", "data-node": n });
    g.append(svgEl("rect", { x: p.x, y: p.y, width: BW, height: BH, rx: 6 }));
    g.append(svgEl("text", { x: p.x + 8, y: p.y + 21 }, n));
    svg.append(g);
  });
  const rows = page.rows.map((e) => [e.from, el("td", { class: "l" }, e.to), el("td", { class: "l" }, e.serverId || "(no mTLS)"), ...golden(e)]);
  return [el("h2", {}, "Call graph" + (ns ? " of " + ns : "")), errorLine(page),
    nodes.size ? svg : el("p", { class: "note" }, "No calls seen in the last window."),
    el("h2", {}, "Edges"), table(["From", el("th", { class: "l" }, "To"), el("th", { class: "l" }, "Server identity"), ...GOLDEN], rows)];
}

async function routesPage(ns, svc) {
  const q = new URLSearchParams();
  if (ns) q.set("ns", ns);
  if (svc) q.set("svc", svc);
  const page = await getJSON("/api/routes?" + q);
  stamp(page);
  // Route series carry no tls label: no mTLS column here.
  const rows = page.rows.map((r) => [link("#/routes/" + r.service, r.service), el("td", { class: "l" }, r.route), ...golden(r).slice(0, 5)]);
  const t = table(["Service", el("th", { class: "l" }, "Route"), ...GOLDEN.slice(0, 5)], rows);
  t.id = "routes";
  return [el("h2", {}, "Routes" + (svc ? " of " + ns + "/" + svc : ns ? " in " + ns : "")), errorLine(page),
    el("p", { class: "note" }, "Per-route metrics as the callers' proxies measured them (ServiceProfile and HTTPRoute routes)."),
    rows.length ? t : el("p", { class: "note" }, "No route traffic in the last window.")];
}

function fmtDuration(s) {
  if (s < 0) return "expired";
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h > 0 ? h + "h" + m + "m" : m + "m";
}

async function healthPage() {
  const page = await getJSON("/api/health");
  stamp(page);
  const certs = page.certs.map((c) => {
    const td = el("td", {}, fmtDuration(c.expiresInSeconds));
    td.className = c.expiresInSeconds < 3600 ? "bad" : "good";
    return [c.namespace + "/" + c.pod, el("td", { class: "l" }, c.expires), td];
  });
  const objs = page.objects.map((o) => {
    const conds = o.conditions.length ? o.conditions.map((c) => c.type + "=" + c.status + (c.reason ? " (" + c.reason + ")" : "") + (c.message ? ": " + c.message : "")).join("; ") : "no conditions";
    const bad = o.conditions.some((c) => c.status !== "True" && /Ready|Accepted|Available|Valid/.test(c.type));
    return [o.kind, el("td", { class: "l" }, (o.namespace ? o.namespace + "/" : "") + o.name), el("td", { class: bad ? "l bad" : "l" }, conds)];
  });
  const ct = table(["Pod", el("th", { class: "l" }, "Certificate expires"), "In"], certs);
  ct.id = "certs";
  const ot = table(["Kind", el("th", { class: "l" }, "Name"), el("th", { class: "l" }, "Conditions")], objs);
  ot.id = "objects";
  return [el("h2", {}, "Proxy identity certificates"), ...page.errors.map((e) => el("p", { class: "error" }, e)), ct,
    el("h2", {}, "Mesh and policy resources"), ot];
}

// The live tap view: GET /api/tap/stream is Server-Sent Events, read with fetch (not
// EventSource) so a refusal's JSON message (not permitted, no such workload, too many
// taps) reaches the page. One row per request, updated as its events arrive; the
// newest TAP_ROWS rows are kept.
const TAP_ROWS = 200;
let tapAbort = null;
function stopTap() { if (tapAbort) { tapAbort.abort(); tapAbort = null; } }

// readSSE calls onEvent(name, data) for each event of the stream r until it ends.
async function readSSE(r, onEvent) {
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const frame = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let name = "message", data = "";
      for (const line of frame.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (data) onEvent(name, JSON.parse(data));
    }
    if (buf.length > 1 << 20) throw new Error("the stream sent an event over 1 MiB");
  }
}

const TAP_COLS = ["Time", "Dir", "From", "To", "Method", "Authority", "Path", "Status", "gRPC", "Latency", "Bytes", "Route", "TLS"];
// tapPeer is a side of a request: its pod (else its owner, else its address; the
// proxy's own pod when the proxy knows nothing of its side) over its identity; the rest
// is in the cell's title.
function tapPeer(p, self) {
  const name = p.pod || p.owner || (self ? self.split("/")[1] : p.address || "-");
  const td = el("td", { class: "l w p", title: [p.owner, p.address, p.identity].filter(Boolean).join("\n") }, name);
  td.append(el("span", { class: "ident" }, p.identity || "no identity"));
  return td;
}
function clock(t) {
  const d = new Date(t);
  return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}
// tapCells is a request's row; a request whose first event the rate bound dropped
// shows "-" (and "?" for TLS) where only that event would have told.
function tapCells(e) {
  const failed = e.status >= 500 || (e.grpcStatus != null && e.grpcStatus !== 0) || e.error;
  const status = el("td", {}, e.error ? e.error : e.status || "…");
  if (failed) status.className = "bad";
  const bytes = e.kind === "end" ? e.responseBytes || 0 : "";
  return [
    el("td", { class: "l" }, clock(e.time)), el("td", { class: "l" }, e.direction),
    tapPeer(e.source, e.direction === "out" ? e.proxy : ""), tapPeer(e.destination, e.direction === "in" ? e.proxy : ""),
    el("td", { class: "l" }, e.method || "-"), el("td", { class: "l w" }, e.authority || "-"), el("td", { class: "l w" }, e.path || "-"),
    status, el("td", {}, e.grpcStatus != null ? e.grpcStatus : ""), el("td", {}, e.latencyMs ? ms(e.latencyMs) : ""), el("td", {}, bytes),
    el("td", { class: "l w" }, e.route || ""), el("td", {}, e.method ? (e.tls ? "mTLS" : "plain") : "?"),
  ];
}

async function tapPage(ns, ...target) {
  stopTap();
  const t = await getJSON("/api/tap");
  stamp({});
  const head = [el("h2", {}, "Live tap")];
  if (!t.installed) return [...head, el("p", { id: "tap-status", class: "note" }, t.message)];
  const field = (name, label, value, placeholder) => el("label", {}, label, el("input", { name, value: value || "", placeholder, size: 18 }));
  const form = el("form", { id: "tap-form", class: "tapform" },
    field("ns", "Namespace", ns, "weft-demo"), field("target", "Workload", target.join("/"), "deploy/web"),
    field("path", "Path prefix", "", "/api"), field("method", "Method", "", "GET"),
    el("button", { type: "submit", id: "tap-start" }, "Start"), el("button", { type: "button", id: "tap-stop" }, "Stop"));
  const status = el("p", { id: "tap-status", class: "note" }, t.message);
  const tbody = el("tbody");
  const tbl = el("table", { id: "tap-events", class: "tap" }, el("thead", {}, el("tr", {}, ...TAP_COLS.map((h, i) => el("th", { class: i < 7 || i === 11 ? "l" : "" }, h)))), tbody);
  const rows = new Map();
  let dropped = 0, count = 0, opened = "";
  const say = (msg, cls) => { status.textContent = msg; status.className = cls || "note"; };
  const onEvent = (name, e) => {
    switch (name) {
      case "open":
        opened = "tapping " + e.resource + "/" + e.name + " in " + e.namespace + " (at most " + e.maxEventsPerSecond + " events/s, for " + Math.round(e.maxSeconds / 60) + " min)";
        say(opened);
        break;
      case "tap": {
        if (e.dropped) dropped += e.dropped;
        if (e.kind === "dropped") break;
        count++;
        let tr = rows.get(e.id);
        if (tr) tr.replaceChildren(...tapCells(e));
        else {
          tr = el("tr", {}, ...tapCells(e));
          tr.dataset.id = e.id;
          rows.set(e.id, tr);
          tbody.prepend(tr);
          while (tbody.rows.length > TAP_ROWS) { const old = tbody.lastElementChild; rows.delete(old.dataset.id); old.remove(); }
        }
        if (e.kind === "end") rows.delete(e.id);
        if (e.dropped) say(opened + "; " + dropped + " events dropped by the rate bound (narrow the filters)");
        break;
      }
      case "error": say("the tap failed: " + e.error, "error"); break;
      case "end": say("the tap ended: " + e.reason); break;
    }
  };
  const start = async () => {
    stopTap();
    const ctl = new AbortController();
    tapAbort = ctl;
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
    if (!q.get("ns")) { say("name a namespace", "error"); return; }
    say("starting…");
    tbody.replaceChildren(); rows.clear(); dropped = 0; count = 0; opened = "";
    try {
      const r = await fetch("/api/tap/stream?" + q, { signal: ctl.signal, headers: { Accept: "text/event-stream" } });
      if (!r.ok) {
        let msg = r.status + " " + r.statusText;
        try { msg = (await r.json()).error || msg; } catch (_) { /* not JSON */ }
        say("the tap was refused: " + msg, "error");
        return;
      }
      await readSSE(r, onEvent);
      if (!ctl.signal.aborted && status.className !== "error" && !/ended/.test(status.textContent)) say("the tap ended");
    } catch (err) {
      if (!ctl.signal.aborted) say("the tap stopped: " + err.message, "error");
    } finally {
      if (tapAbort === ctl) tapAbort = null;
    }
  };
  form.addEventListener("submit", (ev) => { ev.preventDefault(); start(); });
  form.querySelector("#tap-stop").addEventListener("click", () => { if (tapAbort) { stopTap(); say("stopped after " + count + " events"); } });
  if (ns && target.length) setTimeout(start, 0);
  return [...head, el("p", { class: "note" }, "Requests of a workload as its proxies see them, live: method, path, status, latency and the identities of both sides (no bodies or header values)."),
    form, status, tbl];
}

async function render() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  let view;
  switch (parts[0]) {
    case "ns": view = () => workloadsPage(parts[1]); break;
    case "graph": view = () => graphPage(parts[1]); break;
    case "routes": view = () => routesPage(parts[1], parts[2]); break;
    case "health": view = healthPage; break;
    case "tap": view = () => tapPage(...parts.slice(1)); break;
    default: view = namespacesPage;
  }
  document.querySelectorAll("header nav a").forEach((a) => a.classList.toggle("active", a.getAttribute("href").split("/")[1] === (parts[0] === "ns" ? "namespaces" : parts[0] || "namespaces")));
  clearTimeout(timer);
  stopTap();
  try {
    const content = await view();
    main.replaceChildren(...content.filter((c) => c !== ""));
    main.dataset.loaded = parts[0] || "namespaces";
  } catch (err) {
    main.replaceChildren(el("p", { class: "error" }, "could not load: " + err.message));
  }
  // The tap view is live on its own; re-rendering it would end the tap.
  if (parts[0] !== "tap") timer = setTimeout(render, REFRESH_MS);
}

window.addEventListener("hashchange", render);
render();
