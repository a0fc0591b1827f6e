"""``Instrumentor().instrument(tracer_provider=..., meter_provider=...)`` is honoured, as in every
OpenTelemetry instrumentation: spans and metrics go to the providers passed, not the global ones."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pocketflow
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from flowscope.core import semconv
from flowscope.instrumentation import get_instrumentor
from flowscope.testing import FakeProvider, Reply
from tests._llm_kit import MSGS, Capture


class Own:
    """A tracer and a meter provider of the test's own, never installed globally."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def metric_names(self) -> set[str]:
        data = self.reader.get_metrics_data()
        return {m.name for rm in (data.resource_metrics if data else []) for sm in rm.scope_metrics
                for m in sm.metrics}


@pytest.fixture
def own(cap: Capture) -> Iterator[Any]:
    """Re-instrument with the test's providers; afterwards back to the global ones."""
    providers = Own()
    names = ("openai", "anthropic", "pocketflow")
    for name in names:
        inst = get_instrumentor(name)
        inst.uninstrument()
        inst.instrument(tracer_provider=providers.tracer_provider, meter_provider=providers.meter_provider)
    yield providers
    for name in names:
        inst = get_instrumentor(name)
        inst.uninstrument()
        inst.instrument()


def test_llm_calls_go_to_the_providers_passed(own: Own, cap: Capture, fake_provider: FakeProvider) -> None:
    fake_provider.script(Reply(text="a", input_tokens=100, output_tokens=10), route="chat.completions")
    fake_provider.script(Reply(text="b", input_tokens=50, output_tokens=5), route="messages")
    openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k").chat.completions.create(
        model="gpt-4o-mini", messages=MSGS)
    anthropic.Anthropic(base_url=fake_provider.anthropic_base_url, api_key="k").messages.create(
        model="claude-3-5-haiku-latest", max_tokens=8, messages=MSGS)

    mine = own.spans.get_finished_spans()
    assert sorted(s.attributes[semconv.GEN_AI_PROVIDER_NAME] for s in mine) == ["anthropic", "openai"]
    assert all(s.attributes[semconv.COST_USD] for s in mine)
    assert [s for s in cap.spans() if s.attributes.get(semconv.SPAN_KIND) == semconv.KIND_LLM] == []
    assert {"gen_ai.client.token.usage", "gen_ai.client.operation.duration", "flowscope.client.cost"} <= own.metric_names()


def test_flow_runs_go_to_the_tracer_provider_passed(own: Own, cap: Capture) -> None:
    class Step(pocketflow.Node):
        def post(self, shared: dict[str, Any], prep_res: Any, exec_res: Any) -> None:
            shared["done"] = True

    class Shop(pocketflow.Flow):
        pass

    Shop(start=Step()).run({})
    mine = own.spans.get_finished_spans()
    kinds = sorted(s.attributes.get(semconv.SPAN_KIND) for s in mine)
    assert kinds == [semconv.KIND_NODE, semconv.KIND_RUN]
    run_id = next(s.attributes[semconv.RUN_ID] for s in mine if s.attributes.get(semconv.SPAN_KIND) == semconv.KIND_RUN)
    assert all(s.attributes.get(semconv.RUN_ID) == run_id for s in mine)  # the run processor is on it too
    assert cap.spans() == []
