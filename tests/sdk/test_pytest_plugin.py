"""The pytest plugin works in a fresh project: no conftest, no configuration, only flowscope installed.

pytest runs in a child process in an empty temporary directory, so the only way
the fixtures can exist there is the ``pytest11`` entry point autoloading the
plugin. The worked examples of docs/testing.md run there too. Nothing calls a
collector; one file never calls ``flowscope.init()``,
the other calls it first (the global TracerProvider can be set only once).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

USER_TEST = textwrap.dedent(
    '''
    import openai
    import flowscope
    from flowscope.testing import Reply, assert_cost_below, assert_node_sequence, assert_state


    def support_flow(client):
        with flowscope.run("support", input={"q": "refund?"}):
            with flowscope.node("plan"):
                client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
                flowscope.record_state("plan", "look up order")
            with flowscope.node("answer"):
                client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


    def test_path_and_cost(flowscope_capture, flowscope_fake_llm_env):
        flowscope_fake_llm_env.script(Reply(input_tokens=1000, output_tokens=100, model="gpt-4o-mini"),
                                      Reply(input_tokens=1000, output_tokens=100, model="gpt-4o-mini"))
        support_flow(openai.OpenAI())  # base URL and key come from the environment the fixture set
        run = flowscope_capture.run()
        assert_node_sequence(run, ["plan", "answer"])
        assert_cost_below(run, "0.001")
        assert_state(run, at=0, path="plan", equals="look up order")
        assert run.summary["cost_usd"] == "0.00042"  # 2 x (1000 x $0.15 + 100 x $0.60) / 1M


    def test_wrong_path_fails_readably(flowscope_capture, flowscope_fake_provider):
        support_flow(openai.OpenAI(base_url=flowscope_fake_provider.openai_base_url, api_key="k"))
        assert_node_sequence(flowscope_capture.run(), ["plan", "review", "answer"])
    '''
)

USER_TEST_AFTER_INIT = textwrap.dedent(
    '''
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import flowscope
    from flowscope.testing import assert_node_sequence

    EXPORTED = InMemorySpanExporter()
    flowscope.init(service_name="app-under-test", exporter=EXPORTED, instrument=False)


    def test_capture_after_init(flowscope_capture):
        with flowscope.run("after-init"), flowscope.node("only"):
            pass
        run = flowscope_capture.run()
        assert_node_sequence(run, ["only"])
        assert run.summary["service"] == "app-under-test"
        flowscope.force_flush()
        assert len(EXPORTED.get_finished_spans()) == 2  # the app's own export still works
    '''
)


DOCS = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


def doc_examples() -> dict[str, str]:
    """The complete test files in docs/testing.md (code blocks starting ``# test_<name>.py``)."""
    found = re.findall(r"```python\n# (test_\w+\.py)\n(.*?)```", DOCS.read_text(), flags=re.S)
    return {name: body for name, body in found}


def test_plugin_is_registered_by_entry_point() -> None:
    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert plugins.get("flowscope") == "flowscope.testing.pytest_plugin"


def _run_pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "OTEL_", "OPENAI_", "ANTHROPIC_", "FLOWSCOPE_"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=", *args],
        cwd=project, env=env, capture_output=True, text=True, timeout=240,
    )


def test_plugin_in_a_fresh_project(tmp_path: Path) -> None:
    """The kit's own test plus every worked example of the docs, none of which calls init()."""
    project = tmp_path / "fresh-project"
    project.mkdir()
    (project / "test_support_flow.py").write_text(USER_TEST)
    examples = doc_examples()
    assert set(examples) == {"test_plain_flow.py", "test_langgraph_flow.py", "test_pocketflow_flow.py",
                             "test_penguiflow_flow.py"}
    for name, body in examples.items():
        (project / name).write_text(body)
    result = _run_pytest(project, "-q", "-rA", "-W", "ignore::DeprecationWarning")
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert f"1 failed, {1 + len(examples)} passed" in out, out
    for name in examples:
        assert f"PASSED {name}::" in out, out
    assert "test_wrong_path_fails_readably" in out
    assert "expected: plan → review → answer" in out, out
    assert "actual:   plan → answer" in out, out
    assert "first difference at position 1 (step 1): expected 'review', got 'answer'" in out, out


def test_plugin_after_init_in_a_fresh_project(tmp_path: Path) -> None:
    project = tmp_path / "fresh-project"
    project.mkdir()
    (project / "test_after_init.py").write_text(USER_TEST_AFTER_INIT)
    result = _run_pytest(project, "-q", "--trace-config", "test_after_init.py")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "1 passed" in out, out
    # --trace-config lists setuptools-registered plugins: ours came from the entry point
    assert "flowscope.testing.pytest_plugin" in out, out
