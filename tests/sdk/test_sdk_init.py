"""init(): standard OTel env vars, an app's own TracerProvider, and the flush at exit.

Each case runs in a fresh interpreter, because a process has one global
TracerProvider and these tests are about how flowscope meets it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
    )


def test_env_vars_and_flush_at_exit(collector, fake_provider) -> None:
    """No endpoint or service name in code, no shutdown() call: OTEL_* and atexit do it."""
    code = f"""
        import openai, flowscope
        flowscope.init()
        client = openai.OpenAI(base_url={fake_provider.openai_base_url!r}, api_key="sk-x")
        with flowscope.run("env-flow") as run:
            with flowscope.node("ask"):
                client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
            with flowscope.tool("lookup"):
                pass
        print(run.id)
    """
    proc = _run(code, {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_SERVICE_NAME": "env-svc"})
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.strip().splitlines()[-1]
    s = collector.wait_for_run(run_id, spans=4)
    assert s["service"] == "env-svc" and s["flow"] == "env-flow" and s["llm_calls"] == 1
    tree = collector.get(f"/api/v1/runs/{run_id}/spans").json()
    names = {c["name"] for c in tree["roots"][0]["children"]}
    assert names == {"ask", "execute_tool lookup"}


def test_existing_tracer_provider_is_kept(collector) -> None:
    """An app that set up tracing itself keeps its provider, resource and exporters."""
    code = f"""
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import flowscope

        mine = InMemorySpanExporter()
        provider = TracerProvider(resource=Resource.create({{"service.name": "app-own"}}))
        provider.add_span_processor(SimpleSpanProcessor(mine))
        trace.set_tracer_provider(provider)

        returned = flowscope.init(service_name="ignored", endpoint={collector.url!r})
        assert returned is provider and trace.get_tracer_provider() is provider
        with flowscope.run("kept") as run:
            with trace.get_tracer("app").start_as_current_span("app-span"):
                pass
        flowscope.shutdown()
        spans = {{s.name: s for s in mine.get_finished_spans()}}
        assert set(spans) == {{"invoke_workflow kept", "app-span"}}, spans
        # the app's own span, started inside the run, says which run it belongs to
        assert spans["app-span"].attributes["flowscope.run.id"] == run.id
        print(run.id)
    """
    proc = _run(code, {})
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.strip().splitlines()[-1]
    s = collector.wait_for_run(run_id, spans=2)
    assert s["service"] == "app-own"


def test_init_twice_does_not_duplicate_export() -> None:
    """Re-initialising (notebooks, tests) replaces the exporter instead of stacking a second one."""
    code = """
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import flowscope
        first, second = InMemorySpanExporter(), InMemorySpanExporter()
        flowscope.init(exporter=first, instrument=False)
        flowscope.init(exporter=second, instrument=False)
        with flowscope.run("twice"):
            pass
        flowscope.force_flush()
        print(len(first.get_finished_spans()), len(second.get_finished_spans()))
    """
    proc = _run(code, {})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "1"]
