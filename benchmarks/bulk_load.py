"""Millions of realistic spans in seconds, generated inside ClickHouse.

``python -m benchmarks.bulk_load --spans 10000000 --dir /tmp/fs10m`` fills a chDB
directory with 10M spans in 100k runs spread over the last 7 days.

Why inside ClickHouse: the Python generator (:mod:`benchmarks.otlp_data`) plus
the real ingest path makes ~14k spans/s, so 10M spans would take 12 minutes
before a single query is timed. Here one ``INSERT INTO otel_traces SELECT …
FROM numbers(…)`` per chunk of runs builds the rows from hashes of the run
number, at ClickHouse speed.

What it bypasses and what it does not: it skips HTTP, protobuf decoding and
the ``otlp_ingest`` parsing view, and writes ``otel_traces`` rows directly —
the same columns, the same attribute keys and string encodings that the
ingest path stores (:func:`check_against_ingest` compares the two). Everything downstream is the
real thing: the materialized views fill ``flowscope_spans``,
``flowscope_state_events``, ``flowscope_runs`` and any table a later
migration hangs off them, exactly as they do for real ingest.

Shape of a run (the shape of :mod:`benchmarks.otlp_data`, ~100 spans): an
``invoke_workflow`` root with an input snapshot state event; 6-14 sequential
nodes (routers carry a branch), each with 1-4 ``chat`` spans (each with an
HTTP client child, as httpx instrumentation makes) and 0-4 tool spans (each
with a database child), and a ``flowscope.state`` event; 1% of nodes fail
and half of those are retried (attempt 1 succeeds, otherwise the run fails);
5% of LLM calls took a rate-limit retry, 2% were served by the response cache,
1% fell back to another model; the last node deletes the first node's state.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver.client import Client

DAY_NS = 86_400 * 10**9
SPANS_PER_RUN = 100  # runs = spans // 100, as in the goal; the shape below averages ~101 spans

SERVICES = ("shop", "support-bot", "search")
FLOWS = ("checkout-flow", "refund-flow", "triage", "answer", "rag")  # index = service-dependent, see _SQL
NODES = ("plan", "retrieve", "rank", "route", "draft", "critique", "revise", "tool-call", "summarize", "finish",
         "classify", "extract", "validate", "respond")
# provider, response model, request model, then USD per token in units of 1e-12 (input, cached input, output)
MODELS = (
    ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini", 150_000, 75_000, 600_000),
    ("openai", "gpt-4o-2024-08-06", "gpt-4o", 2_500_000, 1_250_000, 10_000_000),
    ("anthropic", "claude-sonnet-4-20250514", "claude-sonnet-4", 3_000_000, 300_000, 15_000_000),
    ("anthropic", "claude-3-5-haiku-20241022", "claude-3-5-haiku", 800_000, 80_000, 4_000_000),
    ("openai", "o3-mini-2025-01-31", "o3-mini", 1_100_000, 550_000, 4_400_000),
)
TOOLS = ("search_docs", "lookup_order", "send_email", "calculator", "fetch_url")


def _arr(values: tuple[Any, ...]) -> str:
    return "[" + ", ".join(repr(v) if isinstance(v, str) else str(v) for v in values) + "]"


def _usd(pico: str) -> str:
    """SQL: an integer count of 1e-12 USD as the SDK writes money (plain decimal, no trailing zeros)."""
    return (f"replaceRegexpOne(concat(toString(intDiv({pico}, 1000000000000)), '.', "
            f"leftPad(toString({pico} % 1000000000000), 12, '0')), '\\\\.?0+$', '')")


def _hex(expr: str, width: int = 16) -> str:
    return f"lower(leftPad(hex({expr}), {width}, '0'))"


# One row per span. Runs come from numbers(); ARRAY JOIN fans a run out into its
# root (step -1) and nodes, then each node into its slots:
#   slot 0                      the node span (attempt 1 when the node was retried)
#   slot 1, 3, … (j < n_llm)    chat span; slot+1 is its HTTP child
#   slot 1, 3, … (j >= n_llm)   tool span; slot+1 is its database child
#   last slot (retried nodes)   the failed first attempt
# Every choice is a hash of (seed, run, step, slot), so a run is the same
# whichever chunk, order or machine loads it.
_SQL = """
INSERT INTO {db}.otel_traces (Timestamp, TraceId, SpanId, ParentSpanId, TraceState, SpanName, SpanKind, ServiceName,
    ResourceAttributes, ScopeName, ScopeVersion, SpanAttributes, Duration, StatusCode, StatusMessage,
    `Events.Timestamp`, `Events.Name`, `Events.Attributes`, `Links.TraceId`, `Links.SpanId`, `Links.TraceState`,
    `Links.Attributes`)
SELECT
    fromUnixTimestamp64Nano(toInt64(t0)) AS Timestamp,
    trace_id AS TraceId,
    span_id AS SpanId,
    parent_id AS ParentSpanId,
    '' AS TraceState,
    multiIf(is_root, concat('invoke_workflow ', flow), is_node, node_name, is_llm, concat('chat ', model),
            is_http, 'POST', is_tool, concat('execute_tool ', tool), 'SELECT orders') AS SpanName,
    if(is_llm OR is_http OR is_db, 'Client', 'Internal') AS SpanKind,
    service AS ServiceName,
    map('service.name', service, 'telemetry.sdk.language', 'python', 'telemetry.sdk.name', 'opentelemetry',
        'telemetry.sdk.version', '1.45.2', 'host.name', concat(service, '-7f9c'), 'process.pid', '4242',
        'flowscope.project', {project}) AS ResourceAttributes,
    'flowscope' AS ScopeName,
    '0.1.0' AS ScopeVersion,
    multiIf(
        is_root, mapConcat(map('gen_ai.operation.name', 'invoke_workflow', 'gen_ai.workflow.name', flow,
                               'flowscope.span.kind', 'run', 'flowscope.run.id', trace_id),
                           if(span_failed, map('error.type', 'ValueError'), map())),
        is_node, mapConcat(map('flowscope.span.kind', 'node', 'flowscope.node.name', node_name,
                               'flowscope.node.type', node_type, 'flowscope.node.step', toString(step),
                               'flowscope.node.attempt', toString(attempt), 'flowscope.run.id', trace_id),
                           if(node_type = 'router', map('flowscope.router.branch', branch), map()),
                           if(span_failed, map('error.type', 'ValueError'), map())),
        is_llm, mapConcat(map('gen_ai.operation.name', 'chat', 'gen_ai.provider.name', provider,
                              'flowscope.span.kind', 'llm', 'gen_ai.request.model', request_model,
                              'server.address', concat('api.', provider, '.com'), 'server.port', '443',
                              'flowscope.run.id', trace_id, 'flowscope.node.name', node_name,
                              'flowscope.node.step', toString(step), 'gen_ai.response.model', model,
                              'gen_ai.response.id', concat('resp_', {resp_id}),
                              'gen_ai.response.finish_reasons', '["stop"]',
                              'gen_ai.usage.input_tokens', toString(inp),
                              'gen_ai.usage.output_tokens', toString(out),
                              'gen_ai.usage.cache_read.input_tokens', toString(cached),
                              'flowscope.cost.usd', {cost},
                              'flowscope.cost.input_usd', {cost_in},
                              'flowscope.cost.cached_input_usd', {cost_cached},
                              'flowscope.cost.cache_write_usd', '0',
                              'flowscope.cost.output_usd', {cost_out},
                              'flowscope.cost.source', 'computed', 'flowscope.pricing.version', '2026.11.1'),
                          if(reasoning > 0, map('gen_ai.usage.reasoning.output_tokens', toString(reasoning)), map()),
                          if(llm_retry, map('flowscope.retry.count', '1'), map()),
                          if(cache_hit, map('flowscope.cache.hit', 'true', 'flowscope.cache.saved_usd', {saved}),
                             map()),
                          if(fallback, map('flowscope.fallback.from', 'gpt-4o-2024-08-06', 'flowscope.fallback.to',
                                           model, 'flowscope.fallback.reason', 'RateLimitError'), map())),
        is_http, map('http.request.method', 'POST',
                     'url.full', concat('https://api.', provider, '.com/v1/chat/completions'),
                     'server.address', concat('api.', provider, '.com'), 'http.response.status_code', '200',
                     'flowscope.run.id', trace_id, 'flowscope.node.name', node_name,
                     'flowscope.node.step', toString(step)),
        is_tool, map('gen_ai.operation.name', 'execute_tool', 'gen_ai.tool.name', tool,
                     'flowscope.span.kind', 'tool', 'flowscope.run.id', trace_id, 'flowscope.node.name', node_name,
                     'flowscope.node.step', toString(step)),
        map('db.system.name', 'postgresql', 'db.operation.name', 'SELECT',
            'db.query.text', 'SELECT * FROM orders WHERE id = $1', 'flowscope.run.id', trace_id,
            'flowscope.node.name', node_name, 'flowscope.node.step', toString(step))
    ) AS SpanAttributes,
    toUInt64(t1 - t0) AS Duration,
    multiIf(span_failed, 'Error', is_llm OR is_http, 'Ok', 'Unset') AS StatusCode,
    if(span_failed, 'ValueError: bad value', '') AS StatusMessage,
    arrayMap(e -> fromUnixTimestamp64Nano(toInt64(e.1)), events) AS `Events.Timestamp`,
    arrayMap(e -> e.2, events) AS `Events.Name`,
    arrayMap(e -> e.3, events) AS `Events.Attributes`,
    [] AS `Links.TraceId`, [] AS `Links.SpanId`, [] AS `Links.TraceState`, [] AS `Links.Attributes`
FROM (
    SELECT *,
        is_root OR slot = 0 OR is_retry_span AS is_node,
        NOT is_node AND slot % 2 = 1 AND pair < n_llm AS is_llm,
        NOT is_node AND slot % 2 = 0 AND pair < n_llm AS is_http,
        NOT is_node AND slot % 2 = 1 AND pair >= n_llm AS is_tool,
        NOT is_node AND slot % 2 = 0 AND pair >= n_llm AS is_db,
        multiIf(is_root, run_failed, is_retry_span OR (slot = 0 AND node_failed AND NOT retried)) AS span_failed,
        if(slot = 0 AND retried, 1, 0) AS attempt,
        {hex_span} AS span_id,
        multiIf(is_root, '', is_node, root_id, slot % 2 = 1, node_id, {hex_parent}) AS parent_id,
        cityHash64({seed}, r, step, slot, 7) AS sh,
        {models}[sh % 5 + 1] AS mt,
        mt.1 AS provider, mt.2 AS model, mt.3 AS request_model,
        200 + (sh DIV 8) % 5801 AS inp,
        [0, 0, intDiv(inp, 2)][(sh DIV 47000) % 3 + 1] AS cached,
        20 + (sh DIV 150000) % 881 AS out,
        if(startsWith(model, 'o3'), intDiv(out, 3), 0) AS reasoning,
        (sh DIV 140000000) % 100 AS roll,
        roll < 5 AS llm_retry,
        roll >= 97 AND roll < 99 AS cache_hit,
        roll = 99 AS fallback,
        (inp - cached) * mt.4 AS p_in, cached * mt.5 AS p_cached, out * mt.6 AS p_out,
        if(cache_hit, 0, p_in + p_cached + p_out) AS p_cost,
        {tools}[sh % 5 + 1] AS tool,
        -- timing: node k owns [run_start + k * node_ns, + node_ns); its calls share the middle 80%
        run_start + 200000 + toUInt64(greatest(step, 0)) * node_ns AS node_start,
        intDiv(node_ns * 8, 10 * greatest(n_llm + n_tool, 1)) AS pair_ns,
        node_start + intDiv(node_ns, 10) + pair * pair_ns AS call_start,
        multiIf(is_root, run_start, is_retry_span, node_start, slot = 0 AND retried, node_start + intDiv(node_ns, 12),
                slot = 0, node_start, slot % 2 = 1, call_start, call_start + 1000000) AS t0,
        multiIf(is_root, run_start + 200000 + toUInt64(n_nodes) * node_ns + 100000,
                is_retry_span, node_start + intDiv(node_ns, 14), slot = 0, node_start + intDiv(node_ns * 19, 20),
                slot % 2 = 1, call_start + intDiv(pair_ns * 9, 10), call_start + intDiv(pair_ns * 9, 10) - 1000000)
            AS t1,
        multiIf(
            is_root, [(toUInt64(run_start + 1000), 'flowscope.state', map(
                'flowscope.state.seq', '0', 'flowscope.state.op', 'snapshot', 'flowscope.state.path', '',
                'flowscope.state.value', concat('{{"question":"where is my order?","user":"', substring(trace_id, 1, 8),
                                                '"}}'),
                'flowscope.node.step', '-1'))],
            slot = 0, arrayConcat(
                [(toUInt64(t1 - 10000), 'flowscope.state', map(
                    'flowscope.state.seq', toString(step + 1), 'flowscope.state.op', 'set',
                    'flowscope.state.path', concat(node_name, '.result'),
                    'flowscope.state.value', concat('{{"step":', toString(step), ',"ok":true,"items":[',
                                                    toString(step), ',', toString(step + 1), ']}}'),
                    'flowscope.node.step', toString(step)))],
                if(step = n_nodes - 1 AND step > 0, [(toUInt64(t1 - 5000), 'flowscope.state', map(
                    'flowscope.state.seq', toString(n_nodes + 1), 'flowscope.state.op', 'delete',
                    'flowscope.state.path', concat(first_node, '.result'), 'flowscope.state.value', '',
                    'flowscope.node.step', toString(step)))], CAST([], '{ev_type}'))),
            is_llm AND llm_retry, [(toUInt64(t0 + intDiv(t1 - t0, 3)), 'flowscope.retry', map(
                'flowscope.retry.attempt', '1', 'error.type', 'RateLimitError', 'flowscope.retry.status', '429'))],
            CAST([], '{ev_type}')) AS events
    FROM (
        SELECT *,
            step = -1 AS is_root,
            {node_hash} AS nh,
            {nodes}[(toUInt64(greatest(step, 0)) + nh % 4) % 14 + 1] AS node_name,
            multiIf(node_name = 'route', 'router', node_name = 'tool-call', 'tool', 'task') AS node_type,
            ['refund', 'answer', 'escalate'][(nh DIV 4) % 3 + 1] AS branch,
            [1, 2, 2, 3, 3, 4][(nh DIV 12) % 6 + 1] AS n_llm,
            [0, 1, 2, 2, 3, 4][(nh DIV 72) % 6 + 1] AS n_tool,
            NOT is_root AND (nh DIV 432) % 100 = 0 AS node_failed,
            node_failed AND (nh DIV 43200) % 2 = 0 AS retried,
            {hex_node} AS node_id,
            arrayJoin(range(if(is_root, 1, 1 + 2 * (n_llm + n_tool) + toUInt8(retried)))) AS slot,
            intDiv(toInt32(slot) - 1, 2) AS pair,
            retried AND slot = 2 * (n_llm + n_tool) + 1 AS is_retry_span
        FROM (
            SELECT *, toInt32(arrayJoin(range(n_nodes + 1))) - 1 AS step
            FROM (
                SELECT number AS r,
                    cityHash64({seed}, r, 1) AS h,
                    {trace_id} AS trace_id,
                    {hex_root} AS root_id,
                    {services}[h % 3 + 1] AS service,
                    multiIf(service = 'shop', ['checkout-flow', 'refund-flow'][(h DIV 3) % 2 + 1],
                            service = 'support-bot', ['triage', 'answer'][(h DIV 3) % 2 + 1], 'rag') AS flow,
                    6 + (h DIV 6) % 9 AS n_nodes,
                    toUInt64(2000000000 + (h DIV 54) % 6000000000) AS node_ns,
                    toUInt64({start_ns} + r * {step_ns} + (h DIV 1000000) % {step_ns}) AS run_start,
                    {nodes}[({first_hash} % 4) % 14 + 1] AS first_node,
                    -- a node that failed and was not retried fails the run
                    arrayExists(k -> ({k_hash} DIV 432) % 100 = 0 AND ({k_hash} DIV 43200) % 2 = 1,
                                range(n_nodes)) AS run_failed
                FROM numbers({first}, {count})
            )
        )
    )
)
SETTINGS max_block_size = {block_runs}, max_threads = {threads}
"""


def insert_sql(db: str, *, first: int, count: int, start_ns: int, step_ns: int, seed: int = 11,
               project: str = "default", threads: int = 2, block_runs: int = 512) -> str:
    """The ``INSERT … SELECT`` that writes runs ``first … first+count-1``."""
    models = "[" + ", ".join(f"('{p}', '{m}', '{rq}', {a}, {b}, {c})" for p, m, rq, a, b, c in MODELS) + "]"
    return _SQL.format(
        db=db, seed=seed, first=first, count=count, start_ns=start_ns, step_ns=max(step_ns, 1),
        project=repr(project), threads=threads, ev_type="Array(Tuple(UInt64, String, Map(String, String)))", block_runs=block_runs,
        models=models, tools=_arr(TOOLS), nodes=_arr(NODES), services=_arr(SERVICES),
        trace_id=trace_id_sql(seed, "r"),
        hex_root=_hex(f"cityHash64({seed}, r, -1, 0, 1)"),
        node_hash=f"cityHash64({seed}, r, toInt32(step), 3)", first_hash=f"cityHash64({seed}, r, toInt32(0), 3)",
        k_hash=f"cityHash64({seed}, r, toInt32(k), 3)",
        hex_node=_hex(f"cityHash64({seed}, r, step, 0, 1)"),
        hex_span=_hex(f"cityHash64({seed}, r, step, slot, 1)"),
        hex_parent=_hex(f"cityHash64({seed}, r, step, slot - 1, 1)"),
        resp_id=_hex(f"cityHash64({seed}, r, step, slot, 5)", 12),
        cost=_usd("p_cost"), cost_in=_usd("if(cache_hit, 0, p_in)"),
        cost_cached=_usd("if(cache_hit, 0, p_cached)"), cost_out=_usd("if(cache_hit, 0, p_out)"),
        saved=_usd("p_in + p_cached + p_out"),
    )


def trace_id_sql(seed: int, run: str) -> str:
    """SQL for the trace (= run) id of run number ``run``: 32 lowercase hex digits."""
    return f"concat({_hex(f'cityHash64({seed}, {run}, 11)')}, {_hex(f'cityHash64({seed}, {run}, 12)')})"


@dataclass
class Loaded:
    runs: int
    spans: int
    seconds: float
    start_ns: int
    end_ns: int
    seed: int

    @property
    def spans_per_s(self) -> float:
        return self.spans / self.seconds if self.seconds else 0.0


def load(client: Client, *, spans: int | None = None, runs: int | None = None, days: float = 7,
         end_ns: int | None = None, seed: int = 11, db: str = "default", chunk_spans: int = 1_000_000,
         threads: int = 2, progress: bool = False) -> Loaded:
    """Write ``runs`` runs (or ``spans // 100``) evenly spread over the ``days`` before ``end_ns``."""
    if runs is None:
        runs = max(1, (spans or 1_000_000) // SPANS_PER_RUN)
    end_ns = end_ns if end_ns is not None else time.time_ns()
    start_ns = end_ns - int(days * DAY_NS)
    step_ns = int(days * DAY_NS) // runs
    chunk = max(1, chunk_spans // SPANS_PER_RUN)
    before = _count(client, db)
    t0 = time.perf_counter()
    for first in range(0, runs, chunk):
        count = min(chunk, runs - first)
        client.command(insert_sql(db, first=first, count=count, start_ns=start_ns, step_ns=step_ns, seed=seed,
                                  threads=threads))
        if progress:
            done = first + count
            print(f"  {done:,}/{runs:,} runs, {time.perf_counter() - t0:.0f}s", flush=True)
    seconds = time.perf_counter() - t0
    return Loaded(runs, _count(client, db) - before, seconds, start_ns, end_ns, seed)


def _count(client: Client, db: str) -> int:
    return int(client.query(f"SELECT count() FROM {db}.otel_traces").result_rows[0][0])


def sample_run_ids(client: Client, loaded: Loaded, n: int, rng: random.Random) -> list[str]:
    """``n`` run ids drawn uniformly from the loaded runs (computed, not scanned)."""
    picks = [rng.randrange(loaded.runs) for _ in range(n)]
    sql = (f"SELECT {trace_id_sql(loaded.seed, 'r')} FROM "
           f"(SELECT arrayJoin({_arr(tuple(picks))}) AS r)")
    return [row[0] for row in client.query(sql).result_rows]


def wait_for_merges(client: Client, timeout_s: float = 600) -> float:
    """Let background merges (and migrations' mutations) settle, as on a collector that has run a while."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        busy = client.query("SELECT (SELECT count() FROM system.merges) + "
                            "(SELECT count() FROM system.mutations WHERE NOT is_done)").result_rows[0][0]
        if not busy:
            break
        time.sleep(0.5)
    return time.perf_counter() - t0


# --- validation: the generated runs look like real ones -----------------------------------------------


def key_sets(client: Client, db: str, where: str) -> dict[str, set[str]]:
    """Attribute keys per span kind (run, node, llm, tool, and children by span name)."""
    rows = client.query(
        f"SELECT if(SpanAttributes['flowscope.span.kind'] != '', SpanAttributes['flowscope.span.kind'], "
        f"SpanKind || ':' || splitByChar(' ', SpanName)[1]) AS k, groupUniqArrayArray(mapKeys(SpanAttributes)) "
        f"FROM {db}.otel_traces WHERE {where} GROUP BY k"
    ).result_rows
    return {k: set(v) for k, v in rows}


OPTIONAL_KEYS = {
    # present on some spans only, in either generator
    "gen_ai.usage.reasoning.output_tokens", "flowscope.retry.count", "flowscope.router.branch", "error.type",
    "flowscope.cache.hit", "flowscope.cache.saved_usd", "flowscope.fallback.from", "flowscope.fallback.to",
    "flowscope.fallback.reason",
}


def check(client: Client, loaded: Loaded, *, sample: int = 40, db: str = "default") -> list[str]:
    """Problems found reading ``sample`` bulk-loaded runs back through the API code paths.

    Each run is read with :class:`flowscope_collector.store.queries.Store` and
    summarised by :mod:`flowscope.core.views` (what ``GET /api/v1/runs/{id}``,
    ``/nodes`` and ``/state`` serve), then compared with figures computed
    independently from the raw ``otel_traces`` attribute maps, and with the
    ``flowscope_runs`` aggregate the list endpoint reads.
    """
    from flowscope.core import views
    from flowscope_collector.store.queries import Store

    store = Store(client, db)
    problems: list[str] = []
    if _count(client, db) < loaded.spans:
        return [f"{db}.otel_traces has fewer rows than the {loaded.spans} loaded"]
    rng = random.Random(loaded.seed)
    for rid in sample_run_ids(client, loaded, sample, rng):
        spans = store.run_spans("default", rid)
        if spans != store.run_spans_typed("default", rid):
            problems.append(f"{rid}: spans read from RunRecord differ from the typed columns")
        events = store.state_events("default", rid)
        view = views.RunView(rid, spans, events)
        s = view.summary()
        nodes = view.nodes()
        raw = client.query(
            f"SELECT count(), countIf(SpanAttributes['flowscope.span.kind'] = 'llm'), "
            f"sum(toDecimal128OrZero(SpanAttributes['flowscope.cost.usd'], 18)), countIf(StatusCode = 'Error'), "
            f"countIf(SpanAttributes['flowscope.span.kind'] = 'node'), "
            f"sumIf(toUInt64OrZero(SpanAttributes['gen_ai.usage.input_tokens']), "
            f"SpanAttributes['flowscope.span.kind'] = 'llm') "
            f"FROM {db}.otel_traces WHERE TraceId = {{rid:String}}", parameters={"rid": rid}).result_rows[0]
        n, llm, cost, errors, node_spans, inp = raw
        got = (s["spans"], s["llm_calls"], Decimal(s["cost_usd"]), s["errors"], len(nodes), s["input_tokens"])
        want = (n, llm, Decimal(cost), errors, node_spans, inp)
        if got != want:
            problems.append(f"{rid}: views say (spans, llm, cost, errors, nodes, input) {got}, raw rows say {want}")
        if not 19 <= n <= 260:
            problems.append(f"{rid}: {n} spans, outside the 19-260 a generated run has")
        steps = [nd["step"] for nd in nodes]
        if sorted(set(steps)) != list(range(len(set(steps)))) or steps != sorted(steps):
            problems.append(f"{rid}: node steps {steps} are not 0..n in order")
        for nd in nodes:
            if nd["attempt"] == 1 and not any(x["step"] == nd["step"] and x["status"] == "error" for x in nodes):
                problems.append(f"{rid}: retried node {nd['step']} has no failed first attempt")
        last = max(steps)
        first_node = nodes[0]["name"]
        state0 = view.state(-1)
        state_end = view.state(last)
        if set(state0) != {"question", "user"}:
            problems.append(f"{rid}: input snapshot is {state0}")
        if last > 0 and state_end.get(first_node, {}).get("result") is not None:
            problems.append(f"{rid}: {first_node!r} should be deleted at the last step: {state_end}")
        if view.state(0).get(first_node, {}).get("result", {}).get("step") != 0:
            problems.append(f"{rid}: state at step 0 lacks {first_node}.result: {view.state(0)}")
        agg = client.query(
            f"SELECT sum(Spans), sum(LlmCalls), sum(CostUsd), sum(Errors), "
            f"multiIf(max(RootSeen) = 0, 'running', max(RootError) = 1, 'error', 'ok') "
            f"FROM {db}.flowscope_runs WHERE Project = 'default' AND RunId = {{rid:String}}",
            parameters={"rid": rid}).result_rows[0]
        if (int(agg[0]), int(agg[1]), Decimal(agg[2]), int(agg[3]), agg[4]) != (
                s["spans"], s["llm_calls"], Decimal(s["cost_usd"]), s["errors"], s["status"]):
            problems.append(f"{rid}: flowscope_runs {agg} disagrees with the summary {s}")
    fields = ("run_id", "flow", "service", "status", "start", "end", "spans", "llm_calls", "errors", "retries",
              "fallbacks", "cache_hits", "input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens",
              "cost_usd", "cache_saved_usd")
    listed, _ = store.list_runs("default", limit=10)
    for row in listed:
        s = views.RunView(row["run_id"], store.run_spans("default", row["run_id"])).summary()
        if {f: row[f] for f in fields} != {f: s[f] for f in fields}:
            problems.append(f"runs list {row} disagrees with the summary {s}")
    total = client.query(
        f"SELECT sum(toDecimal128OrZero(SpanAttributes['flowscope.cost.usd'], 18)) FROM {db}.otel_traces "
        f"WHERE SpanAttributes['flowscope.span.kind'] = 'llm'").result_rows[0][0]
    by_model = sum((Decimal(g["cost_usd"]) for g in store.costs("default", "model")), Decimal(0))
    if by_model != Decimal(total):
        problems.append(f"costs by model add up to {by_model}, the raw rows to {total}")
    return problems


def check_against_ingest(client: Client, db: str = "default", runs: int = 20) -> list[str]:
    """Compare bulk rows with what the real ingest path writes for :mod:`benchmarks.otlp_data` runs.

    The otlp_data runs go through :class:`flowscope_collector.ingest.rows.RowBuilder`
    and :func:`flowscope_collector.store.insert.insert_rows` (protobuf parsed by ClickHouse, as the collector
    does); both kinds of rows must carry the same attribute keys per kind of
    span (optional keys aside), the same resource keys and the same event
    names and keys, so the typed tables and every query see the same shape.
    """
    from flowscope_collector.ingest.batch import Batch
    from flowscope_collector.ingest.rows import RowBuilder
    from flowscope_collector.store.insert import insert_rows

    from .otlp_data import Generator, RunTruth, requests

    truths: list[RunTruth] = []
    batch = Batch()
    builder = RowBuilder()
    now = time.time_ns()
    for req in requests(Generator(3), runs, start_ns=now - DAY_NS, span_ns=DAY_NS, batch_spans=2000,
                        truths=truths):
        batch.extend(builder.build(req, "default"))
    insert_rows(client, db, batch.body())
    ids = "[" + ", ".join(f"'{t.run_id}'" for t in truths) + "]"
    problems = []
    shapes = []
    for where in (f"has({ids}, TraceId)", f"NOT has({ids}, TraceId)"):
        spans = {k: v - OPTIONAL_KEYS for k, v in key_sets(client, db, where).items()}
        res, ev = client.query(
            f"SELECT groupUniqArrayArray(mapKeys(ResourceAttributes)), "
            f"groupUniqArray(tuple(en, arraySort(mapKeys(ea)))) "
            f"FROM {db}.otel_traces LEFT ARRAY JOIN Events.Name AS en, Events.Attributes AS ea WHERE {where}"
        ).result_rows[0]
        shapes.append((spans, set(res), {(n, tuple(k)) for n, k in ev if n}))
    (real_spans, real_res, real_ev), (bulk_spans, bulk_res, bulk_ev) = shapes
    for kind in sorted(set(real_spans) | set(bulk_spans)):
        if real_spans.get(kind) != bulk_spans.get(kind):
            problems.append(f"{kind} spans: ingest keys {sorted(real_spans.get(kind, ()))}, "
                            f"bulk keys {sorted(bulk_spans.get(kind, ()))}")
    if real_res != bulk_res:
        problems.append(f"resource keys: ingest {sorted(real_res)}, bulk {sorted(bulk_res)}")
    if real_ev != bulk_ev:
        problems.append(f"events: ingest {sorted(real_ev)}, bulk {sorted(bulk_ev)}")
    return problems


def validate(client: Client, runs: int = 300, sample: int = 40, db: str = "flowscope_check") -> list[str]:
    """Load ``runs`` runs into a scratch database next to the benchmark's and check them; then drop it."""
    from flowscope_collector.store.schema import SchemaOptions, migrate

    client.command(f"DROP DATABASE IF EXISTS {db}")
    try:
        migrate(client, SchemaOptions(database=db))
        loaded = load(client, runs=runs, db=db)
        return check(client, loaded, sample=sample, db=db) + check_against_ingest(client, db)
    finally:
        client.command(f"DROP DATABASE IF EXISTS {db}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--spans", type=int, default=1_000_000)
    p.add_argument("--days", type=float, default=7)
    p.add_argument("--dir", help="chDB directory (default: a new temporary one)")
    p.add_argument("--check", type=int, default=40, metavar="N",
                   help="first validate N bulk-loaded runs in a scratch database (0: skip)")
    args = p.parse_args(argv)
    from flowscope_collector.store.connection import connect, parse_dsn
    from flowscope_collector.store.schema import SchemaOptions, migrate

    path = args.dir or tempfile.mkdtemp(prefix="flowscope-bulk-")
    client = connect(parse_dsn(f"chdb://{path}"))
    if args.check:
        problems = validate(client, sample=args.check)
        print("\n".join(problems) or f"check: {args.check} bulk-loaded runs read back through the API code paths "
                                     "agree with their raw rows, and bulk rows have the shape ingest writes")
        if problems:
            return 1
    migrate(client, SchemaOptions())
    loaded = load(client, spans=args.spans, days=args.days, progress=True)
    print(json.dumps({"dir": path, "runs": loaded.runs, "spans": loaded.spans, "seconds": round(loaded.seconds, 1),
                      "spans_per_s": round(loaded.spans_per_s)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
