"""The base class of flowscope's instrumentors."""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]


class FlowscopeInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """A ``BaseInstrumentor`` that cannot instrument twice by re-entry.

    Libraries are instrumented when the app imports them (a post-import hook).
    If ``instrument()`` itself is what imports the library, the hook fires
    inside it, before ``BaseInstrumentor`` has recorded that the library is
    instrumented; without this guard the hook would wrap every method a
    second time.
    """

    _reentry = threading.local()

    def instrument(self, **kwargs: Any) -> Any:
        busy: set[type] = self._reentry.__dict__.setdefault("busy", set())
        if type(self) in busy:
            return None
        busy.add(type(self))
        try:
            return super().instrument(**kwargs)
        finally:
            busy.discard(type(self))
