"""One LLM call as one span: the part every client instrumentation shares.

Provider modules translate their request and response objects into the
neutral calls here (``start``, ``finish``, ``fail``); cost, budget, run
accounting and GenAI attributes are decided in one place, so OpenAI and
Anthropic calls can never be priced by different rules.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from . import config, semconv
from .pricing import Usage
from .pricing import price as _price
from .runs import BudgetExceeded, current_run, record_error

logger = logging.getLogger("flowscope")

_SAMPLING_PARAMS = {
    "max_tokens": semconv.GEN_AI_REQUEST_MAX_TOKENS,
    "max_completion_tokens": semconv.GEN_AI_REQUEST_MAX_TOKENS,
    "max_output_tokens": semconv.GEN_AI_REQUEST_MAX_TOKENS,
    "temperature": semconv.GEN_AI_REQUEST_TEMPERATURE,
    "top_p": semconv.GEN_AI_REQUEST_TOP_P,
}


def _tracer() -> trace.Tracer:
    from . import __version__

    return trace.get_tracer("flowscope", __version__)


class LLMCall:
    """The span of one request to a model provider, from send to last byte."""

    __slots__ = ("_ended", "_t0", "_ttfc", "operation", "provider", "request_model", "span")

    def __init__(
        self,
        operation: str,
        provider: str,
        request_model: str | None,
        params: Mapping[str, Any] | None = None,
        *,
        server_address: str | None = None,
        server_port: int | None = None,
        stream: bool = False,
        input_messages: Any = None,
    ) -> None:
        run = current_run()
        if run is not None:
            run.check_budget()  # raises BudgetExceeded before anything is sent
        self.operation = operation
        self.provider = provider
        self.request_model = request_model
        attrs: dict[str, Any] = {
            semconv.GEN_AI_OPERATION_NAME: operation,
            semconv.GEN_AI_PROVIDER_NAME: provider,
            semconv.SPAN_KIND: semconv.KIND_LLM,
        }
        if request_model:
            attrs[semconv.GEN_AI_REQUEST_MODEL] = request_model
        if stream:
            attrs[semconv.REQUEST_STREAM] = True
        if server_address:
            attrs[semconv.SERVER_ADDRESS] = server_address
        if server_port:
            attrs[semconv.SERVER_PORT] = server_port
        if params:
            for key, attr in _SAMPLING_PARAMS.items():
                val = params.get(key)
                if isinstance(val, (int, float)) and not isinstance(val, bool):
                    attrs[attr] = val
        if input_messages is not None and config.current.capture_content:
            attrs[semconv.GEN_AI_INPUT_MESSAGES] = _json(input_messages)
        self.span: Span = _tracer().start_span(
            semconv.llm_span_name(operation, request_model), kind=SpanKind.CLIENT, attributes=attrs
        )
        self._t0 = time.perf_counter()
        self._ttfc: float | None = None
        self._ended = False

    def first_chunk(self) -> None:
        if self._ttfc is None:
            self._ttfc = time.perf_counter() - self._t0
            self.span.set_attribute(semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, self._ttfc)

    def finish(
        self,
        *,
        response_model: str | None,
        usage: Usage | None,
        finish_reasons: Sequence[str] | None = None,
        response_id: str | None = None,
        estimated: bool = False,
        output_messages: Any = None,
        provider_cost_usd: Any = None,
    ) -> None:
        """Record the outcome and end the span. Never raises."""
        if self._ended:
            return
        self._ended = True
        span = self.span
        try:
            if response_model:
                span.set_attribute(semconv.GEN_AI_RESPONSE_MODEL, response_model)
            if response_id:
                span.set_attribute(semconv.GEN_AI_RESPONSE_ID, response_id)
            if finish_reasons:
                span.set_attribute(semconv.GEN_AI_RESPONSE_FINISH_REASONS, [str(r) for r in finish_reasons])
            if output_messages is not None and config.current.capture_content:
                span.set_attribute(semconv.GEN_AI_OUTPUT_MESSAGES, _json(output_messages))
            self._record_usage_and_cost(response_model, usage, estimated)
        except Exception:
            logger.debug("flowscope: could not record LLM response", exc_info=True)
        finally:
            span.end()

    def _record_usage_and_cost(self, response_model: str | None, usage: Usage | None, estimated: bool) -> None:
        span = self.span
        run = current_run()
        if usage is None:
            span.set_attribute(semconv.COST_SOURCE, semconv.COST_SOURCE_UNPRICED)
            if run is not None:
                run.add_cost(None)
            return
        span.set_attribute(semconv.GEN_AI_USAGE_INPUT_TOKENS, usage.input_tokens)
        span.set_attribute(semconv.GEN_AI_USAGE_OUTPUT_TOKENS, usage.output_tokens)
        if usage.cache_read_tokens:
            span.set_attribute(semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, usage.cache_read_tokens)
        if usage.cache_write_tokens:
            span.set_attribute(semconv.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, usage.cache_write_tokens)
        if usage.reasoning_tokens:
            span.set_attribute(semconv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, usage.reasoning_tokens)
        if estimated:
            span.set_attribute(semconv.USAGE_ESTIMATED, True)
        model = response_model or self.request_model
        cost = _safe_price(model, self.provider, usage)
        if cost is None:
            span.set_attribute(semconv.COST_SOURCE, semconv.COST_SOURCE_UNPRICED)
        else:
            for key, value in cost.as_attributes().items():
                span.set_attribute(key, value)
        if run is not None:
            run.add_cost(cost.total_usd if cost is not None else None)

    def fail(self, exc: BaseException) -> None:
        if self._ended:
            return
        self._ended = True
        try:
            record_error(self.span, exc)
            status = getattr(exc, "status_code", None)
            if isinstance(status, int):
                self.span.set_attribute("http.response.status_code", status)
        finally:
            self.span.end()

    def abandon(self, reason: str = "stream closed before completion") -> None:
        """A stream the caller stopped reading: end the span with what we have."""
        if self._ended:
            return
        self.span.set_status(Status(StatusCode.UNSET))
        self.span.add_event("flowscope.stream.abandoned", {"reason": reason})


def _safe_price(model: str | None, provider: str, usage: Usage) -> Any:
    """Price a call; usage the pricing engine rejects (cache > input) is unpriced, not fatal."""
    if not model:
        return None
    try:
        return _price(model, provider, usage)
    except ValueError:
        logger.debug("flowscope: usage for %s could not be priced", model, exc_info=True)
        return None


def start_call(*args: Any, **kwargs: Any) -> LLMCall | None:
    """Start an :class:`LLMCall`, or return None if tracing itself fails.

    ``BudgetExceeded`` is the one exception that escapes on purpose: refusing
    the call is the feature.
    """
    try:
        return LLMCall(*args, **kwargs)
    except BudgetExceeded:
        raise
    except Exception:
        logger.debug("flowscope: could not start LLM span", exc_info=True)
        return None


def _json(value: Any) -> str:
    try:
        return json.dumps(value, default=str, ensure_ascii=False)
    except Exception:
        return str(value)
