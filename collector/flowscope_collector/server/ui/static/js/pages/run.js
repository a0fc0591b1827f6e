// Run: totals, the path graph, the waterfall, the node sequence and the detail of what is
// clicked; time travel through the run's states; a running run follows its live stream and
// settles into the finished page without a reload.

import * as api from "../api.js";
import { badge, errorBox, fmtInt, fmtMs, fmtTime, h, replace } from "../dom.js";
import { drawGraph, nodeCostText, parseEdges } from "../graph.js";
import { spanDetail, stepDetail } from "../detail.js";
import * as money from "../money.js";
import { renderTimeTravel } from "../timetravel.js";
import { drawWaterfall, kindOf } from "../waterfall.js";
import { runBadges, statusPill } from "./runs.js";

let view = null; // the page of one run, kept while the route stays on that run

async function load(id, signal) {
  const rid = encodeURIComponent(id);
  const [summary, nodes, spans, graph] = await Promise.all([
    api.get(`/api/v1/runs/${rid}`, null, { signal }),
    api.get(`/api/v1/runs/${rid}/nodes`, null, { signal }),
    api.get(`/api/v1/runs/${rid}/spans`, null, { signal }),
    api.getText(`/api/v1/runs/${rid}/graph`, { format: "mermaid" }, { signal }),
  ]);
  const spanById = new Map();
  const unpriced = new Map(); // node span id -> unpriced LLM calls under it
  const partial = new Map(); // node span id -> LLM calls under it priced but for a part
  const walk = (sp, node) => {
    spanById.set(sp.span_id, sp);
    const kind = kindOf(sp);
    const here = kind === "node" ? sp.span_id : node;
    if (kind === "llm" && sp.attributes["flowscope.cost.source"] === "unpriced" && here) {
      unpriced.set(here, (unpriced.get(here) || 0) + 1);
    }
    if (kind === "llm" && sp.attributes["flowscope.cost.source"] === "partial" && here) {
      partial.set(here, (partial.get(here) || 0) + 1);
    }
    for (const c of sp.children || []) walk(c, here);
  };
  for (const r of spans.roots) walk(r, null);
  return { summary, nodes: nodes.nodes, spans, edges: parseEdges(graph), spanById, unpriced, partial };
}

function stat(key, label, value, sub) {
  return h("div", { class: "stat", dataset: { stat: key } },
    h("span", { class: "stat-label" }, label),
    h("span", { class: "stat-value" }, value),
    sub ? h("span", { class: "stat-sub" }, sub) : null);
}

function costValue(s) {
  if (s.unpriced_calls && money.isZero(s.cost_usd)) return h("span", { class: "unpriced" }, "unpriced");
  return money.usd(s.cost_usd);
}

/** A replay's fork names the run it was forked from and the step (flowscope.replay). */
function forkLine(s, rid) {
  if (!s.forked_from) return null;
  const parent = encodeURIComponent(s.forked_from);
  return h("p", { class: "muted fork", id: "run-fork" }, "Forked from ",
    h("a", { href: `#/runs/${parent}`, class: "mono" }, s.forked_from), ` at step ${s.forked_at_step} · `,
    h("a", { href: `#/compare/${parent}/${rid}` }, "Compare with the original"));
}

function header(data, id) {
  const s = data.summary;
  const b = s.cost_breakdown || {};
  const rid = encodeURIComponent(id);
  return h("div", { class: "run-header" },
    h("div", { class: "title-row" },
      h("h1", null, s.flow || "(no flow)"),
      statusPill(s.status, { id: "run-status" }),
      h("span", { class: "badges" }, runBadges(s, s))),
    h("p", { class: "muted" }, h("span", { class: "mono" }, s.run_id), ` · ${s.service} · started ${fmtTime(s.start)}`,
      s.end ? ` · ended ${fmtTime(s.end)}` : "", " · ",
      h("a", { href: `#/runs/${rid}/state/-1` }, "Time travel"), " · ",
      h("a", { href: `#/compare/${rid}` }, "Compare with…")),
    forkLine(s, rid),
    h("div", { class: "stats" },
      stat("cost", "Cost", costValue(s), [
        s.unpriced_calls && !money.isZero(s.cost_usd)
          ? h("span", { class: "unpriced" }, `+ ${s.unpriced_calls} unpriced call${s.unpriced_calls === 1 ? "" : "s"} · `) : null,
        s.partially_priced_calls
          ? h("span", { class: "unpriced partial" }, `${s.partially_priced_calls} partially priced: a lower bound · `) : null,
        `input ${money.usd(b.input_usd)} · cached ${money.usd(b.cached_input_usd)} · cache write ${money.usd(b.cache_write_usd)} · output ${money.usd(b.output_usd)}`]),
      stat("cache", "Cache savings", money.usd(s.cache_saved_usd), `${fmtInt(s.cache_hits)} cache hit${s.cache_hits === 1 ? "" : "s"}`),
      stat("tokens", "Tokens", `${fmtInt(s.input_tokens)} in / ${fmtInt(s.output_tokens)} out`,
        `cached ${fmtInt(s.cached_input_tokens)} · cache write ${fmtInt(s.cache_write_input_tokens)} · reasoning ${fmtInt(s.reasoning_tokens)}`),
      stat("duration", "Duration", fmtMs(s.duration_ms), s.waiting_ms ? `waiting ${fmtMs(s.waiting_ms)}` : `${fmtInt(s.spans)} spans`),
      stat("llm", "LLM calls", fmtInt(s.llm_calls),
        [s.unpriced_calls ? `${s.unpriced_calls} unpriced` : s.partially_priced_calls ? "" : "all priced",
          s.partially_priced_calls ? `${s.unpriced_calls ? " · " : ""}${s.partially_priced_calls} partial` : "",
          s.estimated_calls ? ` · ${s.estimated_calls} estimated` : ""].join("")),
      stat("retries", "Retries", fmtInt(s.retries)),
      stat("fallbacks", "Fallbacks", fmtInt(s.fallbacks)),
      stat("errors", "Errors", fmtInt(s.errors), s.budget_exceeded ? "budget exceeded" : null)));
}

function nodesTable(data, id, selectedStep) {
  const rid = encodeURIComponent(id);
  const rows = data.nodes.map((n) => h("tr", {
    class: [n.status === "error" ? "failed" : "", n.step === selectedStep ? "selected" : ""].join(" "),
    dataset: { step: String(n.step) },
  },
  h("td", { class: "num" }, String(n.step)),
  h("td", null, h("a", { href: `#/runs/${rid}/step/${n.step}` }, n.name)),
  h("td", null, n.type),
  h("td", { class: "num" }, String(n.attempt)),
  h("td", null, n.branch || ""),
  h("td", null, h("span", { class: `status ${n.status}` }, n.status), n.error ? h("div", { class: "small error-message" }, n.error) : null),
  h("td", { class: "num" }, fmtMs(n.duration_ms)),
  h("td", { class: "num" }, fmtInt(n.llm_calls)),
  h("td", { class: "num" }, `${fmtInt(n.input_tokens)} / ${fmtInt(n.output_tokens)}`),
  h("td", { class: "num" }, n.llm_calls ? nodeCostText(n, data.unpriced.get(n.span_id) || 0, data.partial.get(n.span_id) || 0) || money.usd(n.cost_usd) : "—"),
  h("td", null, h("a", { href: `#/runs/${rid}/state/${n.step}`, "aria-label": `state after step ${n.step}` }, "state"))));
  return h("div", { class: "table-wrap" }, h("table", { class: "nodes", id: "nodes-table" },
    h("caption", { class: "sr-only" }, "Node sequence"),
    h("thead", null, h("tr", null, ["Step", "Node", "Type", "Attempt", "Branch", "Status", "Duration", "LLM", "Tokens in / out",
      "Cost", "State"].map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", null, rows.length ? rows : h("tr", null, h("td", { colspan: 11, class: "muted" }, "This run has no node spans.")))));
}

function liveBanner() {
  const meter = h("strong", { id: "live-cost", dataset: { cost: "0" } }, "$0");
  const calls = h("span", { id: "live-calls" }, "0 LLM calls");
  const last = h("span", { class: "muted", id: "live-last" }, "waiting for spans…");
  const el = h("div", { class: "live", role: "status", "aria-live": "polite", id: "live" },
    h("span", { class: "pulse", "aria-hidden": "true" }), h("span", null, "Live: "), meter, " so far · ", calls, " · ", last);
  return { el, meter, calls, last };
}

function startLive(v) {
  const controller = new AbortController();
  const banner = liveBanner();
  replace(v.liveBox, banner.el);
  let cost = 0n;
  let calls = 0;
  let unpriced = 0;
  let refreshing = false;
  let again = false;
  let lastRefresh = 0;
  const refresh = async () => {
    if (refreshing) { again = true; return; }
    refreshing = true;
    try {
      const wait = 300 - (Date.now() - lastRefresh);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      lastRefresh = Date.now();
      v.data = await load(v.id, controller.signal);
      v.redraw();
    } catch (e) {
      if (e.name !== "AbortError" && e.status !== 404) console.warn("refresh failed", e);
    } finally {
      refreshing = false;
      if (again) { again = false; refresh(); }
    }
  };
  const onEvent = ({ event, data }) => {
    if (event === "llm_call") {
      calls += 1;
      if (data.cost_source === "unpriced") unpriced += 1;
      cost += money.parse(data.cost_usd);
      const text = money.format(cost);
      banner.meter.dataset.cost = text;
      banner.meter.textContent = money.usd(text) + (unpriced ? ` + ${unpriced} unpriced` : "");
      banner.calls.textContent = `${calls} LLM call${calls === 1 ? "" : "s"}`;
    }
    if (event === "summary") return;
    const what = event === "state" ? `state ${data.path || "(input)"}` : `${event.replace("_", " ")} ${data.name || data.model || ""}`;
    banner.last.textContent = `last: ${what}`;
    refresh();
  };
  const finish = async () => {
    await refresh();
    while (refreshing) await new Promise((r) => setTimeout(r, 50));
    if (v.data.summary.status === "running") {
      // the stream closed (timeout) before the run ended: keep looking
      setTimeout(() => !controller.signal.aborted && poll(), 2000);
      return;
    }
    replace(v.liveBox, h("p", { class: "settled muted", role: "status" }, `Run finished: ${v.data.summary.status}.`));
  };
  const poll = async () => {
    await refresh();
    if (v.data.summary.status === "running" && !controller.signal.aborted) setTimeout(poll, 2000);
    else if (!controller.signal.aborted) finish();
  };
  api.stream(`/api/v1/runs/${encodeURIComponent(v.id)}/stream`, { poll: 0.25 }, onEvent, { signal: controller.signal })
    .then(finish)
    .catch((e) => {
      if (e.name === "AbortError") return;
      if (e instanceof api.AuthError) return;
      banner.last.textContent = `stream: ${e.message}; polling`;
      poll();
    });
  return () => controller.abort();
}

function buildView(ctx, id) {
  const v = {
    id, data: null, sub: null,
    headerBox: h("div"), liveBox: h("div"), body: h("div", { class: "run-body" }),
    overview: h("div", { class: "overview" }), aside: h("aside", { class: "detail-pane", "aria-label": "Detail" }),
    tt: h("div", { class: "tt-box" }), stopLive: null, keyHandler: null,
  };
  v.graphBox = h("div", { class: "graph-wrap" });
  v.wfBox = h("div");
  v.nodesBox = h("div");
  replace(v.overview,
    h("section", { "aria-labelledby": "h-path" }, h("h2", { id: "h-path" }, "Path"), v.graphBox),
    h("section", { "aria-labelledby": "h-nodes" }, h("h2", { id: "h-nodes" }, "Node sequence"), v.nodesBox),
    h("section", { "aria-labelledby": "h-wf" }, h("h2", { id: "h-wf" }, "Timeline"), v.wfBox));
  v.root = h("div", { class: "run-page", dataset: { run: id } }, v.headerBox, v.liveBox, v.body);
  return v;
}

/** Mark the selected step or span in the drawn graph, node table and waterfall. */
function select(v) {
  const sub = v.sub || {};
  const selStep = sub.kind === "step" ? sub.step : null;
  const nodeSpan = selStep === null ? null : v.data.nodes.find((n) => n.step === selStep)?.span_id;
  const selSpan = sub.kind === "span" ? sub.spanId : nodeSpan;
  for (const el of v.overview.querySelectorAll(".selected")) el.classList.remove("selected");
  if (selStep !== null) {
    for (const el of v.overview.querySelectorAll(`.gnode[data-step="${selStep}"], #nodes-table tr[data-step="${selStep}"]`)) {
      el.classList.add("selected");
    }
  }
  if (selSpan) v.overview.querySelector(`.wf-row[data-span="${CSS.escape(selSpan)}"]`)?.classList.add("selected");
}

function drawOverview(v) {
  if (v.drawn === v.data) {
    select(v);
    return;
  }
  v.drawn = v.data;
  const rid = encodeURIComponent(v.id);
  const d = v.data;
  const sub = v.sub || {};
  const selStep = sub.kind === "step" ? sub.step : null;
  const selSpan = sub.kind === "span" ? sub.spanId : null;
  replace(v.headerBox, header(d, v.id));
  const selectedIdx = selStep === null ? -1 : d.nodes.findIndex((n) => n.step === selStep);
  replace(v.graphBox, drawGraph({
    nodes: d.nodes, edges: d.edges, status: d.summary.status, unpriced: d.unpriced, partial: d.partial,
    href: (i) => `#/runs/${rid}/step/${d.nodes[i].step}`, selected: selectedIdx,
  }));
  replace(v.nodesBox, nodesTable(d, v.id, selStep));
  const nodeSpan = selStep === null ? null : d.nodes.find((n) => n.step === selStep)?.span_id;
  replace(v.wfBox, drawWaterfall({
    roots: d.spans.roots, href: (sp) => `#/runs/${rid}/span/${sp.span_id}`, selected: selSpan || nodeSpan,
  }));
  select(v);
}

function drawAside(v) {
  const rid = encodeURIComponent(v.id);
  const d = v.data;
  const sub = v.sub || {};
  const stateHref = (k) => `#/runs/${rid}/state/${k}`;
  const spanHref = (sid) => `#/runs/${rid}/span/${sid}`;
  const close = h("a", { href: `#/runs/${rid}`, class: "close", "aria-label": "Close the detail" }, "×");
  if (sub.kind === "span") {
    const sp = d.spanById.get(sub.spanId);
    replace(v.aside, close, sp ? spanDetail(sp, { stateHref }) : h("p", { class: "muted" }, `No span ${sub.spanId} in this run (yet).`));
  } else if (sub.kind === "step") {
    const attempts = d.nodes.filter((n) => n.step === sub.step);
    replace(v.aside, close, attempts.length
      ? stepDetail(attempts[attempts.length - 1], attempts, d.spanById, { spanHref, stateHref })
      : h("p", { class: "muted" }, `No step ${sub.step} in this run (yet).`));
  } else {
    replace(v.aside, h("p", { class: "muted hint" }, "Select a node in the path, a step, or a span in the timeline to see its detail: attributes, tokens, cost, retries, errors and the conversation."));
  }
}

async function stepsOf(v, signal) {
  if (!v.steps || v.data.summary.status === "running") {
    const first = await api.get(`/api/v1/runs/${encodeURIComponent(v.id)}/state`, { at: -1 }, { signal });
    v.steps = [...new Set([-1, ...first.steps, ...v.data.nodes.map((n) => n.step)])].sort((a, b) => a - b);
  }
  return v.steps;
}

async function drawState(v, ctx, signal, hadFocus) {
  const names = new Map(v.data.nodes.map((n) => [n.step, n.name]));
  const steps = await stepsOf(v, signal);
  const at = steps.includes(v.sub.step) ? v.sub.step : steps[0];
  const drawn = await renderTimeTravel(v.tt, { runId: v.id, at, steps, names, go: ctx.go, signal,
    current: () => v.sub.kind === "state" && v.sub.step === at });
  if (drawn && hadFocus) document.getElementById("tt-slider")?.focus();
}

function subOf(parts) {
  if (parts[2] === "span" && parts[3]) return { kind: "span", spanId: parts[3] };
  if (parts[2] === "step" && parts[3] !== undefined) return { kind: "step", step: Number(parts[3]) };
  if (parts[2] === "state") return { kind: "state", step: parts[3] === undefined ? -1 : Number(parts[3]) };
  return { kind: "none" };
}

export async function renderRun(ctx) {
  const { main, parts } = ctx;
  const id = parts[1];
  const controller = new AbortController();
  let v = ctx.same && view && view.id === id && main.contains(view.root) ? view : null;
  if (!v) {
    if (view && view.stopLive) view.stopLive();
    v = buildView(ctx, id);
    view = v;
    replace(main, h("p", { class: "muted" }, "Loading run…"));
    try {
      v.data = await load(id, controller.signal);
    } catch (e) {
      if (e instanceof api.ApiError && e.status === 404) {
        replace(main, h("h1", null, "Run not found"), errorBox(e), h("p", null, h("a", { href: "#/runs" }, "Back to the runs")));
        return;
      }
      throw e;
    }
    replace(main, v.root);
    v.redraw = () => {
      drawOverview(v);
      if (v.sub.kind === "state") return;
      drawAside(v);
    };
    v.keyHandler = (ev) => {
      // ← / → step through the states (the slider handles its own keys)
      if (!v.sub || v.sub.kind !== "state" || !v.steps) return;
      const t = ev.target;
      if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA")) return;
      if (ev.altKey || ev.ctrlKey || ev.metaKey || (ev.key !== "ArrowRight" && ev.key !== "ArrowLeft")) return;
      const i = v.steps.indexOf(v.sub.step) + (ev.key === "ArrowRight" ? 1 : -1);
      if (i < 0 || i >= v.steps.length) return;
      ev.preventDefault();
      v.sub = { kind: "state", step: v.steps[i] };
      ctx.go(`#/runs/${encodeURIComponent(v.id)}/state/${v.steps[i]}`);
    };
    document.addEventListener("keydown", v.keyHandler);
    if (v.data.summary.status === "running") v.stopLive = startLive(v);
    ctx.setCleanup(() => {
      controller.abort();
      if (v.stopLive) v.stopLive();
      document.removeEventListener("keydown", v.keyHandler);
      if (view === v) view = null;
    });
  }
  const before = v.sub ? v.sub.kind : null;
  const hadFocus = document.activeElement && document.activeElement.id === "tt-slider";
  v.sub = subOf(parts);
  if (v.sub.kind === "state") {
    drawOverview(v);
    if (v.body.firstChild !== v.tt) replace(v.body, v.tt);
    await drawState(v, ctx, controller.signal, hadFocus);
    if (before !== "state") document.getElementById("tt-title")?.focus();
  } else {
    drawOverview(v);
    drawAside(v);
    replace(v.body, v.overview, v.aside);
    if (v.sub.kind !== "none") {
      const title = v.aside.querySelector(".detail-title");
      if (title) {
        title.focus({ preventScroll: true });
        if (window.matchMedia("(max-width: 900px)").matches) v.aside.scrollIntoView({ block: "start" });
      }
    }
  }
}
