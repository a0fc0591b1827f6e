"""The user's own prices: reading and checking the override file.

A fine-tuned or self-hosted model has no catalog price, and a negotiated
contract differs from the list price; an override file says what to charge
instead. It is read once, when a catalog is built (:mod:`.catalog`), and every
mistake in it is refused there with the entry and the key at fault, so a bad
file fails ``flowscope.init`` instead of mispricing calls later.

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
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from .providers import _canonical_provider

_UTC = _dt.timezone.utc

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
