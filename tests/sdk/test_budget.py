"""Per-run budgets: a call that would start after the budget is spent is never sent."""

from __future__ import annotations

import asyncio
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
    GPT_4O_MINI,
    MSGS,
    OPENAI_MODEL,
    Capture,
    attrs,
)


def run_span(cap: Capture, run_id: str):  # type: ignore[no-untyped-def]
    return next(s for s in cap.spans() if attrs(s).get(semconv.SPAN_KIND) == "run" and
                attrs(s).get(semconv.RUN_ID) == run_id)


def test_openai_call_after_budget_is_refused_before_sending(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.set_default(Reply(text="x", input_tokens=2000, output_tokens=1000))
    client = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k")
    one = GPT_4O_MINI.cost(2000, 1000)  # 0.0009
    budget = Decimal("0.0015")
    with pytest.raises(flowscope.BudgetExceeded) as info, flowscope.run("capped", budget_usd=budget) as run:
        client.chat.completions.create(model=OPENAI_MODEL, messages=MSGS)  # 0.0009 < budget
        client.chat.completions.create(model=OPENAI_MODEL, messages=MSGS)  # starts under budget: allowed
        client.chat.completions.create(model=OPENAI_MODEL, messages=MSGS)  # 0.0018 spent: refused
    assert len(fake_provider.requests) == 2
    assert info.value.spent_usd == 2 * one and info.value.budget_usd == budget
    assert run.cost_usd == 2 * one and run.budget_exceeded
    root = run_span(cap, run.id)
    assert attrs(root)[semconv.BUDGET_USD] == "0.0015"
    assert attrs(root)[semconv.BUDGET_EXCEEDED] is True
    (event,) = [e for e in root.events if e.name == semconv.BUDGET_EXCEEDED]
    assert Decimal(str(event.attributes["flowscope.budget.spent_usd"])) == 2 * one
    assert root.status.status_code.name == "ERROR"  # the run ended with the exception
    assert len(cap.llm()) == 2  # the refused call has no span: nothing happened


def test_anthropic_sync_async_and_stream_helper_respect_the_budget(cap: Capture, fake_provider) -> None:
    fake_provider.set_default(Reply(text="x", input_tokens=10_000, output_tokens=1000))
    c = anthropic.Anthropic(base_url=fake_provider.anthropic_base_url, api_key="k")
    ac = anthropic.AsyncAnthropic(base_url=fake_provider.anthropic_base_url, api_key="k")
    with flowscope.run("claude-capped", budget_usd="0.001") as run:
        c.messages.create(model=ANTHROPIC_MODEL, max_tokens=8, messages=MSGS)
        with pytest.raises(flowscope.BudgetExceeded):
            c.messages.create(model=ANTHROPIC_MODEL, max_tokens=8, messages=MSGS)
        with pytest.raises(flowscope.BudgetExceeded):
            asyncio.run(ac.messages.create(model=ANTHROPIC_MODEL, max_tokens=8, messages=MSGS))
        with pytest.raises(flowscope.BudgetExceeded), c.messages.stream(
            model=ANTHROPIC_MODEL, max_tokens=8, messages=MSGS
        ):
            pass
    assert len(fake_provider.requests) == 1
    assert run.cost_usd == CLAUDE_HAIKU_35.cost(10_000, 1000)
    assert attrs(run_span(cap, run.id))[semconv.BUDGET_EXCEEDED] is True


def test_streamed_cost_counts_once_the_stream_ends(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.set_default(Reply(text="streamed", input_tokens=5000, output_tokens=500))
    client = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k")
    with flowscope.run("stream-capped", budget_usd="0.001") as run:
        for _ in client.chat.completions.create(
            model=OPENAI_MODEL, messages=MSGS, stream=True, stream_options={"include_usage": True}
        ):
            pass
        with pytest.raises(flowscope.BudgetExceeded):
            client.chat.completions.create(model=OPENAI_MODEL, messages=MSGS)
    assert run.cost_usd == GPT_4O_MINI.cost(5000, 500)


def test_no_budget_means_no_limit(cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.set_default(Reply(text="x", input_tokens=100_000, output_tokens=10_000))
    client = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k")
    with flowscope.run("uncapped") as run:
        for _ in range(3):
            client.chat.completions.create(model=OPENAI_MODEL, messages=MSGS)
    assert run.llm_calls == 3 and not run.budget_exceeded
    assert semconv.BUDGET_EXCEEDED not in attrs(run_span(cap, run.id))
