"""The fast ingest path (ClickHouse parses OTLP protobuf) stores exactly what the Python reference
(``_reference_rows``) says.

Runs in a child process with its own chDB directory (one engine per process):
every kind of attribute value, events, links, spans that need Python (LLM
spans to price, a kvlist, over-long values, too many attributes), a client
claiming another project, and an insert retried with the same token.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(r'''
    import json, os, sys, tempfile
    import clickhouse_connect
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue
    from flowscope_collector.ingest.batch import Batch
    from flowscope_collector.ingest.rows import RowBuilder
    from flowscope_collector.store.insert import insert_rows
    from flowscope_collector.store.schema import SchemaOptions, migrate
    from tests.collector._reference_rows import COLUMNS, reference_columns

    def kv(kvs, key, **value):
        a = kvs.add(); a.key = key
        for k, v in value.items():
            if k == "array":
                for item in v:
                    a.value.array_value.values.add().CopyFrom(item)
            elif k == "kvlist":
                for ik, iv in v.items():
                    e = a.value.kvlist_value.values.add(); e.key = ik; e.value.CopyFrom(iv)
            else:
                setattr(a.value, k, v)

    def request():
        req = ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        kv(rs.resource.attributes, "service.name", string_value="eq-svc")
        kv(rs.resource.attributes, "flowscope.project", string_value="someone-else")  # must not win
        kv(rs.resource.attributes, "process.pid", int_value=42)
        ss = rs.scope_spans.add(); ss.scope.name = "eq"; ss.scope.version = "1.2"
        t = 1_700_000_000_000_000_000
        def span(name, **kw):
            s = ss.spans.add(trace_id=os.urandom(16), span_id=os.urandom(8), name=name,
                             start_time_unix_nano=t, end_time_unix_nano=t + 1234567, **kw)
            return s
        s = span("values", kind=3, parent_span_id=os.urandom(8))
        s.trace_state = "k=v"
        for key, val in [("s", dict(string_value="héllo/\"x\"\n")), ("i", dict(int_value=-7)),
                         ("b", dict(bool_value=True)), ("f", dict(bool_value=False)),
                         ("d", dict(double_value=0.25)), ("d3", dict(double_value=3.0)),
                         ("by", dict(bytes_value=b"\x00\x01bin")), ("empty", {}),
                         ("arr_s", dict(array=[AnyValue(string_value="a/b"), AnyValue(string_value="ü\"")])),
                         ("arr_n", dict(array=[AnyValue(int_value=1), AnyValue(double_value=2.5),
                                               AnyValue(double_value=2.0), AnyValue(bool_value=False)])),
                         ("arr_empty", dict(array=[]))]:
            kv(s.attributes, key, **val)
        s.status.code = 2; s.status.message = "boom"
        ev = s.events.add(time_unix_nano=t + 5, name="flowscope.state")
        kv(ev.attributes, "flowscope.state.seq", int_value=0)
        kv(ev.attributes, "flowscope.state.value", string_value='{"a": 1}')
        link = s.links.add(trace_id=os.urandom(16), span_id=os.urandom(8), trace_state="l=1")
        kv(link.attributes, "why", string_value="retry")
        nested = span("nested")
        kv(nested.attributes, "map", kvlist={"x": AnyValue(int_value=1), "y": AnyValue(string_value="z")})
        kv(nested.attributes, "arr_arr", array=[AnyValue(array_value={"values": [AnyValue(int_value=1)]})])
        llm = span("chat gpt-4o-mini", kind=3)  # a foreign producer's LLM span: the collector prices it
        kv(llm.attributes, "gen_ai.operation.name", string_value="chat")
        kv(llm.attributes, "gen_ai.system", string_value="openai")
        kv(llm.attributes, "gen_ai.request.model", string_value="gpt-4o-mini")
        kv(llm.attributes, "gen_ai.usage.input_tokens", int_value=1000)
        kv(llm.attributes, "gen_ai.usage.output_tokens", int_value=100)
        kv(llm.attributes, "gen_ai.response.finish_reasons", array=[AnyValue(string_value="stop")])
        big = span("big")
        kv(big.attributes, "long", string_value="x" * 70_000)
        many = span("many")
        for i in range(300):
            kv(many.attributes, f"k{i}", int_value=i)
        for i in range(50):
            sdk = span(f"sdk node {i}")
            for k, v in (("flowscope.span.kind", "node"), ("flowscope.node.name", f"n{i}"),
                         ("flowscope.run.id", "r" * 32)):
                kv(sdk.attributes, k, string_value=v)
            kv(sdk.attributes, "flowscope.node.step", int_value=i)
        return req

    base = request()
    fast, ref = ExportTraceServiceRequest(), ExportTraceServiceRequest()
    fast.CopyFrom(base); ref.CopyFrom(base)
    builder = RowBuilder()
    batch = builder.build(fast, "proj-a")
    expected = reference_columns(ref, "proj-a")
    c = clickhouse_connect.get_client(dsn="chdb://" + tempfile.mkdtemp())
    migrate(c, SchemaOptions())
    settings = {"insert_deduplication_token": "tok-1", "deduplicate_blocks_in_dependent_materialized_views": 1}
    merged = Batch(); merged.extend(batch)
    insert_rows(c, "default", merged.body(), settings)
    insert_rows(c, "default", merged.body(), settings)  # a retried insert: dropped
    cols = ", ".join(f"`{x}`" for x in COLUMNS)
    got = c.query(f"SELECT {cols}, toUnixTimestamp64Nano(Timestamp), "
                  "arrayMap(x -> toUnixTimestamp64Nano(x), `Events.Timestamp`) FROM otel_traces").result_rows
    def norm(row):
        return [v if not isinstance(v, (list, dict)) else v for v in row]
    by_id = {r[2]: r for r in got}
    exp_rows = list(zip(*expected))
    diffs = []
    for row in exp_rows:
        g = by_id.get(row[2])
        if g is None:
            diffs.append(["missing", row[5]]); continue
        for i, name in enumerate(COLUMNS):
            want, have = row[i], g[i]
            if name == "Timestamp":
                have = g[len(COLUMNS)]
            if name == "Events.Timestamp":
                have = g[len(COLUMNS) + 1]
            if name.endswith("Attributes") and isinstance(want, list):
                have = [dict(x) for x in have]
            elif name.endswith("Attributes"):
                have = dict(have)
            if want != have:
                diffs.append([row[5], name, str(want)[:300], str(have)[:300]])
    print(json.dumps({"rows": len(got), "expected": len(exp_rows), "python_spans": batch.python_spans,
                      "spans": batch.spans, "diffs": diffs,
                      "flowscope_spans": c.query("SELECT count() FROM flowscope_spans").result_rows[0][0]}))
''')


def test_fast_path_rows_equal_the_python_reference(tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["diffs"] == []
    assert res["rows"] == res["expected"] == res["spans"] == 55 == res["flowscope_spans"]
    # only the LLM span to price, the kvlist/nested one, the over-long value and the 300 attributes
    assert res["python_spans"] == 4
