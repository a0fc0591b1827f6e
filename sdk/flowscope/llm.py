"""One LLM call as one span: the part every client instrumentation shares.

Provider modules translate their request and response objects into the
neutral calls here (``start``, ``finish``, ``fail``); cost, budget, run
accounting, retries, fallbacks, cache hits, metrics and GenAI attributes are
decided in one place, so OpenAI and Anthropic calls can never be priced by
different rules.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from . import _otel, config, metrics
from .context import BudgetExceeded, current_run
from .core import semconv
from .core.pricing import Cost, PricingFileError, Usage, format_usd, get_catalog
from .fallbacks import current_scope as _fallback_scope

logger = logging.getLogger("flowscope")

_SAMPLING_PARAMS = {
    "max_tokens": semconv.GEN_AI_REQUEST_MAX_TOKENS,
    "max_completion_tokens": semconv.GEN_AI_REQUEST_MAX_TOKENS,
    "max_output_tokens": semconv.GEN_AI_REQUEST_MAX_TOKENS,
    "temperature": semconv.GEN_AI_REQUEST_TEMPERATURE,
    "top_p": semconv.GEN_AI_REQUEST_TOP_P,
}

# The LLM call whose request is in flight rides in the OTel context next to its
# span, so the retry hook deep inside the client library finds the right span
# in threads and asyncio tasks alike.
_CALL_KEY = otel_context.create_key("flowscope.llm_call")

# A span the client library itself opens inside ours (anthropic>=2 traces its
# own API calls with gen_ai.operation.name=chat) is the HTTP-level view of the
# same call; it gets this kind so it is never counted or priced a second time.
KIND_PROVIDER_HTTP = semconv.KIND_HTTP


def current_call(ctx: otel_context.Context | None = None) -> LLMCall | None:
    """The LLM call whose request is being sent right now in this context, if any."""
    value = otel_context.get_value(_CALL_KEY, ctx)
    return value if isinstance(value, LLMCall) else None


class LLMCall:
    """The span of one request to a model provider, from send to last byte."""

    __slots__ = (
        "_ended",
        "_t0",
        "_ttfc",
        "cost",
        "fallback_scope",
        "instruments",
        "operation",
        "provider",
        "recorded",
        "request_model",
        "response_model",
        "retries",
        "span",
    )

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
        check_budget: bool = True,
        tracer: trace.Tracer | None = None,
        instruments: metrics.Instruments | None = None,
    ) -> None:
        run = current_run()
        if run is not None and check_budget:
            # raises BudgetExceeded before anything is sent, when what is spent plus what this
            # call could cost at most (estimate_worst_case) would pass the budget
            run.check_budget(
                estimate_worst_case(provider, request_model, params, input_messages)
                if run.budget_usd is not None else None
            )
        self.operation = operation
        self.provider = provider
        self.request_model = request_model
        self.response_model: str | None = None
        self.cost: Cost | None = None
        self.retries = 0
        self.recorded = False  # answered from a replayed run's recording (flowscope.replay): free
        self.instruments = instruments
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
        tracer_, defer = _otel.start_policy(tracer or _otel.tracer())
        name = semconv.llm_span_name(operation, request_model)
        if defer:
            self.span: Span = tracer_.start_span(name, kind=SpanKind.CLIENT)
            _otel.set_attributes(self.span, attrs)
        else:
            self.span = tracer_.start_span(name, kind=SpanKind.CLIENT, attributes=attrs)
        self._t0 = time.perf_counter()
        self._ttfc: float | None = None
        self._ended = False
        self.fallback_scope = _fallback_scope()
        if self.fallback_scope is not None:
            self.fallback_scope.calls.append(self)

    @property
    def label(self) -> str:
        """``provider/model``: how fallbacks name the call they left or reached."""
        return f"{self.provider}/{self.response_model or self.request_model or '?'}"

    # --- context ------------------------------------------------------------------

    def attach(self) -> object:
        """Make this call's span current (and findable by the retry hook); pass the token to ``_otel.detach``."""
        ctx = trace.set_span_in_context(self.span, otel_context.set_value(_CALL_KEY, self))
        return otel_context.attach(ctx)

    def sending(self) -> InFlight:
        """``with call.sending(): response = send(...)``: the request runs with this call's span
        current, a failure ends the span as failed (and propagates), and the context is restored.

        The one lifecycle every client instrumentation uses, sync and async alike.
        """
        return InFlight(self)

    # --- events during the call ---------------------------------------------------

    def first_chunk(self) -> None:
        if self._ttfc is None:
            self._ttfc = time.perf_counter() - self._t0
            self.span.set_attribute(semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, self._ttfc)

    def record_retry(
        self,
        *,
        attempt: int,
        status: int | None,
        error_type: str,
        backoff_s: float | None,
        timestamp_ns: int | None = None,
    ) -> None:
        """One failed attempt the client library is about to retry."""
        if self._ended:
            return
        self.retries += 1
        attrs: dict[str, Any] = {semconv.RETRY_ATTEMPT: attempt, semconv.ERROR_TYPE: error_type}
        if status is not None:
            attrs[semconv.RETRY_STATUS] = status
        if backoff_s is not None:
            attrs[semconv.RETRY_BACKOFF_S] = float(backoff_s)
        self.span.add_event(semconv.EVENT_RETRY, attrs, timestamp=timestamp_ns)
        self.span.set_attribute(semconv.RETRY_COUNT, self.retries)

    # --- outcome ------------------------------------------------------------------

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
        cache_hit: bool = False,
        service_tier: str | None = None,
    ) -> None:
        """Record the outcome and end the span. Never raises.

        ``service_tier`` is the tier the provider says it served; it selects the price.
        """
        if self._ended:
            return
        self._ended = True
        span = self.span
        try:
            self.response_model = response_model or None
            # Collected first and set once: each set_attribute takes the span's lock
            # and re-validates, and this runs on the caller's thread for every call.
            attrs: dict[str, Any] = {}
            if response_model:
                attrs[semconv.GEN_AI_RESPONSE_MODEL] = response_model
            if response_id:
                attrs[semconv.GEN_AI_RESPONSE_ID] = response_id
            if finish_reasons:
                attrs[semconv.GEN_AI_RESPONSE_FINISH_REASONS] = tuple([str(r) for r in finish_reasons])
            if output_messages is not None and config.current.capture_content:
                attrs[semconv.GEN_AI_OUTPUT_MESSAGES] = _json(output_messages)
            if cache_hit or self.recorded:
                span.set_attributes(attrs)
                self._record_cache_hit(response_model, usage, recorded=self.recorded)
            else:
                if service_tier:
                    attrs[semconv.RESPONSE_SERVICE_TIER] = service_tier
                self._record_usage_and_cost(response_model, usage, estimated, attrs, service_tier)
                if provider_cost_usd is not None:
                    self._record_provider_cost(provider_cost_usd, attrs)
                _otel.set_attributes(span, attrs)
            if self.fallback_scope is not None:
                self.fallback_scope.served(self)
        except Exception:
            logger.debug("flowscope: could not record LLM response", exc_info=True)
        finally:
            span.end()
            self._record_metrics(usage if not cache_hit else None, None)

    def _record_usage_and_cost(
        self, response_model: str | None, usage: Usage | None, estimated: bool, attrs: dict[str, Any],
        service_tier: str | None = None,
    ) -> None:
        run = current_run()
        if usage is None:
            attrs[semconv.COST_SOURCE] = semconv.COST_SOURCE_UNPRICED
            if run is not None:
                run.add_cost(None)
            return
        attrs[semconv.GEN_AI_USAGE_INPUT_TOKENS] = usage.input_tokens
        attrs[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] = usage.output_tokens
        if usage.cache_read_tokens:
            attrs[semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = usage.cache_read_tokens
        if usage.cache_write_tokens:
            attrs[semconv.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = usage.cache_write_tokens
            attrs[semconv.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS] = usage.cache_write_tokens
            if usage.cache_write_1h_tokens:
                attrs[semconv.USAGE_CACHE_WRITE_1H_INPUT_TOKENS] = usage.cache_write_1h_tokens
                attrs[semconv.USAGE_CACHE_WRITE_5M_INPUT_TOKENS] = (
                    usage.cache_write_tokens - usage.cache_write_1h_tokens
                )
        if usage.reasoning_tokens:
            attrs[semconv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = usage.reasoning_tokens
        if usage.input_audio_tokens or usage.input_image_tokens or usage.output_audio_tokens \
                or usage.output_image_tokens:
            for key, count in (
                (semconv.USAGE_AUDIO_INPUT_TOKENS, usage.input_audio_tokens),
                (semconv.USAGE_IMAGE_INPUT_TOKENS, usage.input_image_tokens),
                (semconv.USAGE_AUDIO_OUTPUT_TOKENS, usage.output_audio_tokens),
                (semconv.USAGE_IMAGE_OUTPUT_TOKENS, usage.output_image_tokens),
            ):
                if count:
                    attrs[key] = count
        if usage.web_search_requests or usage.web_fetch_requests or usage.file_search_requests:
            for key, count in (
                (semconv.USAGE_WEB_SEARCH_REQUESTS, usage.web_search_requests),
                (semconv.USAGE_WEB_FETCH_REQUESTS, usage.web_fetch_requests),
                (semconv.USAGE_FILE_SEARCH_REQUESTS, usage.file_search_requests),
            ):
                if count:
                    attrs[key] = count
        if estimated:
            attrs[semconv.USAGE_ESTIMATED] = True
        model = response_model or self.request_model
        cost = None
        if model:
            try:
                cost, cost_attrs = get_catalog().price_attributes(model, self.provider, usage, service_tier)
            except PricingFileError as exc:  # FLOWSCOPE_PRICING_FILE bad and init() never ran to refuse it
                _pricing_file_error(exc)
                attrs[semconv.PRICING_ERROR] = str(exc)
            except ValueError:  # usage the pricing engine rejects (cache > input): unpriced, not fatal
                logger.debug("flowscope: usage for %s could not be priced", model, exc_info=True)
        self.cost = cost
        if cost is None:
            attrs[semconv.COST_SOURCE] = semconv.COST_SOURCE_UNPRICED
        else:
            attrs.update(cost_attrs)
        if run is not None:
            run.add_cost(cost.total_usd if cost is not None else None)

    def _record_provider_cost(self, reported: Any, attrs: dict[str, Any]) -> None:
        """What a router or proxy says it billed (OpenRouter's ``usage.cost``) is the cost
        (``source=provider``); the catalog's figure stays beside it (``cost.computed_usd``)."""
        amount = _decimal_or_none(reported)
        if amount is None:
            return
        computed = self.cost.total_usd if self.cost is not None else None
        if computed is not None:
            attrs[semconv.COST_COMPUTED_USD] = format_usd(computed)
        attrs[semconv.COST_USD] = format_usd(amount)
        attrs[semconv.COST_SOURCE] = semconv.COST_SOURCE_PROVIDER
        attrs.pop(semconv.COST_UNPRICED_PARTS, None)  # the bill is complete, whatever the catalog knew
        run = current_run()
        if run is not None:  # the run counted the computed figure (or an unpriced call): correct it
            run.replace_cost(computed, amount)

    def _record_cache_hit(self, response_model: str | None, usage: Usage | None, *, recorded: bool = False) -> None:
        """Served from the response cache: nothing was sent, so nothing was spent.

        Token counts are not recorded as usage (no tokens were consumed); what
        the call would have cost goes to ``flowscope.cache.saved_usd``. A replay's
        recorded answer (``recorded``) is free the same way, marked
        ``flowscope.replay.recorded`` instead (its cost was the parent run's).
        """
        span = self.span
        span.set_attribute(semconv.REPLAY_RECORDED if recorded else semconv.CACHE_HIT, True)
        would_have = None
        if usage is not None and not recorded:
            would_have = _safe_price(response_model or self.request_model, self.provider, usage)
        zero = "0"
        span.set_attribute(semconv.COST_USD, zero)
        span.set_attribute(semconv.COST_INPUT_USD, zero)
        span.set_attribute(semconv.COST_OUTPUT_USD, zero)
        span.set_attribute(semconv.COST_SOURCE, semconv.COST_SOURCE_COMPUTED)
        if would_have is not None and would_have.total_usd is not None:
            saved = format_usd(would_have.total_usd)
            if saved is not None:
                span.set_attribute(semconv.CACHE_SAVED_USD, saved)
            span.set_attribute(semconv.PRICING_VERSION, would_have.pricing_version)
        self.cost = Cost(Decimal(0), Decimal(0), None, None, Decimal(0), semconv.COST_SOURCE_COMPUTED,
                         would_have.pricing_version if would_have is not None else "")
        run = current_run()
        if run is not None:
            run.add_cost(Decimal(0))

    def fail(self, exc: BaseException) -> None:
        if self._ended:
            return
        self._ended = True
        try:
            _otel.record_error(self.span, exc)
            status = getattr(exc, "status_code", None)
            if isinstance(status, int):
                self.span.set_attribute("http.response.status_code", status)
            if self.fallback_scope is not None:
                self.fallback_scope.failed_calls.append((self, exc))
        except Exception:
            logger.debug("flowscope: could not record LLM failure", exc_info=True)
        finally:
            self.span.end()
            self._record_metrics(None, exc)

    def abandon(self, reason: str = "stream closed before completion") -> None:
        """A stream the caller stopped reading: mark it, then ``finish`` with what we have."""
        if self._ended:
            return
        self.span.set_status(Status(StatusCode.UNSET))
        self.span.add_event("flowscope.stream.abandoned", {"reason": reason})

    def _record_metrics(self, usage: Usage | None, exc: BaseException | None) -> None:
        instruments = self.instruments or metrics.default_instruments()
        if instruments is None:
            return
        try:
            metrics.record_call(
                operation=self.operation,
                provider=self.provider,
                request_model=self.request_model,
                response_model=self.response_model,
                usage=usage,
                duration_s=time.perf_counter() - self._t0,
                cost=self.cost,
                error=exc,
                instruments=instruments,
            )
        except Exception:
            logger.debug("flowscope: could not record metrics", exc_info=True)


class InFlight:
    """What :meth:`LLMCall.sending` returns: attach on enter; on exit fail the call if the
    request raised, and detach. A class, not a generator context manager: it runs per call."""

    __slots__ = ("call", "token")

    def __init__(self, call: LLMCall) -> None:
        self.call = call
        self.token: object = None

    def __enter__(self) -> LLMCall:
        self.token = self.call.attach()
        return self.call

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            if exc is not None:
                self.call.fail(exc)
        finally:
            _otel.detach(self.token)


_MAX_OUTPUT_KEYS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


def estimate_worst_case(
    provider: str, model: str | None, params: Mapping[str, Any] | None, input_messages: Any
) -> Decimal | None:
    """The most a call could cost, before it is sent (budgets refuse a call on it).

    Input: the prompt's tokens counted locally (tiktoken-compatible counting of the
    messages; a few tokens of framing may differ). Output: ``max_tokens`` /
    ``max_completion_tokens`` / ``max_output_tokens`` when the request sets one, else the
    model's output limit (the pricing file's ``max_output_tokens``, else its family's
    documented limit: ``flowscope.core.pricing.limits``) within what its context window
    leaves, else the rest of the context window, at the output price. Cache discounts are ignored (upper bound). None when it cannot be told
    (no model, a model without a price, messages that cannot be counted): then only the
    money already spent is checked.
    """
    if not model:
        return None
    from .instrumentation import _tokens

    messages = input_messages if isinstance(input_messages, list) else []
    prompt = _tokens.estimate_messages_tokens(messages, model) if messages else 0
    if prompt is None:
        return None
    output = None
    for key in _MAX_OUTPUT_KEYS:
        value = (params or {}).get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            output = value
            break
    catalog = get_catalog()
    if output is None:
        # the longest reply the model can write; within what the context window leaves
        window = catalog.context_window(model, provider)
        limit = catalog.output_limit(model, provider)
        room = max(window - prompt, 0) if window is not None else None
        if limit is None and room is None:
            return None
        output = min(x for x in (limit, room) if x is not None)
    try:
        cost = catalog.price(model, provider, Usage(input_tokens=prompt, output_tokens=output))
    except ValueError:
        return None
    return cost.total_usd


def _decimal_or_none(value: Any) -> Decimal | None:
    """A finite, non-negative amount from a number or a decimal string, else None."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    except ArithmeticError:
        return None
    return amount if amount.is_finite() and amount >= 0 else None


def _pricing_file_error(exc: PricingFileError) -> None:
    """Said at ERROR level on every call (the calls go unpriced, visibly): never a quiet $0."""
    logger.error("flowscope: LLM calls are UNPRICED because the pricing file is unusable: %s", exc)


def _safe_price(model: str | None, provider: str, usage: Usage) -> Cost | None:
    """Price a call; usage the pricing engine rejects (cache > input) is unpriced, not fatal."""
    if not model:
        return None
    try:
        cost = get_catalog().price(model, provider, usage)
    except PricingFileError as exc:
        _pricing_file_error(exc)
        return None
    except ValueError:
        logger.debug("flowscope: usage for %s could not be priced", model, exc_info=True)
        return None
    return cost


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
        return json.dumps(value, default=_plain, ensure_ascii=False)
    except Exception:
        return str(value)


def _plain(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return dump(mode="json", exclude_unset=True)
        except Exception:
            pass
    return str(value)
