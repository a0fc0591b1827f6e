"""HazelJS (``@hazeljs/agent``) spans as flowscope runs, nodes and LLM calls.

The published HazelJS agent runtime speaks OpenTelemetry in its own dialect:
with an observability provider configured it opens ``agent.run`` (one
``runtime.execute``), ``agent.execute`` (one execution), ``agent.llm`` (one
model call, around the LLM provider adapter) and ``agent.tool.execute`` (one
tool call) through ``@opentelemetry/api``, each carrying ``agent.name`` and the
execution's id as ``agent.execution_id`` / ``agent.run_id`` (``agent.run``
gets them, with ``agent.state`` and ``agent.duration_ms``, when it ends). No
``gen_ai.*`` names, no usage: so without this module its runs would be one
trace-shaped blob with no nodes and no cost.

Rules, one span at a time (:func:`flowscope.core.normalize.normalize_attributes`
calls :func:`apply` with the span's name):

* one execution is one run: ``flowscope.run.id`` is the execution id (a UUID,
  written as 32 hex like every run id); ``agent.execute`` is the run span,
  its flow the agent's name. ``agent.run`` joins that run as a plain span.
* ``agent.tool.execute`` is a node of type ``tool`` named after the tool.
* ``agent.llm`` is the LLM step. When it carries usage (the adapter recorded
  the provider's reply on the active span) it is the LLM call, priced like any
  other; without usage it is a node of type ``llm`` and the call is the span an
  OpenAI instrumentation opened beneath it. Usage on both is counted once only
  if the producer says which one counts, since the collector sees one span at
  a time and cannot tell on its own that a child exists: a span that already
  has ``flowscope.span.kind`` keeps it. The example's bridge
  (``examples/typescript/src/hazel-bridge.ts``) does so when an LLM span starts
  beneath ``agent.llm``: the child becomes ``http`` (a client library's span,
  never counted) when the adapter declared ``agent.llm`` the call
  (``flowscope.span.kind=llm``, before sending), else ``agent.llm`` becomes a
  ``node`` and the child is the call.

A span that is already in a flowscope run (``flowscope.run.id``) keeps that run.
"""

from __future__ import annotations

from collections.abc import MutableMapping

from . import semconv
from .ids import is_run_id

AGENT_NAME = "agent.name"
AGENT_EXECUTION_ID = "agent.execution_id"
AGENT_RUN_ID = "agent.run_id"
AGENT_TOOL_NAME = "agent.tool.name"
AGENT_STATE = "agent.state"
AGENT_DURATION_MS = "agent.duration_ms"

SPAN_RUN = "agent.run"
SPAN_EXECUTE = "agent.execute"
SPAN_LLM = "agent.llm"
SPAN_TOOL = "agent.tool.execute"

# Attribute keys that make a span worth a look (normalize's triggers).
TRIGGERS = frozenset({AGENT_EXECUTION_ID, AGENT_RUN_ID})
# The byte pattern the collector's fast path searches for: every HazelJS span
# carries agent.run_id (agent.run from its end), so none is missed.
INGEST_HINT = AGENT_RUN_ID.encode()

LLM_NODE_NAME = "llm"


def run_id_of(execution_id: str) -> str:
    """The run id of an execution: its UUID as 32 lowercase hex, else the id as sent."""
    compact = execution_id.replace("-", "").lower()
    return compact if is_run_id(compact) else execution_id


def is_hazeljs(attrs: MutableMapping[str, str]) -> bool:
    return bool(attrs.get(AGENT_EXECUTION_ID) or attrs.get(AGENT_RUN_ID))


def apply(attrs: MutableMapping[str, str], span_name: str | None, has_usage: bool) -> None:
    """Map one HazelJS span in place (the caller checked :func:`is_hazeljs`)."""
    if semconv.RUN_ID not in attrs:
        attrs[semconv.RUN_ID] = run_id_of(attrs.get(AGENT_EXECUTION_ID) or attrs[AGENT_RUN_ID])
    if semconv.SPAN_KIND in attrs:  # the producer said what it is (the bridge's mark)
        return
    agent = attrs.get(AGENT_NAME, "")
    if span_name == SPAN_EXECUTE:
        attrs[semconv.SPAN_KIND] = semconv.KIND_RUN
        if agent:
            attrs.setdefault(semconv.GEN_AI_WORKFLOW_NAME, agent)
    elif span_name == SPAN_TOOL:
        tool = attrs.get(AGENT_TOOL_NAME, "")
        attrs[semconv.SPAN_KIND] = semconv.KIND_NODE
        attrs[semconv.NODE_TYPE] = "tool"
        if tool:
            attrs.setdefault(semconv.NODE_NAME, tool)
            attrs.setdefault(semconv.GEN_AI_TOOL_NAME, tool)
    elif span_name == SPAN_LLM:
        if has_usage:
            attrs[semconv.SPAN_KIND] = semconv.KIND_LLM
        else:
            attrs[semconv.SPAN_KIND] = semconv.KIND_NODE
            attrs[semconv.NODE_TYPE] = "llm"
            attrs.setdefault(semconv.NODE_NAME, LLM_NODE_NAME)
