"""Exact, reproducible cost for one LLM call.

Money is ``Decimal`` end to end: a float cost summed over millions of spans
drifts, and a cost we cannot justify is worse than none. So an unknown model
is *unpriced* (``total_usd is None``), never a silent zero.

:mod:`.usage` holds the token counts and the cost (``Usage``, ``Cost``,
``format_usd``); :mod:`.providers` names providers as the catalog does;
:mod:`.overrides` reads the user's override file; :mod:`.catalog` looks
prices up, computes and memoises costs, and keeps the shared catalog
(``configure``, ``price``).
"""

from __future__ import annotations

from .catalog import PRICING_FILE_ENV, PricingCatalog, configure, get_catalog, price, price_attributes
from .overrides import PricingFileError
from .usage import Cost, Usage, format_usd

__all__ = [
    "PRICING_FILE_ENV",
    "Cost",
    "PricingCatalog",
    "PricingFileError",
    "Usage",
    "configure",
    "format_usd",
    "get_catalog",
    "price",
    "price_attributes",
]
