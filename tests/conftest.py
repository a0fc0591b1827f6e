"""Fixtures shared by every test folder: the session collector, a fake LLM provider,
flowscope initialised against the collector, and an in-memory span capture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import flowscope
from flowscope.testing import FakeProvider

from ._collector_kit import CollectorProcess
from ._llm_kit import Capture, capture


@pytest.fixture(scope="session")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    proc = CollectorProcess(tmp_path_factory.mktemp("collector") / "data").start()
    yield proc
    proc.stop()


@pytest.fixture()
def fake_provider() -> Iterator[FakeProvider]:
    with FakeProvider() as fp:
        yield fp


@pytest.fixture()
def traced(collector: CollectorProcess) -> Iterator[CollectorProcess]:
    """flowscope initialised against the session collector; flushed after the test."""
    flowscope.init(service_name="tests", endpoint=collector.url)
    yield collector
    flowscope.force_flush()


@pytest.fixture
def cap() -> Iterator[Capture]:
    """Spans and metrics of the test, from flowscope initialised with in-memory exporters."""
    yield from capture()
