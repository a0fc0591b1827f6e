"""flowscope: OpenTelemetry tracing and exact cost for LLM and agent flows.

    import flowscope
    flowscope.init(service_name="shop")
    with flowscope.run("checkout-flow") as run:
        with flowscope.node("plan"):
            client.chat.completions.create(...)
"""

from __future__ import annotations

__version__ = "0.1.0"

from ._setup import force_flush, init, shutdown
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

__all__ = [
    "BudgetExceeded",
    "Cost",
    "Run",
    "Usage",
    "__version__",
    "current_run",
    "flow",
    "force_flush",
    "init",
    "node",
    "price",
    "record_state",
    "run",
    "set_branch",
    "shutdown",
    "tool",
]
