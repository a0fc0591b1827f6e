"""The parent run's LLM answers after the fork step, as a replay can serve them again.

A call can be answered from the recording when its span holds both what
identifies the request (``flowscope.replay.request_key``) and what came back
(``gen_ai.output.messages``): both are recorded only with content capture on
(``init(capture_content=True)`` / ``FLOWSCOPE_CAPTURE_CONTENT``). Every call
that cannot be replayed is listed with the reason, so the user knows which
requests will go to the provider.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .._replaying import RecordedAnswer
from ..core import semconv
from .source import RecordedRun, llm_spans

# methods whose recorded output (text, tool calls) is the whole answer, rendered by .wire
REPLAYABLE_APIS = frozenset({"chat.completions", "messages", "beta.messages"})


@dataclass(frozen=True)
class Unreplayable:
    """A call of the parent run after the fork step that cannot be answered from the recording."""

    step: int
    span: str
    reason: str

    def __str__(self) -> str:
        return f"step {self.step} {self.span}: {self.reason}"


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, str) and value.startswith("["):
        try:
            parsed = json.loads(value)
            return parsed if isinstance(parsed, list) else []
        except ValueError:
            return []
    return [value] if value else []


def _tool_calls(message: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        out.append({"id": call.get("id"), "name": fn.get("name") or call.get("name"),
                    "arguments": fn.get("arguments") if "function" in call else call.get("arguments")})
    return out


def _answer(span: dict[str, Any], step: int) -> RecordedAnswer | str:
    attrs = span.get("attributes") or {}
    key = attrs.get(semconv.REPLAY_REQUEST_KEY)
    output = attrs.get(semconv.GEN_AI_OUTPUT_MESSAGES)
    if span.get("status") == "Error":
        return "it failed in the original run (there is no answer to replay)"
    if attrs.get(semconv.CACHE_HIT) in (True, "true"):
        return "it was answered by the response cache in the original run"
    if not key or output is None:
        return ("recorded without content capture (init(capture_content=True) or "
                "FLOWSCOPE_CAPTURE_CONTENT=true on the original run records what a replay needs)")
    api = str(key).split(":", 1)[0]
    if api not in REPLAYABLE_APIS:
        return f"answers of {api} are not replayed (only chat.completions and messages)"
    try:
        messages = json.loads(output) if isinstance(output, str) else output
        message = messages[0] if messages else {}
    except (ValueError, TypeError, IndexError):
        return "its recorded output could not be read"
    if not isinstance(message, dict):
        return "its recorded output could not be read"
    calls = _tool_calls(message)
    finish = next((str(r) for r in _list(attrs.get(semconv.GEN_AI_RESPONSE_FINISH_REASONS))), None)
    if finish in ("tool_calls", "tool_use") and not calls:
        return "its tool calls were not recorded (streamed, or an Anthropic tool_use answer)"
    content = message.get("content")
    return RecordedAnswer(
        provider=str(attrs.get(semconv.GEN_AI_PROVIDER_NAME) or ""),
        key=str(key),
        step=step,
        span_name=str(span.get("name") or ""),
        text=content if isinstance(content, str) else None,
        tool_calls=tuple(calls),
        model=attrs.get(semconv.GEN_AI_RESPONSE_MODEL) or attrs.get(semconv.GEN_AI_REQUEST_MODEL),
        input_tokens=_int(attrs.get(semconv.GEN_AI_USAGE_INPUT_TOKENS)),
        output_tokens=_int(attrs.get(semconv.GEN_AI_USAGE_OUTPUT_TOKENS)),
        finish_reason=finish if finish in ("stop", "end_turn", "tool_calls", "tool_use", "length", "max_tokens")
        else None,
    )


def recorded_answers(run: RecordedRun, after_step: int) -> tuple[list[RecordedAnswer], list[Unreplayable]]:
    """The answers of the calls the run made after ``after_step``, and the calls that cannot be replayed."""
    answers: list[RecordedAnswer] = []
    missing: list[Unreplayable] = []
    for span in llm_spans(run):
        step = _int((span.get("attributes") or {}).get(semconv.NODE_STEP))
        if step is None or step <= after_step:
            continue
        got = _answer(span, step)
        if isinstance(got, RecordedAnswer):
            answers.append(got)
        else:
            missing.append(Unreplayable(step, str(span.get("name") or "llm call"), got))
    return answers, missing
