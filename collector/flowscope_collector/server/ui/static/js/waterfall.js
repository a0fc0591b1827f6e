// The span tree on a time axis: run → node → llm/tool. A client library's own spans under
// an LLM or tool call (HTTP, and spans of other instrumentations) are folded into their
// parent's row; a button unfolds them.

import { fmtMs, h, isoToUs } from "./dom.js";

const KINDS = new Set(["run", "node", "llm", "tool", "wait"]);

export function kindOf(span) {
  return (span.attributes && span.attributes["flowscope.span.kind"]) || "";
}

/** Flatten the tree depth-first: [{span, depth, folded: [spans hidden under it]}]. */
export function flatten(roots) {
  const out = [];
  const visit = (span, depth, parentKind) => {
    const entry = { span, depth, folded: [] };
    out.push(entry);
    const mine = kindOf(span);
    for (const child of span.children || []) {
      const ck = kindOf(child);
      if ((mine === "llm" || mine === "tool") && !KINDS.has(ck)) {
        collect(child, entry.folded);
      } else {
        visit(child, depth + 1, mine);
      }
    }
  };
  const collect = (span, into) => {
    into.push(span);
    for (const c of span.children || []) collect(c, into);
  };
  for (const r of roots) visit(r, 0, "");
  return out;
}

function ticks(total) {
  return [0, 0.25, 0.5, 0.75, 1].map((f) => ({ f, label: fmtMs((total * f) / 1000) }));
}

/**
 * rows: flatten(); href(span) -> link; selected: span id. Returns the element.
 */
export function drawWaterfall({ roots, href, selected }) {
  const rows = flatten(roots);
  let t0 = Infinity;
  let t1 = -Infinity;
  for (const { span } of rows) {
    const st = isoToUs(span.start);
    t0 = Math.min(t0, st);
    t1 = Math.max(t1, st + span.duration_ms * 1000);
  }
  const total = Math.max(1, t1 - t0);
  const axis = h("div", { class: "wf-axis", "aria-hidden": "true" },
    h("span", { class: "wf-label" }, "span"),
    h("span", { class: "wf-track" }, ticks(total).map((t) => h("span", {
      class: "wf-tick", style: { left: `${t.f * 100}%` } }, t.label))));
  const list = h("div", { class: "wf-rows", role: "list" });
  const frag = document.createDocumentFragment();
  const bar = (span, extraClass) => {
    const st = isoToUs(span.start);
    const left = ((st - t0) / total) * 100;
    const width = Math.max(((span.duration_ms * 1000) / total) * 100, 0.15);
    return h("span", { class: "wf-track" }, h("span", {
      class: `wf-bar k-${kindOf(span) || "other"} ${span.status === "Error" ? "err" : ""} ${extraClass || ""}`,
      style: { left: `${Math.min(left, 99.8)}%`, width: `${Math.min(width, 100 - Math.min(left, 99.8))}%` },
    }), h("span", { class: "wf-dur" }, fmtMs(span.duration_ms)));
  };
  const rowEl = (span, depth, folded, nested) => {
    const kind = kindOf(span) || "other";
    const row = h("div", { class: `wf-row ${nested ? "folded-child" : ""} ${span.span_id === selected ? "selected" : ""}`,
      role: "listitem", dataset: { span: span.span_id, kind } });
    const foldCell = h("span", { class: "wf-fold" });
    const label = h("span", { class: "wf-label", style: { paddingLeft: `${depth * 14 + 4}px` } },
      h("span", { class: `kind k-${kind}` }, kind), h("span", { class: "wf-name" }, span.name));
    row.append(foldCell, h("a", { href: href(span), class: "wf-link" }, label, bar(span)));
    if (!folded.length) return row;
    const inner = h("div", { class: "wf-folded", hidden: true });
    const toggle = h("button", {
      type: "button", class: "fold", "aria-expanded": "false",
      "aria-label": `show ${folded.length} folded span(s) under ${span.name}`,
      onclick: () => {
        const open = toggle.getAttribute("aria-expanded") === "true";
        toggle.setAttribute("aria-expanded", String(!open));
        toggle.textContent = open ? `+${folded.length}` : `−${folded.length}`;
        inner.hidden = open;
        if (!open && !inner.firstChild) {
          for (const f of folded) inner.append(rowEl(f, depth + 1, [], true));
        }
      },
    }, `+${folded.length}`);
    foldCell.append(toggle);
    return h("div", { class: "wf-group" }, row, inner);
  };
  for (const { span, depth, folded } of rows) frag.append(rowEl(span, depth, folded, false));
  list.append(frag);
  return h("div", { class: "waterfall" }, axis, list);
}
