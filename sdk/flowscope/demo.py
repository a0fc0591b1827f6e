"""``flowscope demo``: the whole pipeline on one laptop, in one command.

Starts the collector in this process on the embedded default (chDB under
./flowscope-data), runs a small multi-node flow whose LLM calls go through the
real ``openai`` client to the built-in fake provider, and prints what the
collector learned about the run.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from typing import Any, TextIO

import httpx

DEFAULT_PORT = 4318


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedCollector:
    """The collector app under uvicorn in a background thread."""

    def __init__(self, dsn: str | None, port: int) -> None:
        import uvicorn

        from flowscope_collector import CollectorSettings, create_app

        self.settings = CollectorSettings.from_env(dsn=dsn, port=port)
        config = uvicorn.Config(create_app(self.settings), host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="flowscope-collector", daemon=True)

    @property
    def url(self) -> str:
        return self.settings.url

    def start(self, timeout_s: float = 60.0) -> EmbeddedCollector:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.server.started:
                return self
            if not self.thread.is_alive():
                raise RuntimeError("the collector failed to start; see the log above")
            time.sleep(0.05)
        raise RuntimeError(f"the collector did not start within {timeout_s:.0f}s")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def demo_flow(openai_client: Any) -> str:
    """A small support-desk flow: plan → lookup (tool) → route → answer (streamed)."""
    import flowscope

    question = "Where is my order #1234?"
    with flowscope.run("support-desk", input={"question": question}) as run:
        with flowscope.node("plan", type="llm"):
            plan = openai_client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "system", "content": "You plan support answers."},
                          {"role": "user", "content": question}],
            )
            flowscope.record_state("plan", plan.choices[0].message.content)
        with flowscope.node("lookup", type="tool"), flowscope.tool("orders.find"):
            order = {"id": 1234, "status": "shipped", "carrier": "DHL"}
            flowscope.record_state("order", order)
        with flowscope.node("route", type="router"):
            branch = "answer" if order["status"] == "shipped" else "escalate"
            flowscope.set_branch(branch)
        with flowscope.node("answer", type="llm"):
            stream = openai_client.chat.completions.create(
                model="gpt-4o",
                messages=[{"role": "user", "content": f"Order {order} — write the reply to: {question}"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            reply = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            flowscope.record_state("reply", reply)
    return run.id


def _wait_for_run(url: str, run_id: str, spans: int, timeout_s: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = httpx.get(f"{url}/api/v1/runs/{run_id}", timeout=10)
        if r.status_code == 200 and r.json()["spans"] >= spans:
            return r.json()  # type: ignore[no-any-return]
        time.sleep(0.1)
    raise RuntimeError(f"run {run_id} did not reach the collector within {timeout_s:.0f}s")


def print_summary(summary: dict[str, Any], nodes: list[dict[str, Any]], out: TextIO) -> None:
    def w(line: str = "") -> None:
        print(line, file=out)

    w(f"run      {summary['run_id']}  ({summary['flow']}, {summary['status']}, {summary['duration_ms']:.1f} ms)")
    w(f"tokens   input {summary['input_tokens']}  (cached {summary['cached_input_tokens']})  "
      f"output {summary['output_tokens']}  (reasoning {summary['reasoning_tokens']})")
    w(f"cost     ${summary['cost_usd']}  in {summary['llm_calls']} LLM call{'' if summary['llm_calls'] == 1 else 's'}"
      + (f"  ({summary['unpriced_calls']} unpriced)" if summary["unpriced_calls"] else ""))
    w()
    w(f"  {'step':>4}  {'node':<10} {'type':<7} {'status':<6} {'ms':>8} {'llm':>4} {'cost USD':>12}  branch")
    for n in nodes:
        w(f"  {n['step']:>4}  {n['name']:<10} {n['type']:<7} {n['status']:<6} {n['duration_ms']:>8.1f} "
          f"{n['llm_calls']:>4} {n['cost_usd']:>12}  {n['branch'] or ''}")
    w()
    w(f"API      {summary['url']}")


def main(dsn: str | None = None, port: int | None = None, serve: bool = False, out: TextIO = sys.stdout) -> int:
    import flowscope
    from flowscope.testing import FakeProvider, Reply
    from flowscope_collector.store.connection import DirectoryInUse, check_embedded_free, parse_dsn

    try:
        # a DSN it cannot use, or the directory of a collector already running (``serve``):
        # one line that says so, before chDB fails with two tracebacks
        target = parse_dsn(dsn)
        check_embedded_free(target)
    except (ValueError, DirectoryInUse) as exc:
        print(f"flowscope demo: {exc}", file=sys.stderr)
        return 1
    if port is None:
        port = DEFAULT_PORT if _port_free(DEFAULT_PORT) else _free_port()
    print(f"starting the collector on http://127.0.0.1:{port} (embedded ClickHouse) ...", file=out)
    collector = EmbeddedCollector(dsn, port).start()
    try:
        with FakeProvider() as provider:
            provider.script(
                Reply(input_tokens=1200, cached_tokens=800, output_tokens=300, reasoning_tokens=0,
                      model="gpt-4o-mini-2024-07-18"),
                Reply(input_tokens=900, output_tokens=120, model="gpt-4o-2024-08-06"),
            )
            flowscope.init(service_name="flowscope-demo", endpoint=collector.url)
            import openai

            client = openai.OpenAI(base_url=provider.openai_base_url, api_key="demo-key")
            run_id = demo_flow(client)
            flowscope.force_flush()
        summary = _wait_for_run(collector.url, run_id, spans=7)
        nodes = httpx.get(f"{collector.url}/api/v1/runs/{run_id}/nodes", timeout=10).json()["nodes"]
        print_summary(summary, nodes, out)
        if serve:
            print(f"\nrun explorer  {collector.url}/#/runs/{run_id}", file=out)
            print(f"API docs      {collector.url}/docs\nserving until Ctrl-C", file=out, flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        else:
            where = target.path if target.path is not None else target.redacted()
            print(f"\nThe API above stops when this command exits. Data is in {where}; browse it with "
                  f"`flowscope-collector serve --dsn chdb://{where}` (or run `flowscope demo --serve`).", file=out)
    finally:
        flowscope.shutdown()
        collector.stop()
    return 0
