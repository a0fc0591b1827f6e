"""pytest plugin (registered by entry point): flowscope fixtures for users' own tests.

Loaded into every pytest session of a project that installs flowscope, so it
imports nothing heavy at load time; each fixture imports what it needs.

    def test_checkout_path(flowscope_capture, flowscope_fake_provider):
        checkout(client_for(flowscope_fake_provider.openai_base_url))
        run = flowscope_capture.run()
        assert_node_sequence(run, ["plan", "work", "finish"])
        assert_cost_below(run, "0.01")
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .capturing import Capture
    from .fake_provider import FakeProvider


@pytest.fixture()
def flowscope_capture() -> Iterator[Capture]:
    """Every span finished during the test, readable as runs (``.run()``, ``.runs()``).

    Needs no collector and works whether or not ``flowscope.init()`` was called.
    """
    from .capturing import Capture

    with Capture() as cap:
        yield cap


@pytest.fixture()
def flowscope_fake_provider() -> Iterator[FakeProvider]:
    """A fake OpenAI/Anthropic server on loopback for the duration of one test.

    Script replies with ``.script(Reply(...))``, inject failures with
    ``.fail_next(2, status=429)``; point clients at ``.openai_base_url`` /
    ``.anthropic_base_url``.
    """
    from .fake_provider import FakeProvider

    with FakeProvider() as fp:
        yield fp


@pytest.fixture()
def flowscope_fake_llm_env(
    flowscope_fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> FakeProvider:
    """The fake provider, plus the environment variables the official clients read
    (``OPENAI_BASE_URL``, ``OPENAI_API_KEY``, ``ANTHROPIC_BASE_URL``,
    ``ANTHROPIC_API_KEY``), so code that builds its own ``OpenAI()`` /
    ``Anthropic()`` client talks to the fake without changes."""
    fp = flowscope_fake_provider
    monkeypatch.setenv("OPENAI_BASE_URL", fp.openai_base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-flowscope-fake")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fp.anthropic_base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-flowscope-fake")
    return fp
