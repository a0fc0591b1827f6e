"""Fixtures of the SDK tests."""

from __future__ import annotations

import pytest

from tests._runtime_kit import MemoryKit


@pytest.fixture
def mem() -> MemoryKit:
    """Spans of the test in memory, from a flowscope set up with an in-memory exporter."""
    return MemoryKit()
