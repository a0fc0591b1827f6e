"""Real runs for the run explorer: the real SDK and clients against the fake provider, into a real collector.

Used by the browser tests, by ``python -m tests.ui.screenshots`` and by
``benchmarks/bench_ui.py``. Every run is produced the way an application
produces it: LangGraph or ``flowscope.run`` scopes, the unmodified ``openai``
and ``anthropic`` clients (with their own retries), ``flowscope.fallback``,
the response cache, state changes, content capture on.

* ``triage`` (LangGraph): classify (a 429 retried by the client) → route
  (router: branch ``refund``) → refund (OpenAI 429 → fallback to Anthropic)
  → reply (a cacheable call). State changes at every step.
* ``triage`` again, another question: route takes branch ``track``, track
  calls an unknown model (unpriced), reply is answered by the response cache.
  Its state diverges from the first run's at classify.
* ``checkout`` with a budget: the second call is stopped by the budget, the
  run fails with a stack trace.
* ``hostile``: the ``<script>`` / ``"><img onerror>`` payloads as run
  attributes, span attributes, prompt content, state values and a node name.
* :class:`LiveRun`: a run that is still going; the test moves it on step by step.
"""

from __future__ import annotations

import operator
import threading
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict

import anthropic
import openai

# imported before flowscope.init(): `langgraph` is a namespace package, which the SDK's
# post-import hook does not see, so a LangGraph imported after init() is not instrumented
from langgraph.graph import END, START, StateGraph

import flowscope
from flowscope.testing import FakeProvider, Reply

GPT = "gpt-4o-mini"
CLAUDE = "claude-3-5-haiku-20241022"
UNKNOWN_MODEL = "acme-local-7b"
SCRIPT_PAYLOAD = "<script>window.__pwned = 1</script>"
IMG_PAYLOAD = '"><img src=x onerror="window.__pwned = 2">'


@dataclass
class Runs:
    refund: str = ""
    track: str = ""
    budget: str = ""
    hostile: str = ""
    extra: list[str] = field(default_factory=list)


class TriageState(TypedDict):
    question: str
    category: str
    log: Annotated[list, operator.add]
    answer: str


QUESTION = "Order 1234 has not arrived: refund it or find it?"


def _triage_graph(oai: openai.OpenAI, oai_no_retry: openai.OpenAI, ant: anthropic.Anthropic,
                  knobs: dict[str, float]) -> Any:
    def classify(state: TriageState) -> dict[str, Any]:
        r = oai.chat.completions.create(
            model=GPT, temperature=knobs["temperature"],
            messages=[{"role": "system", "content": "Classify the ticket: refund or track."},
                                 {"role": "user", "content": state["question"]}])
        return {"category": r.choices[0].message.content or "", "log": ["classified"]}

    def route(state: TriageState) -> dict[str, Any]:
        return {"log": [f"routed:{state['category']}"]}

    def refund(state: TriageState) -> dict[str, Any]:
        msgs = [{"role": "user", "content": f"Draft a refund for: {state['question']}"}]
        r = flowscope.fallback(
            lambda: oai_no_retry.chat.completions.create(model=GPT, messages=msgs),
            lambda: ant.messages.create(model=CLAUDE, max_tokens=64, messages=msgs),
            on=(openai.RateLimitError,),
        )
        return {"answer": r.content[0].text, "log": ["refund drafted"]}

    def track(state: TriageState) -> dict[str, Any]:
        r = oai.chat.completions.create(
            model=UNKNOWN_MODEL, messages=[{"role": "user", "content": f"Find the parcel: {state['question']}"}])
        return {"answer": r.choices[0].message.content or "", "log": ["tracked"]}

    def reply(state: TriageState) -> dict[str, Any]:
        r = oai.chat.completions.create(
            model=GPT, temperature=0,
            messages=[{"role": "system", "content": "Sign every reply as the support team."},
                      {"role": "user", "content": "Write the closing line."}])
        return {"answer": state["answer"] + " " + (r.choices[0].message.content or ""), "log": ["replied"]}

    g = StateGraph(TriageState)
    for name, fn in (("classify", classify), ("route", route), ("refund", refund), ("track", track),
                     ("reply", reply)):
        g.add_node(name, fn)
    g.add_edge(START, "classify")
    g.add_edge("classify", "route")
    g.add_conditional_edges("route", lambda s: "refund" if s["category"] == "refund" else "track",
                            ["refund", "track"])
    g.add_edge("refund", "reply")
    g.add_edge("track", "reply")
    g.add_edge("reply", END)
    return g.compile()


def _run_id_of_last(flow: str, before: set[str], url: str, api_key: str | None = None) -> str:
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    for _ in range(200):
        runs = httpx.get(f"{url}/api/v1/runs", params={"flow": flow, "limit": 50}, headers=headers,
                         timeout=30).json()["runs"]
        new = [r["run_id"] for r in runs if r["run_id"] not in before and r["status"] != "running"]
        if new:
            return new[0]
        import time

        time.sleep(0.05)
    raise AssertionError(f"no new {flow} run reached the collector")


def produce(url: str, fp: FakeProvider, *, api_key: str | None = None, service: str = "support") -> Runs:
    """Send the scenario's finished runs to the collector at ``url`` and wait until they are stored."""
    import httpx

    flowscope.init(service_name=service, endpoint=url, api_key=api_key, capture_content=True)
    flowscope.cache.enable("memory")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    oai = openai.OpenAI(base_url=fp.openai_base_url, api_key="sk-test", max_retries=2)
    oai_no_retry = openai.OpenAI(base_url=fp.openai_base_url, api_key="sk-test", max_retries=0)
    ant = anthropic.Anthropic(base_url=fp.anthropic_base_url, api_key="sk-test", max_retries=0)
    knobs = {"temperature": 0.2}  # the second run samples classify differently: no cache hit there
    graph = _triage_graph(oai, oai_no_retry, ant, knobs)
    out = Runs()
    try:
        def known() -> set[str]:
            return {r["run_id"] for r in httpx.get(f"{url}/api/v1/runs", params={"limit": 1000}, headers=headers,
                                                   timeout=30).json()["runs"]}

        # 1. refund path: classify retried after a 429, refund falls back to Anthropic, reply is cached
        fp.fail_next(1, status=429, route="chat.completions")
        fp.script(Reply(text="refund", input_tokens=1200, cached_tokens=400, output_tokens=40,
                        model="gpt-4o-mini-2024-07-18"), route="chat.completions")
        fp.fail_next(1, status=429, route="chat.completions")
        fp.script(Reply(text="We have refunded order 1234.", input_tokens=300, output_tokens=80), route="messages")
        fp.script(Reply(text="— The support team", input_tokens=500, output_tokens=20,
                        model="gpt-4o-mini-2024-07-18"), route="chat.completions")
        before = known()
        graph.invoke({"question": QUESTION, "category": "", "log": [], "answer": ""},
                     {"run_name": "triage", "metadata": {"user_id": "u-42", "tenant": "acme", "session_id": "s-1"}})
        flowscope.force_flush()
        out.refund = _run_id_of_last("triage", before, url, api_key)

        # 2. track path: same flow, another branch; an unpriced model; reply from the response cache
        fp.script(Reply(text="track", input_tokens=900, output_tokens=30, model="gpt-4o-mini-2024-07-18"),
                  route="chat.completions")
        fp.script(Reply(text="Your parcel is in Leipzig.", input_tokens=200, output_tokens=25,
                        model=UNKNOWN_MODEL), route="chat.completions")
        before = known()
        knobs["temperature"] = 0.7
        graph.invoke({"question": QUESTION, "category": "", "log": [], "answer": ""},
                     {"run_name": "triage", "metadata": {"user_id": "u-7", "tenant": "globex"}})
        flowscope.force_flush()
        out.track = _run_id_of_last("triage", before, url, api_key)

        # 3. budget stop: the second call would exceed the run's budget and is never sent
        fp.script(Reply(text="ok", input_tokens=4000, output_tokens=900, model="gpt-4o-mini-2024-07-18"))
        try:
            with flowscope.run("checkout", budget_usd="0.0001", input={"cart": ["book"]}) as run:
                with flowscope.node("price", type="llm"):
                    # max_tokens bounds the call's worst case, which the budget checks before sending
                    oai.chat.completions.create(model=GPT, messages=[{"role": "user", "content": "price it"}],
                                                max_tokens=50)
                    flowscope.record_state("price", "12.00")
                with flowscope.node("charge", type="llm"):
                    oai.chat.completions.create(model=GPT, messages=[{"role": "user", "content": "charge it"}],
                                                max_tokens=50)
        except flowscope.BudgetExceeded:
            pass
        out.budget = run.id

        # 4. hostile payloads everywhere a person will see them
        fp.script(Reply(text=f"Sure {IMG_PAYLOAD} {SCRIPT_PAYLOAD}", input_tokens=50, output_tokens=12,
                        model="gpt-4o-mini-2024-07-18"))
        with flowscope.run("hostile", input={"note": SCRIPT_PAYLOAD}) as run:
            flowscope.set_run_attributes(user_id=IMG_PAYLOAD)
            with flowscope.node(f"step {IMG_PAYLOAD}", type="task") as _node:
                from opentelemetry import trace

                trace.get_current_span().set_attribute("app.comment", SCRIPT_PAYLOAD)
                oai.chat.completions.create(
                    model=GPT, messages=[{"role": "user", "content": f"{SCRIPT_PAYLOAD} and {IMG_PAYLOAD}"}])
                flowscope.record_state("html", IMG_PAYLOAD)
                flowscope.record_state(SCRIPT_PAYLOAD, {"nested": SCRIPT_PAYLOAD})
        out.hostile = run.id
        flowscope.force_flush()
        for rid in (out.budget, out.hostile):
            for _ in range(400):
                r = httpx.get(f"{url}/api/v1/runs/{rid}", headers=headers, timeout=30)
                if r.status_code == 200 and r.json()["status"] != "running":
                    break
                import time

                time.sleep(0.05)
    finally:
        flowscope.cache.disable()
        flowscope.force_flush()
    return out


class LiveRun:
    """A run that goes on in a thread, one node per :meth:`advance`, its spans flushed as they end."""

    def __init__(self, fp: FakeProvider, nodes: int = 3, flow: str = "live-flow") -> None:
        self.fp = fp
        self.nodes = nodes
        self.flow = flow
        self.run_id = ""
        self._go = threading.Semaphore(0)
        self._started = threading.Event()
        self._done = threading.Event()
        self._steps_done = threading.Semaphore(0)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._body, name="live-run", daemon=True)

    def _body(self) -> None:
        try:
            client = openai.OpenAI(base_url=self.fp.openai_base_url, api_key="sk-test", max_retries=0)
            with flowscope.run(self.flow, input={"job": "live"}) as run:
                self.run_id = run.id
                self._started.set()
                for i in range(self.nodes):
                    self._go.acquire()
                    with flowscope.node(f"stage-{i}", type="llm"):
                        client.chat.completions.create(
                            model=GPT, messages=[{"role": "user", "content": f"stage {i}"}])
                        flowscope.record_state(f"stage_{i}", "done")
                    flowscope.force_flush()
                    self._steps_done.release()
                self._go.acquire()
        except BaseException as exc:
            self.error = exc
        finally:
            self._started.set()
            flowscope.force_flush()
            self._done.set()

    def start(self) -> LiveRun:
        for i in range(self.nodes):
            self.fp.script(Reply(text=f"stage {i} done", input_tokens=1000 * (i + 1), output_tokens=100,
                                 model="gpt-4o-mini-2024-07-18"))
        self._thread.start()
        self._started.wait(30)
        return self

    def advance(self) -> None:
        """Run the next node and flush its spans."""
        self._go.release()
        assert self._steps_done.acquire(timeout=30), "the live run's node did not finish"

    def finish(self) -> None:
        self._go.release()
        self._done.wait(30)
        if self.error:
            raise self.error
