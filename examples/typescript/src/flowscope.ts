/**
 * flowscope conventions for the OpenTelemetry JS SDK, in one small module.
 *
 * Why this exists: the flowscope collector prices and groups any OTLP span, but
 * runs, node sequences and time travel need a few attributes that only the
 * code running the flow knows (which run, which step, what the state became).
 * This helper sets exactly the attribute names of flowscope's DESIGN.md /
 * docs/conventions.md on plain OpenTelemetry spans. Nothing here talks to
 * flowscope directly: spans go out through the standard OTLP/HTTP exporter,
 * so the same code works against any OTLP backend.
 *
 *   runFlow(name, input, fn)      run root span: invoke_workflow {name}
 *   node(name, type, fn)          a node span with the run's next step (0, 1, ...)
 *   recordChat(req, res)          a chat {model} span with gen_ai.usage.* (cost is left
 *                                 to the collector, which prices it: cost.source computed)
 *   tool(name, fn)                an execute_tool {name} span
 *   setState(path, value)         a flowscope.state "set" event on the current node span
 *
 * Context (current run, node, step counter) travels in OpenTelemetry context,
 * which NodeTracerProvider backs with AsyncLocalStorage, so async code works.
 */
import { randomBytes } from "node:crypto";

import {
  context,
  createContextKey,
  type Attributes,
  type Context,
  type Span,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { SimpleSpanProcessor, type SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";

/** Attribute names, as in flowscope's semconv.py (never invent names under gen_ai.). */
export const ATTR = {
  operation: "gen_ai.operation.name",
  provider: "gen_ai.provider.name",
  requestModel: "gen_ai.request.model",
  responseModel: "gen_ai.response.model",
  inputTokens: "gen_ai.usage.input_tokens", // INCLUDES cached input
  outputTokens: "gen_ai.usage.output_tokens", // INCLUDES reasoning
  cacheReadTokens: "gen_ai.usage.cache_read.input_tokens",
  cacheWriteTokens: "gen_ai.usage.cache_creation.input_tokens",
  reasoningTokens: "gen_ai.usage.reasoning.output_tokens",
  finishReasons: "gen_ai.response.finish_reasons",
  workflowName: "gen_ai.workflow.name",
  toolName: "gen_ai.tool.name",
  errorType: "error.type",
  runId: "flowscope.run.id",
  spanKind: "flowscope.span.kind", // run | node | llm | tool
  nodeName: "flowscope.node.name",
  nodeType: "flowscope.node.type", // task | llm | tool | router | agent | subflow
  nodeStep: "flowscope.node.step",
  nodeAttempt: "flowscope.node.attempt",
  routerBranch: "flowscope.router.branch",
  stateSeq: "flowscope.state.seq",
  stateOp: "flowscope.state.op",
  statePath: "flowscope.state.path",
  stateValue: "flowscope.state.value",
} as const;

export const STATE_EVENT = "flowscope.state";

export type NodeType = "task" | "llm" | "tool" | "router" | "agent" | "subflow";

interface RunState {
  id: string;
  flow: string;
  nextStep: number;
  nextSeq: number;
  span: Span;
}

interface NodeState {
  name: string;
  step: number;
  span: Span;
}

const RUN_KEY = createContextKey("flowscope.run");
const NODE_KEY = createContextKey("flowscope.node");
const TRACER = "flowscope-typescript-example";

let provider: NodeTracerProvider | undefined;

/** Set up OTLP/HTTP export to `${endpoint}/v1/traces` (the collector's port 4318 by default). */
export function initTracing(opts: {
  serviceName: string;
  endpoint?: string;
  headers?: Record<string, string>;
  processors?: SpanProcessor[]; // run before the exporter (the HazelJS bridge's, src/hazel-bridge.ts)
}) {
  const endpoint = (opts.endpoint ?? process.env.OTEL_EXPORTER_OTLP_ENDPOINT ?? "http://127.0.0.1:4318")
    .replace(/\/$/, "");
  provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ "service.name": opts.serviceName }),
    // Simple (not batch) so a short demo loses nothing; use BatchSpanProcessor in services.
    spanProcessors: [...(opts.processors ?? []), new SimpleSpanProcessor(new OTLPTraceExporter({ url: `${endpoint}/v1/traces`, headers: opts.headers }))],
  });
  provider.register();
  return provider;
}

export async function shutdownTracing(): Promise<void> {
  if (provider) {
    await provider.forceFlush();
    await provider.shutdown();
  }
}

/** A run id shaped like a trace id (32 hex), as flowscope's Python SDK makes them. */
export function newRunId(): string {
  return randomBytes(16).toString("hex");
}

function tracer() {
  return trace.getTracer(TRACER);
}

export function currentRun(ctx: Context = context.active()): RunState | undefined {
  return ctx.getValue(RUN_KEY) as RunState | undefined;
}

function currentNode(ctx: Context = context.active()): NodeState | undefined {
  return ctx.getValue(NODE_KEY) as NodeState | undefined;
}

/** Attributes every span inside a run carries, so any span alone says its run and node. */
function inherited(): Attributes {
  const run = currentRun();
  const node = currentNode();
  const attrs: Attributes = {};
  if (run) attrs[ATTR.runId] = run.id;
  if (node) {
    attrs[ATTR.nodeName] = node.name;
    attrs[ATTR.nodeStep] = node.step;
  }
  return attrs;
}

async function inSpan<T>(span: Span, ctx: Context, fn: () => Promise<T> | T): Promise<T> {
  try {
    const out = await context.with(ctx, fn);
    span.setStatus({ code: SpanStatusCode.OK });
    return out;
  } catch (err) {
    const e = err as Error;
    span.recordException(e);
    span.setAttribute(ATTR.errorType, e?.name ?? "Error");
    span.setStatus({ code: SpanStatusCode.ERROR, message: String(e?.message ?? e) });
    throw err;
  } finally {
    span.end();
  }
}

/**
 * One state event. `step` says which node step the change belongs to: the
 * node's own step, -1 for the run's input, and for a change made on the run
 * span between nodes the last step started (state at k = all changes up to k).
 */
function emitState(span: Span, run: RunState, op: string, path: string, value: unknown, step: number): void {
  span.addEvent(STATE_EVENT, {
    [ATTR.nodeStep]: step,
    [ATTR.stateSeq]: run.nextSeq++,
    [ATTR.stateOp]: op,
    [ATTR.statePath]: path,
    [ATTR.stateValue]: JSON.stringify(value ?? null),
  });
}

/** Run `fn` as one flowscope run named `flow`; `input` becomes the state snapshot at step -1. */
export async function runFlow<T>(flow: string, input: unknown, fn: (runId: string) => Promise<T> | T) {
  const id = newRunId();
  const span = tracer().startSpan(`invoke_workflow ${flow}`, {
    attributes: {
      [ATTR.operation]: "invoke_workflow",
      [ATTR.workflowName]: flow,
      [ATTR.spanKind]: "run",
      [ATTR.runId]: id,
    },
  });
  const run: RunState = { id, flow, nextStep: 0, nextSeq: 0, span };
  if (input !== undefined) emitState(span, run, "snapshot", "", input, -1);
  let ctx = trace.setSpan(context.active(), span);
  ctx = ctx.setValue(RUN_KEY, run).setValue(NODE_KEY, undefined);
  const result = await inSpan(span, ctx, () => fn(id));
  return { runId: id, result };
}

/** Run `fn` as the run's next node (steps are 0, 1, 2, ... in the order nodes start). */
export async function node<T>(name: string, type: NodeType, fn: () => Promise<T> | T, attempt = 0): Promise<T> {
  const run = currentRun();
  const step = run ? run.nextStep++ : 0;
  const span = tracer().startSpan(name, {
    attributes: {
      ...(run ? { [ATTR.runId]: run.id } : {}),
      [ATTR.spanKind]: "node",
      [ATTR.nodeName]: name,
      [ATTR.nodeType]: type,
      [ATTR.nodeStep]: step,
      [ATTR.nodeAttempt]: attempt,
    },
  });
  const ctx = trace.setSpan(context.active(), span).setValue(NODE_KEY, { name, step, span } as NodeState);
  return inSpan(span, ctx, fn);
}

/** Mark the branch a router node took. */
export function setBranch(branch: string): void {
  currentNode()?.span.setAttribute(ATTR.routerBranch, branch);
}

/** Record that the flow's state at `path` became `value` (time travel: state at step k). */
export function setState(path: string, value: unknown): void {
  const run = currentRun();
  if (!run) return;
  const current = currentNode();
  if (current) emitState(current.span, run, "set", path, value, current.step);
  else emitState(run.span, run, "set", path, value, run.nextStep - 1);
}

/** What an OpenAI-compatible chat completion reports; the shape of its `usage` block. */
export interface ChatUsage {
  prompt_tokens: number;
  completion_tokens: number;
  prompt_tokens_details?: { cached_tokens?: number };
  completion_tokens_details?: { reasoning_tokens?: number };
}

/**
 * Make one LLM call inside a `chat {model}` span and record its usage.
 * `call` does the request and returns the provider's response; OpenAI's
 * prompt_tokens already include cached tokens, so they map 1:1. (For
 * Anthropic add cache_read + cache_creation to input_tokens first.)
 */
export async function chat<R extends { model?: string; usage?: ChatUsage; choices?: { finish_reason?: string }[] }>(
  model: string,
  call: () => Promise<R>,
  providerName = "openai",
): Promise<R> {
  const span = tracer().startSpan(`chat ${model}`, {
    attributes: {
      ...inherited(),
      [ATTR.spanKind]: "llm",
      [ATTR.operation]: "chat",
      [ATTR.provider]: providerName,
      [ATTR.requestModel]: model,
    },
  });
  return inSpan(span, trace.setSpan(context.active(), span), async () => {
    const res = await call();
    if (res.model) span.setAttribute(ATTR.responseModel, res.model);
    const u = res.usage;
    if (u) {
      span.setAttribute(ATTR.inputTokens, u.prompt_tokens);
      span.setAttribute(ATTR.outputTokens, u.completion_tokens);
      span.setAttribute(ATTR.cacheReadTokens, u.prompt_tokens_details?.cached_tokens ?? 0);
      span.setAttribute(ATTR.reasoningTokens, u.completion_tokens_details?.reasoning_tokens ?? 0);
    }
    const reasons = (res.choices ?? []).map((c) => c.finish_reason ?? "").filter(Boolean);
    if (reasons.length) span.setAttribute(ATTR.finishReasons, reasons);
    return res;
  });
}

/** Run a tool inside an `execute_tool {name}` span. */
export async function tool<T>(name: string, fn: () => Promise<T> | T): Promise<T> {
  const span = tracer().startSpan(`execute_tool ${name}`, {
    attributes: { ...inherited(), [ATTR.spanKind]: "tool", [ATTR.operation]: "execute_tool", [ATTR.toolName]: name },
  });
  return inSpan(span, trace.setSpan(context.active(), span), fn);
}
