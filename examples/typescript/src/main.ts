/**
 * Runs the BackpackFlow-style flow once and the HazelJS agent twice (one
 * execution that answers, one that passes its budget), and prints their run
 * ids as JSON (the test suite reads this line). Environment:
 * OTEL_EXPORTER_OTLP_ENDPOINT (collector, default http://127.0.0.1:4318),
 * OPENAI_BASE_URL (default the FakeProvider on http://127.0.0.1:8400/v1),
 * FLOWSCOPE_API_KEY (optional bearer key), OTEL_SERVICE_NAME (default
 * ts-example), EXAMPLE_PARTS (`flow,agent` by
 * default), EXAMPLE_CHILD_SPANS (`1` by default: the agent's adapter calls
 * through the `openai` client, whose instrumentation opens a `chat` span beneath
 * `agent.llm`; `0`: fetch), EXAMPLE_ADAPTER_USAGE (`1` by default: the
 * adapter records usage on `agent.llm`; `0`: it does not).
 */
import { registerInstrumentations } from "@opentelemetry/instrumentation";
import { OpenAIInstrumentation } from "@opentelemetry/instrumentation-openai";

import { Backpack, BackpackNode, Flow } from "./backpack";
import { initTracing, shutdownTracing } from "./flowscope";
import { runSupportAgent } from "./hazel";
import { HazelSpanProcessor } from "./hazel-bridge";
import { complete } from "./llm";

const MODEL = process.env.EXAMPLE_MODEL ?? "gpt-4o-mini";

class Plan extends BackpackNode<string, string> {
  constructor() { super("plan", "llm"); }
  prep(store: Backpack) { return store.get<string>("question"); }
  async exec(question: string) {
    const res = await complete(MODEL, [{ role: "user", content: `Plan research for: ${question}` }]);
    return res.choices[0].message.content ?? "";
  }
  post(store: Backpack, _p: string, plan: string) { store.set("plan", plan); return "research"; }
}

class Research extends BackpackNode<string, string[]> {
  constructor() { super("research", "tool"); }
  prep(store: Backpack) { return store.get<string>("plan"); }
  exec(plan: string) { return [`note about ${plan.split(" ")[0] || "topic"}`, "second note"]; }
  post(store: Backpack, _p: string, notes: string[]) { store.set("notes", notes); return "write"; }
}

class Write extends BackpackNode<{ q: string; notes: string[] }, string> {
  constructor() { super("write", "llm"); }
  prep(store: Backpack) { return { q: store.get<string>("question"), notes: store.get<string[]>("notes") }; }
  async exec(p: { q: string; notes: string[] }) {
    const res = await complete(MODEL, [{ role: "user", content: `Answer ${p.q} using ${p.notes.join("; ")}` }]);
    return res.choices[0].message.content ?? "";
  }
  post(store: Backpack, _p: unknown, draft: string) { store.set("draft", draft); }
}

async function main() {
  const key = process.env.FLOWSCOPE_API_KEY;
  const parts = (process.env.EXAMPLE_PARTS ?? "flow,agent").split(",");
  const hazel = new HazelSpanProcessor();
  const provider = initTracing({ serviceName: process.env.OTEL_SERVICE_NAME ?? "ts-example",
                                 headers: key ? { authorization: `Bearer ${key}` } : undefined, processors: [hazel] });
  // The official OpenAI instrumentation, for the agent's adapter (which loads `openai` after this).
  registerInstrumentations({ tracerProvider: provider, instrumentations: [new OpenAIInstrumentation()] });
  const out: Record<string, unknown> = {};

  if (parts.includes("flow")) {
    const plan = new Plan();
    const research = new Research();
    const write = new Write();
    const flow = new Flow("research-flow", plan).on(plan, "research", research).on(research, "write", write);
    const flowRun = await flow.run(new Backpack({ question: "why is the sky blue?" }));
    Object.assign(out, { flow_run_id: flowRun.runId, flow_store: flowRun.store });
  }
  if (parts.includes("agent")) {
    const agent = await runSupportAgent(hazel, process.env.EXAMPLE_CHILD_SPANS !== "0",
                                        process.env.EXAMPLE_ADAPTER_USAGE !== "0");
    Object.assign(out, { agent_run_ids: agent.runIds, answer: agent.answer, budget_error: agent.budgetError });
  }

  await shutdownTracing();
  console.log(JSON.stringify(out));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
