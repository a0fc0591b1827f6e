/**
 * A real @hazeljs/agent agent: declared with its decorators, run by its
 * AgentRuntime, traced by the runtime's own OpenTelemetry spans plus the small
 * bridge in ./hazel-bridge.ts.
 *
 *   SupportAgent               @Agent with one @Tool, lookup_order
 *   OpenAICompatibleProvider   the runtime's LLMProvider: one chat completion
 *                              per call to an OpenAI-compatible endpoint
 *                              (OPENAI_BASE_URL; the FakeProvider in tests)
 *   runSupportAgent            two executions: one that answers (tool, then
 *                              answer) and one that passes its token budget
 *
 * The adapter records the provider's usage on the span active while it runs,
 * which is the runtime's `agent.llm`, and says so before sending
 * (`flowscope.span.kind=llm`). With `childSpans` it sends the request with the
 * official `openai` client, which @opentelemetry/instrumentation-openai
 * (registered in ./main.ts) wraps in a `chat {model}` span with its own usage:
 * then usage is on both, and the bridge's processor makes that child a client
 * span (`http`) that is not counted. Without `recordUsage` (an adapter that
 * records nothing) the instrumented child is the call and agent.llm a node.
 */
import "reflect-metadata";

import { Agent, AgentRuntime, Tool } from "@hazeljs/agent";
import type { AgentRuntimeConfig, LLMChatRequest, LLMChatResponse, LLMProvider } from "@hazeljs/agent";
import { trace } from "@opentelemetry/api";
import type OpenAI from "openai";

import { ATTR } from "./flowscope";
import { bridgeEvents, flowscopeObservability, type HazelSpanProcessor, runIdOf } from "./hazel-bridge";
import { API_KEY, BASE_URL, type ChatResponse, type Message, post, type ToolSpec } from "./llm";

const MODEL = process.env.EXAMPLE_MODEL ?? "gpt-4o-mini";

@Agent({
  name: "support-agent",
  description: "Answers questions about orders",
  systemPrompt: "You help with orders.",
  model: MODEL,
})
export class SupportAgent {
  @Tool({
    name: "lookup_order",
    description: "Find an order by id",
    parameters: [{ name: "id", type: "string", description: "The order id", required: true }],
  })
  async lookupOrder(input: { id: string }) {
    if (input.id === "13") throw new Error("order 13 is archived");
    return { id: input.id, status: "shipped" };
  }
}

export class OpenAICompatibleProvider implements LLMProvider {
  private client?: OpenAI;

  /**
   * `childSpans`: send with the instrumented `openai` client (else fetch).
   * `recordUsage`: record the provider's usage on agent.llm (else only the
   * instrumentation's span has it, as with an adapter that does not record it).
   */
  constructor(private readonly model: string, private readonly childSpans: boolean,
              private readonly recordUsage: boolean) {}

  /** The `openai` client, loaded on first use: after main.ts registered its instrumentation. */
  private async openai(): Promise<OpenAI> {
    if (!this.client) {
      const { default: Client } = await import("openai");
      this.client = new Client({ baseURL: BASE_URL, apiKey: API_KEY, maxRetries: 0 });
    }
    return this.client;
  }

  private async send(model: string, messages: Message[], tools?: ToolSpec[]): Promise<ChatResponse> {
    if (!this.childSpans) return post(model, messages, tools);
    const client = await this.openai();
    const res = await client.chat.completions.create({
      model,
      messages: messages as OpenAI.Chat.ChatCompletionMessageParam[],
      ...(tools?.length ? { tools: tools as OpenAI.Chat.ChatCompletionTool[] } : {}),
    });
    return res as unknown as ChatResponse;
  }

  async chat(request: LLMChatRequest): Promise<LLMChatResponse> {
    const model = request.model ?? this.model;
    const messages = request.messages.map((m) => ({ role: m.role, content: m.content }) as Message);
    // Active here: the runtime's agent.llm span. Said to be the call before sending, so an
    // instrumented span beneath it is not counted again (hazel-bridge.ts).
    const span = this.recordUsage ? trace.getActiveSpan() : undefined;
    span?.setAttributes({ [ATTR.spanKind]: "llm", [ATTR.provider]: "openai", [ATTR.requestModel]: model });
    const res = await this.send(model, messages, request.tools as ToolSpec[] | undefined);
    const u = res.usage;
    // GenAI names, so the collector prices it; cached input is known here (the OpenAI
    // instrumentation does not record it).
    span?.setAttributes({
      [ATTR.operation]: "chat",
      [ATTR.responseModel]: res.model,
      [ATTR.inputTokens]: u.prompt_tokens,
      [ATTR.outputTokens]: u.completion_tokens,
      [ATTR.cacheReadTokens]: u.prompt_tokens_details?.cached_tokens ?? 0,
    });
    const choice = res.choices[0];
    return {
      content: choice.message.content ?? "",
      tool_calls: choice.message.tool_calls,
      usage: { promptTokens: u.prompt_tokens, completionTokens: u.completion_tokens,
               totalTokens: u.prompt_tokens + u.completion_tokens },
      finishReason: choice.finish_reason,
    };
  }
}

export interface AgentRuns {
  answer: string;
  runIds: string[]; // one per execution, in start order
  budgetError: string;
}

export async function runSupportAgent(processor: HazelSpanProcessor, childSpans: boolean,
                                      recordUsage: boolean): Promise<AgentRuns> {
  const config: AgentRuntimeConfig = {
    llmProvider: new OpenAICompatibleProvider(MODEL, childSpans, recordUsage),
    observabilityProvider: flowscopeObservability(),
    defaultMaxSteps: 6,
    // Retries and the circuit breaker come from @hazeljs/resilience, which is not
    // published (stand-ins/README.md); a retried execution would also be a second run.
    enableRetry: false,
    enableCircuitBreaker: false,
    enableMetrics: false,
    logLevel: 3 as AgentRuntimeConfig["logLevel"], // errors only: stdout ends with the example's JSON
  };
  const runtime = new AgentRuntime(config);
  runtime.registerAgent(SupportAgent as unknown as new (...args: unknown[]) => unknown);
  runtime.registerAgentInstance("support-agent", new SupportAgent());
  const executions = bridgeEvents(runtime, processor);

  const ok = await runtime.execute("support-agent", "Where is order 42?", { budget: { maxTokens: 5000 } });
  let budgetError = "";
  try {
    await runtime.execute("support-agent", "Where is order 43?", { budget: { maxTokens: 100 } });
  } catch (err) {
    budgetError = err instanceof Error ? err.message : String(err);
  }
  return { answer: ok.response ?? "", runIds: executions.map(runIdOf), budgetError };
}
