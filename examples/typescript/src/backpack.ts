/**
 * A BackpackFlow-style runtime, small enough to read in one sitting: nodes with
 * prep -> exec -> post, a shared key/value store (the "backpack"), and
 * transitions chosen by the action each node's post() returns.
 *
 * Instrumentation lives in Flow.run only: the run span, one node span per node
 * execution (step = order), and a flowscope.state event for every store write,
 * so the collector can show the store at any step.
 */
import { node, runFlow, setBranch, setState } from "./flowscope";

/** The shared state store; every write is recorded as state for time travel. */
export class Backpack {
  private data: Record<string, unknown>;

  constructor(initial: Record<string, unknown> = {}) {
    this.data = { ...initial };
  }

  get<T = unknown>(key: string): T {
    return this.data[key] as T;
  }

  set(key: string, value: unknown): void {
    this.data[key] = value;
    setState(key, value);
  }

  snapshot(): Record<string, unknown> {
    return JSON.parse(JSON.stringify(this.data));
  }
}

export abstract class BackpackNode<P = unknown, E = unknown> {
  constructor(public readonly name: string, public readonly type: "task" | "llm" | "tool" | "router" = "task") {}

  /** Read what exec needs from the store. */
  abstract prep(store: Backpack): Promise<P> | P;
  /** Do the work (LLM calls, tools) without touching the store. */
  abstract exec(prepResult: P): Promise<E> | E;
  /** Write results back; return the action that picks the next node ("default" if none). */
  abstract post(store: Backpack, prepResult: P, execResult: E): Promise<string | void> | string | void;
}

export class Flow {
  private readonly edges = new Map<string, Map<string, BackpackNode>>();

  constructor(public readonly name: string, private readonly start: BackpackNode) {}

  /** `from --action--> to`. */
  on(from: BackpackNode, action: string, to: BackpackNode): this {
    if (!this.edges.has(from.name)) this.edges.set(from.name, new Map());
    this.edges.get(from.name)!.set(action, to);
    return this;
  }

  async run(store: Backpack): Promise<{ runId: string; store: Record<string, unknown> }> {
    const { runId } = await runFlow(this.name, store.snapshot(), async () => {
      let current: BackpackNode | undefined = this.start;
      let guard = 0;
      while (current && guard++ < 100) {
        const n: BackpackNode = current;
        const action = await node(n.name, n.type, async () => {
          const p = await n.prep(store);
          const e = await n.exec(p);
          const a = (await n.post(store, p, e)) || "default";
          const next = this.edges.get(n.name);
          if (next && next.size > 1) setBranch(a);
          return a;
        });
        current = this.edges.get(n.name)?.get(action);
      }
    });
    return { runId, store: store.snapshot() };
  }
}
