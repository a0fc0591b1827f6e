// The detail of a span or a step: attributes, tokens and cost parts, model, retries,
// error and stack, and the prompt and completion as a conversation when content was
// captured. Every value is untrusted text and is put into the page as text.

import { badge, fmtInt, fmtMs, fmtTime, h, jsonLine, kv, table } from "./dom.js";
import { isZero, usd } from "./money.js";
import { kindOf } from "./waterfall.js";

const A = {
  model: "gen_ai.response.model", requestModel: "gen_ai.request.model", provider: "gen_ai.provider.name",
  system: "gen_ai.system", input: "gen_ai.usage.input_tokens", output: "gen_ai.usage.output_tokens",
  cached: "gen_ai.usage.cache_read.input_tokens", cacheWrite: "gen_ai.usage.cache_creation.input_tokens",
  cacheWrite2: "gen_ai.usage.cache_write.input_tokens", reasoning: "gen_ai.usage.reasoning.output_tokens",
  cost: "flowscope.cost.usd", costIn: "flowscope.cost.input_usd", costCached: "flowscope.cost.cached_input_usd",
  costWrite: "flowscope.cost.cache_write_usd", costOut: "flowscope.cost.output_usd", source: "flowscope.cost.source",
  pricing: "flowscope.pricing.version", unpricedParts: "flowscope.cost.unpriced_parts", estimated: "flowscope.usage.estimated", hit: "flowscope.cache.hit",
  saved: "flowscope.cache.saved_usd", retries: "flowscope.retry.count", fbFrom: "flowscope.fallback.from",
  fbTo: "flowscope.fallback.to", fbReason: "flowscope.fallback.reason", inMsgs: "gen_ai.input.messages",
  outMsgs: "gen_ai.output.messages", errorType: "error.type", finish: "gen_ai.response.finish_reasons",
};

function parseJson(text) {
  if (typeof text !== "string") return text;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function partText(part) {
  if (part === null || part === undefined) return "";
  if (typeof part === "string") return part;
  if (typeof part.text === "string") return part.text;
  if (typeof part.content === "string") return part.content;
  if (part.type === "tool_call" || part.type === "function" || part.function || part.name) return jsonLine(part, 4000);
  return jsonLine(part, 4000);
}

/** A message's content as text: a string, a list of parts (OpenAI, Anthropic, OTel "parts"). */
export function messageText(msg) {
  if (msg === null || typeof msg !== "object") return String(msg);
  const pieces = [];
  const content = msg.content ?? msg.parts;
  if (typeof content === "string") pieces.push(content);
  else if (Array.isArray(content)) pieces.push(...content.map(partText));
  else if (content !== undefined && content !== null) pieces.push(jsonLine(content, 4000));
  if (Array.isArray(msg.tool_calls)) pieces.push(...msg.tool_calls.map((t) => `tool call: ${jsonLine(t, 2000)}`));
  return pieces.filter((p) => p !== "").join("\n");
}

function messages(raw) {
  const v = parseJson(raw);
  if (Array.isArray(v)) return v;
  if (v && typeof v === "object") return [v];
  if (typeof v === "string" && v) return [{ role: "?", content: v }];
  return [];
}

export function conversation(attrs) {
  const ins = messages(attrs[A.inMsgs]);
  const outs = messages(attrs[A.outMsgs]);
  if (!ins.length && !outs.length) return null;
  const bubble = (m, side) => h("li", { class: `msg ${side} role-${String(m.role || "").replace(/[^a-z]/g, "")}` },
    h("span", { class: "role" }, String(m.role || (side === "out" ? "assistant" : "?"))),
    h("pre", { class: "msg-text" }, messageText(m)));
  return h("section", { class: "conversation", "aria-label": "Conversation" },
    h("h3", null, "Conversation"),
    h("ol", { class: "messages" }, ins.map((m) => bubble(m, "in")), outs.map((m) => bubble(m, "out"))));
}

function tokens(a) {
  const rows = [
    ["input (incl. cached)", a[A.input]], ["cached input", a[A.cached]],
    ["cache write", a[A.cacheWrite] ?? a[A.cacheWrite2]], ["output (incl. reasoning)", a[A.output]],
    ["reasoning", a[A.reasoning]],
  ].filter(([, v]) => v !== undefined);
  if (!rows.length) return null;
  return h("section", null, h("h3", null, "Tokens"), kv(rows.map(([k, v]) => [k, fmtInt(v)])),
    a[A.estimated] === "true" ? h("p", { class: "muted small" }, "Counted locally (the provider reported no usage).") : null);
}

function costs(a) {
  const source = a[A.source];
  if (!source && a[A.cost] === undefined) return null;
  const total = source === "unpriced"
    ? h("span", { class: "unpriced" }, "unpriced")
    : source === "partial"
      ? h("span", null, h("strong", null, usd(a[A.cost] || "0")), h("span", { class: "unpriced partial" }, " (partial: a lower bound)"))
      : h("strong", null, usd(a[A.cost] || "0"));
  const rows = [["total", total]];
  if (a[A.unpricedParts]) rows.push(["without a price", h("span", { class: "unpriced" }, a[A.unpricedParts])]);
  for (const [label, key] of [["input", A.costIn], ["cached input", A.costCached], ["cache write", A.costWrite],
    ["output", A.costOut]]) {
    if (a[key] !== undefined) rows.push([label, usd(a[key])]);
  }
  rows.push(["source", source || "—"]);
  if (a[A.pricing]) rows.push(["price catalog", a[A.pricing]]);
  if (a[A.hit] === "true") rows.push(["cache", h("span", null, badge("cache hit", "good"), ` saved ${usd(a[A.saved] || "0")}`)]);
  return h("section", null, h("h3", null, "Cost"), kv(rows));
}

function retries(span) {
  const evs = (span.events || []).filter((e) => e.name === "flowscope.retry");
  if (!evs.length) return null;
  return h("section", null, h("h3", null, `Retries (${evs.length})`),
    table(["attempt", "status", "error", "backoff", "at"], evs.map((e) => h("tr", null,
      h("td", null, e.attributes["flowscope.retry.attempt"] ?? ""),
      h("td", null, e.attributes["flowscope.retry.status"] ?? ""),
      h("td", null, e.attributes["error.type"] ?? ""),
      h("td", null, e.attributes["flowscope.retry.backoff_s"] !== undefined
        ? `${e.attributes["flowscope.retry.backoff_s"]} s` : ""),
      h("td", null, fmtTime(e.timestamp))))));
}

function errors(span) {
  const exc = (span.events || []).filter((e) => e.name === "exception");
  if (span.status !== "Error" && !exc.length) return null;
  return h("section", { class: "error-detail" }, h("h3", null, "Error"),
    span.status_message ? h("p", { class: "error-message" }, span.status_message) : null,
    span.attributes[A.errorType] ? h("p", null, "type: ", h("code", null, span.attributes[A.errorType])) : null,
    exc.map((e) => h("div", null,
      h("p", null, h("code", null, e.attributes["exception.type"] || "exception"), ": ",
        e.attributes["exception.message"] || ""),
      e.attributes["exception.stacktrace"]
        ? h("details", { open: true }, h("summary", null, "Stack"), h("pre", { class: "stack" }, e.attributes["exception.stacktrace"]))
        : null)));
}

function otherEvents(span) {
  const evs = (span.events || []).filter((e) => !["flowscope.retry", "exception", "flowscope.state"].includes(e.name));
  if (!evs.length) return null;
  return h("section", null, h("h3", null, "Events"), h("ul", { class: "events" }, evs.map((e) => h("li", null,
    h("code", null, e.name), " ", fmtTime(e.timestamp), " ",
    Object.entries(e.attributes).map(([k, v]) => h("span", { class: "attr-pill" }, `${k}=${v}`))))));
}

function attributes(span) {
  const keys = Object.keys(span.attributes || {}).sort();
  return h("section", null, h("details", null, h("summary", null, `All attributes (${keys.length})`),
    table(["key", "value"], keys.map((k) => h("tr", null, h("td", { class: "mono" }, k),
      h("td", { class: "mono attr-value" }, span.attributes[k]))), { class: "attrs" })));
}

export function spanDetail(span, { stateHref } = {}) {
  const a = span.attributes || {};
  const kind = kindOf(span) || "span";
  const model = a[A.model] || a[A.requestModel];
  const fallback = a[A.fbTo]
    ? h("p", null, badge("fell back", "warn"), ` ${a[A.fbFrom] || "?"} → ${a[A.fbTo]}`, a[A.fbReason] ? ` (${a[A.fbReason]})` : "")
    : null;
  const step = a["flowscope.node.step"];
  return h("article", { class: "detail", "aria-label": `Detail of ${span.name}` },
    h("h2", { tabindex: "-1", class: "detail-title" }, span.name),
    kv([
      ["kind", kind],
      ["status", h("span", { class: `status ${span.status === "Error" ? "error" : "ok"}` }, span.status)],
      ["start", fmtTime(span.start)],
      ["duration", fmtMs(span.duration_ms)],
      model ? ["model", `${a[A.provider] || a[A.system] || ""} ${model}`.trim()] : null,
      a[A.retries] && a[A.retries] !== "0" ? ["retries", a[A.retries]] : null,
      a[A.finish] ? ["finish", a[A.finish]] : null,
      ["service", span.service],
      ["span id", h("code", null, span.span_id)],
    ]),
    step !== undefined && stateHref ? h("p", null, h("a", { href: stateHref(Number(step)) }, `State after step ${step} →`)) : null,
    fallback, costs(a), tokens(a), retries(span), errors(span), conversation(a), otherEvents(span), attributes(span));
}

export function llmCostText(span) {
  const a = span.attributes || {};
  if (a[A.source] === "unpriced") return "unpriced";
  if (a[A.source] === "partial") return `${usd(a[A.cost] || "0")} (partial)`;
  if (a[A.hit] === "true") return `${usd(a[A.cost] || "0")} (cache hit)`;
  return usd(a[A.cost] || "0");
}

export function stepDetail(node, attempts, spanById, { spanHref, stateHref }) {
  const calls = [];
  const walk = (sp) => {
    for (const c of sp.children || []) {
      if (kindOf(c) === "llm" || kindOf(c) === "tool") calls.push(c);
      if (kindOf(c) !== "node") walk(c);
    }
  };
  for (const n of attempts) {
    const sp = spanById.get(n.span_id);
    if (sp) walk(sp);
  }
  return h("article", { class: "detail", "aria-label": `Step ${node.step}` },
    h("h2", { tabindex: "-1", class: "detail-title" }, `Step ${node.step}: ${node.name}`),
    kv([
      ["type", node.type], ["attempts", String(attempts.length)],
      node.branch ? ["branch", node.branch] : null,
      ["status", h("span", { class: `status ${node.status}` }, node.status)],
      ["duration", fmtMs(node.duration_ms)], ["LLM calls", fmtInt(node.llm_calls)],
      ["tokens in / out", `${fmtInt(node.input_tokens)} / ${fmtInt(node.output_tokens)}`],
      ["cost", isZero(node.cost_usd) && calls.some((c) => c.attributes[A.source] === "unpriced")
        ? h("span", { class: "unpriced" }, "unpriced") : usd(node.cost_usd)],
      node.retries ? ["retries", String(node.retries)] : null,
      node.error ? ["error", h("span", { class: "error-message" }, node.error)] : null,
    ]),
    h("p", null, h("a", { href: stateHref(node.step), class: "button secondary" }, `State after step ${node.step} →`)),
    attempts.length > 1 ? h("section", null, h("h3", null, "Attempts"), h("ol", null, attempts.map((n) => h("li", null,
      h("a", { href: spanHref(n.span_id) }, `attempt ${n.attempt + 1}`), ` · ${n.status} · ${fmtMs(n.duration_ms)}`,
      n.error ? ` · ${n.error}` : ""))))
      : null,
    calls.length ? h("section", null, h("h3", null, "Calls"), h("ul", { class: "calls" }, calls.map((c) => h("li", null,
      h("a", { href: spanHref(c.span_id) }, c.name), ` · ${fmtMs(c.duration_ms)} · `,
      kindOf(c) === "llm" ? llmCostText(c) : "", c.status === "Error" ? [" · ", badge("failed", "failed")] : null))))
      : null,
    ...attempts.map((n) => {
      const sp = spanById.get(n.span_id);
      return sp ? h("section", { class: "sub-detail" }, h("h3", null, `Node span${attempts.length > 1 ? ` (attempt ${n.attempt + 1})` : ""}`),
        errors(sp), attributes(sp)) : null;
    }));
}
