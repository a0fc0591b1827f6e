"""Instrumentations, one module per library, each a ``BaseInstrumentor``.

``instrument_all`` turns on every instrumentor whose library is installed;
instrumenting twice is harmless (``BaseInstrumentor`` remembers).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Iterable
from typing import Any

logger = logging.getLogger("flowscope")

# name -> (module holding the instrumentor, class name, library it needs)
REGISTRY: dict[str, tuple[str, str, str]] = {
    "openai": ("flowscope.instrumentation.openai", "OpenAIInstrumentor", "openai"),
}


def available() -> list[str]:
    """Names of instrumentations whose target library is importable here."""
    return [name for name, (_, _, lib) in REGISTRY.items() if importlib.util.find_spec(lib) is not None]


def get_instrumentor(name: str) -> Any:
    module, cls, _ = REGISTRY[name]
    return getattr(importlib.import_module(module), cls)()


def instrument_all(names: Iterable[str] | None = None) -> list[str]:
    """Instrument the named libraries (default: all installed ones); returns what was done."""
    wanted = list(names) if names is not None else available()
    done = []
    for name in wanted:
        if name not in REGISTRY:
            raise ValueError(f"unknown instrumentation {name!r}; known: {sorted(REGISTRY)}")
        if importlib.util.find_spec(REGISTRY[name][2]) is None:
            logger.info("flowscope: %s is not installed; not instrumenting it", name)
            continue
        try:
            inst = get_instrumentor(name)
            if not inst.is_instrumented_by_opentelemetry:
                inst.instrument()
            done.append(name)
        except Exception:
            logger.warning("flowscope: could not instrument %s", name, exc_info=True)
    return done


def uninstrument_all() -> None:
    for name in available():
        try:
            inst = get_instrumentor(name)
            if inst.is_instrumented_by_opentelemetry:
                inst.uninstrument()
        except Exception:
            logger.warning("flowscope: could not uninstrument %s", name, exc_info=True)
