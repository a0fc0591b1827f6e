"""The clients' own retries (``max_retries``) are visible on the LLM span."""

from __future__ import annotations

import socket

import anthropic
import openai
import pytest

import flowscope
from flowscope.core import semconv
from flowscope.testing import FakeProvider, Reply
from tests._llm_kit import (
    ANTHROPIC_MODEL,
    GPT_4O_MINI,
    MSGS,
    OPENAI_MODEL,
    Capture,
    attrs,
    cost_of,
    events,
)


def oai(fp: FakeProvider, **kw: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=fp.openai_base_url, api_key="sk-test", **kw)  # type: ignore[arg-type]


def test_openai_429s_become_retry_events(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.fail_next(2, status=429)
    fake_provider.script(Reply(text="finally", input_tokens=100, output_tokens=10))
    with flowscope.run("retrying"):
        r = oai(fake_provider).chat.completions.create(model=OPENAI_MODEL, messages=MSGS)
    assert r.choices[0].message.content == "finally"
    assert len(fake_provider.requests) == 3
    span = cap.one_llm()
    assert attrs(span)[semconv.RETRY_COUNT] == 2
    retries = events(span, semconv.EVENT_RETRY)
    assert [e[semconv.RETRY_ATTEMPT] for e in retries] == [1, 2]
    assert all(e[semconv.RETRY_STATUS] == 429 for e in retries)
    assert all(e[semconv.ERROR_TYPE] == "RateLimitError" for e in retries)
    assert all(e[semconv.RETRY_BACKOFF_S] == pytest.approx(0.01) for e in retries)  # retry-after-ms: 10
    assert span.status.status_code.name != "ERROR"
    assert cost_of(span) == GPT_4O_MINI.cost(100, 10)  # three requests, one bill


async def test_openai_async_5xx(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.fail_next(1, status=503)
    client = openai.AsyncOpenAI(base_url=fake_provider.openai_base_url, api_key="sk-test")
    await client.chat.completions.create(model=OPENAI_MODEL, messages=MSGS)
    span = cap.one_llm()
    assert attrs(span)[semconv.RETRY_COUNT] == 1
    (event,) = events(span, semconv.EVENT_RETRY)
    assert event[semconv.RETRY_STATUS] == 503 and event[semconv.ERROR_TYPE] == "InternalServerError"


def test_openai_streaming_request_retried(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.fail_next(1, status=500)
    chunks = list(oai(fake_provider).chat.completions.create(model=OPENAI_MODEL, messages=MSGS, stream=True))
    assert chunks
    assert attrs(cap.one_llm())[semconv.RETRY_COUNT] == 1


def test_retries_exhausted_is_an_error_with_its_retries(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.fail_next(3, status=429)
    with pytest.raises(openai.RateLimitError):
        oai(fake_provider, max_retries=2).chat.completions.create(model=OPENAI_MODEL, messages=MSGS)
    span = cap.one_llm()
    assert span.status.status_code.name == "ERROR"
    assert attrs(span)[semconv.RETRY_COUNT] == 2
    assert attrs(span)[semconv.ERROR_TYPE] == "rate_limit_exceeded"  # the provider's own error code


def test_anthropic_overloaded_sync_and_async(cap: Capture, fake_provider: FakeProvider) -> None:
    import asyncio

    fake_provider.fail_next(2, status=529)
    c = anthropic.Anthropic(base_url=fake_provider.anthropic_base_url, api_key="k")
    c.messages.create(model=ANTHROPIC_MODEL, max_tokens=8, messages=MSGS)
    fake_provider.fail_next(1, status=429)
    ac = anthropic.AsyncAnthropic(base_url=fake_provider.anthropic_base_url, api_key="k")
    asyncio.run(ac.messages.create(model=ANTHROPIC_MODEL, max_tokens=8, messages=MSGS))
    first, second = cap.llm()
    assert attrs(first)[semconv.RETRY_COUNT] == 2
    assert {e[semconv.ERROR_TYPE] for e in events(first, semconv.EVENT_RETRY)} == {"OverloadedError"}
    assert attrs(second)[semconv.RETRY_COUNT] == 1
    assert events(second, semconv.EVENT_RETRY)[0][semconv.ERROR_TYPE] == "RateLimitError"


def test_anthropic_stream_helper_retried(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.fail_next(1, status=500)
    c = anthropic.Anthropic(base_url=fake_provider.anthropic_base_url, api_key="k")
    with c.messages.stream(model=ANTHROPIC_MODEL, max_tokens=8, messages=MSGS) as s:
        s.until_done()
    assert attrs(cap.one_llm())[semconv.RETRY_COUNT] == 1


def test_connection_errors_are_retried_with_the_clients_backoff(cap: Capture) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=1)
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model=OPENAI_MODEL, messages=MSGS)
    span = cap.one_llm()
    (event,) = events(span, semconv.EVENT_RETRY)
    assert semconv.RETRY_STATUS not in event
    assert event[semconv.ERROR_TYPE] == "ConnectError"
    assert event[semconv.RETRY_BACKOFF_S] > 0  # the client's own exponential backoff, as it chose it


def test_retries_outside_llm_calls_are_left_alone(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.fail_next(1, status=500, route="models")
    models = oai(fake_provider).models.list()
    assert list(models)
    assert cap.llm() == []
