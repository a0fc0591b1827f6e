// The path a run took, drawn in SVG: the edges come from the API's graph (Mermaid text of
// GET /runs/{id}/graph, where node nK is the K-th entry of GET /runs/{id}/nodes), the
// labels from the node list. Each node shows its cost and duration; failed nodes are marked.

import { fmtMs, s } from "./dom.js";
import { isZero, usd } from "./money.js";

const W = 188;
const H = 54;
const GX = 28;
const GY = 40;
const R = 16;

/** Edges [from, to] of the Mermaid text; -1 is the start, -2 the finish. */
export function parseEdges(text) {
  const id = (t) => (t === "start" ? -1 : t === "finish" ? -2 : Number(t.slice(1)));
  const out = [];
  for (const line of (text || "").split("\n")) {
    const m = /^\s*(start|finish|n\d+)\s*-->(?:\|[^|]*\|)?\s*(start|finish|n\d+)\s*$/.exec(line);
    if (m) out.push([id(m[1]), id(m[2])]);
  }
  return out;
}

function truncate(text, n) {
  return text.length > n ? text.slice(0, n - 1) + "…" : text;
}

export function nodeCostText(node, unpriced, partial) {
  if (unpriced && !partial && isZero(node.cost_usd)) return "unpriced";
  if (isZero(node.cost_usd) && !partial) return "";
  return usd(node.cost_usd) + (unpriced ? " + unpriced" : "") + (partial ? " (partial)" : "");
}

/**
 * The graph as an <svg>. nodes: the API's node list; edges: parseEdges(); status: the run's;
 * unpriced / partial: Map node span_id -> unpriced / partially priced calls; href(i): link of node i;
 * selected: index or -1.
 */
export function drawGraph({ nodes, edges, status, unpriced, partial, href, selected }) {
  const n = nodes.length;
  const preds = Array.from({ length: n }, () => []);
  for (const [a, b] of edges) if (b >= 0 && a >= -1) preds[b].push(a);
  // rank = longest path from the start; nodes come in step order, so predecessors come first
  const rank = new Array(n).fill(0);
  for (let i = 0; i < n; i++) {
    for (const p of preds[i]) rank[i] = Math.max(rank[i], p < 0 ? 0 : rank[p] + 1);
  }
  const rows = [];
  for (let i = 0; i < n; i++) (rows[rank[i]] ||= []).push(i);
  const widest = Math.max(1, ...rows.map((r) => r.length));
  const width = widest * (W + GX) + GX;
  const pos = new Array(n);
  rows.forEach((row, r) => {
    const offset = (width - row.length * (W + GX) + GX) / 2;
    row.forEach((i, k) => { pos[i] = { x: offset + k * (W + GX), y: 2 * R + GY + r * (H + GY) }; });
  });
  const height = 2 * R + GY + rows.length * (H + GY) + 2 * R + 8;
  const cx = width / 2;
  const startP = { x: cx, y: R + 4 };
  const endP = { x: cx, y: height - R - 4 };
  const svg = s("svg", {
    class: "graph", viewBox: `0 0 ${width} ${height}`, width, height, role: "group",
    "aria-label": `Path of the run: ${nodes.map((x) => x.name).join(", then ")}`,
  });
  svg.append(s("defs", null, s("marker", {
    id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse",
  }, s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow-head" }))));
  const anchorOut = (i) => (i === -1 ? { x: startP.x, y: startP.y + R } : { x: pos[i].x + W / 2, y: pos[i].y + H });
  const anchorIn = (i) => (i === -2 ? { x: endP.x, y: endP.y - R } : { x: pos[i].x + W / 2, y: pos[i].y });
  const edgeLayer = s("g", { class: "edges" });
  for (const [a, b] of edges) {
    if (a === -2 || b === -1) continue;
    const p = anchorOut(a);
    const q = anchorIn(b);
    const my = (p.y + q.y) / 2;
    edgeLayer.append(s("path", { d: `M${p.x},${p.y} C${p.x},${my} ${q.x},${my} ${q.x},${q.y}`, class: "edge",
      "marker-end": "url(#arrow)" }));
    const branch = a >= 0 ? nodes[a].branch : null;
    if (branch) {
      edgeLayer.append(s("text", { x: (p.x + q.x) / 2 + 6, y: my - 2, class: "edge-label" }, truncate(branch, 24)));
    }
  }
  svg.append(edgeLayer);
  svg.append(s("g", { class: "terminal" }, s("circle", { cx: startP.x, cy: startP.y, r: R }),
    s("text", { x: startP.x, y: startP.y + 4, "text-anchor": "middle" }, "start")));
  svg.append(s("g", { class: `terminal end ${status}` }, s("circle", { cx: endP.x, cy: endP.y, r: R }),
    s("text", { x: endP.x, y: endP.y + 4, "text-anchor": "middle" }, status === "running" ? "…" : status)));
  nodes.forEach((node, i) => {
    const failed = node.status === "error";
    const cost = nodeCostText(node, unpriced.get(node.span_id) || 0, partial ? partial.get(node.span_id) || 0 : 0);
    const label = `${node.step}. ${node.name}` + (node.attempt ? ` (attempt ${node.attempt + 1})` : "");
    const detail = [cost, fmtMs(node.duration_ms), failed ? "failed" : ""].filter(Boolean).join(" · ");
    const link = s("a", {
      href: href(i), class: `gnode ${failed ? "failed" : ""} ${i === selected ? "selected" : ""}`,
      "aria-label": `${label}: ${detail}`, dataset: { step: String(node.step) },
    },
    s("title", null, `${label}\n${detail}${node.error ? "\n" + node.error : ""}`),
    s("rect", { x: pos[i].x, y: pos[i].y, width: W, height: H, rx: 8 }),
    s("text", { x: pos[i].x + 10, y: pos[i].y + 22, class: "gname" }, truncate(label, 26)),
    s("text", { x: pos[i].x + 10, y: pos[i].y + 41, class: "gdetail" }, truncate(detail, 30)));
    svg.append(link);
  });
  return svg;
}
