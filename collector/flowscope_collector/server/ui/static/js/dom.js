// Building DOM without HTML strings: every piece of data becomes a text node or an
// attribute value set through the DOM, never markup. No innerHTML anywhere in the explorer.

const SVG_NS = "http://www.w3.org/2000/svg";

function apply(el, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.setAttribute("class", value);
    else if (name === "text") el.textContent = String(value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "style") Object.assign(el.style, value); // CSSOM: allowed by the CSP, unlike style=""
    else if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name.startsWith("on")) throw new Error(`refusing string event handler ${name}`);
    else if (name === "value" && "value" in el) el.value = value;
    else if (name === "checked" || name === "selected" || name === "disabled") el[name] = Boolean(value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** h("a", {href, class, onclick}, "text", child, ...): an element; strings become text nodes. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

/** The same for SVG elements. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

// --- formatting -----------------------------------------------------------------

export function fmtInt(n) {
  return Number(n || 0).toLocaleString("en-US");
}

export function fmtMs(ms) {
  const v = Number(ms || 0);
  if (v < 1) return `${v.toFixed(2)} ms`;
  if (v < 1000) return `${v.toFixed(v < 10 ? 1 : 0)} ms`;
  if (v < 60000) return `${(v / 1000).toFixed(2)} s`;
  const m = Math.floor(v / 60000);
  return `${m} min ${Math.round((v % 60000) / 1000)} s`;
}

/** Microseconds since the epoch from the API's ISO time ("2026-11-21T12:00:00.123456Z"). */
export function isoToUs(iso) {
  if (!iso) return 0;
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?$/.exec(iso);
  if (!m) return Date.parse(iso) * 1000;
  const base = Date.parse(m[1] + (m[3] || "Z"));
  const frac = (m[2] || "").padEnd(6, "0").slice(0, 6);
  return base * 1000 + Number(frac);
}

export function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(isoToUs(iso) / 1000);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function ago(iso) {
  const s = (Date.now() - isoToUs(iso) / 1000) / 1000;
  if (s < 60) return `${Math.max(0, Math.round(s))} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

/** A JSON value as one line of text (strings quoted), cut at `max` characters. */
export function jsonLine(value, max = 400) {
  let text;
  try {
    text = JSON.stringify(value);
  } catch {
    text = String(value);
  }
  if (text === undefined) text = "undefined";
  return text.length > max ? text.slice(0, max) + "…" : text;
}

export function badge(text, kind, title) {
  return h("span", { class: `badge ${kind || ""}`, title: title || null }, text);
}

export function kv(rows) {
  // rows: [label, value(Node|string)] pairs -> <dl>
  return h("dl", { class: "kv" }, rows.filter(Boolean).map(([k, v]) => [h("dt", null, k), h("dd", null, v)]));
}

export function table(headers, rows, attrs) {
  return h("div", { class: "table-wrap" },
    h("table", attrs || {},
      h("thead", null, h("tr", null, headers.map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", null, rows)));
}

export function errorBox(err) {
  return h("div", { class: "error-box", role: "alert" }, h("strong", null, "Could not load: "),
    err && err.message ? err.message : String(err));
}
