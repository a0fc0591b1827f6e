/**
 * A HazelJS-style agent: a model, a tool registry, and a loop that calls the
 * model, runs the tools it asks for, feeds the results back, and stops at a
 * final answer.
 *
 * Each turn is a node (type llm for a model turn, tool for a tool execution),
 * the whole loop one run, and the agent's memory is state: time travel shows
 * the conversation growing step by step.
 */
import { node, runFlow, setState, tool } from "./flowscope";
import { complete, type Message, type ToolSpec } from "./llm";

export interface AgentTool {
  spec: ToolSpec;
  run(args: Record<string, unknown>): Promise<unknown> | unknown;
}

export class Agent {
  private readonly tools = new Map<string, AgentTool>();

  constructor(public readonly name: string, private readonly model: string, private readonly system: string) {}

  use(t: AgentTool): this {
    this.tools.set(t.spec.function.name, t);
    return this;
  }

  async ask(question: string, maxTurns = 6): Promise<{ runId: string; answer: string }> {
    const messages: Message[] = [
      { role: "system", content: this.system },
      { role: "user", content: question },
    ];
    let answer = "";
    const { runId } = await runFlow(this.name, { question, messages: messages.length }, async () => {
      const specs = [...this.tools.values()].map((t) => t.spec);
      for (let turn = 0; turn < maxTurns; turn++) {
        const reply = await node("model", "llm", async () => {
          const res = await complete(this.model, messages, specs);
          const msg = res.choices[0].message;
          messages.push(msg);
          setState("messages", messages.length);
          return msg;
        });
        if (!reply.tool_calls?.length) {
          answer = reply.content ?? "";
          break;
        }
        for (const call of reply.tool_calls) {
          await node(call.function.name, "tool", async () => {
            const t = this.tools.get(call.function.name);
            const args = JSON.parse(call.function.arguments || "{}") as Record<string, unknown>;
            const result = t ? await tool(call.function.name, () => t.run(args)) : { error: "unknown tool" };
            messages.push({ role: "tool", tool_call_id: call.id, content: JSON.stringify(result) });
            setState("messages", messages.length);
            setState(`tool_results.${call.function.name}`, result);
          });
        }
      }
      // Recorded on the run span: the final answer is part of the run's state.
      setState("answer", answer);
    });
    return { runId, answer };
  }
}
