"""``flowscope.fallback``: the first candidate that succeeds serves, and the span says so."""

from __future__ import annotations

from decimal import Decimal

import anthropic
import openai
import pytest

import flowscope
from flowscope.core import semconv
from flowscope.testing import FakeProvider, Reply
from tests._llm_kit import (
    ANTHROPIC_MODEL,
    CLAUDE_HAIKU_35,
    MSGS,
    OPENAI_MODEL,
    Capture,
    attrs,
    cost_of,
)


@pytest.fixture
def clients(fake_provider: FakeProvider) -> tuple[openai.OpenAI, anthropic.Anthropic]:
    return (
        openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k", max_retries=0),
        anthropic.Anthropic(base_url=fake_provider.anthropic_base_url, api_key="k", max_retries=0),
    )


def test_openai_falls_back_to_anthropic(cap: Capture, fake_provider: FakeProvider, clients) -> None:
    oai, ant = clients
    fake_provider.fail_next(1, status=429, route="chat.completions")
    fake_provider.script(Reply(text="from claude", input_tokens=90, output_tokens=9), route="messages")
    with flowscope.run("fallback") as run:
        result = flowscope.fallback(
            lambda: oai.chat.completions.create(model=OPENAI_MODEL, messages=MSGS),
            lambda: ant.messages.create(model=ANTHROPIC_MODEL, max_tokens=32, messages=MSGS),
            on=(openai.RateLimitError, openai.APIConnectionError),
        )
    assert result.content[0].text == "from claude"
    failed, served = cap.llm()
    assert failed.status.status_code.name == "ERROR"
    assert semconv.FALLBACK_TO not in attrs(failed)
    a = attrs(served)
    assert a[semconv.FALLBACK_FROM] == f"openai/{OPENAI_MODEL}"
    assert a[semconv.FALLBACK_TO] == f"anthropic/{ANTHROPIC_MODEL}"
    assert a[semconv.FALLBACK_REASON] == "RateLimitError (429)"
    assert cost_of(served) == CLAUDE_HAIKU_35.cost(90, 9)
    assert run.cost_usd == CLAUDE_HAIKU_35.cost(90, 9)  # the failed call cost nothing


def test_primary_success_is_not_a_fallback(cap: Capture, clients) -> None:
    oai, ant = clients
    flowscope.fallback(
        lambda: oai.chat.completions.create(model=OPENAI_MODEL, messages=MSGS),
        lambda: ant.messages.create(model=ANTHROPIC_MODEL, max_tokens=32, messages=MSGS),
    )
    assert semconv.FALLBACK_FROM not in attrs(cap.one_llm())


async def test_async_lambdas_and_coroutine_functions(cap: Capture, fake_provider: FakeProvider) -> None:
    aoai = openai.AsyncOpenAI(base_url=fake_provider.openai_base_url, api_key="k", max_retries=0)
    aant = anthropic.AsyncAnthropic(base_url=fake_provider.anthropic_base_url, api_key="k", max_retries=0)
    fake_provider.fail_next(1, status=500, route="chat.completions")
    result = await flowscope.fallback(
        lambda: aoai.chat.completions.create(model=OPENAI_MODEL, messages=MSGS),
        lambda: aant.messages.create(model=ANTHROPIC_MODEL, max_tokens=32, messages=MSGS),
    )
    assert result.model == ANTHROPIC_MODEL

    async def primary() -> object:
        return await aant.messages.create(model="claude-no-such-model", max_tokens=8, messages=MSGS)

    async def backup() -> object:
        return await aoai.chat.completions.create(model=OPENAI_MODEL, messages=MSGS)

    fake_provider.fail_next(1, status=404, route="messages")
    second = await flowscope.fallback(primary, backup, on=anthropic.NotFoundError)
    assert second.model == OPENAI_MODEL
    spans = cap.llm()
    assert len(spans) == 4
    assert attrs(spans[1])[semconv.FALLBACK_REASON] == "InternalServerError (500)"
    assert attrs(spans[3])[semconv.FALLBACK_FROM] == "anthropic/claude-no-such-model"
    assert attrs(spans[3])[semconv.FALLBACK_TO] == f"openai/{OPENAI_MODEL}"


def test_everything_fails_raises_the_last_error(cap: Capture, fake_provider: FakeProvider, clients) -> None:
    oai, ant = clients
    fake_provider.fail_next(1, status=429, route="chat.completions")
    fake_provider.fail_next(1, status=529, route="messages")
    with pytest.raises(anthropic.APIStatusError) as info:
        flowscope.fallback(
            lambda: oai.chat.completions.create(model=OPENAI_MODEL, messages=MSGS),
            lambda: ant.messages.create(model=ANTHROPIC_MODEL, max_tokens=32, messages=MSGS),
        )
    assert info.value.status_code == 529
    assert all(s.status.status_code.name == "ERROR" for s in cap.llm())


def test_errors_outside_on_are_not_caught(fake_provider: FakeProvider, clients) -> None:
    oai, _ = clients
    fake_provider.fail_next(1, status=400, route="chat.completions")
    called = []
    with pytest.raises(openai.BadRequestError):
        flowscope.fallback(
            lambda: oai.chat.completions.create(model=OPENAI_MODEL, messages=MSGS),
            lambda: called.append(1),
            on=openai.RateLimitError,
        )
    assert called == []


def test_budget_exceeded_never_falls_back(cap: Capture, fake_provider: FakeProvider, clients) -> None:
    oai, ant = clients
    fake_provider.script(Reply(text="spend", input_tokens=100_000, output_tokens=10_000))
    with flowscope.run("budget", budget_usd=Decimal("0.001")):
        oai.chat.completions.create(model=OPENAI_MODEL, messages=MSGS, max_tokens=10)  # worst case fits
        with pytest.raises(flowscope.BudgetExceeded):
            flowscope.fallback(
                lambda: oai.chat.completions.create(model=OPENAI_MODEL, messages=MSGS),
                lambda: ant.messages.create(model=ANTHROPIC_MODEL, max_tokens=8, messages=MSGS),
            )
    assert len(fake_provider.requests) == 1


def test_fallback_to_plain_code_is_recorded_on_the_current_span(cap: Capture, fake_provider, clients) -> None:
    oai, _ = clients
    fake_provider.fail_next(1, status=503, route="chat.completions")
    with flowscope.run("canned"), flowscope.node("answer"):
        answer = flowscope.fallback(
            lambda: oai.chat.completions.create(model=OPENAI_MODEL, messages=MSGS), lambda: "canned answer"
        )
    assert answer == "canned answer"
    node = next(s for s in cap.spans() if s.name == "answer")
    assert attrs(node)[semconv.FALLBACK_FROM] == f"openai/{OPENAI_MODEL}"
    assert attrs(node)[semconv.FALLBACK_REASON] == "InternalServerError (503)"


def test_rejects_non_callables() -> None:
    with pytest.raises(TypeError):
        flowscope.fallback("not callable")  # type: ignore[arg-type]
