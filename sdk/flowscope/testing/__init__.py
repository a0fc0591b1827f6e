"""Test utilities for flowscope and its users: in-memory run capture, assertions on a
run's path, cost, retries and state, and a fake OpenAI/Anthropic provider.

Names are loaded lazily (PEP 562) so ``python -m flowscope.testing.fake_provider`` does not
import the module twice, and importing this package stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .assertions import assert_cost_below, assert_no_retries, assert_node_sequence, assert_state
    from .capturing import Capture, CapturedRun, capture
    from .fake_common import RecordedRequest, Reply, ToolCall, count_input_tokens
    from .fake_provider import FakeProvider

_EXPORTS = {
    "Capture": ".capturing",
    "CapturedRun": ".capturing",
    "capture": ".capturing",
    "assert_cost_below": ".assertions",
    "assert_no_retries": ".assertions",
    "assert_node_sequence": ".assertions",
    "assert_state": ".assertions",
    "FakeProvider": ".fake_provider",
    "RecordedRequest": ".fake_common",
    "Reply": ".fake_common",
    "ToolCall": ".fake_common",
    "count_input_tokens": ".fake_common",
}

__all__ = [
    "Capture",
    "CapturedRun",
    "FakeProvider",
    "RecordedRequest",
    "Reply",
    "ToolCall",
    "assert_cost_below",
    "assert_no_retries",
    "assert_node_sequence",
    "assert_state",
    "capture",
    "count_input_tokens",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
