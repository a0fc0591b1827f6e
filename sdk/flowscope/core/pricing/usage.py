"""What one LLM call used and what it cost: the value types of pricing.

``Usage`` is what the SDK reads off a provider's response and the collector
off span attributes; ``Cost`` is what the catalog (:mod:`.catalog`) answers,
and ``format_usd`` the one way its amounts become text. They live apart from
the catalog so that code which only records or reads token counts and costs
never touches the price data.

Token conventions (callers normalise before pricing):

* ``input_tokens`` INCLUDES ``cache_read_tokens`` and ``cache_write_tokens``
  (OpenAI convention; Anthropic reports them separately, add them back).
* ``output_tokens`` INCLUDES ``reasoning_tokens``.
* ``cache_write_tokens`` INCLUDES ``cache_write_1h_tokens`` (writes kept for an hour,
  Anthropic's ``ephemeral_1h_input_tokens``); the rest are 5-minute writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation
from typing import Any

from .. import semconv

# Wide enough that no realistic token count times price is ever rounded, and
# independent of whatever the application did to the thread's decimal context.
_CTX = Context(prec=60)

_USAGE_KEYS: dict[str, str] = {
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "cache_read_tokens": "cache_read_tokens",
    "cache_write_tokens": "cache_write_tokens",
    "reasoning_tokens": "reasoning_tokens",
    "cache_write_1h_tokens": "cache_write_1h_tokens",
    semconv.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: "cache_write_tokens",
    semconv.GEN_AI_USAGE_INPUT_TOKENS: "input_tokens",
    semconv.GEN_AI_USAGE_OUTPUT_TOKENS: "output_tokens",
    semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: "cache_read_tokens",
    semconv.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: "cache_write_tokens",
    semconv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: "reasoning_tokens",
    semconv.USAGE_CACHE_WRITE_1H_INPUT_TOKENS: "cache_write_1h_tokens",
    "input_audio_tokens": "input_audio_tokens",
    "input_image_tokens": "input_image_tokens",
    "output_audio_tokens": "output_audio_tokens",
    "output_image_tokens": "output_image_tokens",
    semconv.USAGE_AUDIO_INPUT_TOKENS: "input_audio_tokens",
    semconv.USAGE_IMAGE_INPUT_TOKENS: "input_image_tokens",
    semconv.USAGE_AUDIO_OUTPUT_TOKENS: "output_audio_tokens",
    semconv.USAGE_IMAGE_OUTPUT_TOKENS: "output_image_tokens",
    "web_search_requests": "web_search_requests",
    "web_fetch_requests": "web_fetch_requests",
    "file_search_requests": "file_search_requests",
    semconv.USAGE_WEB_SEARCH_REQUESTS: "web_search_requests",
    semconv.USAGE_WEB_FETCH_REQUESTS: "web_fetch_requests",
    semconv.USAGE_FILE_SEARCH_REQUESTS: "file_search_requests",
}


@dataclass(frozen=True)
class Usage:
    """Token counts of one call, in the inclusive (OpenAI) convention.

    Only types and signs are checked here: a provider reporting odd totals
    must not make recording the token counts themselves fail. Consistency
    (cache <= input, reasoning <= output) is enforced when pricing.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_1h_tokens: int = 0
    # modalities, parts of the (uncached) input and of the output, each at its own rate
    input_audio_tokens: int = 0
    input_image_tokens: int = 0
    output_audio_tokens: int = 0
    output_image_tokens: int = 0
    # server-side tool requests (web search, web fetch, file search), priced per request
    web_search_requests: int = 0
    web_fetch_requests: int = 0
    file_search_requests: int = 0

    def __post_init__(self) -> None:
        i, o, cr, cw, r, w1 = (
            self.input_tokens, self.output_tokens, self.cache_read_tokens, self.cache_write_tokens,
            self.reasoning_tokens, self.cache_write_1h_tokens,
        )
        ai, ii, ao, io = self.input_audio_tokens, self.input_image_tokens, self.output_audio_tokens, \
            self.output_image_tokens
        if (  # the common case, plain non-negative ints: nothing to convert or report
            type(i) is int and type(o) is int and type(cr) is int and type(cw) is int and type(r) is int
            and type(w1) is int and i >= 0 and o >= 0 and cr >= 0 and cw >= 0 and r >= 0 and w1 >= 0
            and type(ai) is int and type(ii) is int and type(ao) is int and type(io) is int
            and ai >= 0 and ii >= 0 and ao >= 0 and io >= 0
            and type(self.web_search_requests) is int and self.web_search_requests >= 0
            and type(self.web_fetch_requests) is int and self.web_fetch_requests >= 0
            and type(self.file_search_requests) is int and self.file_search_requests >= 0
        ):
            return
        for name in (
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
            "cache_write_1h_tokens",
            "input_audio_tokens",
            "input_image_tokens",
            "output_audio_tokens",
            "output_image_tokens",
            "web_search_requests",
            "web_fetch_requests",
            "file_search_requests",
        ):
            value = getattr(self, name)
            if type(value) is not int:
                if value is None:
                    value = 0
                elif isinstance(value, bool) or not hasattr(value, "__index__"):
                    raise TypeError(f"Usage.{name} must be an int, got {type(value).__name__}")
                else:
                    value = int(value)
                object.__setattr__(self, name, value)
            if value < 0:
                raise ValueError(f"Usage.{name} must be >= 0, got {value}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Usage:
        """Accept our field names or the OTel ``gen_ai.usage.*`` attribute names.

        The collector prices straight from span attributes, so unrelated keys
        are ignored rather than rejected. Integral floats/strings are accepted
        because JSON and OTLP round-trips turn ints into either.
        """
        values: dict[str, int] = {}
        for key, field_name in _USAGE_KEYS.items():
            raw = data.get(key)
            if raw is None:
                continue
            values[field_name] = _as_count(key, raw)
        return cls(**values)


def _as_count(key: str, raw: Any) -> int:
    if isinstance(raw, bool):
        raise TypeError(f"usage {key} must be an integer, got bool")
    if isinstance(raw, int):
        return raw
    try:
        number = Decimal(str(raw).strip()) if isinstance(raw, str) else Decimal(repr(float(raw)))
    except (InvalidOperation, TypeError, ValueError):
        raise TypeError(f"usage {key} must be an integer, got {raw!r}") from None
    if not number.is_finite() or number != number.to_integral_value():
        raise ValueError(f"usage {key} must be a whole number, got {raw!r}")
    return int(number)


@dataclass(frozen=True)
class Cost:
    """Cost of one call, broken down by token type.

    Every money field is ``None`` when unpriced so that sums over spans can
    tell "free" from "unknown".
    """

    total_usd: Decimal | None
    input_usd: Decimal | None
    cached_input_usd: Decimal | None
    cache_write_usd: Decimal | None
    output_usd: Decimal | None
    source: str
    pricing_version: str
    provider: str | None = None
    model: str | None = None
    # parts of the bill the catalog had no price for ("service_tier:priority"): the total is
    # then a lower bound and ``source`` is ``partial``
    unpriced_parts: tuple[str, ...] = ()
    # per-request fees of server-side tools (web search, file search); in total_usd
    tool_usd: Decimal | None = None

    @property
    def priced(self) -> bool:
        return self.total_usd is not None

    @property
    def complete(self) -> bool:
        """Priced, every part of it."""
        return self.total_usd is not None and not self.unpriced_parts

    def as_attributes(self) -> dict[str, str]:
        """Span attributes; decimal strings because OTel has no decimal type and floats round."""
        attrs: dict[str, str] = {}
        if self.total_usd is not None:
            for key, value in (
                (semconv.COST_USD, self.total_usd),
                (semconv.COST_INPUT_USD, self.input_usd),
                (semconv.COST_CACHED_INPUT_USD, self.cached_input_usd),
                (semconv.COST_CACHE_WRITE_USD, self.cache_write_usd),
                (semconv.COST_OUTPUT_USD, self.output_usd),
                (semconv.COST_TOOL_USD, self.tool_usd),
            ):
                text = format_usd(value)
                if text is not None:
                    attrs[key] = text
        attrs[semconv.COST_SOURCE] = self.source
        attrs[semconv.PRICING_VERSION] = self.pricing_version
        if self.unpriced_parts:
            attrs[semconv.COST_UNPRICED_PARTS] = ",".join(self.unpriced_parts)
        return attrs


def format_usd(d: Decimal | None) -> str | None:
    """Plain decimal notation with no exponent and no trailing zeros ("0.00066").

    Storage and dashboards parse these strings; ``str(Decimal)`` may produce
    "6.6E-4" or "0.000660000", which compare unequal as text.
    """
    if d is None:
        return None
    if not isinstance(d, Decimal):
        d = Decimal(str(d))
    if not d.is_finite():
        raise ValueError(f"cannot format non-finite amount {d!r}")
    if d.is_zero():
        return "0"
    text = format(d.normalize(_CTX), "f")
    return text

