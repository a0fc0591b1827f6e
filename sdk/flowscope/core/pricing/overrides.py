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
       "cache_write_1h_mtok": "0.60",    # optional: 1-hour cache writes (else cache_write_mtok)
       "reasoning_mtok": null,           # optional
       "tiers": [{"above_input_tokens": 200000, "input_mtok": "0.60", "output_mtok": "2.40"}],
       "effective_from": "2026-01-01",   # optional ISO date/datetime (UTC)
       "max_output_tokens": 16384}       # optional: the longest reply (budgets' worst case)
    ]}

A top-level ``"aliases": {"prod-chat": "gpt-4o"}`` prices calls reported under
one name (an Azure OpenAI deployment, a proxy's renamed model) as another model.

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


class PricingFileError(ValueError):
    """The pricing file (``FLOWSCOPE_PRICING_FILE`` or ``init(pricing=...)``) is missing, unreadable or invalid.

    Never turned into "unpriced": a bad file must stop ``flowscope.init`` and the
    collector's start, naming the file and the reason, or every call would look free.
    """

_PRICE_FIELDS: dict[str, str] = {
    # override key -> genai-prices price key
    "input_mtok": "input_mtok",
    "cached_input_mtok": "cache_read_mtok",
    "cache_write_mtok": "cache_write_mtok",
    "cache_write_1h_mtok": "cache_write_1h_mtok",
    "output_mtok": "output_mtok",
    "reasoning_mtok": "output_reasoning_mtok",
}
# alias -> override key, for people used to genai-prices' own names
_PRICE_ALIASES = {"cache_read_mtok": "cached_input_mtok"}
_ALIAS_FOR = {canonical: alias for alias, canonical in _PRICE_ALIASES.items()}
_ENTRY_KEYS = {"provider", "model", "match", "tiers", "effective_from", "max_output_tokens", *_PRICE_FIELDS,
               *_PRICE_ALIASES}
_TIER_KEYS = {"above_input_tokens", *_PRICE_FIELDS, *_PRICE_ALIASES}


@dataclass(frozen=True)
class _OverrideGroup:
    """All entries for one (provider, model): a price history."""

    provider: str | None
    model: str
    exact: frozenset[str]
    globs: tuple[re.Pattern[str], ...]
    history: tuple[tuple[_dt.datetime | None, Any], ...]  # (effective_from, genai ModelPrice), ascending
    # the most tokens one reply can have (budgets' worst case when a request sets no max_tokens)
    max_output_tokens: int | None = None

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
        raise PricingFileError(f"pricing override file {label}: cannot read: {exc.strerror or exc}") from exc
    digest = hashlib.sha256(raw).hexdigest()[:12]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PricingFileError(f"pricing override file {label}: not UTF-8: {exc}") from exc
    if path.suffix.lower() == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            try:
                import tomli as tomllib  # type: ignore[no-redef]
            except ImportError as exc:
                raise PricingFileError(
                    f"pricing override file {label}: TOML needs Python 3.11+ or the tomli package; use JSON"
                ) from exc
        try:
            data = tomllib.loads(text, parse_float=Decimal)
        except tomllib.TOMLDecodeError as exc:
            raise PricingFileError(f"pricing override file {label}: invalid TOML: {exc}") from exc
    else:
        try:
            data = json.loads(text, parse_float=Decimal)
        except json.JSONDecodeError as exc:
            raise PricingFileError(
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
    """Every entry checked, then grouped by (provider, model) into price histories."""
    groups: dict[tuple[str | None, str], dict[str, Any]] = {}
    try:
        for index, entry in enumerate(_models(data, label)):
            _add_entry(groups, entry, f"{label}: models[{index}]")
    except PricingFileError:
        raise
    except ValueError as exc:  # every check names the file (label) and the entry: same message, loud type
        raise PricingFileError(str(exc)) from None
    return tuple(_override_group(group) for group in groups.values())


def _parse_aliases(data: Any, label: str) -> dict[str, str]:
    """The file's ``aliases``: a model name as calls report it -> the model to price it as.

    Azure OpenAI calls name a deployment ("prod-chat"), not a model; a proxy may
    rename models. Keys are matched case-insensitively, one level (an alias of an
    alias is not followed).
    """
    if not isinstance(data, Mapping) or data.get("aliases") is None:
        return {}
    raw = data["aliases"]
    if not isinstance(raw, Mapping):
        raise PricingFileError(f'{label}: "aliases" must be an object of model name -> catalog model')
    out: dict[str, str] = {}
    for name, target in raw.items():
        if str(name).startswith("_"):
            continue
        if not isinstance(name, str) or not name.strip() or not isinstance(target, str) or not target.strip():
            raise PricingFileError(f'{label}: aliases[{name!r}] must map a non-empty name to a non-empty model name, '
                                   f"got {target!r}")
        out[name.strip().lower()] = target.strip()
    return out


def _models(data: Any, label: str) -> list[Any]:
    """The file's ``models`` list; nothing else may stand at the top level but comments."""
    if not isinstance(data, Mapping):
        raise ValueError(f'{label}: top level must be an object with a "models" list')
    unknown = [k for k in data if k not in ("models", "aliases") and not str(k).startswith(("_", "$"))]
    if unknown:
        raise ValueError(f'{label}: unknown top-level key(s) {sorted(map(str, unknown))}; expected "models" '
                         'and optionally "aliases"')
    models = data.get("models", [])
    if not isinstance(models, list):
        raise ValueError(f'{label}: "models" must be a list')
    return models


def _add_entry(groups: dict[tuple[str | None, str], dict[str, Any]], entry: Any, where: str) -> None:
    """Check one entry and file its price under its (provider, model) at its ``effective_from``."""
    model = _entry_model(entry, where)
    where = f"{where} (model {model!r})"
    bad_keys = _unknown_keys(entry, _ENTRY_KEYS)
    if bad_keys:
        raise ValueError(f"{where}: unknown key(s) {bad_keys}; allowed: {sorted(_ENTRY_KEYS)}")
    provider_id = _entry_provider(entry, where)
    match = _entry_match(entry, model, where)
    model_price = _model_price(entry, where)
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
    limit = entry.get("max_output_tokens")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise ValueError(f'{where}: "max_output_tokens" must be a positive integer, got {limit!r}')
        if group.get("max_output_tokens") not in (None, limit):
            raise ValueError(f'{where}: "max_output_tokens" differs from another entry of this provider/model')
        group["max_output_tokens"] = limit


def _entry_model(entry: Any, where: str) -> str:
    """The entry's model name, stripped; the entry itself must be an object."""
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: must be an object, got {type(entry).__name__}")
    model = entry.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f'{where}: "model" must be a non-empty string')
    return model.strip()


def _unknown_keys(fields: Mapping[Any, Any], allowed: set[str]) -> list[str]:
    """Keys that are neither allowed nor comments (``_``-prefixed), sorted for the message."""
    return sorted(str(k) for k in fields if k not in allowed and not str(k).startswith("_"))


def _entry_provider(entry: Mapping[str, Any], where: str) -> str | None:
    """The entry's provider as a catalog provider id; ``None`` matches any provider."""
    provider = entry.get("provider")
    if provider is not None and (not isinstance(provider, str) or not provider.strip()):
        raise ValueError(f'{where}: "provider" must be a non-empty string or null')
    return _canonical_provider(provider) if provider else None


def _entry_match(entry: Mapping[str, Any], model: str, where: str) -> list[str]:
    """The model names and globs the entry prices (default: its own model name)."""
    match = entry.get("match", [model])
    if isinstance(match, str):
        match = [match]
    if (
        not isinstance(match, list)
        or not match
        or not all(isinstance(m, str) and m.strip() for m in match)
    ):
        raise ValueError(f'{where}: "match" must be a non-empty list of model names or globs')
    return match


def _model_price(entry: Mapping[str, Any], where: str) -> Any:
    """The entry's prices as a genai-prices ``ModelPrice``, each tiered where its tiers change it."""
    from genai_prices.types import ModelPrice, Tier, TieredPrices

    base = _base_prices(entry, where)
    tier_rows = _tier_rows(entry.get("tiers") or [], base, where)
    price_kwargs: dict[str, Any] = {}
    for price_key, base_price in base.items():
        steps: list[Any] = []
        current = base_price
        for above, tier_prices in tier_rows:
            current = tier_prices.get(price_key, current)
            steps.append(Tier(start=above, price=current))
        price_kwargs[price_key] = TieredPrices(base=base_price, tiers=steps) if steps else base_price
    return ModelPrice(**price_kwargs)


def _base_prices(entry: Mapping[str, Any], where: str) -> dict[str, Decimal]:
    """The entry's untiered prices by genai-prices key; input and output are required."""
    for alias, canonical in _PRICE_ALIASES.items():
        if alias in entry and canonical in entry:
            raise ValueError(f"{where}: give either {canonical!r} or {alias!r}, not both")
    base: dict[str, Decimal] = {}
    for key, price_key, raw in _given_prices(entry):
        base[price_key] = _parse_price(raw, where, key)
    for required in ("input_mtok", "output_mtok"):
        if required not in base:
            raise ValueError(f'{where}: "{required}" is required (USD per million tokens, e.g. "0.30")')
    return base


def _given_prices(fields: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """(override key, genai-prices key, raw value) for each price an entry or a tier gives."""
    given = []
    for key, price_key in _PRICE_FIELDS.items():
        raw = fields.get(key, fields.get(_ALIAS_FOR.get(key, "")))
        if raw is not None:
            given.append((key, price_key, raw))
    return given


def _tier_rows(
    tiers_raw: Any, base: Mapping[str, Decimal], where: str
) -> list[tuple[int, dict[str, Decimal]]]:
    """(threshold, the prices that change there) for each tier, thresholds strictly increasing."""
    if not isinstance(tiers_raw, list):
        raise ValueError(f'{where}: "tiers" must be a list')
    tier_rows: list[tuple[int, dict[str, Decimal]]] = []
    previous = -1
    for t_index, tier in enumerate(tiers_raw):
        t_where = f"{where} tiers[{t_index}]"
        above = _tier_threshold(tier, previous, t_where)
        tier_rows.append((above, _tier_prices(tier, base, t_where)))
        previous = above
    return tier_rows


def _tier_threshold(tier: Any, previous: int, where: str) -> int:
    """The tier's ``above_input_tokens``, above the previous tier's; the tier must be an object."""
    if not isinstance(tier, Mapping):
        raise ValueError(f"{where}: must be an object")
    above = tier.get("above_input_tokens")
    if isinstance(above, bool) or not isinstance(above, int) or above < 0:
        raise ValueError(f'{where}: "above_input_tokens" must be a non-negative integer')
    if above <= previous:
        raise ValueError(f"{where}: tiers must have strictly increasing above_input_tokens")
    return above


def _tier_prices(tier: Mapping[str, Any], base: Mapping[str, Decimal], where: str) -> dict[str, Decimal]:
    """The prices a tier changes; each must have a base price in its entry."""
    extra = _unknown_keys(tier, _TIER_KEYS)
    if extra:
        raise ValueError(f"{where}: unknown key(s) {extra}")
    tier_prices: dict[str, Decimal] = {}
    for key, price_key, raw in _given_prices(tier):
        if price_key not in base:
            raise ValueError(f"{where}: {key} is tiered but has no base price in the entry")
        tier_prices[price_key] = _parse_price(raw, where, key)
    if not tier_prices:
        raise ValueError(f"{where}: a tier must change at least one price")
    return tier_prices


def _override_group(group: Mapping[str, Any]) -> _OverrideGroup:
    """One (provider, model)'s entries as matchers (exact names, globs) and a history oldest first."""
    exact = frozenset(m for m in group["match"] if not any(c in m for c in "*?["))
    globs = tuple(re.compile(fnmatch.translate(m)) for m in group["match"] if any(c in m for c in "*?["))
    history = tuple(
        sorted(
            group["history"].items(),
            key=lambda item: (item[0] is not None, item[0] or _dt.datetime.min.replace(tzinfo=_UTC)),
        )
    )
    return _OverrideGroup(group["provider"], group["model"], exact, globs, history, group.get("max_output_tokens"))
