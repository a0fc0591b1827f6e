"""The one error a replay raises: a message a person can act on.

It lives in :mod:`flowscope._replaying` (a request refused under
``llm="recorded-only"`` is raised from the LLM call path, below this package).
"""

from __future__ import annotations

from .._replaying import ReplayError

__all__ = ["ReplayError"]
