"""Test utilities for flowscope and its users: a fake OpenAI/Anthropic provider.

Names are loaded lazily (PEP 562) so ``python -m flowscope.testing.fake_provider`` does not
import the module twice, and importing this package stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .fake_common import RecordedRequest, Reply, ToolCall, count_input_tokens
    from .fake_provider import FakeProvider

_EXPORTS = {
    "FakeProvider": ".fake_provider",
    "RecordedRequest": ".fake_common",
    "Reply": ".fake_common",
    "ToolCall": ".fake_common",
    "count_input_tokens": ".fake_common",
}

__all__ = ["FakeProvider", "RecordedRequest", "Reply", "ToolCall", "count_input_tokens"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
