/**
 * The small bridge between the published @hazeljs/agent runtime and flowscope.
 *
 * What the runtime already does (2.0.2, dist/utils/agent-tracing.js): given an
 * observability provider it opens, through @opentelemetry/api, `agent.run`
 * (one runtime.execute), `agent.execute` (one execution), `agent.llm` (one
 * model call, around the LLM provider adapter) and `agent.tool.execute` (one
 * tool call), with `agent.name`, `agent.execution_id` / `agent.run_id` and,
 * on `agent.run` when it succeeds, `agent.state` / `agent.duration_ms`. The
 * flowscope collector maps those on ingest (docs/conventions.md, "HazelJS"):
 * the execution is the run, tool calls are tool nodes, `agent.llm` with usage
 * is a priced LLM call.
 *
 * What it leaves out, and this file adds (nothing else):
 *
 *  1. `flowscopeObservability()`: the observability provider itself (its
 *     tracer is the OTel API's; trackCost is left to the collector, which
 *     prices from the catalog).
 *  2. `HazelSpanProcessor`, at span start:
 *     - a span opened inside an execution by someone else (an OpenAI
 *       instrumentation, the example's `chat` span) gets `flowscope.run.id`,
 *       so it joins the execution's run rather than the trace's;
 *     - when an LLM span (an OpenAI instrumentation's) starts beneath
 *       `agent.llm`, one of the two is the call, so usage recorded on both is
 *       counted once (the collector sees one span at a time and cannot tell
 *       on its own): if the adapter declared `agent.llm` the call
 *       (`flowscope.span.kind=llm`, set before it sends), the child becomes
 *       `flowscope.span.kind=http` (a client library's span inside an LLM
 *       call, never counted); otherwise `agent.llm` becomes a node of type
 *       llm and the child is the call.
 *  3. `bridgeEvents(runtime)`, on the runtime's event emitter, onto the span
 *     active when the event is emitted:
 *     - `agent.execution.started`: `agent.run` gets the execution's id (the
 *       runtime sets it only on success, so a failed execution's `agent.run`
 *       would fall outside its run);
 *     - `agent.execution.failed`: the run span (`agent.execute`) is an error
 *       (the runtime returns the failure instead of throwing inside it, and
 *       then sets status OK on the span: the bridge keeps the error);
 *     - `agent.budget.exceeded`: `flowscope.budget.exceeded` and a
 *       `flowscope.budget.exceeded` event with the budget and usage on the run span;
 *     - `tool.execution.failed`: the tool span is an error with the message.
 *  Steps (`agent.step.*`) get no span: a step is the `agent.llm` and
 *  `agent.tool.execute` spans it contains, and a span opened from an event
 *  could not be their parent.
 */
import { type Context, type Span, SpanStatusCode, trace } from "@opentelemetry/api";
import type { ReadableSpan, SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { ATTR } from "./flowscope";

/** The runtime's names (dist/utils/agent-tracing.js and its callers). */
const HAZEL = {
  executionId: "agent.execution_id",
  runId: "agent.run_id",
  runSpan: "agent.run",
  llmSpan: "agent.llm",
} as const;

const LLM_OPERATIONS = new Set(["chat", "text_completion", "generate_content", "embeddings"]);

/** The span object the SDK hands out: readable attributes and name, and writable. */
type SdkSpan = Span & { name: string; attributes: Record<string, unknown> };

/** An execution id (a UUID) as a flowscope run id: 32 lowercase hex, as the collector writes it. */
export function runIdOf(executionId: string): string {
  const hex = executionId.replace(/-/g, "").toLowerCase();
  return /^[0-9a-f]{32}$/.test(hex) ? hex : executionId;
}

function runIdOfSpan(span: SdkSpan): string | undefined {
  const a = span.attributes ?? {};
  const own = a[ATTR.runId];
  if (typeof own === "string" && own) return own;
  const ex = a[HAZEL.executionId] || a[HAZEL.runId];
  return typeof ex === "string" && ex ? runIdOf(ex) : undefined;
}

function isLlmCall(a: Record<string, unknown>): boolean {
  return a[ATTR.spanKind] === "llm" || LLM_OPERATIONS.has(String(a[ATTR.operation] ?? ""))
    || a["llm.request.type"] !== undefined || String(a["openinference.span.kind"] ?? "").toUpperCase() === "LLM";
}

/** HazelJS's ObservabilityProvider, backed by the globally registered OTel tracer provider. */
export function flowscopeObservability() {
  return {
    start: async () => undefined,
    stop: async () => undefined,
    getTracer: (name: string) => trace.getTracer(name),
    trackCost: () => undefined, // the collector prices each call from its usage
  };
}

export class HazelSpanProcessor implements SpanProcessor {
  /** Open spans by id, so an event handler can reach the active span's parent. */
  private readonly open = new Map<string, SdkSpan>();

  onStart(span: SdkSpan & ReadableSpan, parentContext: Context): void {
    this.open.set(span.spanContext().spanId, span);
    const parent = trace.getSpan(parentContext) as SdkSpan | undefined;
    if (!parent || !parent.attributes) return;
    const runId = runIdOfSpan(parent);
    if (runId && span.attributes[ATTR.runId] === undefined && !String(span.name).startsWith("agent.")) {
      span.setAttribute(ATTR.runId, runId);
    }
    if (parent.name === HAZEL.llmSpan && isLlmCall(span.attributes)) {
      if (parent.attributes[ATTR.spanKind] === "llm") {
        // The adapter records the usage on agent.llm: the client library's span is detail.
        span.setAttribute(ATTR.spanKind, "http");
      } else {
        // agent.llm is the step, the instrumented span beneath it the call.
        parent.setAttribute(ATTR.spanKind, "node");
        parent.setAttribute(ATTR.nodeType, "llm");
        parent.setAttribute(ATTR.nodeName, "llm");
        if (runId) parent.setAttribute(ATTR.runId, runId);
      }
    }
  }

  onEnd(span: ReadableSpan): void {
    this.open.delete(span.spanContext().spanId);
  }

  parentOf(span: Span): SdkSpan | undefined {
    const id = (span as unknown as ReadableSpan).parentSpanContext?.spanId;
    return id ? this.open.get(id) : undefined;
  }

  async forceFlush(): Promise<void> {}

  async shutdown(): Promise<void> {
    this.open.clear();
  }
}

/** The runtime's event surface the bridge needs (AgentRuntime.on). */
interface EventSource {
  on(type: never, handler: (event: unknown) => void): void;
}

interface HazelEvent {
  executionId: string;
  data: Record<string, unknown> & { error?: unknown; usage?: unknown; budget?: unknown; toolName?: string };
}

/**
 * Mark `span` failed and keep it so: the runtime reports these failures by
 * returning them, and its span helper then sets status OK, which OTel lets
 * override an error. Later OK calls on this span are dropped.
 */
function fail(span: Span, type: string, message: string): void {
  span.setAttribute(ATTR.errorType, type);
  span.setStatus({ code: SpanStatusCode.ERROR, message });
  const setStatus = span.setStatus.bind(span);
  span.setStatus = (status) => (status.code === SpanStatusCode.OK ? span : setStatus(status));
}

function errorOf(err: unknown): { type: string; message: string } {
  if (err instanceof Error) return { type: err.name || "Error", message: err.message };
  return { type: "Error", message: String(err ?? "failed") };
}

/** Subscribe the mappings listed at the top of this file; returns the execution ids seen, in start order. */
export function bridgeEvents(runtime: EventSource, processor: HazelSpanProcessor): string[] {
  const on = (type: string, fn: (e: HazelEvent, span: Span | undefined) => void) =>
    runtime.on(type as never, (e) => fn(e as HazelEvent, trace.getActiveSpan()));
  const executions: string[] = [];

  on("agent.execution.started", (e, span) => {
    executions.push(e.executionId);
    const parent = span ? processor.parentOf(span) : undefined;
    if (parent && parent.name === HAZEL.runSpan) {
      parent.setAttribute(HAZEL.runId, e.executionId);
      parent.setAttribute(HAZEL.executionId, e.executionId);
    }
  });
  on("agent.execution.failed", (e, span) => {
    if (!span) return;
    const { type, message } = errorOf(e.data.error);
    fail(span, type, message);
  });
  on("agent.budget.exceeded", (e, span) => {
    if (!span) return;
    span.setAttribute("flowscope.budget.exceeded", true);
    span.addEvent("flowscope.budget.exceeded", {
      "hazeljs.budget": JSON.stringify(e.data.budget ?? null),
      "hazeljs.usage": JSON.stringify(e.data.usage ?? null),
    });
  });
  on("tool.execution.failed", (e, span) => {
    if (!span) return;
    fail(span, "ToolExecutionError", String(e.data.error ?? "tool failed"));
  });
  return executions;
}
