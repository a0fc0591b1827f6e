// Runs: filters, sort, cursor paging, badges; the first page follows new runs without a reload.

import * as api from "../api.js";
import { ago, badge, fmtInt, fmtMs, fmtTime, h, replace } from "../dom.js";
import { isZero, usd } from "../money.js";

const POLL_MS = 2000;
const FIELDS = ["service", "flow", "status", "since", "until", "min_cost", "user", "session", "tenant", "attr",
  "sort", "order", "cursor", "limit"];
const SINCE_CHOICES = [["", "any time"], ["1h", "last hour"], ["24h", "last 24 h"], ["7d", "last 7 days"],
  ["30d", "last 30 days"]];

/** The API query of the page's hash parameters. */
export function queryOf(params) {
  const attrs = [];
  if (params.get("user")) attrs.push(`user_id:${params.get("user")}`);
  if (params.get("session")) attrs.push(`session_id:${params.get("session")}`);
  if (params.get("tenant")) attrs.push(`tenant:${params.get("tenant")}`);
  for (const a of params.getAll("attr")) if (a) attrs.push(a);
  return {
    service: params.get("service"), flow: params.get("flow"), status: params.get("status"),
    since: params.get("since"), until: params.get("until"), min_cost: params.get("min_cost"),
    attr: attrs, sort: params.get("sort") || "start", order: params.get("order") || "desc",
    cursor: params.get("cursor"), limit: params.get("limit") || 50,
  };
}

function hashOf(values) {
  const p = new URLSearchParams();
  for (const k of FIELDS) {
    const v = values[k];
    if (Array.isArray(v)) v.filter(Boolean).forEach((x) => p.append(k, x));
    else if (v !== undefined && v !== null && v !== "") p.set(k, v);
  }
  const q = p.toString();
  return "#/runs" + (q ? "?" + q : "");
}

/** Cost as a person should read it: an unpriced call is never a silent $0, a lower bound says so. */
export function costCell(run) {
  const unpriced = run.unpriced_calls || 0;
  const partial = run.partially_priced_calls || 0;
  if (unpriced && !partial && isZero(run.cost_usd)) {
    return h("span", { class: "unpriced", title: `${unpriced} LLM call(s) without a price` }, "unpriced");
  }
  return h("span", null, usd(run.cost_usd),
    unpriced ? h("span", { class: "unpriced", title: `${unpriced} LLM call(s) without a price, not included` },
      ` + ${unpriced} unpriced`) : null,
    partial ? h("span", { class: "unpriced partial", title: `${partial} LLM call(s) priced but for a part: a lower bound` },
      ` (${partial} partial)`) : null);
}

/** ok / failed / running, as a pill. */
export function statusPill(status, attrs) {
  const text = status === "error" ? "failed" : status;
  return h("span", { class: `status ${status}`, ...(attrs || {}) }, text);
}

export function runBadges(run, extra) {
  const out = [];
  if (run.retries) out.push(badge(`retried ×${run.retries}`, "warn", "LLM calls or nodes were retried"));
  if (run.fallbacks) out.push(badge("fell back", "warn", "a provider/model fallback served a call"));
  if (run.cache_hits) out.push(badge(`cache hit ×${run.cache_hits}`, "good", "answered from the response cache"));
  if (extra && extra.budget_exceeded) out.push(badge("budget stop", "failed", "the run hit its cost budget"));
  if (run.unpriced_calls) out.push(badge("unpriced", "unpriced", `${run.unpriced_calls} call(s) without a price`));
  if (run.partially_priced_calls) {
    out.push(badge("partial", "unpriced", `${run.partially_priced_calls} call(s) priced but for a part: the cost is a lower bound`));
  }
  if (run.forked_from) {
    out.push(badge(`fork @ step ${run.forked_at_step}`, "running", `replayed from run ${run.forked_from} after step ${run.forked_at_step}`));
  }
  return out;
}

function filterForm(params, ctx) {
  const field = (name, label, attrs) => {
    const id = `f-${name}`;
    return h("div", { class: "field" }, h("label", { for: id }, label),
      h("input", { id, name, value: params.get(name) || "", ...(attrs || {}) }));
  };
  const select = (name, label, choices, value) => {
    const id = `f-${name}`;
    return h("div", { class: "field" }, h("label", { for: id }, label),
      h("select", { id, name }, choices.map(([v, t]) => h("option", { value: v, selected: v === value }, t))));
  };
  const since = params.get("since") || "";
  const sinceChoices = SINCE_CHOICES.some(([v]) => v === since) ? SINCE_CHOICES : [...SINCE_CHOICES, [since, since]];
  const form = h("form", {
    class: "filters", role: "search", "aria-label": "Filter runs",
    onsubmit: (ev) => {
      ev.preventDefault();
      const fd = new FormData(form);
      const values = {};
      for (const k of FIELDS) values[k] = k === "attr" ? fd.getAll(k) : fd.get(k);
      values.cursor = null;
      ctx.go(hashOf(values));
    },
  },
  field("flow", "Flow"),
  field("service", "Service"),
  select("status", "Status", [["", "any"], ["ok", "ok"], ["error", "failed"], ["running", "running"]],
    params.get("status") || ""),
  select("since", "Started", sinceChoices, since),
  field("until", "Before", { placeholder: "ISO time or 2h" }),
  field("min_cost", "Min cost (USD)", { inputmode: "decimal", placeholder: "0.01" }),
  field("user", "User"),
  field("session", "Session"),
  field("tenant", "Tenant"),
  field("attr", "Attribute", { placeholder: "name:value" }),
  select("sort", "Sort by", [["start", "start"], ["cost", "cost"], ["duration", "duration"]],
    params.get("sort") || "start"),
  select("order", "Order", [["desc", "descending"], ["asc", "ascending"]], params.get("order") || "desc"),
  h("div", { class: "field actions" },
    h("button", { type: "submit" }, "Apply"),
    h("a", { href: "#/runs", class: "button secondary" }, "Reset")));
  return form;
}

function rowOf(run, selected, onSelect, budget) {
  const link = `#/runs/${encodeURIComponent(run.run_id)}`;
  const check = h("input", {
    type: "checkbox", "aria-label": `select run ${run.run_id} to compare`, checked: selected.has(run.run_id),
    onchange: (ev) => onSelect(run.run_id, ev.target.checked),
  });
  return h("tr", { dataset: { run: run.run_id, status: run.status } },
    h("td", null, check),
    h("td", null, h("a", { href: link, class: "run-link" }, run.flow || "(no flow)"),
      h("div", { class: "muted mono small" }, run.run_id)),
    h("td", null, run.service),
    h("td", null, h("span", { class: "badges" }, statusPill(run.status), runBadges(run, budget))),
    h("td", { title: run.start }, fmtTime(run.start), h("div", { class: "muted small" }, ago(run.start))),
    h("td", { class: "num", dataset: { label: "duration" } }, fmtMs(run.duration_ms)),
    h("td", { class: "num", dataset: { label: "LLM calls" } }, fmtInt(run.llm_calls)),
    h("td", { class: "num", dataset: { label: "tokens in / out" } }, `${fmtInt(run.input_tokens)} / ${fmtInt(run.output_tokens)}`),
    h("td", { class: "num cost", dataset: { label: "cost" } }, costCell(run)));
}

export async function renderRuns(ctx) {
  const { main, params } = ctx;
  const query = queryOf(params);
  const controller = new AbortController();
  let timer = null;
  ctx.setCleanup(() => { controller.abort(); clearTimeout(timer); });

  const selected = new Set();
  const budget = new Map(); // run id -> summary (for failed runs: did the budget stop them?)
  const compareBtn = h("button", { type: "button", disabled: true, onclick: () => {
    const [a, b] = [...selected];
    ctx.go(`#/compare/${encodeURIComponent(a)}/${encodeURIComponent(b)}`);
  } }, "Compare selected");
  const onSelect = (id, on) => {
    if (on) selected.add(id); else selected.delete(id);
    compareBtn.disabled = selected.size !== 2;
    compareBtn.textContent = selected.size === 2 ? "Compare the two selected" : "Compare selected (pick 2)";
  };
  onSelect(null, false);

  const tbody = h("tbody");
  const status = h("p", { class: "muted small", role: "status", "aria-live": "polite" });
  const pager = h("nav", { class: "pager", "aria-label": "Pages of runs" });
  const tableEl = h("div", { class: "table-wrap" }, h("table", { class: "runs", id: "runs-table" },
    h("caption", { class: "sr-only" }, "Runs"),
    h("thead", null, h("tr", null, ["", "Flow / run", "Service", "Status", "Started", "Duration", "LLM calls",
      "Tokens in / out", "Cost"].map((x) => h("th", { scope: "col" }, x)))),
    tbody));
  replace(main, h("h1", null, "Runs"), filterForm(params, ctx),
    h("div", { class: "toolbar" }, compareBtn, status), tableEl, pager);

  let shown = [];
  const draw = (runs, fresh) => {
    const rows = runs.map((r) => {
      const tr = rowOf(r, selected, onSelect, budget.get(r.run_id));
      if (fresh && fresh.has(r.run_id)) tr.classList.add("new");
      return tr;
    });
    replace(tbody, rows.length ? rows : h("tr", null, h("td", { colspan: 9, class: "muted" },
      "No runs match. Send spans to this collector (OTLP/HTTP on this port) or widen the filters.")));
  };

  const enrich = async (runs) => {
    // budget stops fail the run; the list has no budget field, the run summary does
    const failed = runs.filter((r) => r.status === "error" && !budget.has(r.run_id)).slice(0, 20);
    await Promise.all(failed.map(async (r) => {
      try {
        const s = await api.get(`/api/v1/runs/${encodeURIComponent(r.run_id)}`, null, { signal: controller.signal });
        budget.set(r.run_id, { budget_exceeded: s.budget_exceeded });
      } catch { budget.set(r.run_id, {}); }
    }));
  };

  const load = async () => api.get("/api/v1/runs", query, { signal: controller.signal });
  const page = await load();
  shown = page.runs;
  draw(shown);
  // the budget badges come a moment later: the rows do not wait for them
  enrich(shown).then(() => {
    const focused = document.activeElement && tbody.contains(document.activeElement);
    if (!controller.signal.aborted && budget.size && !focused) draw(shown);
  });
  status.textContent = `${shown.length} run${shown.length === 1 ? "" : "s"} on this page` +
    (query.cursor ? "" : " · new runs appear as they arrive");

  const links = [];
  if (query.cursor) links.push(h("a", { href: hashOf({ ...Object.fromEntries(params), attr: params.getAll("attr"), cursor: null }), class: "button secondary" }, "« First page"));
  if (page.next_cursor) {
    links.push(h("a", { href: hashOf({ ...Object.fromEntries(params), attr: params.getAll("attr"), cursor: page.next_cursor }), class: "button secondary", rel: "next" }, "Next page »"));
  }
  replace(pager, links);

  // The first page follows new runs: poll while the tab is visible.
  const live = !query.cursor;
  const poll = async () => {
    if (controller.signal.aborted) return;
    if (!document.hidden) {
      try {
        const next = await load();
        const before = new Set(shown.map((r) => r.run_id));
        const fresh = new Set(next.runs.filter((r) => !before.has(r.run_id)).map((r) => r.run_id));
        const changed = fresh.size || JSON.stringify(next.runs) !== JSON.stringify(shown);
        if (changed) {
          shown = next.runs;
          await enrich(shown);
          const focused = document.activeElement && tbody.contains(document.activeElement);
          if (!focused) draw(shown, fresh);
          if (fresh.size) status.textContent = `${fresh.size} new run${fresh.size === 1 ? "" : "s"} · ${shown.length} on this page`;
        }
      } catch (e) {
        if (e.name === "AbortError") return;
        if (e instanceof api.AuthError) { ctx.onAuth(e); return; }
      }
    }
    timer = setTimeout(poll, POLL_MS);
  };
  if (live) timer = setTimeout(poll, POLL_MS);
}
