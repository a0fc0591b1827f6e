"""pytest plugin (registered by entry point): flowscope fixtures for users' own tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .fake_provider import FakeProvider


@pytest.fixture()
def flowscope_fake_provider() -> Iterator[FakeProvider]:
    """A fake OpenAI/Anthropic server on loopback for the duration of one test."""
    with FakeProvider() as fp:
        yield fp
