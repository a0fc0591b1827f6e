"""The SDK never gets in the host app's way, and secrets never leave the process.

Each case that calls ``flowscope.init`` runs in a fresh interpreter (one global
TracerProvider per process), with the real openai client against the fake
provider and the real OTLP exporter pointed at a collector that is down, hung,
or an in-memory exporter where the test needs to read what would be sent.
Timings are measured and printed; the only bounds asserted are generous ones
that prove a call does not wait for export (whose timeout is 10 s).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider

from flowscope._export import REDACTED, BoundedBatchProcessor, scrub_value
from flowscope.testing import FakeProvider, Reply
from tests._collector_kit import free_port


def _run(code: str, env: dict[str, str] | None = None, timeout: float = 120) -> tuple[dict[str, Any], float]:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), elapsed


@pytest.fixture()
def hung_collector() -> Iterator[str]:
    """A port that accepts connections and never answers: a collector stuck solid."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


@pytest.mark.parametrize("collector_state", ["down", "hung"])
def test_app_calls_succeed_and_do_not_wait_with_the_collector_unavailable(
        fake_provider: FakeProvider, hung_collector: str, collector_state: str) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}" if collector_state == "down" else hung_collector
    code = f"""
        import json, statistics, time, openai, flowscope
        from flowscope import stats
        client = openai.OpenAI(base_url={fake_provider.openai_base_url!r}, api_key="sk-test", max_retries=0)
        msgs = [{{"role": "user", "content": "hi"}}]

        def timed(n):
            out = []
            for _ in range(n):
                t = time.perf_counter()
                r = client.chat.completions.create(model="gpt-4o-mini", messages=msgs)
                assert r.choices[0].message.content is not None
                out.append(time.perf_counter() - t)
            return out

        plain = timed(30)  # not traced yet
        flowscope.init(service_name="safety", endpoint={endpoint!r}, max_queue_size=64)
        traced = []
        for i in range(10):
            with flowscope.run("safety-flow"):
                with flowscope.node("ask"):
                    traced += timed(20)
        t = time.perf_counter()
        flushed = flowscope.force_flush(timeout_s=1.0)
        flush_s = time.perf_counter() - t
        print(json.dumps({{"plain_median": statistics.median(plain), "traced_median": statistics.median(traced),
                          "traced_max": max(traced), "flushed": flushed, "flush_s": flush_s,
                          "stats": stats()}}))
    """
    out, elapsed = _run(code, {"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "10"})
    print(f"collector {collector_state}: median call {out['plain_median'] * 1e3:.2f} ms untraced, "
          f"{out['traced_median'] * 1e3:.2f} ms traced (max {out['traced_max'] * 1e3:.1f} ms); "
          f"force_flush(1s) took {out['flush_s']:.2f}s; process {elapsed:.1f}s; stats {out['stats']}")
    # The export timeout is 10 s: a call that waited for export at all would show it.
    assert out["traced_max"] < 2.0
    assert out["traced_median"] < out["plain_median"] + 0.25
    assert out["flushed"] is False and out["flush_s"] < 3.0  # flush honours its timeout
    s = out["stats"]
    assert s["exported"] == 0
    assert s["dropped"] > 0  # 10 runs x 22 spans through a 64-span queue: the rest dropped, and counted
    assert s["ended"] + s["dropped"] == 10 * 22
    assert elapsed < 60  # and the process still exits (the atexit flush is bounded)


@pytest.mark.parametrize("collector_state", ["down", "hung", "slow"])
@pytest.mark.parametrize("how", ["atexit", "shutdown"])
def test_exit_waits_at_most_the_shutdown_bound_and_says_so_in_one_line(
        hung_collector: str, collector_state: str, how: str) -> None:
    """With a dead, hung or 30-second-slow collector the app's exit waited 11-15 s, past the
    documented bound, and the exporter printed its retries: now ~2 s, and one line saying what was lost."""
    if collector_state == "down":
        endpoint = f"http://127.0.0.1:{free_port()}"
    elif collector_state == "hung":
        endpoint = hung_collector
    else:
        endpoint = _slow_collector(30.0)
    code = f"""
        import sys, time, flowscope
        flowscope.init(service_name="exit", endpoint={endpoint!r}, instrument=False)
        for i in range(5):
            with flowscope.run("exit-flow"):
                with flowscope.node("n"):
                    pass
        time.sleep(0.2)
        print(time.monotonic(), flush=True)
        {"flowscope.shutdown()" if how == "shutdown" else ""}
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env={**os.environ},
                          capture_output=True, text=True, timeout=120)
    ended = time.monotonic()
    assert proc.returncode == 0, proc.stderr[-3000:]
    exit_s = ended - float(proc.stdout.strip().splitlines()[-1])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    print(f"collector {collector_state}, {how}: exit took {exit_s:.2f}s; stderr {lines}")
    assert exit_s < 6.0  # default bound 2 s, plus interpreter teardown on a loaded machine (was 11-15 s)
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("flowscope:") and "not exported" in lines[0], lines


def _slow_collector(delay_s: float) -> str:
    """A collector that reads each request and answers only after ``delay_s``."""
    import threading

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)

    def serve() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=_answer_late, args=(conn, delay_s), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


def _answer_late(conn: socket.socket, delay_s: float) -> None:
    try:
        conn.recv(65536)
        time.sleep(delay_s)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    except OSError:
        pass
    finally:
        conn.close()


def test_queue_is_bounded_and_drops_are_counted(hung_collector: str) -> None:
    """In-process: a stuck exporter, thousands of spans, memory held to the queue size."""
    exporter = OTLPSpanExporter(endpoint=hung_collector + "/v1/traces", timeout=3)
    proc = BoundedBatchProcessor(exporter, max_queue_size=100, max_export_batch_size=50, schedule_delay_s=0.01)
    provider = TracerProvider()
    provider.add_span_processor(proc)
    tracer = provider.get_tracer("bounded")
    t0 = time.perf_counter()
    for i in range(5000):
        with tracer.start_as_current_span(f"s{i}"):
            pass
    elapsed = time.perf_counter() - t0
    print(f"5000 spans ended in {elapsed * 1e3:.0f} ms with the exporter stuck; {proc.stats}")
    assert len(proc._queue) <= 100
    assert proc.stats.dropped >= 5000 - 100 - 50 * 2
    assert proc.stats.ended + proc.stats.dropped == 5000
    assert elapsed < 5.0  # 5000 spans; an end() that waited on the 3 s export would take hours
    t = time.perf_counter()
    assert proc.force_flush(500) is False
    assert time.perf_counter() - t < 2.0
    provider.shutdown()


def test_an_exporter_that_raises_never_reaches_the_app() -> None:
    from opentelemetry.sdk.trace.export import SpanExporter

    class Broken(SpanExporter):  # a user's exporter with a bug
        def export(self, spans: Any) -> Any:
            raise RuntimeError("exporter bug")

        def shutdown(self) -> None:
            raise RuntimeError("shutdown bug")

    proc = BoundedBatchProcessor(Broken(), max_queue_size=10, schedule_delay_s=0.01)
    provider = TracerProvider()
    provider.add_span_processor(proc)
    with provider.get_tracer("t").start_as_current_span("x"):
        pass
    assert proc.force_flush(2000) is True
    assert proc.stats.failed == 1 and proc.stats.exported == 0
    provider.shutdown()  # the exporter's failing shutdown stays inside too


@pytest.mark.parametrize("value,leaks", [
    ("sk-proj-AbCdEfGhIjKlMnOpQrStUv123456", "AbCdEfGhIjKlMnOp"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "eyJhbGciOiJIUzI1NiJ9"),
    ("key AKIAABCDEFGHIJKLMNOP in text", "AKIAABCDEFGHIJKLMNOP"),
    ("sk-ant-api03-" + "x" * 40, "x" * 40),
])
def test_secret_values_are_scrubbed(value: str, leaks: str) -> None:
    out, changed = scrub_value(value)
    assert changed and leaks not in out and REDACTED in out


def test_ordinary_values_are_left_alone() -> None:
    for v in ("gpt-4o-mini", "high temperature tonight", "ask-me", "tokens: 1234", 42, ["a", "b"]):
        assert scrub_value(v) == (v, False)


def test_secrets_never_leave_the_process(fake_provider: FakeProvider) -> None:
    """API keys, auth headers and (by default) content are not in anything exported."""
    key = "sk-proj-TOPSECRETKEY0123456789abcdef"
    code = f"""
        import json, openai, flowscope
        from opentelemetry import trace
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        def dump(mem):
            out = []
            for s in mem.get_finished_spans():
                out.append({{"name": s.name, "attrs": {{k: str(v) for k, v in (s.attributes or {{}}).items()}},
                            "events": [{{k: str(v) for k, v in (e.attributes or {{}}).items()}} for e in s.events]}})
            return out

        msgs = [{{"role": "user", "content": "my password is hunter2"}}]
        mem = InMemorySpanExporter()
        flowscope.init(service_name="secrets", exporter=mem)
        client = openai.OpenAI(base_url={fake_provider.openai_base_url!r}, api_key={key!r},
                               default_headers={{"x-api-key": {key!r}}})
        with flowscope.run("secret-flow"):
            client.chat.completions.create(model="gpt-4o-mini", messages=msgs)
            with trace.get_tracer("app").start_as_current_span("app-span") as span:
                span.set_attribute("http.request.header.authorization", "Bearer " + {key!r})
                span.set_attribute("api_key", "whatever-it-is")
                span.set_attribute("note", "the key is " + {key!r})
        flowscope.force_flush()
        default = dump(mem)

        mem2 = InMemorySpanExporter()
        flowscope.init(service_name="secrets", exporter=mem2, capture_content=True,
                       redact=lambda path, value: value.replace("hunter2", "[pw]") if isinstance(value, str) else value)
        with flowscope.run("content-flow"):
            client.chat.completions.create(model="gpt-4o-mini", messages=msgs)
        flowscope.force_flush()
        from flowscope import stats
        print(json.dumps({{"default": default, "content": dump(mem2), "stats": stats()}}))
    """
    out, _ = _run(code)
    default_text = json.dumps(out["default"])
    assert key not in default_text and "TOPSECRETKEY" not in default_text
    assert "hunter2" not in default_text  # content capture is off unless asked
    app = next(s for s in out["default"] if s["name"] == "app-span")
    assert app["attrs"]["http.request.header.authorization"] == REDACTED
    assert app["attrs"]["api_key"] == REDACTED
    assert app["attrs"]["note"] == f"the key is {REDACTED}"
    assert any(s["attrs"].get("gen_ai.request.model") == "gpt-4o-mini" for s in out["default"])
    content_text = json.dumps(out["content"])
    assert key not in content_text
    assert "hunter2" not in content_text  # the redaction hook ran before export
    assert "[pw]" in content_text  # content was captured when asked, after the hook
    assert out["stats"]["redacted_values"] >= 1


def test_a_wrapped_call_behaves_exactly_as_the_unwrapped_call(fake_provider: FakeProvider) -> None:
    """Same return types, same exceptions, streams still streams: with and without flowscope."""
    code = f"""
        import json, openai, flowscope
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        client = openai.OpenAI(base_url={fake_provider.openai_base_url!r}, api_key="sk-x", max_retries=0)
        msgs = [{{"role": "user", "content": "hi"}}]

        def observe():
            seen = {{}}
            r = client.chat.completions.create(model="gpt-4o-mini", messages=msgs)
            seen["return"] = [type(r).__module__ + "." + type(r).__qualname__, r.choices[0].message.content]
            try:
                client.chat.completions.create(model="gpt-4o-mini", messages=msgs)
                seen["error"] = None
            except Exception as exc:
                seen["error"] = [type(exc).__module__ + "." + type(exc).__qualname__, getattr(exc, "status_code", None)]
            stream = client.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True)
            seen["stream_is_openai_stream"] = isinstance(stream, openai.Stream)
            seen["stream_text"] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            with client.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True) as s2:
                seen["stream_context_manager_is_stream"] = isinstance(s2, openai.Stream)
                seen["stream_has_response"] = hasattr(s2, "response")
                try:
                    for _ in s2:
                        pass
                except Exception as exc:
                    seen["stream_error"] = type(exc).__qualname__
            return seen

        bare = observe()
        flowscope.init(service_name="same", exporter=InMemorySpanExporter())
        with flowscope.run("same-flow"):
            wrapped = observe()
        print(json.dumps({{"bare": bare, "wrapped": wrapped}}))
    """
    # each observe() takes one reply of each kind, in order
    fake_provider.script(Reply(text="ok"), Reply(status=429, retry_after=None), Reply(text="streamed"),
                         Reply(text="again"), Reply(text="ok"), Reply(status=429, retry_after=None),
                         Reply(text="streamed"), Reply(text="again"))
    out, _ = _run(code)
    assert out["bare"] == out["wrapped"], out
    assert out["bare"]["error"][0] == "openai.RateLimitError"
    assert out["bare"]["stream_is_openai_stream"] is True
