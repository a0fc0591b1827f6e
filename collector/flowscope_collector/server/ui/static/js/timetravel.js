// Time travel: the state after step k as a tree, the diff to the step before it, a slider
// and the arrow keys to move, and a way back to the step in the timeline.

import * as api from "./api.js";
import { h, jsonLine, replace } from "./dom.js";

/** A state path as the API writes it: keys joined by ".", with "." and "\" escaped. */
export function joinPath(parts) {
  return parts.map((p) => String(p).replace(/\\/g, "\\\\").replace(/\./g, "\\.")).join(".");
}

function leaf(value) {
  const type = value === null ? "null" : Array.isArray(value) ? "array" : typeof value;
  return h("span", { class: `val t-${type}` }, jsonLine(value, 2000));
}

/** The state as nested lists; paths in `marks` (Map path -> "added"|"changed") are highlighted. */
export function stateTree(value, marks, path = [], depth = 0) {
  const isObj = value !== null && typeof value === "object";
  if (!isObj) return leaf(value);
  const entries = Array.isArray(value) ? value.map((v, i) => [String(i), v]) : Object.entries(value);
  if (!entries.length) return h("span", { class: "val" }, Array.isArray(value) ? "[]" : "{}");
  return h("ul", { class: "tree", role: depth === 0 ? "tree" : "group" }, entries.map(([k, v]) => {
    const p = [...path, k];
    const mark = marks.get(joinPath(p));
    const child = v !== null && typeof v === "object";
    const keyEl = h("span", { class: "key" }, k);
    const item = child
      ? h("details", { open: depth < 3 }, h("summary", null, keyEl,
        h("span", { class: "muted small" }, Array.isArray(v) ? ` [${v.length}]` : ` {${Object.keys(v).length}}`)),
      stateTree(v, marks, p, depth + 1))
      : h("span", null, keyEl, ": ", leaf(v));
    return h("li", { role: "treeitem", class: mark ? `mark-${mark}` : null, dataset: { path: joinPath(p) } }, item);
  }));
}

const byPath = (obj) => Object.entries(obj || {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

/** Diff lines, added then removed then changed, each in path order. */
export function diffLines(diff) {
  const lines = [];
  for (const [p, v] of byPath(diff.added)) {
    lines.push(h("li", { class: "diff-add" }, h("span", { class: "sign", "aria-label": "added" }, "+"), " ",
      h("code", null, p), " = ", jsonLine(v)));
  }
  for (const [p, v] of byPath(diff.removed)) {
    lines.push(h("li", { class: "diff-del" }, h("span", { class: "sign", "aria-label": "removed" }, "−"), " ",
      h("code", null, p), " (was ", jsonLine(v), ")"));
  }
  for (const [p, v] of byPath(diff.changed)) {
    lines.push(h("li", { class: "diff-chg" }, h("span", { class: "sign", "aria-label": "changed" }, "~"), " ",
      h("code", null, p), ": ", jsonLine(v.from), " → ", jsonLine(v.to)));
  }
  return lines;
}

/**
 * Render the time-travel view of step `at` into `container`.
 * steps: every step of the run (-1 = the input); names: Map step -> node name.
 */
export async function renderTimeTravel(container, { runId, at, steps, names, go, signal, current }) {
  const rid = encodeURIComponent(runId);
  const idx = Math.max(0, steps.indexOf(at));
  const prev = idx > 0 ? steps[idx - 1] : null;
  const [state, diff] = await Promise.all([
    api.get(`/api/v1/runs/${rid}/state`, { at }, { signal }),
    prev === null ? Promise.resolve(null) : api.get(`/api/v1/runs/${rid}/state/diff`, { from: prev, to: at }, { signal }),
  ]);
  if (current && !current()) return null; // a later step was asked for while this one loaded
  const stateHref = (k) => `#/runs/${rid}/state/${k}`;
  const label = (k) => (k === -1 ? "input" : `${k}. ${names.get(k) || "?"}`);
  const slider = h("input", {
    type: "range", id: "tt-slider", min: 0, max: steps.length - 1, value: idx, step: 1,
    "aria-label": "Step", "aria-valuetext": label(at),
    onchange: (ev) => go(stateHref(steps[Number(ev.target.value)])),
  });
  const prevBtn = h("button", { type: "button", disabled: idx === 0, onclick: () => go(stateHref(steps[idx - 1])),
    "aria-label": "Previous step" }, "← Previous");
  const nextBtn = h("button", { type: "button", disabled: idx === steps.length - 1,
    onclick: () => go(stateHref(steps[idx + 1])), "aria-label": "Next step" }, "Next →");
  const marks = new Map();
  if (diff) {
    for (const p of Object.keys(diff.added)) marks.set(p, "added");
    for (const p of Object.keys(diff.changed)) marks.set(p, "changed");
  }
  const lines = diff ? diffLines(diff) : [];
  const stepList = h("ul", { class: "tt-steps" }, steps.map((k) => h("li", null, h("a", {
    href: stateHref(k), "aria-current": k === at ? "step" : null, class: k === at ? "current" : null,
  }, label(k)))));
  replace(container,
    h("section", { class: "timetravel", "aria-label": "Time travel" },
      h("div", { class: "tt-head" },
        h("h2", { tabindex: "-1", class: "detail-title", id: "tt-title" }, `State after ${at === -1 ? "the input" : `step ${label(at)}`}`),
        at >= 0 ? h("a", { href: `#/runs/${rid}/step/${at}`, class: "button secondary" }, "← Back to this step in the timeline")
          : h("a", { href: `#/runs/${rid}`, class: "button secondary" }, "← Back to the run")),
      h("div", { class: "tt-controls" }, prevBtn, slider, nextBtn,
        h("span", { class: "tt-label", "aria-live": "polite" }, `${idx + 1} / ${steps.length}: ${label(at)}`)),
      h("p", { class: "muted small" }, "Use ← and → to move through the steps."),
      h("div", { class: "tt-body" },
        h("nav", { "aria-label": "Steps" }, stepList),
        h("div", { class: "tt-main" },
          h("section", { class: "diff" }, h("h3", null, prev === null ? "Input" : `Changes since ${label(prev)}`),
            prev === null ? h("p", { class: "muted" }, "The run's input: nothing before it.")
              : lines.length ? h("ul", { class: "diff-lines" }, lines) : h("p", { class: "muted" }, "No change at this step.")),
          h("section", { class: "state" }, h("h3", null, "State"), h("div", { class: "tree-wrap" }, stateTree(state.state, marks)))))));
  return true;
}
