"""The base class of flowscope's instrumentors, and the telemetry an ``instrument()`` call asked for."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.trace import Tracer

from .. import _otel
from ..llm import LLMCall, start_call
from ..metrics import Instruments


def import_class(module: str, name: str) -> Any:
    """``module.name``, or None where this version of the library has no such thing."""
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


@dataclass(frozen=True)
class Telemetry:
    """Where an instrumentor's spans and metrics go: the providers passed to ``instrument()``.

    ``instrument(tracer_provider=tp, meter_provider=mp)`` sends spans to ``tp`` and GenAI
    metrics to ``mp``, as every OpenTelemetry instrumentor does; without them spans go
    to the global provider and metrics to ``flowscope.metrics.enable()``'s, if on.
    """

    tracer: Tracer | None = None
    instruments: Instruments | None = None
    tracer_provider: Any = None

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> Telemetry:
        tracer_provider = kwargs.get("tracer_provider")
        meter_provider = kwargs.get("meter_provider")
        return cls(
            tracer=_otel.tracer_from(tracer_provider) if tracer_provider is not None else None,
            instruments=Instruments(meter_provider) if meter_provider is not None else None,
            tracer_provider=tracer_provider,
        )

    def start_call(self, operation: str, provider: str, **kwargs: Any) -> LLMCall | None:
        """:func:`flowscope.llm.start_call` recording to these providers."""
        return start_call(operation, provider, tracer=self.tracer, instruments=self.instruments, **kwargs)


GLOBAL = Telemetry()


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

    def wrap(self, owner: Any, method: str, hook: Callable[..., Any]) -> None:
        """Patch ``owner.method`` and remember it, so ``unwrap_all`` undoes exactly what was done."""
        wrapt.wrap_function_wrapper(owner, method, hook)
        self._patched().append((owner, method))

    def unwrap_all(self) -> None:
        patched = self._patched()
        for owner, method in patched:
            unwrap(owner, method)
        patched.clear()

    def _patched(self) -> list[tuple[Any, str]]:
        cls = type(self)
        if "_patched_methods" not in cls.__dict__:
            cls._patched_methods = []  # type: ignore[attr-defined]
        return cls._patched_methods  # type: ignore[attr-defined,no-any-return]
