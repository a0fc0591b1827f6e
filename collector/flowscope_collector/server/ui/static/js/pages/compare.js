// Compare: two runs side by side — path, cost, latency — and the first step where their
// states diverge (GET /api/v1/runs/compare).

import * as api from "../api.js";
import { fmtInt, fmtMs, fmtTime, h, replace } from "../dom.js";
import * as money from "../money.js";
import { diffLines } from "../timetravel.js";

function pickForm(ctx, a, b) {
  const ia = h("input", { id: "cmp-a", name: "a", value: a || "", required: true, placeholder: "run id", class: "mono" });
  const ib = h("input", { id: "cmp-b", name: "b", value: b || "", required: true, placeholder: "run id", class: "mono" });
  return h("form", {
    class: "filters", "aria-label": "Runs to compare",
    onsubmit: (ev) => {
      ev.preventDefault();
      ctx.go(`#/compare/${encodeURIComponent(ia.value.trim())}/${encodeURIComponent(ib.value.trim())}`);
    },
  },
  h("div", { class: "field wide" }, h("label", { for: "cmp-a" }, "Run A"), ia),
  h("div", { class: "field wide" }, h("label", { for: "cmp-b" }, "Run B"), ib),
  h("div", { class: "field actions" }, h("button", { type: "submit" }, "Compare")));
}

function side(label, x, other, firstDiff) {
  const rid = encodeURIComponent(x.run_id);
  return h("section", { class: "cmp-side card", "aria-label": `Run ${label}`, dataset: { side: label } },
    h("h2", null, `${label}: `, h("a", { href: `#/runs/${rid}` }, x.flow || x.run_id)),
    h("p", { class: "mono small muted" }, x.run_id),
    h("dl", { class: "kv" },
      h("dt", null, "status"), h("dd", null, h("span", { class: `status ${x.status}` }, x.status)),
      h("dt", null, "started"), h("dd", null, fmtTime(x.start)),
      h("dt", null, "duration"), h("dd", { dataset: { k: "duration" } }, fmtMs(x.duration_ms)),
      h("dt", null, "cost"), h("dd", { dataset: { k: "cost" } }, money.usd(x.cost_usd)),
      h("dt", null, "LLM calls"), h("dd", null, fmtInt(x.llm_calls)),
      h("dt", null, "tokens in / out"), h("dd", null, `${fmtInt(x.input_tokens)} / ${fmtInt(x.output_tokens)}`),
      h("dt", null, "errors"), h("dd", null, fmtInt(x.errors))),
    h("h3", null, "Path"),
    h("ol", { class: "cmp-path", start: 0 }, x.nodes.map((n, i) => {
      const differs = firstDiff !== null && i >= firstDiff;
      return h("li", { class: [differs ? "differs" : "", n.status === "error" ? "failed" : ""].join(" "),
        dataset: { step: String(n.step) } },
      h("a", { href: `#/runs/${rid}/step/${n.step}` }, n.name),
      h("span", { class: "muted small" }, ` · ${money.usd(n.cost_usd)} · ${fmtMs(n.duration_ms)}`),
      i === firstDiff ? h("span", { class: "badge warn" }, "paths part here") : null);
    })));
}

export async function renderCompare(ctx) {
  const { main, parts } = ctx;
  const [a, b] = [parts[1], parts[2]];
  const controller = new AbortController();
  ctx.setCleanup(() => controller.abort());
  if (!a || !b) {
    replace(main, h("h1", null, "Compare two runs"), pickForm(ctx, a, b),
      h("p", { class: "muted" }, "Or tick two runs in the ", h("a", { href: "#/runs" }, "runs list"), " and press Compare."));
    (a ? document.getElementById("cmp-b") : document.getElementById("cmp-a"))?.focus();
    return;
  }
  replace(main, h("p", { class: "muted" }, "Comparing…"));
  const c = await api.get("/api/v1/runs/compare", { a, b }, { signal: controller.signal });
  const div = c.first_state_divergence;
  const delta = (text) => (money.compare(text, "0") > 0 ? `+${money.usd(text)}` : money.usd(text));
  const fork = c.fork;
  replace(main,
    h("h1", null, "Compare runs"),
    fork ? h("p", { class: "muted", id: "compare-fork" },
      `${fork.child === c.a.run_id ? "A" : "B"} is a fork of ${fork.parent === c.a.run_id ? "A" : "B"} after step ${fork.at_step}: `,
      fork.diverged_at_step === null ? "it did the same afterwards" : `it diverged at step ${fork.diverged_at_step}`) : null,
    h("div", { class: "stats" },
      h("div", { class: "stat", dataset: { stat: "path" } }, h("span", { class: "stat-label" }, "Path"),
        h("span", { class: "stat-value" }, c.same_path ? "same path" : "different paths"),
        c.first_path_difference !== null ? h("span", { class: "stat-sub" }, `from position ${c.first_path_difference}`) : null),
      h("div", { class: "stat", dataset: { stat: "cost-delta" } }, h("span", { class: "stat-label" }, "Cost B − A"),
        h("span", { class: "stat-value" }, delta(c.cost_delta_usd))),
      h("div", { class: "stat", dataset: { stat: "duration-delta" } }, h("span", { class: "stat-label" }, "Duration B − A"),
        h("span", { class: "stat-value" }, `${c.duration_delta_ms > 0 ? "+" : ""}${fmtMs(Math.abs(c.duration_delta_ms)).replace(/^/, c.duration_delta_ms < 0 ? "−" : "")}`)),
      h("div", { class: "stat", dataset: { stat: "divergence" } }, h("span", { class: "stat-label" }, "States diverge"),
        h("span", { class: "stat-value" }, div ? (div.step === -1 ? "at the input" : `after step ${div.step}`) : "never"),
        div && div.step >= 0 ? h("span", { class: "stat-sub" }, `A: ${div.node_a || "—"} · B: ${div.node_b || "—"}`) : null)),
    div ? h("section", { class: "diff card", id: "divergence" },
      h("h2", null, div.step === -1 ? "The inputs differ" : `First divergent state: after step ${div.step}`),
      h("p", { class: "muted small" }, "A → B at that step. ",
        h("a", { href: `#/runs/${encodeURIComponent(c.a.run_id)}/state/${div.step}` }, "A's state"), " · ",
        h("a", { href: `#/runs/${encodeURIComponent(c.b.run_id)}/state/${div.step}` }, "B's state")),
      h("ul", { class: "diff-lines" }, diffLines(div))) : null,
    h("div", { class: "compare" }, side("A", c.a, c.b, c.first_path_difference), side("B", c.b, c.a, c.first_path_difference)),
    h("details", null, h("summary", null, "Compare other runs"), pickForm(ctx, a, b)));
}
