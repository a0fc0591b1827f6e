"""Exact cost end to end: overrides win, unknown models are unpriced, and the run
summary from the real collector counts retries, fallbacks, cache hits and unpriced calls."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import anthropic
import openai
import pytest

import flowscope
from flowscope.core import pricing, semconv
from flowscope.testing import FakeProvider, Reply
from tests._llm_kit import (
    ANTHROPIC_MODEL,
    CLAUDE_HAIKU_35,
    GPT_4O_MINI,
    MSGS,
    OPENAI_MODEL,
    Capture,
    Prices,
    attrs,
    cost_of,
)

PRIVATE = Prices(Decimal("1.50"), Decimal("3"), cached=Decimal("0.5"))


@pytest.fixture
def default_pricing() -> Iterator[None]:
    yield
    pricing.configure(None)  # back to the catalog (FLOWSCOPE_PRICING_FILE is already unset)


def test_override_adds_a_model_and_wins_over_the_catalog(fake_provider, default_pricing) -> None:
    overrides = {"models": [
        {"provider": "openai", "model": "acme-private-llm-7", "input_mtok": "1.50", "output_mtok": "3",
         "cached_input_mtok": "0.5"},
        {"provider": "openai", "model": OPENAI_MODEL, "input_mtok": "9", "output_mtok": "9"},
    ]}
    cap = Capture(pricing=overrides)  # init(pricing=...)
    fake_provider.script(
        Reply(text="a", input_tokens=1000, cached_tokens=400, output_tokens=100),
        Reply(text="b", input_tokens=1000, output_tokens=100),
    )
    client = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k")
    client.chat.completions.create(model="acme-private-llm-7", messages=MSGS)
    client.chat.completions.create(model=OPENAI_MODEL, messages=MSGS)
    private, overridden = cap.llm()
    cap.close()
    assert cost_of(private) == PRIVATE.cost(1000, 100, cached=400)
    assert "+override:" in attrs(private)[semconv.PRICING_VERSION]
    assert cost_of(overridden) == Prices(Decimal(9), Decimal(9)).cost(1000, 100)


def test_pricing_file_env(cap, fake_provider, default_pricing, tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"models": [{"model": "acme-private-llm-7", "input_mtok": "1.50",
                                            "output_mtok": "3", "cached_input_mtok": "0.5"}]}))
    monkeypatch.setenv("FLOWSCOPE_PRICING_FILE", str(path))
    pricing.configure()
    fake_provider.script(Reply(text="a", input_tokens=10, output_tokens=2))
    openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k").chat.completions.create(
        model="acme-private-llm-7", messages=MSGS
    )
    assert cost_of(cap.one_llm()) == PRIVATE.cost(10, 2)


def test_public_price_function_agrees_with_the_span(cap, fake_provider) -> None:
    fake_provider.script(Reply(text="x", input_tokens=3000, cached_tokens=1000, output_tokens=700))
    openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k").chat.completions.create(
        model=OPENAI_MODEL, messages=MSGS
    )
    usage = flowscope.Usage(input_tokens=3000, cache_read_tokens=1000, output_tokens=700)
    cost = flowscope.price(OPENAI_MODEL, "openai", usage)
    assert cost.total_usd == cost_of(cap.one_llm()) == GPT_4O_MINI.cost(3000, 700, cached=1000)


# --- the run summary, through the real collector ---------------------------------


def test_run_summary_counts_retries_fallbacks_cache_hits_and_unpriced(traced, fake_provider: FakeProvider) -> None:
    fp = fake_provider
    oai = openai.OpenAI(base_url=fp.openai_base_url, api_key="k")
    oai_no_retry = openai.OpenAI(base_url=fp.openai_base_url, api_key="k", max_retries=0)
    ant = anthropic.Anthropic(base_url=fp.anthropic_base_url, api_key="k")
    flowscope.cache.enable()
    try:
        with flowscope.run("cost-everything") as run:
            with flowscope.node("retried"):
                fp.fail_next(2, status=429)
                fp.script(Reply(text="a", input_tokens=1200, cached_tokens=800, output_tokens=300))
                oai.chat.completions.create(model=OPENAI_MODEL, messages=MSGS, temperature=0.1)
            with flowscope.node("fallback"):
                fp.fail_next(1, status=503, route="chat.completions")
                fp.script(Reply(text="b", input_tokens=2000, cached_tokens=1500, cache_write_tokens=300,
                                output_tokens=120), route="messages")
                flowscope.fallback(
                    lambda: oai_no_retry.chat.completions.create(model=OPENAI_MODEL, messages=MSGS),
                    lambda: ant.messages.create(model=ANTHROPIC_MODEL, max_tokens=256, messages=MSGS),
                )
            with flowscope.node("cached"):
                fp.script(Reply(text="c", input_tokens=500, output_tokens=50))
                oai.chat.completions.create(model=OPENAI_MODEL, messages=MSGS, temperature=0.9)
                oai.chat.completions.create(model=OPENAI_MODEL, messages=MSGS, temperature=0.9)
            with flowscope.node("unpriced"):
                oai.chat.completions.create(model="acme-unknown-model", messages=MSGS)
            with flowscope.node("streamed"):
                fp.script(Reply(text="d", input_tokens=700, output_tokens=70))
                with ant.messages.stream(model=ANTHROPIC_MODEL, max_tokens=64, messages=MSGS) as s:
                    s.until_done()
    finally:
        flowscope.cache.disable()
    assert flowscope.force_flush()

    paid = (
        GPT_4O_MINI.cost(1200, 300, cached=800)
        + CLAUDE_HAIKU_35.cost(2000, 120, cached=1500, write=300)
        + GPT_4O_MINI.cost(500, 50)
        + CLAUDE_HAIKU_35.cost(700, 70)
    )
    assert run.cost_usd == paid
    # run + 5 nodes + 7 llm spans (+ anthropic's own HTTP-level spans, which are not llm calls)
    summary = traced.wait_for_run(run.id, spans=13)
    assert summary["llm_calls"] == 7
    assert summary["retries"] == 2
    assert summary["fallbacks"] == 1
    assert summary["cache_hits"] == 1
    assert summary["unpriced_calls"] == 1
    assert summary["errors"] == 1  # the openai call that fell back
    assert Decimal(summary["cost_usd"]) == paid
    assert Decimal(summary["cache_saved_usd"]) == GPT_4O_MINI.cost(500, 50)
    assert summary["input_tokens"] == 1200 + 2000 + 500 + 700 + _unpriced_input(traced, run.id)
    assert summary["cached_input_tokens"] == 800 + 1500
    assert summary["cache_write_input_tokens"] == 300
    by_node = {n["name"]: Decimal(n["cost_usd"]) for n in summary["by_node"]}
    assert by_node["fallback"] == CLAUDE_HAIKU_35.cost(2000, 120, cached=1500, write=300)
    assert by_node["cached"] == GPT_4O_MINI.cost(500, 50)


def _unpriced_input(collector, run_id: str) -> int:  # type: ignore[no-untyped-def]
    """Tokens of the unpriced call are counted (only its price is unknown)."""
    tree = collector.get(f"/api/v1/runs/{run_id}/spans").json()
    stack, found = list(tree["roots"]), []
    while stack:
        node = stack.pop()
        stack.extend(node.get("children", []))
        a = node.get("attributes", {})
        if a.get(semconv.COST_SOURCE) == "unpriced":
            found.append(int(a.get(semconv.GEN_AI_USAGE_INPUT_TOKENS, 0)))
    assert len(found) == 1
    return found[0]
