"""Instrumentations, one module per library, each a ``BaseInstrumentor``.

``instrument_all`` turns on every instrumentor whose library is installed;
instrumenting twice is harmless (``BaseInstrumentor`` remembers).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from collections.abc import Iterable
from typing import Any

import wrapt

logger = logging.getLogger("flowscope")

# name -> (module holding the instrumentor, class name, module of the library it patches)
#
# The third field is the module whose import triggers instrumentation, so it must be a
# regular module: ``langgraph`` is a namespace package (no ``__init__.py``), and a
# post-import hook on a namespace package never fires, so LangGraph is hooked on
# ``langgraph.pregel``, which every graph imports before it can run.
REGISTRY: dict[str, tuple[str, str, str]] = {
    "openai": ("flowscope.instrumentation.openai", "OpenAIInstrumentor", "openai"),
    "anthropic": ("flowscope.instrumentation.anthropic", "AnthropicInstrumentor", "anthropic"),
    "langgraph": ("flowscope.instrumentation.langgraph", "LangGraphInstrumentor", "langgraph.pregel"),
    "penguiflow": ("flowscope.instrumentation.penguiflow", "PenguiFlowInstrumentor", "penguiflow"),
    "pocketflow": ("flowscope.instrumentation.pocketflow", "PocketFlowInstrumentor", "pocketflow"),
}


def available() -> list[str]:
    """Names of instrumentations whose target library is importable here."""
    return [name for name, (_, _, lib) in REGISTRY.items() if _installed(lib)]


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (only its parent packages)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing
        return False


def get_instrumentor(name: str) -> Any:
    module, cls, _ = REGISTRY[name]
    return getattr(importlib.import_module(module), cls)()


def instrument_all(names: Iterable[str] | None = None) -> list[str]:
    """Instrument the named libraries (default: all installed ones); returns their names.

    A library the app has not imported yet is instrumented when it is imported
    (a post-import hook), so ``init()`` never pays for importing frameworks the
    app does not use.
    """
    wanted = list(names) if names is not None else available()
    done = []
    for name in wanted:
        if name not in REGISTRY:
            raise ValueError(f"unknown instrumentation {name!r}; known: {sorted(REGISTRY)}")
        library = REGISTRY[name][2]
        if library in sys.modules:
            if _instrument_now(name):
                done.append(name)
        elif not _installed(library):
            logger.info("flowscope: %s is not installed; not instrumenting it", name)
        else:
            _instrument_on_import(name)
            done.append(name)
    return done


def _instrument_now(name: str) -> bool:
    try:
        inst = get_instrumentor(name)
        if not inst.is_instrumented_by_opentelemetry:
            inst.instrument()
        return True
    except Exception:
        logger.warning("flowscope: could not instrument %s", name, exc_info=True)
        return False


_hooked: set[str] = set()


def _instrument_on_import(name: str) -> None:
    if name in _hooked:
        return
    _hooked.add(name)
    wrapt.register_post_import_hook(lambda _module: _instrument_now(name), REGISTRY[name][2])


def uninstrument_all() -> None:
    for name in available():
        try:
            inst = get_instrumentor(name)
            if inst.is_instrumented_by_opentelemetry:
                inst.uninstrument()
        except Exception:
            logger.warning("flowscope: could not uninstrument %s", name, exc_info=True)
