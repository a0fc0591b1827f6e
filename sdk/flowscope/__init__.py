"""flowscope: OpenTelemetry tracing and exact cost for LLM and agent flows.

    import flowscope
    flowscope.init(service_name="shop")
    with flowscope.run("checkout-flow") as run:
        with flowscope.node("plan"):
            client.chat.completions.create(...)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

# The package face loads its names on first use (PEP 562), so importing a pure
# part such as ``flowscope.core`` -- which the collector does -- does not pull
# in the OpenTelemetry SDK, httpx and the run machinery.
_LAZY: dict[str, str] = {
    "cache": "",
    "metrics": "",
    "force_flush": ".tracing",
    "init": ".tracing",
    "shutdown": ".tracing",
    "stats": ".tracing",
    "set_run_attributes": ".attributes",
    "Client": ".client",
    "FlowscopeError": ".client",
    "fallback": ".fallbacks",
    "replay": ".replays",
    "ReplayError": ".replays",
    "Cost": ".core.pricing",
    "Usage": ".core.pricing",
    "price": ".core.pricing",
    "BudgetExceeded": ".context",
    "Run": ".context",
    "current_run": ".context",
    "flow": ".scopes",
    "node": ".scopes",
    "record_state": ".scopes",
    "run": ".scopes",
    "set_branch": ".scopes",
    "tool": ".scopes",
    "redact_keys": ".core.state",
    "record_wait": ".waiting",
    "wait": ".waiting",
}

if TYPE_CHECKING:
    from . import cache, metrics
    from .attributes import set_run_attributes
    from .client import Client, FlowscopeError
    from .context import BudgetExceeded, Run, current_run
    from .core.pricing import Cost, Usage, price
    from .core.state import redact_keys
    from .fallbacks import fallback
    from .replays import ReplayError, replay
    from .scopes import flow, node, record_state, run, set_branch, tool
    from .tracing import force_flush, init, shutdown, stats
    from .waiting import record_wait, wait


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flowscope' has no attribute {name!r}")
    import importlib

    value = importlib.import_module(f".{name}" if module == "" else module, __name__)
    if module:
        value = getattr(value, name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "BudgetExceeded",
    "Client",
    "Cost",
    "FlowscopeError",
    "ReplayError",
    "Run",
    "Usage",
    "__version__",
    "cache",
    "current_run",
    "fallback",
    "flow",
    "force_flush",
    "init",
    "metrics",
    "node",
    "price",
    "record_state",
    "record_wait",
    "redact_keys",
    "replay",
    "run",
    "set_branch",
    "set_run_attributes",
    "shutdown",
    "stats",
    "tool",
    "wait",
]
