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

async function tapPage() {
  const t = await getJSON("/api/tap");
  stamp({});
  return [el("h2", {}, "Live tap"), el("p", { id: "tap-status", class: t.installed ? "" : "note" }, t.message)];
}

async function render() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  let view;
  switch (parts[0]) {
    case "ns": view = () => workloadsPage(parts[1]); break;
    case "graph": view = () => graphPage(parts[1]); break;
    case "routes": view = () => routesPage(parts[1], parts[2]); break;
    case "health": view = healthPage; break;
    case "tap": view = tapPage; break;
    default: view = namespacesPage;
  }
  document.querySelectorAll("header nav a").forEach((a) => a.classList.toggle("active", a.getAttribute("href").split("/")[1] === (parts[0] === "ns" ? "namespaces" : parts[0] || "namespaces")));
  clearTimeout(timer);
  try {
    const content = await view();
    main.replaceChildren(...content.filter((c) => c !== ""));
    main.dataset.loaded = parts[0] || "namespaces";
  } catch (err) {
    main.replaceChildren(el("p", { class: "error" }, "could not load: " + err.message));
  }
  timer = setTimeout(render, REFRESH_MS);
}

window.addEventListener("hashchange", render);
render();
