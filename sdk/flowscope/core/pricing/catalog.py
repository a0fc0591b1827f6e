"""Prices looked up and applied: the catalog, its memo and the shared default.

Prices come from the ``genai-prices`` catalog (model matching, provider
fallbacks such as Azure -> OpenAI, context-length tiers, dated and
time-of-day prices), with the user's overrides (:mod:`.overrides`) on top.
We only borrow its data and matching: the arithmetic is ours because we
report a per-token-type breakdown it does not expose, and because this runs
per LLM call and per collector span, so lookups are memoised: a model's
time-independent price sheet is found once, and the cost of each distinct
usage of it is computed and formatted once.

Per-token-type rules, mirroring genai-prices' unit hierarchy so that our total
always equals ``genai_prices.calc_price`` for the same usage:

* uncached input = input - cache_read - cache_write, at the input price;
* cache reads at the cache-read price, cache writes at the cache-write price, except
  the 1-hour writes (``cache_write_1h_tokens``) at the 1-hour cache-write price
  (``cache_write_1h_mtok``, Anthropic's 2x input) where the catalog has one.
  A model without a cache-read or cache-write price bills those tokens at the
  input price: that is what the provider does when it has no caching discount
  or surcharge, and what genai-prices does, so totals stay comparable;
* audio and image tokens (parts of input and output) at their own rates
  (``input_audio_mtok``, ``output_image_mtok`` ...); where the catalog has no rate for one,
  they stay at the text rate and the cost is ``partial``, naming the part
  (``unpriced_parts``), never silently text-priced;
* output at the output price; reasoning tokens only get their own price when
  the catalog has one (a couple of Perplexity models), otherwise they are
  ordinary output tokens. Either way they land in ``output_usd``;
* context-length tiers are "cliff" tiers chosen from the total input tokens
  (``input_tokens``, cache included): above the threshold every token of that
  call pays the tier price;
* server-side tool requests at the catalog's per-thousand fee: web searches
  (``web_searches_kcount``), file searches (``storage_searches_kcount``), in ``tool_usd``
  and ``total_usd``; a tool used without a fee in the catalog makes the cost ``partial``.
  Web fetch requests are recorded but carry no fee (Anthropic bills only their tokens);
* a per-request fee (``requests_kcount``, some Perplexity models) is added to
  ``total_usd`` only, so there ``total_usd`` exceeds the sum of the parts.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from .. import semconv
from .limits import output_limit as _family_output_limit
from .overrides import _UTC, _as_utc, _load_override_source, _OverrideGroup, _parse_aliases, _parse_overrides
from .providers import _canonical_provider
from .usage import _CTX, Cost, Usage

PRICING_FILE_ENV = "FLOWSCOPE_PRICING_FILE"

_ZERO = Decimal(0)
_ONE = Decimal(1)


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
        self._aliases: dict[str, str] = {}
        if overrides is not None:
            data, label, digest = _load_override_source(overrides)
            self._overrides = _parse_overrides(data, label)
            self._aliases = _parse_aliases(data, label)
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
        model = self._aliases.get(model.strip().lower(), model)  # an Azure deployment name -> its model
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
        attempts: list[tuple[str | None, str]] = []
        names = [model]
        head, _, suffix = model.rpartition(":")
        if head and suffix.lower() in _ROUTING_SUFFIXES:
            # OpenRouter's routing variants ("openai/gpt-4o-mini:nitro") bill the model's price;
            # ":free" is not stripped: it is a model of its own, priced (at 0) in the catalog.
            names.append(head)
        for name in names:
            attempts.append((caller, name))
            if "/" in name:
                # "openai/gpt-4o" (LiteLLM, OpenRouter-style routers), Bedrock ARNs
                # ("arn:aws:bedrock:...:inference-profile/us.anthropic.claude-..."): try the
                # bare name with the caller's provider, then with the prefix as provider.
                prefix, bare = name.rsplit("/", 1) if name.startswith("arn:") else name.split("/", 1)
                attempts.append((caller, bare))
                if name.startswith("arn:aws:bedrock:"):
                    attempts.append(("aws", bare))
                elif prefix and not name.startswith("arn:"):
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

    def context_window(self, model: str, provider: str | None) -> int | None:
        """The model's context window in tokens, where the catalog knows it."""
        if not model or not model.strip():
            return None
        info = self._resolve(provider or None, model).catalog_model
        window = getattr(info, "context_window", None) if info is not None else None
        return window if isinstance(window, int) and window > 0 else None

    def output_limit(self, model: str, provider: str | None) -> int | None:
        """The most tokens one reply of the model can have: the pricing file's ``max_output_tokens``,
        else the documented limit of its family (:mod:`.limits`), else None."""
        if not model or not model.strip():
            return None
        resolved = self._resolve(provider or None, model)
        model = self._aliases.get(model.strip().lower(), model)
        if resolved.override is not None and resolved.override.max_output_tokens is not None:
            return resolved.override.max_output_tokens
        limit = _family_output_limit(model)
        info = resolved.catalog_model
        if limit is None and info is not None:
            limit = _family_output_limit(str(info.id))
        return limit

    def price_tier(
        self,
        model: str,
        provider: str | None,
        usage: Usage | Mapping[str, Any],
        service_tier: str | None,
        *,
        at: _dt.datetime | None = None,
    ) -> Cost:
        """``price`` for the service tier the provider served.

        The standard tiers (``default``, ``standard``, ``auto`` or none) are the list price.
        ``batch`` selects the catalog's batch price, any other tier (``flex``, ``priority``,
        ``scale``) the catalog's price for that tier. Where the catalog has no price for the
        tier (or the model is priced by an override), the call is priced at the standard
        rates and marked ``partial`` with ``service_tier:<tier>`` unpriced: never a guess.
        """
        tier = (service_tier or "").strip().lower()
        if tier in _STANDARD_TIERS:
            return self.price(model, provider, usage, at=at)
        usage = _checked_usage(usage)
        if provider is not None and not provider.strip():
            provider = None
        if not model or not model.strip():
            return self._unpriced(provider and _canonical_provider(provider))
        context = {"processing": "batch"} if tier == "batch" else {"service_tier": tier}
        resolved = self._resolve(provider, model)
        when = _now() if at is None else _as_utc(at)
        info = resolved.catalog_model
        if resolved.override is None and info is not None and resolved.native and any(
            variant.when == context and (variant.constraint is None or variant.constraint.active(when))
            for variant in info.price_variants or ()
        ):
            return self._price_at(model, provider, usage, when, context)
        base = self.price(model, provider, usage, at=at)
        if not base.priced:
            return base
        return dataclasses.replace(
            base, source=semconv.COST_SOURCE_PARTIAL, unpriced_parts=(*base.unpriced_parts, f"service_tier:{tier}")
        )

    def price_attributes(
        self, model: str, provider: str | None, usage: Usage | Mapping[str, Any], service_tier: str | None = None
    ) -> tuple[Cost, Mapping[str, str]]:
        """``price`` as of now and the cost's span attributes (``Cost.as_attributes``).

        The per-call path of the SDK: for a model whose price does not depend on
        the time, the arithmetic and formatting are done once per distinct usage.
        The attributes mapping is shared: read it, do not change it. A non-standard
        ``service_tier`` takes the uncached path (:meth:`price_tier`).
        """
        if service_tier and service_tier.strip().lower() not in _STANDARD_TIERS:
            cost = self.price_tier(model, provider, usage, service_tier)
            return cost, cost.as_attributes()
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
        unpriced_parts: list[str] = []
        modal_in = modal_out = _ZERO  # audio / image tokens at their own rates, per million
        output_text = usage.output_tokens  # output at the output (or reasoning) rate
        if usage.input_audio_tokens or usage.input_image_tokens or usage.output_audio_tokens \
                or usage.output_image_tokens:
            for part, tokens, key, is_input in (
                ("input_audio_tokens", usage.input_audio_tokens, "input_audio_mtok", True),
                ("input_image_tokens", usage.input_image_tokens, "input_image_mtok", True),
                ("output_audio_tokens", usage.output_audio_tokens, "output_audio_mtok", False),
                ("output_image_tokens", usage.output_image_tokens, "output_image_mtok", False),
            ):
                if not tokens:
                    continue
                part_rate = rate(key)
                if part_rate is None:  # no rate for the modality: left at the text rate, and said so
                    unpriced_parts.append(part)
                elif is_input:
                    uncached -= tokens
                    modal_in = _CTX.add(modal_in, mul(part_rate, tokens))
                else:
                    output_text -= tokens
                    modal_out = _CTX.add(modal_out, mul(part_rate, tokens))
        input_usd = _per_million(_CTX.add(mul(input_rate, uncached), modal_in))
        cached_usd = _per_million(
            mul(input_rate if cache_read_rate is None else cache_read_rate, usage.cache_read_tokens)
        )
        write_rate = input_rate if cache_write_rate is None else cache_write_rate
        if usage.cache_write_1h_tokens:
            write_1h_rate = rate("cache_write_1h_mtok")
            write_usd = _per_million(
                _CTX.add(
                    mul(write_rate, usage.cache_write_tokens - usage.cache_write_1h_tokens),
                    mul(write_rate if write_1h_rate is None else write_1h_rate, usage.cache_write_1h_tokens),
                )
            )
        else:
            write_usd = _per_million(mul(write_rate, usage.cache_write_tokens))
        if reasoning_rate is None:
            output_usd = _per_million(_CTX.add(mul(output_rate, output_text), modal_out))
        else:
            output_usd = _per_million(
                _CTX.add(
                    _CTX.add(mul(output_rate, output_text - usage.reasoning_tokens), modal_out),
                    mul(reasoning_rate, usage.reasoning_tokens),
                )
            )
        total = _CTX.add(_CTX.add(input_usd, cached_usd), _CTX.add(write_usd, output_usd))
        request_fee = prices.get("requests_kcount")
        if request_fee is not None:
            total = _CTX.add(total, _CTX.scaleb(request_fee, -3))
        tool_usd = None
        if usage.web_search_requests or usage.file_search_requests:
            tool_usd = _ZERO
            for part, count, key in (
                ("web_search_requests", usage.web_search_requests, "web_searches_kcount"),
                ("file_search_requests", usage.file_search_requests, "storage_searches_kcount"),
            ):
                if not count:
                    continue
                fee = rate(key)
                if fee is None:
                    unpriced_parts.append(part)
                else:
                    tool_usd = _CTX.add(tool_usd, _CTX.scaleb(mul(fee, count), -3))
            tool_usd = _tidy(tool_usd)
            total = _CTX.add(total, tool_usd)
        return Cost(
            total_usd=_tidy(total),
            input_usd=input_usd,
            cached_input_usd=cached_usd,
            cache_write_usd=write_usd,
            output_usd=output_usd,
            source=semconv.COST_SOURCE_PARTIAL if unpriced_parts else semconv.COST_SOURCE_COMPUTED,
            pricing_version=self.version,
            provider=provider,
            model=model,
            unpriced_parts=tuple(unpriced_parts),
            tool_usd=tool_usd,
        )


_MAX_SHEETS = 4096
# OpenRouter model variants that route, not re-price: stripped when the decorated id is unknown.
_ROUTING_SUFFIXES = frozenset({"nitro", "floor", "online", "exacto"})
# Service tiers billed at the list price.
_STANDARD_TIERS = frozenset({"", "default", "standard", "auto"})
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
    if usage.cache_write_1h_tokens > usage.cache_write_tokens:
        raise ValueError(
            f"inconsistent usage: cache_write_1h_tokens ({usage.cache_write_1h_tokens}) exceed "
            f"cache_write_tokens ({usage.cache_write_tokens}); cache writes must include the 1-hour ones"
        )
    if usage.input_audio_tokens + usage.input_image_tokens > usage.input_tokens - usage.cache_read_tokens \
            - usage.cache_write_tokens:
        raise ValueError(
            f"inconsistent usage: audio ({usage.input_audio_tokens}) + image ({usage.input_image_tokens}) input "
            f"tokens exceed the uncached input tokens; input_tokens must include them"
        )
    if usage.output_audio_tokens + usage.output_image_tokens + usage.reasoning_tokens > usage.output_tokens:
        raise ValueError(
            f"inconsistent usage: audio ({usage.output_audio_tokens}), image ({usage.output_image_tokens}) and "
            f"reasoning ({usage.reasoning_tokens}) output tokens exceed output_tokens ({usage.output_tokens})"
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
    exponent = amount.as_tuple().exponent  # an int for a finite amount ('n'/'N'/'F' only for NaN/inf)
    return amount.quantize(_ONE) if isinstance(exponent, int) and exponent > 0 else amount


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


def price_attributes(
    model: str, provider: str | None, usage: Usage | Mapping[str, Any], service_tier: str | None = None
) -> tuple[Cost, Mapping[str, str]]:
    """``price`` now with the shared catalog, and the cost's span attributes (read-only)."""
    return get_catalog().price_attributes(model, provider, usage, service_tier)
