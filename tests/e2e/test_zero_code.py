"""Zero-code: unmodified apps, instrumented from the command line, reach the real collector.

Each app runs in its own interpreter (as a user would start it), talks to the
fake provider through the real ``openai`` client, and exports over OTLP/HTTP
to the session collector. Nothing in the apps mentions flowscope.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import flowscope
from tests._collector_kit import CollectorProcess

BIN = Path(sys.executable).parent

POCKETFLOW_APP = """
    import os
    import openai
    import pocketflow

    client = openai.OpenAI(base_url=os.environ["FAKE_OPENAI_URL"], api_key="sk-test")

    class Ask(pocketflow.Node):
        def exec(self, _):
            r = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
            return r.choices[0].message.content

        def post(self, shared, prep_res, exec_res):
            shared["answer"] = exec_res

    class Check(pocketflow.Node):
        def post(self, shared, prep_res, exec_res):
            shared["checked"] = True

    ask = Ask()
    ask >> Check()
    shared = {"question": "hi"}
    pocketflow.Flow(start=ask).run(shared)
    print("SITE", os.environ.get("APP_SITECUSTOMIZE_RAN"))
    print("DONE", sorted(shared))
"""

LANGGRAPH_APP = """
    import operator
    import os
    from typing import Annotated, TypedDict

    import openai
    from langgraph.graph import START, StateGraph

    client = openai.OpenAI(base_url=os.environ["FAKE_OPENAI_URL"], api_key="sk-test")

    class State(TypedDict):
        log: Annotated[list, operator.add]

    def think(state):
        r = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        return {"log": [r.choices[0].message.content]}

    def done(state):
        return {"log": ["done"]}

    g = StateGraph(State)
    g.add_node("think", think)
    g.add_node("done", done)
    g.add_edge(START, "think")
    g.add_edge("think", "done")
    print("DONE", len(g.compile().invoke({"log": []})["log"]))
"""


PENGUIFLOW_APP = """
    import asyncio
    import os

    import openai
    from penguiflow import Headers, Message, Node, create

    client = openai.AsyncOpenAI(base_url=os.environ["FAKE_OPENAI_URL"], api_key="sk-test")

    async def think(msg, ctx):
        r = await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        return msg.model_copy(update={"payload": r.choices[0].message.content})

    async def done(msg, ctx):
        return msg.model_copy(update={"payload": "done"})

    async def main():
        a, b = Node(think, name="think"), Node(done, name="done")
        flow = create(a.to(b), b.to())
        flow.run()
        try:
            await flow.emit(Message(payload="hi", headers=Headers(tenant="acme")))
            out = await asyncio.wait_for(flow.fetch(), 10)
        finally:
            await flow.stop()
        print("DONE", out.payload)

    asyncio.run(main())
"""

# A runtime's app, what it prints when it worked, and its nodes with their LLM calls.
RUNTIME_APPS: dict[str, tuple[str, str, list[tuple[str, int]]]] = {
    "langgraph": (LANGGRAPH_APP, "DONE 2", [("think", 1), ("done", 0)]),
    "penguiflow": (PENGUIFLOW_APP, "DONE done", [("think", 1), ("done", 0)]),
    "pocketflow": (POCKETFLOW_APP, "DONE ['answer', 'checked', 'question']", [("Ask", 1), ("Check", 0)]),
}


def write_app(tmp_path: Path, source: str) -> Path:
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(source))
    return app


# The flowscope under test (a checkout's sdk/ may differ from the one installed in the venv).
SDK_DIR = str(Path(flowscope.__file__).resolve().parents[1])


def run_app(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Start the app as a user would: nothing on ``PYTHONPATH`` but the flowscope under test."""
    full_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **env,
                "PYTHONPATH": SDK_DIR}
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


def wait_for_runs(collector: CollectorProcess, service: str, n: int = 1, timeout_s: float = 30) -> list[Any]:
    deadline = time.monotonic() + timeout_s
    runs: list[Any] = []
    while time.monotonic() < deadline:
        runs = collector.get("/api/v1/runs", params={"service": service}).json()["runs"]
        if len(runs) >= n and all(r["status"] != "running" for r in runs):
            return runs
        time.sleep(0.1)
    raise AssertionError(f"no runs for service {service!r}: {runs}")


def test_flowscope_instrument_runs_an_unmodified_app(collector: CollectorProcess, fake_provider,
                                                     tmp_path: Path) -> None:
    write_app(tmp_path, POCKETFLOW_APP)
    # the app's own sitecustomize must still run after ours
    (tmp_path / "sitecustomize.py").write_text("import os\nos.environ['APP_SITECUSTOMIZE_RAN'] = 'yes'\n")
    out = run_app(
        ["flowscope-instrument", "python", "app.py"],
        cwd=tmp_path,
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_SERVICE_NAME": "zero-code-app",
             "FAKE_OPENAI_URL": fake_provider.openai_base_url},
    )
    assert "DONE ['answer', 'checked', 'question']" in out
    assert "SITE yes" in out

    (run,) = wait_for_runs(collector, "zero-code-app")
    assert run["flow"] == "Ask flow"  # a plain Flow is named after its start node
    assert run["llm_calls"] == 1
    nodes = collector.get(f"/api/v1/runs/{run['run_id']}/nodes").json()["nodes"]
    assert [(n["name"], n["step"]) for n in nodes] == [("Ask", 0), ("Check", 1)]
    summary = collector.get(f"/api/v1/runs/{run['run_id']}").json()
    assert [(n["name"], n["llm_calls"]) for n in summary["by_node"]] == [("Ask", 1), ("Check", 0)]
    state = collector.get(f"/api/v1/runs/{run['run_id']}/state", params={"at": 1}).json()["state"]
    assert state["checked"] is True and state["question"] == "hi" and isinstance(state["answer"], str)


def test_flowscope_instrument_flags_choose_instrumentations(collector: CollectorProcess, fake_provider,
                                                            tmp_path: Path) -> None:
    write_app(tmp_path, POCKETFLOW_APP)
    run_app(
        ["flowscope-instrument", "--service-name", "zero-code-openai-only", "--endpoint", collector.url,
         "--instrument", "openai", "python", "app.py"],
        cwd=tmp_path,
        env={"FAKE_OPENAI_URL": fake_provider.openai_base_url},
    )
    (run,) = wait_for_runs(collector, "zero-code-openai-only")
    summary = collector.get(f"/api/v1/runs/{run['run_id']}").json()
    # PocketFlow was not instrumented: the LLM call is a run of its own (its trace)
    assert summary["llm_calls"] == 1 and summary["by_node"] == []
    # no run span: the root (the LLM span) names the flow, in the list, the summary and the filter
    assert summary["flow"] == run["flow"] == "chat gpt-4o-mini"
    found = collector.get("/api/v1/runs", params={"service": "zero-code-openai-only", "flow": run["flow"]})
    assert [r["run_id"] for r in found.json()["runs"]] == [run["run_id"]]


def test_opentelemetry_instrument_picks_up_the_entry_points(collector: CollectorProcess, fake_provider,
                                                            tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.distro", reason="opentelemetry-distro configures the SDK")
    write_app(tmp_path, LANGGRAPH_APP)
    out = run_app(
        ["opentelemetry-instrument", "python", "app.py"],
        cwd=tmp_path,
        env={
            "OTEL_SERVICE_NAME": "otel-instrument-app",
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "httpx,httpx2,requests",
            "FAKE_OPENAI_URL": fake_provider.openai_base_url,
        },
    )
    assert "DONE 2" in out
    (run,) = wait_for_runs(collector, "otel-instrument-app")
    assert run["flow"] == "LangGraph"
    summary = collector.get(f"/api/v1/runs/{run['run_id']}").json()
    # the LLM span names the run and node it ran in, though flowscope.init() never ran
    assert [(n["name"], n["llm_calls"]) for n in summary["by_node"]] == [("think", 1), ("done", 0)]
    assert summary["input_tokens"] > 0


def test_init_instrument_chooses_and_instrumenting_twice_is_harmless(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import flowscope
        from flowscope.instrumentation.langgraph import LangGraphInstrumentor
        from flowscope.instrumentation.penguiflow import PenguiFlowInstrumentor
        from flowscope.instrumentation.pocketflow import PocketFlowInstrumentor

        flowscope.init(exporter=InMemorySpanExporter(), instrument=["pocketflow"])
        # a library is instrumented when the app imports it, so init() stays cheap
        print("before import", PocketFlowInstrumentor().is_instrumented_by_opentelemetry)
        import pocketflow
        print("pocketflow", PocketFlowInstrumentor().is_instrumented_by_opentelemetry)
        print("langgraph", LangGraphInstrumentor().is_instrumented_by_opentelemetry)
        flowscope.init(exporter=InMemorySpanExporter(), instrument=["pocketflow", "langgraph", "penguiflow"])
        for inst in (LangGraphInstrumentor(), PenguiFlowInstrumentor(), PocketFlowInstrumentor()):
            inst.instrument()  # a second time: no double wrapping
        import pocketflow, langgraph.pregel.main as lg, penguiflow.core as pc
        print("wrapped once", not hasattr(pocketflow.Flow._run.__wrapped__, "__wrapped__"),
              not hasattr(lg.Pregel.stream.__wrapped__, "__wrapped__"),
              not hasattr(pc.PenguiFlow.run.__wrapped__, "__wrapped__"))
        for inst in (LangGraphInstrumentor(), PenguiFlowInstrumentor(), PocketFlowInstrumentor()):
            inst.uninstrument()
        print("unwrapped", not hasattr(pocketflow.Flow._run, "__wrapped__"),
              not hasattr(lg.Pregel.stream, "__wrapped__"), not hasattr(pc.PenguiFlow.run, "__wrapped__"))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines() == [
        "before import False", "pocketflow True", "langgraph False", "wrapped once True True True", "unwrapped True True True"]


def test_wanted_instrumentations_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from flowscope.auto import wanted_instrumentations
    from flowscope.instrumentation import available

    monkeypatch.delenv("FLOWSCOPE_INSTRUMENT", raising=False)
    monkeypatch.delenv("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", raising=False)
    assert wanted_instrumentations() == available()
    monkeypatch.setenv("FLOWSCOPE_INSTRUMENT", "langgraph, pocketflow")
    assert wanted_instrumentations() == ["langgraph", "pocketflow"]
    monkeypatch.setenv("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "flowscope_langgraph")
    assert wanted_instrumentations() == ["pocketflow"]
    monkeypatch.setenv("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "*")
    assert wanted_instrumentations() == []


@pytest.mark.parametrize("launcher", ["flowscope-instrument", "opentelemetry-instrument"])
@pytest.mark.parametrize("runtime", sorted(RUNTIME_APPS))
def test_every_runtime_is_traced_under_both_launchers(collector: CollectorProcess, fake_provider,
                                                      tmp_path: Path, runtime: str, launcher: str) -> None:
    """Each launcher arms the instrumentations before the app imports its runtime.

    ``langgraph`` is a namespace package, on which a post-import hook never fires: hooked
    there, every graph call became separate one-span runs with no nodes and no state.
    """
    if launcher == "opentelemetry-instrument":
        pytest.importorskip("opentelemetry.distro", reason="opentelemetry-distro configures the SDK")
    source, done, by_node = RUNTIME_APPS[runtime]
    write_app(tmp_path, source)
    service = f"zero-code-{runtime}-{launcher}"
    out = run_app(
        [launcher, "python", "app.py"],
        cwd=tmp_path,
        env={
            "OTEL_SERVICE_NAME": service,
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "httpx,httpx2,requests",
            "FAKE_OPENAI_URL": fake_provider.openai_base_url,
        },
    )
    assert done in out
    (run,) = wait_for_runs(collector, service)
    assert run["llm_calls"] == 1
    summary = collector.get(f"/api/v1/runs/{run['run_id']}").json()
    assert [(n["name"], n["llm_calls"]) for n in summary["by_node"]] == by_node


INIT_THEN_IMPORT = """
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    import flowscope

    exporter = InMemorySpanExporter()
    flowscope.init(exporter=exporter, instrument=[{runtime!r}])
    {app}
    flowscope.force_flush()
    spans = exporter.get_finished_spans()
    print("RUNS", len({{s.attributes.get("flowscope.run.id") for s in spans if s.parent is None}}))
    print("NODES", sorted(s.attributes["flowscope.node.name"] for s in spans
                          if s.attributes.get("flowscope.span.kind") == "node"))
"""


@pytest.mark.parametrize("order", ["init-then-import", "import-then-init"])
@pytest.mark.parametrize("runtime", sorted(RUNTIME_APPS))
def test_init_traces_a_runtime_imported_before_or_after_it(fake_provider, tmp_path: Path, runtime: str,
                                                           order: str) -> None:
    """``flowscope.init()`` before ``import langgraph`` (the README's order) or after it: one run with its nodes."""
    source, done, by_node = RUNTIME_APPS[runtime]
    app = textwrap.indent(textwrap.dedent(source), "    ")
    script = textwrap.dedent(INIT_THEN_IMPORT.format(runtime=runtime, app=app.strip()))
    if order == "import-then-init":
        script = f"import {runtime}\n" + (f"import {runtime}.graph\n" if runtime == "langgraph" else "") + script
    (tmp_path / "app.py").write_text(script)
    out = run_app([sys.executable, "app.py"], cwd=tmp_path, env={"FAKE_OPENAI_URL": fake_provider.openai_base_url})
    assert done in out
    assert "RUNS 1" in out, out
    assert f"NODES {sorted(name for name, _ in by_node)}" in out, out
