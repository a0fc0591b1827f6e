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


def test_without_max_tokens_the_worst_case_is_the_output_limit(cap: Capture, fake_provider: FakeProvider) -> None:
    # gpt-4o-mini writes at most 16,384 tokens in a reply (its 128,000-token context window is not the bound):
    # the worst case is the prompt plus a full-length reply, $0.15 / $0.60 per million
    worst = (PROMPT * Decimal("0.15") + 16_384 * Decimal("0.60")) / Decimal(1_000_000)
    client = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k")
    with pytest.raises(flowscope.BudgetExceeded), flowscope.run("short", budget_usd=worst - Decimal("1E-12")):
        client.chat.completions.create(model=OPENAI_MODEL, messages=MSGS)
    assert len(fake_provider.requests) == 0  # never sent
    fake_provider.set_default(Reply(text="x", input_tokens=PROMPT, output_tokens=10))
    with flowscope.run("room", budget_usd=worst):  # == the worst case: sent
        client.chat.completions.create(model=OPENAI_MODEL, messages=MSGS)
    assert len(fake_provider.requests) == 1


def test_the_pricing_file_can_say_a_models_output_limit(cap: Capture, fake_provider: FakeProvider) -> None:
    from flowscope.core import pricing
    from flowscope.core.pricing import catalog as catalog_module

    previous = catalog_module._default
    pricing.configure({"models": [{"provider": "openai", "model": OPENAI_MODEL, "input_mtok": "0.15",
                                   "output_mtok": "0.60", "max_output_tokens": 500}]})
    try:
        worst = (PROMPT * Decimal("0.15") + 500 * Decimal("0.60")) / Decimal(1_000_000)
        client = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k")
        with pytest.raises(flowscope.BudgetExceeded), flowscope.run("short", budget_usd=worst - Decimal("1E-12")):
            client.chat.completions.create(model=OPENAI_MODEL, messages=MSGS)
        fake_provider.set_default(Reply(text="x", input_tokens=PROMPT, output_tokens=10))
        with flowscope.run("room", budget_usd=worst):
            client.chat.completions.create(model=OPENAI_MODEL, messages=MSGS)
        assert len(fake_provider.requests) == 1
    finally:
        catalog_module._default = previous


@pytest.mark.parametrize(("model", "limit"), [
    ("gpt-4o-mini-2024-07-18", 16_384), ("gpt-4o-2024-05-13", 4_096), ("openai/gpt-4.1-nano", 32_768),
    ("claude-3-5-haiku-20241022", 8_192), ("us.anthropic.claude-sonnet-4-20250514-v1:0", 64_000),
    ("claude-opus-4-1-20250805", 32_000), ("o1-mini", 65_536), ("acme-unknown", None),
])
def test_output_limits_by_model_family(model: str, limit: int | None) -> None:
    from flowscope.core.pricing.limits import output_limit

    assert output_limit(model) == limit


@pytest.mark.parametrize("value", [0, -1, "16384", True, 1.5])
def test_a_bad_max_output_tokens_is_refused_with_the_entry(value: object) -> None:
    from flowscope.core.pricing import PricingCatalog, PricingFileError

    with pytest.raises(PricingFileError, match="max_output_tokens"):
        PricingCatalog({"models": [{"model": "m", "input_mtok": "1", "output_mtok": "1", "max_output_tokens": value}]})
