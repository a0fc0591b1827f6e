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


def test_openai_call_that_could_pass_the_budget_is_refused_before_sending(
    cap: Capture, fake_provider: FakeProvider
) -> None:
    fake_provider.set_default(Reply(text="x", input_tokens=2000, output_tokens=1000))
    client = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k")
    one = GPT_4O_MINI.cost(2000, 1000)  # 0.0009
    budget = Decimal("0.0015")
    with pytest.raises(flowscope.BudgetExceeded) as info, flowscope.run("capped", budget_usd=budget) as run:
        # worst case: 13 prompt tokens + max_tokens=1000 at $0.15 / $0.60: 0.00060195, fits
        client.chat.completions.create(model=OPENAI_MODEL, messages=MSGS, max_tokens=1000)
        # 0.0009 spent + 0.00060195 could reach 0.00150195 > budget: refused, not one call late
        client.chat.completions.create(model=OPENAI_MODEL, messages=MSGS, max_tokens=1000)
    assert len(fake_provider.requests) == 1
    assert info.value.spent_usd == one and info.value.budget_usd == budget
    assert run.cost_usd == one and run.budget_exceeded
    root = run_span(cap, run.id)
    assert attrs(root)[semconv.BUDGET_USD] == "0.0015"
    assert attrs(root)[semconv.BUDGET_EXCEEDED] is True
    (event,) = [e for e in root.events if e.name == semconv.BUDGET_EXCEEDED]
    assert Decimal(str(event.attributes["flowscope.budget.spent_usd"])) == one
    assert root.status.status_code.name == "ERROR"  # the run ended with the exception
    assert len(cap.llm()) == 1  # the refused call has no span: nothing happened


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
            model=OPENAI_MODEL, messages=MSGS, stream=True, stream_options={"include_usage": True}, max_tokens=500
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


# --- the boundary: spent + worst case == budget is allowed, a token more is refused ----------

PROMPT = 13  # MSGS counted locally (the estimate's input; o200k_base for gpt-4o-mini)


def test_budget_boundary_worst_case_estimate(cap: Capture, fake_provider: FakeProvider) -> None:
    # gpt-4o-mini $0.15 in / $0.60 out per million: worst case of max_tokens=100
    worst = (PROMPT * Decimal("0.15") + 100 * Decimal("0.60")) / Decimal(1_000_000)
    fake_provider.set_default(Reply(text="x", input_tokens=PROMPT, output_tokens=100))
    client = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k")
    with flowscope.run("exact", budget_usd=worst) as run:
        client.chat.completions.create(model=OPENAI_MODEL, messages=MSGS, max_tokens=100)  # == budget: sent
    assert run.cost_usd == worst and len(fake_provider.requests) == 1
    with pytest.raises(flowscope.BudgetExceeded), flowscope.run("short", budget_usd=worst - Decimal("1E-12")):
        client.chat.completions.create(model=OPENAI_MODEL, messages=MSGS, max_tokens=100)
    assert len(fake_provider.requests) == 1  # never sent


def test_without_max_tokens_the_worst_case_is_the_context_window(cap: Capture, fake_provider: FakeProvider) -> None:
    # gpt-4o-mini: 128,000-token context window; the rest of it at the output price is the worst case
    worst = (PROMPT * Decimal("0.15") + (128_000 - PROMPT) * Decimal("0.60")) / Decimal(1_000_000)
    client = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k")
    with pytest.raises(flowscope.BudgetExceeded), flowscope.run("uncapped-output", budget_usd=worst / 2):
        client.chat.completions.create(model=OPENAI_MODEL, messages=MSGS)
    fake_provider.set_default(Reply(text="x", input_tokens=PROMPT, output_tokens=10))
    with flowscope.run("room", budget_usd=worst):
        client.chat.completions.create(model=OPENAI_MODEL, messages=MSGS)
    assert len(fake_provider.requests) == 1
