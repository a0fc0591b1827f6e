// Costs: cost over time grouped by model, provider, service, flow, node, day or a run
// attribute; the groups of the period; the most expensive runs; unpriced calls by model.
// "Prices: catalog now" asks the API for every call priced again under the collector's
// catalog (pricing=current): a preview of `flowscope-collector reprice`, nothing is written.
// Amounts are the API's decimal strings; bucket totals are added exactly (money.js).

import * as api from "../api.js";
import { fmtInt, fmtTime, h, replace, s } from "../dom.js";
import * as money from "../money.js";
import { costCell } from "./runs.js";

const RANGES = { "24h": { n: 24, unit: 3600e3, label: "last 24 hours, by hour" },
  "7d": { n: 7, unit: 86400e3, label: "last 7 days, by day" },
  "30d": { n: 30, unit: 86400e3, label: "last 30 days, by day" } };
const GROUPS = ["model", "provider", "service", "flow", "node", "day"];
const SERIES = 6;

function buckets(range) {
  const { n, unit } = RANGES[range];
  const now = Date.now();
  const end = Math.floor(now / unit) * unit + unit; // the current bucket ends after now
  const out = [];
  for (let i = n; i > 0; i--) {
    const since = end - i * unit;
    out.push({ since: new Date(since).toISOString(), until: new Date(since + unit).toISOString(), t: since });
  }
  return out;
}

async function pool(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

function label(group, groupBy) {
  if (groupBy === "model" && group.provider) return `${group.key} (${group.provider})`;
  return group.key === "" ? "(none)" : group.key;
}

function chart(series, buckets, unit, groupBy) {
  const W = 760;
  const H = 220;
  const pad = { l: 8, r: 8, t: 18, b: 28 };
  const totals = buckets.map((b) => money.add(...series.map((sr) => b.values.get(sr) || "0")));
  const max = totals.reduce((m, t) => (money.compare(t, m) > 0 ? t : m), "0");
  const bw = (W - pad.l - pad.r) / buckets.length;
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `Cost over time by ${groupBy}; the table below has the figures` });
  svg.append(s("line", { x1: pad.l, x2: W - pad.r, y1: H - pad.b, y2: H - pad.b, class: "axis" }));
  buckets.forEach((b, i) => {
    let y = H - pad.b;
    const g = s("g", { class: "bucket" });
    g.append(s("title", null, `${fmtTime(b.since)}: ${money.usd(totals[i])}` +
      series.map((sr) => (b.values.get(sr) ? `\n${sr}: ${money.usd(b.values.get(sr))}` : "")).join("")));
    series.forEach((sr, k) => {
      const v = b.values.get(sr);
      if (!v || money.isZero(v)) return;
      const hgt = money.ratio(v, max) * (H - pad.t - pad.b);
      y -= hgt;
      g.append(s("rect", { x: pad.l + i * bw + 2, y, width: Math.max(bw - 4, 1), height: Math.max(hgt, 0.5), class: `series-${k}` }));
    });
    svg.append(g);
    const every = Math.ceil(buckets.length / 8);
    if (i % every === 0) {
      const d = new Date(b.t);
      const text = unit < 86400e3 ? `${String(d.getHours()).padStart(2, "0")}:00` : `${d.getMonth() + 1}/${d.getDate()}`;
      svg.append(s("text", { x: pad.l + i * bw + bw / 2, y: H - 10, "text-anchor": "middle", class: "tick" }, text));
    }
  });
  svg.append(s("text", { x: pad.l + 2, y: pad.t + 4, "text-anchor": "start", class: "tick" }, `highest bar ${money.usd(max)}`));
  return { svg, totals };
}

export async function renderCosts(ctx) {
  const { main, params } = ctx;
  const controller = new AbortController();
  ctx.setCleanup(() => controller.abort());
  const range = RANGES[params.get("range")] ? params.get("range") : "7d";
  const groupBy = params.get("group_by") || "model";
  const pricing = params.get("pricing") === "current" ? "current" : "stored";
  const priced = pricing === "current" ? { pricing } : {};
  const opt = { signal: controller.signal };

  const attrInput = h("input", { id: "c-attr", name: "attr", placeholder: "tenant",
    value: groupBy.startsWith("attr:") ? groupBy.slice(5) : "" });
  const groupSel = h("select", { id: "c-group", name: "group_by" },
    [...GROUPS, "attr"].map((g) => h("option", { value: g, selected: g === groupBy || (g === "attr" && groupBy.startsWith("attr:")) },
      g === "attr" ? "run attribute…" : g)));
  const rangeSel = h("select", { id: "c-range", name: "range" },
    Object.entries(RANGES).map(([k, r]) => h("option", { value: k, selected: k === range }, r.label)));
  const pricingSel = h("select", { id: "c-pricing", name: "pricing" },
    [["stored", "as stored"], ["current", "catalog now"]].map(([v, text]) =>
      h("option", { value: v, selected: v === pricing }, text)));
  const form = h("form", {
    class: "filters", "aria-label": "Cost grouping",
    onsubmit: (ev) => {
      ev.preventDefault();
      let g = groupSel.value;
      if (g === "attr") g = attrInput.value.trim() ? `attr:${attrInput.value.trim()}` : "model";
      const repriced = pricingSel.value === "current" ? "&pricing=current" : "";
      ctx.go(`#/costs?group_by=${encodeURIComponent(g)}&range=${range === rangeSel.value ? range : rangeSel.value}${repriced}`);
    },
  },
  h("div", { class: "field" }, h("label", { for: "c-group" }, "Group by"), groupSel),
  h("div", { class: "field" }, h("label", { for: "c-attr" }, "Run attribute"), attrInput),
  h("div", { class: "field" }, h("label", { for: "c-range" }, "Period"), rangeSel),
  h("div", { class: "field" }, h("label", { for: "c-pricing" }, "Prices"), pricingSel),
  h("div", { class: "field actions" }, h("button", { type: "submit" }, "Show")));

  replace(main, h("h1", null, "Costs"), form, h("p", { class: "muted" }, "Loading…"));
  const since = `${RANGES[range].n * (RANGES[range].unit / 3600e3)}h`;
  const bs = buckets(range);
  const [whole, byModel, top, perBucket] = await Promise.all([
    api.get("/api/v1/costs", { group_by: groupBy, since, ...priced }, opt),
    groupBy === "model" ? null : api.get("/api/v1/costs", { group_by: "model", since, ...priced }, opt),
    api.get("/api/v1/runs", { sort: "cost", since, limit: 10 }, opt),
    pool(bs, 6, (b) => api.get("/api/v1/costs", { group_by: groupBy === "day" ? "provider" : groupBy, since: b.since, until: b.until, ...priced }, opt)),
  ]);
  const models = byModel || whole;
  const seriesKey = (g) => (groupBy === "day" ? "all" : label(g, groupBy));
  // the series: the costliest groups of the period, the rest together
  const rank = new Map();
  perBucket.forEach((rep) => rep.groups.forEach((g) => {
    const k = seriesKey(g);
    rank.set(k, money.add(rank.get(k) || "0", g.cost_usd));
  }));
  const ordered = [...rank.entries()].sort((x, y) => money.compare(y[1], x[1])).map(([k]) => k);
  const series = ordered.slice(0, SERIES);
  const rest = ordered.length > SERIES;
  if (rest) series.push("other");
  bs.forEach((b, i) => {
    b.values = new Map();
    for (const g of perBucket[i].groups) {
      const k = series.includes(seriesKey(g)) ? seriesKey(g) : "other";
      b.values.set(k, money.add(b.values.get(k) || "0", g.cost_usd));
    }
  });
  const { svg, totals } = chart(series, bs, RANGES[range].unit, groupBy);
  const max = whole.groups.reduce((m, g) => (money.compare(g.cost_usd, m) > 0 ? g.cost_usd : m), "0");
  const unpricedModels = models.groups.filter((g) => g.unpriced_calls > 0 || g.partially_priced_calls > 0);
  const partialCalls = whole.partially_priced_calls || 0;

  const note = whole.pricing_version
    ? h("p", { class: "notice", id: "pricing-note" }, `Every call priced again under ${whole.pricing_version}. `,
      "Nothing is stored until ", h("code", null, "flowscope-collector reprice"), " (or POST /api/v1/reprice) runs.")
    : null;
  replace(main, h("h1", null, "Costs"), form, note,
    h("div", { class: "stats" },
      h("div", { class: "stat", dataset: { stat: "total" } }, h("span", { class: "stat-label" }, `Total, ${RANGES[range].label.split(",")[0]}`),
        h("span", { class: "stat-value" }, money.usd(whole.total_usd)), h("span", { class: "stat-sub" }, `${fmtInt(whole.llm_calls)} LLM calls`)),
      h("div", { class: "stat", dataset: { stat: "unpriced" } }, h("span", { class: "stat-label" }, "Unpriced calls"),
        h("span", { class: unpricedModels.length ? "stat-value unpriced" : "stat-value" },
          fmtInt(unpricedModels.reduce((n, g) => n + g.unpriced_calls, 0))),
        h("span", { class: "stat-sub" }, "not in the totals: no price known",
          partialCalls ? h("span", { class: "unpriced partial" },
            ` · ${fmtInt(partialCalls)} partially priced: the total is a lower bound`) : null))),
    h("section", { "aria-labelledby": "h-time" }, h("h2", { id: "h-time" }, `Cost over time by ${groupBy}`),
      h("div", { class: "chart-wrap" }, svg),
      h("ul", { class: "legend" }, series.map((sr, k) => h("li", null, h("span", { class: `swatch series-${k}`, "aria-hidden": "true" }), sr))),
      h("details", null, h("summary", null, "As a table"), h("div", { class: "table-wrap" }, h("table", null,
        h("thead", null, h("tr", null, h("th", { scope: "col" }, "from"), series.map((sr) => h("th", { scope: "col" }, sr)), h("th", { scope: "col" }, "total"))),
        h("tbody", null, bs.map((b, i) => h("tr", null, h("td", null, fmtTime(b.since)),
          series.map((sr) => h("td", { class: "num" }, b.values.get(sr) ? money.usd(b.values.get(sr)) : "")),
          h("td", { class: "num" }, money.usd(totals[i]))))))))),
    h("section", { "aria-labelledby": "h-groups" }, h("h2", { id: "h-groups" }, `By ${groupBy}`),
      h("div", { class: "table-wrap" }, h("table", { id: "cost-groups" },
        h("thead", null, h("tr", null, [groupBy, "LLM calls", "tokens in / out", "cached", "unpriced calls", "cost", ""].map((x) => h("th", { scope: "col" }, x)))),
        h("tbody", null, whole.groups.length ? whole.groups.map((g) => h("tr", { dataset: { key: g.key } },
          h("td", null, label(g, groupBy)), h("td", { class: "num" }, fmtInt(g.llm_calls)),
          h("td", { class: "num" }, `${fmtInt(g.input_tokens)} / ${fmtInt(g.output_tokens)}`),
          h("td", { class: "num" }, fmtInt(g.cached_input_tokens)),
          h("td", { class: g.unpriced_calls ? "num unpriced" : "num" }, fmtInt(g.unpriced_calls)),
          h("td", { class: "num" }, g.unpriced_calls && !g.partially_priced_calls && money.isZero(g.cost_usd)
            ? h("span", { class: "unpriced" }, "unpriced")
            : [money.usd(g.cost_usd), g.partially_priced_calls
              ? h("span", { class: "unpriced partial", title: "priced but for a part: a lower bound" }, ` (${fmtInt(g.partially_priced_calls)} partial)`) : null]),
          h("td", { class: "bar-cell" }, h("span", { class: "hbar", style: { width: `${money.ratio(g.cost_usd, max) * 100}%` } }))))
          : h("tr", null, h("td", { colspan: 7, class: "muted" }, "No LLM calls in this period.")))))),
    h("div", { class: "two-col" },
      h("section", { "aria-labelledby": "h-top" }, h("h2", { id: "h-top" }, "Most expensive runs"),
        h("ol", { class: "top-runs", id: "top-runs" }, top.runs.map((r) => h("li", null,
          h("a", { href: `#/runs/${encodeURIComponent(r.run_id)}` }, r.flow || r.run_id), " · ", costCell(r),
          h("span", { class: "muted small" }, ` · ${fmtTime(r.start)}`))))),
      h("section", { "aria-labelledby": "h-unpriced" }, h("h2", { id: "h-unpriced" }, "Unpriced calls by model"),
        unpricedModels.length ? h("ul", { id: "unpriced-models" }, unpricedModels.map((g) => h("li", null,
          h("code", null, g.key), ` (${g.provider || "?"}): `,
          h("span", { class: "unpriced" }, [g.unpriced_calls ? `${fmtInt(g.unpriced_calls)} unpriced` : "",
            g.unpriced_calls && g.partially_priced_calls ? ", " : "",
            g.partially_priced_calls ? `${fmtInt(g.partially_priced_calls)} partially priced` : ""].join("")))))
          : h("p", { class: "muted" }, "Every call in this period had a price."),
        h("p", { class: "muted small" }, "Give these models a price with FLOWSCOPE_PRICING_FILE (see the README), then reprice the stored calls; "
          + "\"Prices: catalog now\" previews the result."))));
}
