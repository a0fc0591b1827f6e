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
 * which is the runtime's `agent.llm`. With `childSpans` it also sends the
 * request through ./llm.ts's `complete`, whose `chat {model}` span stands for
 * what an OpenAI instrumentation opens beneath: then usage is on both, and the
 * bridge's processor makes the child the one that counts.
 */
import "reflect-metadata";

import { Agent, AgentRuntime, Tool } from "@hazeljs/agent";
import type { AgentRuntimeConfig, LLMChatRequest, LLMChatResponse, LLMProvider } from "@hazeljs/agent";
import { trace } from "@opentelemetry/api";

import { ATTR } from "./flowscope";
import { bridgeEvents, flowscopeObservability, type HazelSpanProcessor, runIdOf } from "./hazel-bridge";
import { complete, type Message, post, type ToolSpec } from "./llm";

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
  constructor(private readonly model: string, private readonly childSpans: boolean) {}

  async chat(request: LLMChatRequest): Promise<LLMChatResponse> {
    const model = request.model ?? this.model;
    const messages = request.messages.map((m) => ({ role: m.role, content: m.content }) as Message);
    const tools = request.tools as ToolSpec[] | undefined;
    const res = this.childSpans ? await complete(model, messages, tools) : await post(model, messages, tools);
    const u = res.usage;
    // Active here: the runtime's agent.llm span. GenAI names, so the collector prices it.
    trace.getActiveSpan()?.setAttributes({
      [ATTR.provider]: "openai",
      [ATTR.requestModel]: model,
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

export async function runSupportAgent(processor: HazelSpanProcessor, childSpans: boolean): Promise<AgentRuns> {
  const config: AgentRuntimeConfig = {
    llmProvider: new OpenAICompatibleProvider(MODEL, childSpans),
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
