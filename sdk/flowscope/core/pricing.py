"""Exact, reproducible cost for one LLM call.

Money is ``Decimal`` end to end: a float cost summed over millions of spans
drifts, and a cost we cannot justify is worse than none. So an unknown model
is *unpriced* (``total_usd is None``), never a silent zero.

Prices come from the ``genai-prices`` catalog (model matching, provider
fallbacks such as Azure -> OpenAI, context-length tiers, dated and
time-of-day prices). We only borrow its data and matching: the arithmetic is
ours because we report a per-token-type breakdown it does not expose, and
because this runs per LLM call and per collector span, so lookups are
memoised.

Token conventions (callers normalise before pricing):

* ``input_tokens`` INCLUDES ``cache_read_tokens`` and ``cache_write_tokens``
  (OpenAI convention; Anthropic reports them separately, add them back).
* ``output_tokens`` INCLUDES ``reasoning_tokens``.

Per-token-type rules, mirroring genai-prices' unit hierarchy so that our total
always equals ``genai_prices.calc_price`` for the same usage:

* uncached input = input - cache_read - cache_write, at the input price;
* cache reads at the cache-read price, cache writes at the cache-write price.
  A model without a cache-read or cache-write price bills those tokens at the
  input price: that is what the provider does when it has no caching discount
  or surcharge, and what genai-prices does, so totals stay comparable;
* output at the output price; reasoning tokens only get their own price when
  the catalog has one (a couple of Perplexity models), otherwise they are
  ordinary output tokens. Either way they land in ``output_usd``;
* context-length tiers are "cliff" tiers chosen from the total input tokens
  (``input_tokens``, cache included): above the threshold every token of that
  call pays the tier price;
* a per-request fee (``requests_kcount``, some Perplexity models) is added to
  ``total_usd`` only, so there ``total_usd`` exceeds the sum of the parts.

Override file (JSON, or TOML when the path ends in ``.toml``), prices in USD
per million tokens as decimal strings (JSON/TOML numbers are read exactly)::

    {"models": [
      {"provider": "openai",             # optional; omitted/null = any provider
       "model": "my-ft-model",           # required; reported as Cost.model
       "match": ["my-ft-model", "my-ft-model-*"],   # optional globs, default [model]
       "input_mtok": "0.30",             # required
       "output_mtok": "1.20",            # required
       "cached_input_mtok": "0.15",      # optional (alias cache_read_mtok)
       "cache_write_mtok": "0.375",      # optional
       "reasoning_mtok": null,           # optional
       "tiers": [{"above_input_tokens": 200000, "input_mtok": "0.60", "output_mtok": "2.40"}],
       "effective_from": "2026-01-01"}   # optional ISO date/datetime (UTC)
    ]}

Overrides win over the catalog. Several entries with the same provider and
model form a price history keyed by ``effective_from``; before the earliest
one the catalog price (if any) applies. A tier lists only the prices that
change. Keys starting with ``_`` are comments.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import functools
import hashlib
import json
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Any

from . import semconv

__all__ = [
    "Cost",
    "PricingCatalog",
    "Usage",
    "configure",
    "format_usd",
    "get_catalog",
    "price",
]

PRICING_FILE_ENV = "FLOWSCOPE_PRICING_FILE"

# Wide enough that no realistic token count times price is ever rounded, and
# independent of whatever the application did to the thread's decimal context.
_CTX = Context(prec=60)
_ZERO = Decimal(0)
_ONE = Decimal(1)
_UTC = _dt.timezone.utc

# OpenTelemetry ``gen_ai.provider.name`` (and older ``gen_ai.system``) values
# that genai-prices would not resolve, or would resolve wrongly: its own
# matcher maps "azure.ai.openai" to OpenAI because the name contains "openai".
_PROVIDER_ALIASES: dict[str, str] = {
    "azure.ai.openai": "azure",
    "az.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "az.ai.inference": "azure",
    "azure_openai": "azure",
    "azure_ai": "azure",
    "aws.bedrock": "aws",
    "bedrock": "aws",
    "aws_bedrock": "aws",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "vertex_ai": "google",
    "vertexai": "google",
    "gemini": "google",
    "google_genai": "google",
    "mistral_ai": "mistral",
    "mistralai": "mistral",
    "x_ai": "x-ai",
    "xai": "x-ai",
    "together_ai": "together",
    "fireworks_ai": "fireworks",
    "moonshot": "moonshotai",
    "moonshot_ai": "moonshotai",
}

_PRICE_FIELDS: dict[str, str] = {
    # override key -> genai-prices price key
    "input_mtok": "input_mtok",
    "cached_input_mtok": "cache_read_mtok",
    "cache_write_mtok": "cache_write_mtok",
    "output_mtok": "output_mtok",
    "reasoning_mtok": "output_reasoning_mtok",
}
# alias -> override key, for people used to genai-prices' own names
_PRICE_ALIASES = {"cache_read_mtok": "cached_input_mtok"}
_ALIAS_FOR = {canonical: alias for alias, canonical in _PRICE_ALIASES.items()}
_ENTRY_KEYS = {"provider", "model", "match", "tiers", "effective_from", *_PRICE_FIELDS, *_PRICE_ALIASES}

_USAGE_KEYS: dict[str, str] = {
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "cache_read_tokens": "cache_read_tokens",
    "cache_write_tokens": "cache_write_tokens",
    "reasoning_tokens": "reasoning_tokens",
    semconv.GEN_AI_USAGE_INPUT_TOKENS: "input_tokens",
    semconv.GEN_AI_USAGE_OUTPUT_TOKENS: "output_tokens",
    semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: "cache_read_tokens",
    semconv.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: "cache_write_tokens",
    semconv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: "reasoning_tokens",
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

    def __post_init__(self) -> None:
        i, o, cr, cw, r = (
            self.input_tokens, self.output_tokens, self.cache_read_tokens, self.cache_write_tokens,
            self.reasoning_tokens,
        )
        if (  # the common case, five plain non-negative ints: nothing to convert or report
            type(i) is int and type(o) is int and type(cr) is int and type(cw) is int and type(r) is int
            and i >= 0 and o >= 0 and cr >= 0 and cw >= 0 and r >= 0
        ):
            return
        for name in (
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
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

    @property
    def priced(self) -> bool:
        return self.total_usd is not None

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
            ):
                text = format_usd(value)
                if text is not None:
                    attrs[key] = text
        attrs[semconv.COST_SOURCE] = self.source
        attrs[semconv.PRICING_VERSION] = self.pricing_version
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


# --------------------------------------------------------------------------
# override file


@dataclass(frozen=True)
class _OverrideGroup:
    """All entries for one (provider, model): a price history."""

    provider: str | None
    model: str
    exact: frozenset[str]
    globs: tuple[re.Pattern[str], ...]
    history: tuple[tuple[_dt.datetime | None, Any], ...]  # (effective_from, genai ModelPrice), ascending

    def prices_at(self, at: _dt.datetime) -> Any | None:
        for start, prices in reversed(self.history):
            if start is None or at >= start:
                return prices
        return None


def _load_override_source(overrides: str | os.PathLike[str] | Mapping[str, Any]) -> tuple[Any, str, str]:
    """Returns (parsed data, label for error messages, content hash)."""
    if isinstance(overrides, Mapping):
        canonical = json.dumps(overrides, sort_keys=True, default=str, separators=(",", ":"))
        return overrides, "<pricing overrides dict>", hashlib.sha256(canonical.encode()).hexdigest()[:12]
    path = Path(os.fspath(overrides))
    label = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"pricing override file {label}: cannot read: {exc.strerror or exc}") from exc
    digest = hashlib.sha256(raw).hexdigest()[:12]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"pricing override file {label}: not UTF-8: {exc}") from exc
    if path.suffix.lower() == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            try:
                import tomli as tomllib  # type: ignore[no-redef]
            except ImportError as exc:
                raise ValueError(
                    f"pricing override file {label}: TOML needs Python 3.11+ or the tomli package; use JSON"
                ) from exc
        try:
            data = tomllib.loads(text, parse_float=Decimal)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"pricing override file {label}: invalid TOML: {exc}") from exc
    else:
        try:
            data = json.loads(text, parse_float=Decimal)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"pricing override file {label}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from exc
    return data, f"pricing override file {label}", digest


def _parse_price(value: Any, where: str, key: str) -> Decimal:
    if isinstance(value, bool):
        raise ValueError(f'{where}: {key} must be a decimal string like "0.30", got {value!r}')
    try:
        if isinstance(value, Decimal):
            number = value
        elif isinstance(value, int):
            number = Decimal(value)
        elif isinstance(value, float):
            number = Decimal(repr(value))
        elif isinstance(value, str):
            number = Decimal(value.strip())
        else:
            raise InvalidOperation
    except InvalidOperation:
        raise ValueError(f'{where}: {key} must be a decimal string like "0.30", got {value!r}') from None
    if not number.is_finite() or number < 0:
        raise ValueError(f"{where}: {key} must be a finite, non-negative price, got {value!r}")
    return number


def _parse_effective_from(value: Any, where: str) -> _dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        result = value
    elif isinstance(value, _dt.date):
        result = _dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                d = _dt.date.fromisoformat(text)
                result = _dt.datetime(d.year, d.month, d.day)
            else:
                result = _dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError(
                f'{where}: effective_from must be an ISO date like "2026-01-01", got {value!r}'
            ) from None
    else:
        raise ValueError(f"{where}: effective_from must be an ISO date string, got {value!r}")
    return _as_utc(result)


def _as_utc(when: _dt.datetime) -> _dt.datetime:
    return when.replace(tzinfo=_UTC) if when.tzinfo is None else when.astimezone(_UTC)


def _parse_overrides(data: Any, label: str) -> tuple[_OverrideGroup, ...]:
    from genai_prices.types import ModelPrice, Tier, TieredPrices

    if not isinstance(data, Mapping):
        raise ValueError(f'{label}: top level must be an object with a "models" list')
    unknown = [k for k in data if k != "models" and not str(k).startswith(("_", "$"))]
    if unknown:
        raise ValueError(f'{label}: unknown top-level key(s) {sorted(map(str, unknown))}; expected "models"')
    models = data.get("models", [])
    if not isinstance(models, list):
        raise ValueError(f'{label}: "models" must be a list')

    groups: dict[tuple[str | None, str], dict[str, Any]] = {}
    for index, entry in enumerate(models):
        where = f"{label}: models[{index}]"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where}: must be an object, got {type(entry).__name__}")
        model = entry.get("model")
        if not isinstance(model, str) or not model.strip():
            raise ValueError(f'{where}: "model" must be a non-empty string')
        model = model.strip()
        where = f"{label}: models[{index}] (model {model!r})"
        bad_keys = sorted(str(k) for k in entry if k not in _ENTRY_KEYS and not str(k).startswith("_"))
        if bad_keys:
            raise ValueError(f"{where}: unknown key(s) {bad_keys}; allowed: {sorted(_ENTRY_KEYS)}")

        provider = entry.get("provider")
        if provider is not None and (not isinstance(provider, str) or not provider.strip()):
            raise ValueError(f'{where}: "provider" must be a non-empty string or null')
        provider_id = _canonical_provider(provider) if provider else None

        match = entry.get("match", [model])
        if isinstance(match, str):
            match = [match]
        if (
            not isinstance(match, list)
            or not match
            or not all(isinstance(m, str) and m.strip() for m in match)
        ):
            raise ValueError(f'{where}: "match" must be a non-empty list of model names or globs')

        for alias, canonical in _PRICE_ALIASES.items():
            if alias in entry and canonical in entry:
                raise ValueError(f"{where}: give either {canonical!r} or {alias!r}, not both")
        base: dict[str, Decimal] = {}
        for key, price_key in _PRICE_FIELDS.items():
            raw = entry.get(key, entry.get(_ALIAS_FOR.get(key, ""), None))
            if raw is not None:
                base[price_key] = _parse_price(raw, where, key)
        for required in ("input_mtok", "output_mtok"):
            if required not in base:
                raise ValueError(f'{where}: "{required}" is required (USD per million tokens, e.g. "0.30")')

        tiers_raw = entry.get("tiers") or []
        if not isinstance(tiers_raw, list):
            raise ValueError(f'{where}: "tiers" must be a list')
        tier_rows: list[tuple[int, dict[str, Decimal]]] = []
        previous = -1
        for t_index, tier in enumerate(tiers_raw):
            t_where = f"{where} tiers[{t_index}]"
            if not isinstance(tier, Mapping):
                raise ValueError(f"{t_where}: must be an object")
            above = tier.get("above_input_tokens")
            if isinstance(above, bool) or not isinstance(above, int) or above < 0:
                raise ValueError(f'{t_where}: "above_input_tokens" must be a non-negative integer')
            if above <= previous:
                raise ValueError(f"{t_where}: tiers must have strictly increasing above_input_tokens")
            previous = above
            extra = sorted(
                str(k)
                for k in tier
                if k not in ("above_input_tokens", *_PRICE_FIELDS, *_PRICE_ALIASES)
                and not str(k).startswith("_")
            )
            if extra:
                raise ValueError(f"{t_where}: unknown key(s) {extra}")
            tier_prices: dict[str, Decimal] = {}
            for key, price_key in _PRICE_FIELDS.items():
                raw = tier.get(key, tier.get(_ALIAS_FOR.get(key, "")))
                if raw is not None:
                    if price_key not in base:
                        raise ValueError(f"{t_where}: {key} is tiered but has no base price in the entry")
                    tier_prices[price_key] = _parse_price(raw, t_where, key)
            if not tier_prices:
                raise ValueError(f"{t_where}: a tier must change at least one price")
            tier_rows.append((above, tier_prices))

        price_kwargs: dict[str, Any] = {}
        for price_key, base_price in base.items():
            steps: list[Any] = []
            current = base_price
            for above, tier_prices in tier_rows:
                current = tier_prices.get(price_key, current)
                steps.append(Tier(start=above, price=current))
            price_kwargs[price_key] = TieredPrices(base=base_price, tiers=steps) if steps else base_price
        model_price = ModelPrice(**price_kwargs)

        effective_from = _parse_effective_from(entry.get("effective_from"), where)
        key = (provider_id, model.lower())
        group = groups.setdefault(key, {"provider": provider_id, "model": model, "match": [], "history": {}})
        if effective_from in group["history"]:
            when = (
                "no effective_from" if effective_from is None else f"effective_from {effective_from.date()}"
            )
            raise ValueError(f"{where}: duplicate entry for this provider/model with {when}")
        group["history"][effective_from] = model_price
        group["match"].extend(m.strip().lower() for m in match)

    result = []
    for group in groups.values():
        exact = frozenset(m for m in group["match"] if not any(c in m for c in "*?["))
        globs = tuple(re.compile(fnmatch.translate(m)) for m in group["match"] if any(c in m for c in "*?["))
        history = tuple(
            sorted(
                group["history"].items(),
                key=lambda item: (item[0] is not None, item[0] or _dt.datetime.min.replace(tzinfo=_UTC)),
            )
        )
        result.append(_OverrideGroup(group["provider"], group["model"], exact, globs, history))
    return tuple(result)


# --------------------------------------------------------------------------
# catalog


@functools.lru_cache(maxsize=512)
def _canonical_provider(name: str) -> str:
    """Map an OTel provider name (or a genai-prices id) to a genai-prices provider id.

    Unknown names come back lowercased so that override files can still use
    them (e.g. a self-hosted "ollama").
    """
    key = name.strip().lower()
    if key in _PROVIDER_ALIASES:
        return _PROVIDER_ALIASES[key]
    from genai_prices import data_snapshot

    provider = data_snapshot.find_provider_by_id(data_snapshot.get_snapshot().providers, key)
    return provider.id if provider is not None else key


@dataclass(frozen=True)
class _Resolved:
    provider_id: str | None  # canonical caller provider, or the catalog's when the caller gave none
    override: _OverrideGroup | None
    catalog_model: Any | None  # genai_prices.types.ModelInfo
    catalog_provider: str | None
    native: bool  # model found in the provider's own list, not via fallback: price variants apply


class PricingCatalog:
    """genai-prices plus optional user overrides, with memoised model lookups.

    Instances are immutable after construction and safe to share between
    threads; the only mutable state is the lookup cache, whose slow path is
    serialised because genai-prices' own caches are plain dicts.
    """

    def __init__(self, overrides: str | os.PathLike[str] | Mapping[str, Any] | None = None) -> None:
        import genai_prices
        from genai_prices import data_snapshot

        self._snapshot = data_snapshot.get_snapshot()
        version = f"genai-prices {genai_prices.__version__}"
        if self._snapshot.from_auto_update:
            version += f"+update:{self._snapshot.timestamp:%Y%m%dT%H%M%S}"
        self._overrides: tuple[_OverrideGroup, ...] = ()
        if overrides is not None:
            data, label, digest = _load_override_source(overrides)
            self._overrides = _parse_overrides(data, label)
            version += f"+override:{digest}"
        self.version: str = version
        self._lock = threading.Lock()
        self._resolve = functools.lru_cache(maxsize=4096)(self._resolve_uncached)
        # (provider, model) -> its time-independent price sheet, or None when the price in
        # force depends on the time (dated overrides, dated or time-of-day catalog prices).
        # Per instance: configure() builds a new catalog, so a reload can never see old entries.
        self._sheets: dict[tuple[str | None, str], _Sheet | None] = {}
        # (sheet, usage) -> (cost, its span attributes): the Decimal arithmetic and formatting
        # done once per distinct usage of a model whose price cannot change.
        self._memo: dict[tuple[_Sheet, Usage], tuple[Cost, Mapping[str, str]]] = {}

    def __repr__(self) -> str:
        return f"PricingCatalog(version={self.version!r}, overrides={len(self._overrides)})"

    # -- lookup ------------------------------------------------------------

    def _resolve_uncached(self, provider: str | None, model: str) -> _Resolved:
        with self._lock:
            caller = _canonical_provider(provider) if provider else None
            override = self._match_override(caller, model.strip().lower())
            catalog_provider, catalog_model, native = self._match_catalog(caller, provider, model.strip())
            return _Resolved(
                provider_id=caller or catalog_provider or (override.provider if override else None),
                override=override,
                catalog_model=catalog_model,
                catalog_provider=catalog_provider,
                native=native,
            )

    def _match_override(self, caller: str | None, model: str) -> _OverrideGroup | None:
        glob_hit = None
        for group in self._overrides:
            if group.provider is not None and caller is not None and group.provider != caller:
                continue
            if model in group.exact:
                return group
            if glob_hit is None and any(g.match(model) for g in group.globs):
                glob_hit = group
        return glob_hit

    def _match_catalog(
        self, caller: str | None, raw_provider: str | None, model: str
    ) -> tuple[str | None, Any, bool]:
        snapshot = self._snapshot
        attempts: list[tuple[str | None, str]] = [(caller, model)]
        if "/" in model:
            # "openai/gpt-4o" (LiteLLM, OpenRouter-style routers): try the bare
            # name with the caller's provider, then with the prefix as provider.
            prefix, bare = model.split("/", 1)
            attempts.append((caller, bare))
            if prefix:
                attempts.append((_canonical_provider(prefix), bare))
        if raw_provider and raw_provider.strip().lower() == "litellm":
            attempts.insert(0, ("litellm", model))
        for provider_id, model_ref in attempts:
            if not model_ref:
                continue
            try:
                provider_obj, model_info = snapshot.find_provider_model(model_ref, None, provider_id, None)
            except LookupError:
                continue
            native = any(m is model_info for m in provider_obj.models)
            return provider_obj.id, model_info, native
        return None, None, False

    # -- pricing -----------------------------------------------------------

    def price(
        self,
        model: str,
        provider: str | None,
        usage: Usage | Mapping[str, Any],
        *,
        at: _dt.datetime | None = None,
        price_context: Mapping[str, str] | None = None,
    ) -> Cost:
        """Price one call.

        ``at`` selects the price in force (default: now; naive = UTC).
        ``price_context`` selects genai-prices price variants, e.g.
        ``{"service_tier": "flex"}`` or ``{"processing": "batch"}``; it does
        not apply to overrides or to models reached through a provider
        fallback (mirrors genai-prices).

        Raises ``ValueError`` when the usage is self-contradictory (cache
        tokens above input tokens, reasoning above output): inclusive counts
        are a precondition, and pricing them anyway would be silently wrong.
        """
        usage = _checked_usage(usage)
        if provider is not None and not provider.strip():
            provider = None
        if not model or not model.strip():
            return self._unpriced(provider and _canonical_provider(provider))
        if at is None and not price_context:
            sheet = self._sheet(provider, model)
            if sheet is not None:
                return self._priced(sheet, usage)[0]
        return self._price_at(model, provider, usage, at, price_context)

    def price_attributes(
        self, model: str, provider: str | None, usage: Usage | Mapping[str, Any]
    ) -> tuple[Cost, Mapping[str, str]]:
        """``price`` as of now and the cost's span attributes (``Cost.as_attributes``).

        The per-call path of the SDK: for a model whose price does not depend on
        the time, the arithmetic and formatting are done once per distinct usage.
        The attributes mapping is shared: read it, do not change it.
        """
        usage = _checked_usage(usage)
        if provider is not None and not provider.strip():
            provider = None
        if model and model.strip():
            sheet = self._sheet(provider, model)
            if sheet is not None:
                return self._priced(sheet, usage)
            cost = self._price_at(model, provider, usage, None, None)
        else:
            cost = self._unpriced(provider and _canonical_provider(provider))
        return cost, cost.as_attributes()

    def _sheet(self, provider: str | None, model: str) -> _Sheet | None:
        key = (provider, model)
        try:
            return self._sheets[key]
        except KeyError:
            pass
        sheet = self._make_sheet(provider, model)
        if len(self._sheets) >= _MAX_SHEETS:
            self._sheets.clear()
        self._sheets[key] = sheet
        return sheet

    def _make_sheet(self, provider: str | None, model: str) -> _Sheet | None:
        resolved = self._resolve(provider, model)
        override = resolved.override
        if override is not None:
            if len(override.history) == 1 and override.history[0][0] is None:
                return _Sheet(override.history[0][1].__dict__, resolved.provider_id, override.model)
            return None  # a price history: which entry applies depends on the time
        info = resolved.catalog_model
        if info is None:
            return _Sheet(None, resolved.provider_id, None)  # unpriced, whenever asked
        if type(info.prices) is list:
            return None  # dated or time-of-day prices
        return _Sheet(info.prices.__dict__, resolved.catalog_provider, info.id)

    def _priced(self, sheet: _Sheet, usage: Usage) -> tuple[Cost, Mapping[str, str]]:
        key = (sheet, usage)
        try:
            return self._memo[key]
        except KeyError:
            pass
        if sheet.prices is None:
            cost = self._unpriced(sheet.provider)
        else:
            cost = self._compute(sheet.prices, usage, sheet.provider, sheet.model)
        entry = (cost, MappingProxyType(cost.as_attributes()))
        if len(self._memo) >= _MAX_MEMO:
            self._memo.clear()
        self._memo[key] = entry
        return entry

    def _price_at(
        self,
        model: str,
        provider: str | None,
        usage: Usage,
        at: _dt.datetime | None,
        price_context: Mapping[str, str] | None,
    ) -> Cost:
        """The uncached path: resolve the price in force at ``at`` (default now) and compute."""
        resolved = self._resolve(provider, model)
        model_price = None
        matched_model = None
        matched_provider = resolved.provider_id
        if resolved.override is not None:
            when = _now() if at is None else _as_utc(at)
            model_price = resolved.override.prices_at(when)
            if model_price is not None:
                matched_model = resolved.override.model
        if model_price is None:
            info = resolved.catalog_model
            if info is None:
                return self._unpriced(resolved.provider_id)
            if type(info.prices) is list or (price_context and resolved.native and info.price_variants):
                when = _now() if at is None else at
                model_price = info.get_prices(when, price_context if resolved.native else None)
            else:
                model_price = info.prices
            matched_model = info.id
            matched_provider = resolved.catalog_provider
        return self._compute(model_price.__dict__, usage, matched_provider, matched_model)

    def _unpriced(self, provider: str | None) -> Cost:
        return Cost(None, None, None, None, None, semconv.COST_SOURCE_UNPRICED, self.version, provider, None)

    def _compute(self, prices: dict[str, Any], usage: Usage, provider: str | None, model: str | None) -> Cost:
        total_input = usage.input_tokens

        def rate(key: str) -> Decimal | None:
            value = prices.get(key)
            if value is None or type(value) is Decimal:
                return value
            # genai_prices TieredPrices: cliff tiers on total input tokens.
            for tier in reversed(value.tiers):
                if total_input > tier.start:
                    return tier.price
            return value.base

        mul = _CTX.multiply
        input_rate = rate("input_mtok")
        if input_rate is None:
            input_rate = _ZERO
        cache_read_rate = rate("cache_read_mtok")
        cache_write_rate = rate("cache_write_mtok")
        output_rate = rate("output_mtok")
        if output_rate is None:
            output_rate = _ZERO
        reasoning_rate = rate("output_reasoning_mtok")

        uncached = total_input - usage.cache_read_tokens - usage.cache_write_tokens
        input_usd = _per_million(mul(input_rate, uncached))
        cached_usd = _per_million(
            mul(input_rate if cache_read_rate is None else cache_read_rate, usage.cache_read_tokens)
        )
        write_usd = _per_million(
            mul(input_rate if cache_write_rate is None else cache_write_rate, usage.cache_write_tokens)
        )
        if reasoning_rate is None:
            output_usd = _per_million(mul(output_rate, usage.output_tokens))
        else:
            output_usd = _per_million(
                _CTX.add(
                    mul(output_rate, usage.output_tokens - usage.reasoning_tokens),
                    mul(reasoning_rate, usage.reasoning_tokens),
                )
            )
        total = _CTX.add(_CTX.add(input_usd, cached_usd), _CTX.add(write_usd, output_usd))
        request_fee = prices.get("requests_kcount")
        if request_fee is not None:
            total = _CTX.add(total, _CTX.scaleb(request_fee, -3))
        return Cost(
            total_usd=_tidy(total),
            input_usd=input_usd,
            cached_input_usd=cached_usd,
            cache_write_usd=write_usd,
            output_usd=output_usd,
            source=semconv.COST_SOURCE_COMPUTED,
            pricing_version=self.version,
            provider=provider,
            model=model,
        )


_MAX_SHEETS = 4096
_MAX_MEMO = 4096


class _Sheet:
    """The price of one (provider, model) that does not depend on when the call happened.

    Compared and hashed by identity: a memo entry belongs to the sheet (so to the
    catalog) it was computed from.
    """

    __slots__ = ("model", "prices", "provider")

    def __init__(self, prices: dict[str, Any] | None, provider: str | None, model: str | None) -> None:
        self.prices = prices  # None: unpriced
        self.provider = provider
        self.model = model


def _checked_usage(usage: Usage | Mapping[str, Any]) -> Usage:
    """A ``Usage`` whose counts are consistent, or ``ValueError`` (see ``PricingCatalog.price``)."""
    if not isinstance(usage, Usage):
        usage = Usage.from_mapping(usage)
    if usage.cache_read_tokens + usage.cache_write_tokens > usage.input_tokens:
        raise ValueError(
            f"inconsistent usage: cache_read_tokens ({usage.cache_read_tokens}) + cache_write_tokens "
            f"({usage.cache_write_tokens}) exceed input_tokens ({usage.input_tokens}); input_tokens must "
            "include cached tokens (add Anthropic's cache counts to its input_tokens)"
        )
    if usage.reasoning_tokens > usage.output_tokens:
        raise ValueError(
            f"inconsistent usage: reasoning_tokens ({usage.reasoning_tokens}) exceed output_tokens "
            f"({usage.output_tokens}); output_tokens must include reasoning tokens"
        )
    return usage


def _per_million(amount: Decimal) -> Decimal:
    return _tidy(_CTX.scaleb(amount, -6))


def _tidy(amount: Decimal) -> Decimal:
    """Drop trailing zeros so ``repr`` and ``str`` read naturally (``0.000435``, not ``0.000435000``)."""
    if amount.is_zero():
        return _ZERO
    amount = amount.normalize(_CTX)
    return amount.quantize(_ONE) if amount.as_tuple().exponent > 0 else amount


def _now() -> _dt.datetime:
    return _dt.datetime.now(_UTC)


# --------------------------------------------------------------------------
# process-wide default

_default: PricingCatalog | None = None
_default_lock = threading.Lock()


def get_catalog() -> PricingCatalog:
    """The shared catalog, built on first use (genai-prices data takes ~0.5 s to import).

    Honours ``FLOWSCOPE_PRICING_FILE`` when nothing was configured explicitly.
    """
    catalog = _default
    if catalog is not None:
        return catalog
    with _default_lock:
        if _default is None:
            _set_default(PricingCatalog(os.environ.get(PRICING_FILE_ENV) or None))
        assert _default is not None
        return _default


def _set_default(catalog: PricingCatalog) -> None:
    global _default
    _default = catalog


def configure(
    overrides: str | os.PathLike[str] | Mapping[str, Any] | None = None,
) -> PricingCatalog:
    """Replace the shared catalog; ``None`` falls back to ``FLOWSCOPE_PRICING_FILE``.

    Builds the new catalog before swapping it in, so a bad override file
    raises here (at ``init``) and leaves the previous catalog in place.
    """
    if overrides is None:
        overrides = os.environ.get(PRICING_FILE_ENV) or None
    catalog = PricingCatalog(overrides)
    with _default_lock:
        _set_default(catalog)
    return catalog


def price(
    model: str,
    provider: str | None,
    usage: Usage | Mapping[str, Any],
    *,
    at: _dt.datetime | None = None,
    price_context: Mapping[str, str] | None = None,
) -> Cost:
    """Price one call with the shared catalog (``flowscope.price``)."""
    return get_catalog().price(model, provider, usage, at=at, price_context=price_context)


def price_attributes(model: str, provider: str | None, usage: Usage | Mapping[str, Any]) -> tuple[Cost, Mapping[str, str]]:
    """``price`` now with the shared catalog, and the cost's span attributes (read-only)."""
    return get_catalog().price_attributes(model, provider, usage)
