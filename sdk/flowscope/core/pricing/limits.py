"""How many tokens a model can write in one reply: the worst case a budget must allow for.

A budget (``flowscope.run(..., budget_usd=...)``) refuses a call before it is sent
when the call could pass it. A request without ``max_tokens`` can be answered with
up to the model's output limit, which for most models is far below what is left of
the context window (gpt-4o-mini: 16,384 of 128,000), so the window alone made
budgets refuse calls that could never cost that much. The genai-prices catalog
carries context windows but no output limits, so the documented limits of the
widely used model families are kept here; a pricing-file entry's
``max_output_tokens`` wins over this table, and a model in neither falls back to
the rest of its context window (the larger, safe bound).

Matched by the longest prefix of the model name, after any provider or region
prefix (``openai/``, ``us.anthropic.``), so dated snapshots (``gpt-4o-mini-2024-07-18``)
share their family's limit while a family that changed it gets its own row.
"""

from __future__ import annotations

# (model name prefix, output tokens), as the providers document them
OUTPUT_LIMITS: dict[str, int] = {
    # OpenAI
    "gpt-3.5-turbo": 4_096,
    "gpt-4": 8_192,
    "gpt-4-turbo": 4_096,
    "gpt-4o": 16_384,
    "gpt-4o-2024-05-13": 4_096,
    "gpt-4o-mini": 16_384,
    "chatgpt-4o": 16_384,
    "gpt-4.1": 32_768,
    "gpt-5": 128_000,
    "o1": 100_000,
    "o1-mini": 65_536,
    "o1-preview": 32_768,
    "o3": 100_000,
    "o4-mini": 100_000,
    # Anthropic
    "claude-3-haiku": 4_096,
    "claude-3-sonnet": 4_096,
    "claude-3-opus": 4_096,
    "claude-3-5-haiku": 8_192,
    "claude-3-5-sonnet": 8_192,
    "claude-3-7-sonnet": 64_000,
    "claude-sonnet-4": 64_000,
    "claude-opus-4": 32_000,
    "claude-opus-4-5": 64_000,
    "claude-haiku-4-5": 64_000,
    # Google
    "gemini-1.5": 8_192,
    "gemini-2.0": 8_192,
    "gemini-2.5": 65_536,
}


def output_limit(name: str) -> int | None:
    """The documented output limit of the model ``name``, where this table knows its family."""
    bare = name.strip().lower().rsplit("/", 1)[-1]
    for marker in ("anthropic.", "models/"):
        at = bare.find(marker)
        if at >= 0:
            bare = bare[at + len(marker):]
    best: tuple[int, int] | None = None
    for prefix, limit in OUTPUT_LIMITS.items():
        if bare.startswith(prefix) and (best is None or len(prefix) > best[0]):
            best = (len(prefix), limit)
    return best[1] if best else None
