"""flowscope: OpenTelemetry tracing and exact cost for LLM and agent flows.

    import flowscope
    flowscope.init(service_name="shop")
    with flowscope.run("checkout-flow") as run:
        with flowscope.node("plan"):
            client.chat.completions.create(...)
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import cache, metrics
from ._setup import force_flush, init, shutdown, stats
from .attributes import set_run_attributes
from .client import Client, FlowscopeError
from .fallback import fallback
from .pricing import Cost, Usage, price
from .runs import (
    BudgetExceeded,
    Run,
    current_run,
    flow,
    node,
    record_state,
    run,
    set_branch,
    tool,
)
from .state import redact_keys
from .waiting import record_wait, wait

__all__ = [
    "BudgetExceeded",
    "Client",
    "Cost",
    "FlowscopeError",
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
    "run",
    "set_branch",
    "set_run_attributes",
    "shutdown",
    "stats",
    "tool",
    "wait",
]
