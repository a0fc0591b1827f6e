"""Normalise span attributes from any producer into flowscope's canonical keys.

Runs in the collector at ingest (and in the test kit), on the flat string map
that is stored in ``otel_traces.SpanAttributes``. Producers differ in names
and in whether ``input_tokens`` includes cached input; after this function
every LLM span says the same thing the same way, and carries a cost with its
source (``provider``, ``computed`` or ``unpriced``).
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from decimal import Decimal, InvalidOperation

from . import semconv
from .pricing import Usage, price

logger = logging.getLogger("flowscope")

_LLM_OPERATIONS = {"chat", "text_completion", "generate_content", "embeddings", "completion"}
_USAGE_KEYS = (
    semconv.GEN_AI_USAGE_INPUT_TOKENS,
    semconv.GEN_AI_USAGE_OUTPUT_TOKENS,
    "gen_ai.usage.prompt_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.prompt",
    "llm.token_count.completion",
)


def _int(value: str | None) -> int:
    if not value:
        return 0
    try:
        return int(float(value))
    except ValueError:
        return 0


def is_llm_span(attrs: MutableMapping[str, str]) -> bool:
    kind = attrs.get(semconv.SPAN_KIND)
    if kind:
        return kind == semconv.KIND_LLM
    if attrs.get(semconv.GEN_AI_OPERATION_NAME, "") in _LLM_OPERATIONS:
        return True
    return any(k in attrs for k in _USAGE_KEYS)


def normalize_attributes(attrs: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Fill canonical keys in place and return the map. Never raises."""
    try:
        if not is_llm_span(attrs):
            return attrs
        attrs.setdefault(semconv.SPAN_KIND, semconv.KIND_LLM)
        if semconv.GEN_AI_PROVIDER_NAME not in attrs and attrs.get(semconv.GEN_AI_SYSTEM):
            attrs[semconv.GEN_AI_PROVIDER_NAME] = attrs[semconv.GEN_AI_SYSTEM]
        if semconv.COST_SOURCE not in attrs:
            _price_span(attrs)
    except Exception:
        logger.debug("flowscope: normalisation failed", exc_info=True)
    return attrs


def usage_of(attrs: MutableMapping[str, str]) -> Usage:
    return Usage(
        input_tokens=_int(attrs.get(semconv.GEN_AI_USAGE_INPUT_TOKENS)),
        output_tokens=_int(attrs.get(semconv.GEN_AI_USAGE_OUTPUT_TOKENS)),
        cache_read_tokens=_int(attrs.get(semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS)),
        cache_write_tokens=_int(attrs.get(semconv.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS)),
        reasoning_tokens=_int(attrs.get(semconv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS)),
    )


def _price_span(attrs: MutableMapping[str, str]) -> None:
    model = attrs.get(semconv.GEN_AI_RESPONSE_MODEL) or attrs.get(semconv.GEN_AI_REQUEST_MODEL)
    provider = attrs.get(semconv.GEN_AI_PROVIDER_NAME)
    if attrs.get(semconv.CACHE_HIT) == "true":
        return
    if not model:
        attrs[semconv.COST_SOURCE] = semconv.COST_SOURCE_UNPRICED
        return
    try:
        cost = price(model, provider, usage_of(attrs))
    except ValueError:  # self-contradicting usage (cache > input): unpriced, not guessed
        attrs[semconv.COST_SOURCE] = semconv.COST_SOURCE_UNPRICED
        return
    for key, value in cost.as_attributes().items():
        attrs[key] = value


def decimal_or_none(value: str | None) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        return None
