/**
 * A minimal OpenAI-compatible chat client (fetch, no SDK), so the example has
 * no provider dependency. Point OPENAI_BASE_URL at flowscope's FakeProvider
 * (`python -m flowscope.testing.fake_provider --port 8400`, base URL
 * http://127.0.0.1:8400/v1) to run without a key or network, or at a real
 * OpenAI-compatible endpoint with OPENAI_API_KEY.
 */
import { chat, type ChatUsage } from "./flowscope";

export interface Message {
  role: "system" | "user" | "assistant" | "tool";
  content: string | null;
  tool_calls?: ToolCall[];
  tool_call_id?: string;
}

export interface ToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

export interface ChatResponse {
  id: string;
  model: string;
  choices: { index: number; finish_reason: string; message: Message }[];
  usage: ChatUsage;
}

export interface ToolSpec {
  type: "function";
  function: { name: string; description: string; parameters: Record<string, unknown> };
}

export const BASE_URL = (process.env.OPENAI_BASE_URL ?? "http://127.0.0.1:8400/v1").replace(/\/$/, "");
export const API_KEY = process.env.OPENAI_API_KEY ?? "sk-fake";

/** One chat completion, untraced: the bare HTTP request. */
export async function post(model: string, messages: Message[], tools?: ToolSpec[]): Promise<ChatResponse> {
  const res = await fetch(`${BASE_URL}/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${API_KEY}` },
    body: JSON.stringify({ model, messages, ...(tools?.length ? { tools } : {}) }),
  });
  if (!res.ok) throw new Error(`chat completion failed: HTTP ${res.status} ${await res.text()}`);
  return (await res.json()) as ChatResponse;
}

/** One chat completion, traced as a `chat {model}` span in flowscope's conventions. */
export async function complete(model: string, messages: Message[], tools?: ToolSpec[]): Promise<ChatResponse> {
  return chat(model, () => post(model, messages, tools));
}
