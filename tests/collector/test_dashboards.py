"""Every dashboard panel's SQL, run against ClickHouse filled through the real ingest path.

Data goes in the way users send it: the flowscope SDK with the real ``openai``
client against the FakeProvider, exporting OTLP over HTTP to a collector
subprocess with its own chDB directory (plus plain OTel spans carrying
flowscope's retry, fallback and cache attributes, which the SDK emits only
through integrations tested elsewhere). Each service runs in its own process,
because an OTel TracerProvider's resource (service.name) is fixed per process.

Then the collector stops and another process opens the same chDB directory
with clickhouse-connect, as the collector reads it, and runs each panel's SQL
after expanding it the way Grafana and the ClickHouse plugin do:

1. frontend, ``applyConditionalAll``: ``$__conditionalAll(cond, $var)`` becomes
   ``1=1`` when ``$var`` is "All" (``$__all``) or empty, else ``cond``
   (a port of the plugin's ``CHDatasource.applyConditionalAll`` + ``getMacroArgs``);
2. frontend, template variables: ``${var:singlequote}`` → ``'a','b'`` (quotes
   escaped with a backslash), ``$var``/``${var}`` → the plugin's default format
   (a multi-value variable's array as ``'a','b'``, a single value raw); "All" without an
   ``allValue`` expands to every option, as Grafana does;
3. backend, the plugin's macros (``pkg/macros/macros.go``):
   ``$__timeFilter(c)`` → ``c >= toDateTime(from) AND c <= toDateTime(to)``,
   ``$__fromTime``/``$__toTime`` → ``toDateTime(s)``, ``_ms`` variants →
   ``fromUnixTimestamp64Milli(ms)``, ``$__timeInterval(c)`` →
   ``toStartOfInterval(toDateTime(c), INTERVAL <interval> second)``,
   ``$__timeInterval_ms``, ``$__interval_s``, ``$__dateFilter``, ``$__dateTimeFilter``/``$__dt``.
   Anything still starting with ``$`` afterwards fails the test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests._collector_kit import CollectorProcess

ROOT = Path(__file__).resolve().parents[2]
DASH_DIR = ROOT / "dashboards" / "grafana"
PROVISIONING = ROOT / "dashboards" / "provisioning"
INTERVAL_S = 60  # what Grafana would pick for a ~1h range on a full-width panel
MODEL = "gpt-4o-mini-2024-07-18"
CACHE_SAVED = Decimal("0.0125")

# --- macro expansion (see module docstring) ------------------------------------


@dataclass
class Var:
    value: list[str] | str  # "$__all" for All
    options: list[str]


def _macro_args(query: str, args_index: int) -> list[str]:
    """Port of the plugin's ``getMacroArgs``: split at top-level commas of the (...) at args_index."""
    args: list[str] = []
    depth = 0
    last = 1
    sub = query[args_index:]
    for m in re.finditer(r"\(|\)|,", sub):
        tok = m.group(0)
        if tok == "(":
            depth += 1
        elif tok == ")":
            depth -= 1
        if tok == "," and depth == 1:
            args.append(sub[last:m.end() - 1])
            last = m.end()
        if depth == 0:
            args.append(sub[last:m.end() - 1])
            return args
    return []


def apply_conditional_all(sql: str, variables: dict[str, Var]) -> str:
    macro = "$__conditionalAll("
    idx = sql.rfind(macro)
    while idx != -1:
        params = _macro_args(sql, idx + len(macro) - 1)
        if len(params) != 2:
            return sql
        phrase = params[0]
        m = re.search(r"(?<=\$\{)\w+(?=\})|(?<=\$)\w+", params[1].strip())
        if m:
            var = variables.get(m.group(0))
            current = "" if var is None else ",".join(var.value) if isinstance(var.value, list) else var.value
            if current in ("", "$__all"):
                phrase = "1=1"
        sql = sql.replace(f"{macro}{params[0]},{params[1]})", phrase, 1)
        idx = sql.rfind(macro)
    return sql


def _values(var: Var) -> list[str]:
    raw = var.value if isinstance(var.value, list) else [var.value]
    return var.options if raw == ["$__all"] else raw


def replace_variables(sql: str, variables: dict[str, Var], builtins: dict[str, str]) -> str:
    def fmt(name: str, how: str | None) -> str:
        if name in builtins:
            return builtins[name]
        var = variables[name]
        vals = _values(var)
        if how == "singlequote":
            return ",".join("'" + v.replace("'", "\\'") + "'" for v in vals)
        if how not in (None, "raw"):
            raise AssertionError(f"format {how!r} not modelled")
        if isinstance(var.value, list) or var.value == "$__all":  # the plugin quotes any array
            return "'" + "','".join(vals) + "'"
        return vals[0]

    names = sorted(set(variables) | set(builtins), key=len, reverse=True)
    sql = re.sub(r"\$\{(\w+)(?::(\w+))?\}", lambda m: fmt(m.group(1), m.group(2))
                 if m.group(1) in variables or m.group(1) in builtins else m.group(0), sql)
    for name in names:
        sql = re.sub(r"\$" + re.escape(name) + r"\b", lambda _m, n=name: fmt(n, None), sql)
    return sql


def expand_backend_macros(sql: str, frm: datetime, to: datetime, interval_s: int) -> str:
    f_s, t_s = int(frm.timestamp()), int(to.timestamp())
    f_ms, t_ms = int(frm.timestamp() * 1000), int(to.timestamp() * 1000)

    def one(name: str, args: list[str]) -> str:
        args = [a.strip() for a in args]
        if name == "fromTime":
            return f"toDateTime({f_s})"
        if name == "toTime":
            return f"toDateTime({t_s})"
        if name == "fromTime_ms":
            return f"fromUnixTimestamp64Milli({f_ms})"
        if name == "toTime_ms":
            return f"fromUnixTimestamp64Milli({t_ms})"
        if name == "timeFilter":
            (c,) = args
            return f"{c} >= toDateTime({f_s}) AND {c} <= toDateTime({t_s})"
        if name == "timeFilter_ms":
            (c,) = args
            return f"{c} >= fromUnixTimestamp64Milli({f_ms}) AND {c} <= fromUnixTimestamp64Milli({t_ms})"
        if name == "dateFilter":
            (c,) = args
            return f"{c} >= toDate('{frm:%Y-%m-%d}') AND {c} <= toDate('{to:%Y-%m-%d}')"
        if name in ("dateTimeFilter", "dt"):
            d, c = args
            return (f"({d} >= toDate('{frm:%Y-%m-%d}') AND {d} <= toDate('{to:%Y-%m-%d}')) AND "
                    f"({c} >= toDateTime({f_s}) AND {c} <= toDateTime({t_s}))")
        if name == "timeInterval":
            (c,) = args
            return f"toStartOfInterval(toDateTime({c}), INTERVAL {max(interval_s, 1)} second)"
        if name == "timeInterval_ms":
            (c,) = args
            return f"toStartOfInterval(toDateTime64({c}, 3), INTERVAL {max(interval_s * 1000, 1)} millisecond)"
        if name == "interval_s":
            return str(max(interval_s, 1))
        raise AssertionError(f"macro $__{name} is not one the plugin expands")

    out = []
    i = 0
    for m in re.finditer(r"\$__(\w+)", sql):
        if m.start() < i:
            continue
        out.append(sql[i:m.start()])
        name, end = m.group(1), m.end()
        args: list[str] = []
        if end < len(sql) and sql[end] == "(":
            args = _macro_args(sql, end)
            depth, j = 0, end
            while True:  # skip to the closing parenthesis
                depth += {"(": 1, ")": -1}.get(sql[j], 0)
                j += 1
                if depth == 0:
                    break
            end = j
        out.append(one(name, args))
        i = end
    out.append(sql[i:])
    return "".join(out)


def expand(sql: str, variables: dict[str, Var], frm: datetime, to: datetime) -> str:
    sql = apply_conditional_all(sql, variables)
    sql = replace_variables(sql, variables, {"__interval": f"{INTERVAL_S}s", "__interval_ms": str(INTERVAL_S * 1000)})
    sql = expand_backend_macros(sql, frm, to, INTERVAL_S)
    leftover = re.findall(r"\$\{?\w+", sql)
    assert not leftover, f"unexpanded {leftover} in:\n{sql}"
    return sql


def test_expander_matches_plugin_examples() -> None:
    """The expander reproduces the plugin's documented outputs, so the panel checks mean something."""
    frm, to = datetime.fromtimestamp(1415792726), datetime.fromtimestamp(1447328726)
    v = {"service": Var("$__all", ["a", "b"]), "model": Var(["x", "y'z"], ["x", "y'z"])}
    assert expand("$__timeFilter(time)", v, frm, to) == (
        "time >= toDateTime(1415792726) AND time <= toDateTime(1447328726)")
    assert expand("$__fromTime/$__toTime_ms", v, frm, to) == (
        "toDateTime(1415792726)/fromUnixTimestamp64Milli(1447328726000)")
    assert expand("$__timeInterval(column)", v, frm, to) == (
        f"toStartOfInterval(toDateTime(column), INTERVAL {INTERVAL_S} second)")
    sql = "a AND $__conditionalAll(S IN (${service:singlequote}), $service) AND $__conditionalAll(M IN (f(1, 2), ${model:singlequote}), $model)"
    assert expand(sql, v, frm, to) == "a AND 1=1 AND M IN (f(1, 2), 'x','y\\'z')"
    assert expand("${service:singlequote}|$service", v, frm, to) == "'a','b'|'a','b'"
    with pytest.raises(AssertionError):
        expand("$__nope(x)", v, frm, to)


# --- populating ClickHouse through the collector ---------------------------------


def _populate(url: str, service: str) -> dict[str, Any]:
    """Runs in a child process: one service's flows, exported to the collector."""
    import openai
    from opentelemetry import trace

    import flowscope
    from flowscope.testing import FakeProvider, Reply

    flowscope.init(service_name=service, endpoint=url, instrument=["openai"])
    tracer = trace.get_tracer("flowscope.tests.dashboards")
    runs: dict[str, str] = {}

    def manual_llm(model: str, inp: int, cached: int, out: int, **extra: Any) -> None:
        attrs = {"flowscope.span.kind": "llm", "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                 "gen_ai.request.model": model, "gen_ai.response.model": model,
                 "gen_ai.usage.input_tokens": inp, "gen_ai.usage.cache_read.input_tokens": cached,
                 "gen_ai.usage.output_tokens": out, **extra}
        with tracer.start_as_current_span(f"chat {model}", attributes=attrs):
            pass

    with FakeProvider() as fp:
        client = openai.OpenAI(base_url=fp.openai_base_url, api_key="sk-test", max_retries=0)
        msgs = [{"role": "user", "content": "hello"}]
        if service == "shop":
            fp.script(
                Reply(text="plan", input_tokens=1200, cached_tokens=800, output_tokens=300, model=MODEL),
                Reply(text="work", input_tokens=1000, output_tokens=200, model=MODEL),
                Reply(text="streamed answer", input_tokens=400, output_tokens=50, model=MODEL, latency_s=0.01),
            )
            with flowscope.run("checkout-flow") as run:
                with flowscope.node("plan"):
                    client.chat.completions.create(model="gpt-4o-mini", messages=msgs)
                with flowscope.node("work"):
                    client.chat.completions.create(model="gpt-4o-mini", messages=msgs)
                with flowscope.node("finish"):
                    stream = client.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True,
                                                            stream_options={"include_usage": True})
                    for _ in stream:
                        pass
            runs["checkout"] = run.id

            fp.script(Reply(status=500))
            with flowscope.run("checkout-flow") as run:
                with flowscope.node("lookup") as node:
                    node.record_retry(1, TimeoutError("upstream timed out"), backoff_s=0.5)
                    manual_llm(MODEL, 2000, 0, 100, **{"flowscope.retry.count": 2, "flowscope.fallback.from": "gpt-4o",
                                                       "flowscope.fallback.to": MODEL,
                                                       "flowscope.fallback.reason": "rate_limited"})
                with flowscope.node("charge-llm"):
                    try:
                        client.chat.completions.create(model="gpt-4o-mini", messages=msgs)
                    except openai.APIStatusError:
                        pass
                try:
                    with flowscope.node("charge", type="tool"):
                        raise ValueError("card declined")
                except ValueError:
                    pass
            runs["troubled"] = run.id

            fp.script(Reply(text="a", input_tokens=100000, output_tokens=1000, model=MODEL))
            try:
                with flowscope.run("budgeted-flow", budget_usd="0.00001") as run, flowscope.node("ask"):
                    # worst case (prompt + max_tokens=1) fits the budget; the second call's cannot
                    client.chat.completions.create(model="gpt-4o-mini", messages=msgs, max_tokens=1)
                    client.chat.completions.create(model="gpt-4o-mini", messages=msgs, max_tokens=1)
            except flowscope.BudgetExceeded:
                pass
            runs["budget"] = run.id

            fp.script(Reply(text="?", input_tokens=10, output_tokens=5, model="mystery-model-1"))
            with flowscope.run("checkout-flow") as run, flowscope.node("guess"):
                client.chat.completions.create(model="mystery-model-1", messages=msgs)
                # priced but for a part the catalog had no rate for: a lower bound
                manual_llm(MODEL, 10, 0, 5, **{"flowscope.cost.source": "partial", "flowscope.cost.usd": "0.0000045",
                                               "flowscope.cost.unpriced_parts": "service_tier:priority"})
            runs["unpriced"] = run.id
        else:
            fp.script(Reply(text="answer", input_tokens=3000, cached_tokens=2000, output_tokens=400, model="gpt-4o"))
            with flowscope.run("triage-flow") as run:
                with flowscope.node("classify"):
                    manual_llm(MODEL, 500, 0, 100, **{"flowscope.cache.hit": True,
                                                      "flowscope.cache.saved_usd": str(CACHE_SAVED)})
                with flowscope.node("answer"):
                    client.chat.completions.create(model="gpt-4o", messages=msgs)
            runs["triage"] = run.id
    assert flowscope.force_flush(timeout_s=60)  # everything, however loaded the machine; shutdown waits 2 s at most
    flowscope.shutdown()
    return runs


def _query_all(data_dir: str, queries: dict[str, str]) -> dict[str, Any]:
    """Runs in a child process: execute each query on the chDB directory like the collector reads it."""
    from flowscope_collector.store.connection import connect, parse_dsn

    client = connect(parse_dsn(f"chdb://{data_dir}"))

    def plain(v: Any) -> Any:
        if isinstance(v, Decimal):
            return str(v)
        if isinstance(v, datetime | date):
            return v.isoformat()
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, bytes):
            return v.decode("utf-8", "replace")
        return v

    out: dict[str, Any] = {}
    for key, sql in queries.items():
        try:
            res = client.query(sql)
            cols, types = list(res.column_names), [t.name for t in res.column_types]
            if not cols:  # an empty result carries no header here; ask ClickHouse for the shape
                desc = client.query(f"DESCRIBE TABLE ({sql})").result_rows
                cols, types = [r[0] for r in desc], [r[1] for r in desc]
            out[key] = {"columns": cols, "types": types, "rows": [plain(list(r)) for r in res.result_rows]}
        except Exception as exc:  # reported per query so one failure names its panel
            out[key] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
    return out


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.collector.test_dashboards", *args], cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})


def _result(proc: subprocess.Popen[str], stdin: str | None = None) -> Any:
    out, err = proc.communicate(stdin, timeout=240)
    assert proc.returncode == 0, f"child {proc.args} failed:\n{err[-4000:]}"
    return json.loads(out.strip().splitlines()[-1])


def _child(*args: str, stdin: str | None = None) -> Any:
    return _result(_spawn(*args), stdin)


@dataclass
class Populated:
    data_dir: Path
    runs: dict[str, str]
    costs: dict[str, Decimal]
    spans: dict[str, int]
    frm: datetime
    to: datetime


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Populated]:
    data_dir = tmp_path_factory.mktemp("dashboards") / "data"
    frm = datetime.fromtimestamp(int(time.time()) - 3600)
    col = CollectorProcess(data_dir).start()
    try:
        children = [_spawn("populate", col.url, service) for service in ("shop", "support")]
        runs = {k: v for child in children for k, v in _result(child).items()}
        expected_spans = {"checkout": 7, "troubled": 6, "budget": 3, "unpriced": 4, "triage": 5}
        costs, spans = {}, {}
        for key, run_id in runs.items():
            s = col.wait_for_run(run_id, spans=expected_spans[key])
            costs[key], spans[key] = Decimal(s["cost_usd"]), s["spans"]
    finally:
        col.stop()
    yield Populated(data_dir, runs, costs, spans, frm, datetime.fromtimestamp(int(time.time()) + 300))


# --- the dashboards ---------------------------------------------------------------


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASH_DIR.glob("*.json"))}


def panels_of(d: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in d["panels"]:
        out += p.get("panels", []) if p["type"] == "row" else [p]
    return out


NUMERIC = re.compile(r"^(Nullable\()?(U?Int\d+|Float\d+|Decimal.*|Bool)")
TRACE_COLUMNS = {"traceID", "spanID", "parentSpanID", "serviceName", "operationName", "startTime", "duration",
                 "tags", "serviceTags"}
TIME_MACROS = ("$__timeFilter", "$__fromTime", "$__toTime", "$__timeInterval", "$__dateFilter", "$__dt")


def test_committed_json_matches_generator() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "dashboards" / "generate.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_dashboard_structure() -> None:
    dashboards = load_dashboards()
    assert set(dashboards) == {"llm-cost.json", "reliability.json", "cache.json", "run-explorer.json"}
    uids = {d["uid"] for d in dashboards.values()}
    assert len(uids) == 4
    ds_conf = yaml.safe_load((PROVISIONING / "datasources" / "flowscope-clickhouse.yaml").read_text())
    ds = ds_conf["datasources"][0]
    assert ds["type"] == "grafana-clickhouse-datasource"
    assert ds["jsonData"]["traces"]["defaultTable"] == "otel_traces"
    prov = yaml.safe_load((PROVISIONING / "dashboards" / "flowscope.yaml").read_text())
    assert prov["providers"][0]["type"] == "file"
    for name, d in dashboards.items():
        variables = {v["name"]: v for v in d["templating"]["list"]}
        assert {"datasource", "project", "service", "flow", "model"} <= set(variables), name
        assert variables["datasource"]["current"]["value"] == ds["uid"]
        for key in ("project", "service", "flow", "model"):
            assert variables[key]["multi"] and variables[key]["includeAll"], (name, key)
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), name
        for p in panels_of(d):
            assert p["gridPos"]["x"] >= 0 and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
            (t,) = p["targets"]
            assert t["datasource"] == {"type": "grafana-clickhouse-datasource", "uid": "${datasource}"}
            assert t["editorType"] == "sql"
            want = {"timeseries": 0, "traces": 3}.get(p["type"], 1)
            assert t["format"] == want, (name, p["title"])
            assert any(m in t["rawSql"] for m in TIME_MACROS), f"{name}/{p['title']} ignores the time picker"
            for o in p["fieldConfig"]["overrides"]:
                for prop in o["properties"]:
                    for link in prop["value"] if prop["id"] == "links" else []:
                        assert "var-run=${__value.raw}" in link["url"] and "/d/flowscope-run-explorer/" in link["url"]
    titles = {p["title"] for d in dashboards.values() for p in panels_of(d)}
    for required in ("Cost by model", "Cost by provider", "Cost by service", "Cost by flow", "Tokens by type",
                     "Cost per run distribution", "Top 20 most expensive runs", "Unpriced calls",
                     "Error rate by node", "Error rate by model", "Retries and fallbacks", "Budget stops",
                     "Latency per node", "Latency per model", "Time to first chunk by model", "Cache hit rate",
                     "Saved by cache hits", "Prompt-cache read tokens", "Saved by provider prompt cache (est.)",
                     "Node sequence", "Cost by node", "Trace waterfall"):
        assert required in titles, required


def _check_panel(p: dict[str, Any], res: dict[str, Any], *, require_rows: bool) -> None:
    where = p["title"]
    assert "error" not in res, f"{where}: {res.get('error')}\n{p['targets'][0]['rawSql']}"
    cols, types, rows = res["columns"], res["types"], res["rows"]
    assert cols and all(cols) and len(cols) == len(set(cols)), f"{where}: columns {cols}"
    numeric = [c for c, t in zip(cols, types, strict=True) if NUMERIC.match(t)]
    assert not [t for t in types if "AggregateFunction" in t], f"{where}: aggregate-state types {types}"
    if require_rows:
        assert rows, f"{where}: no rows"
    kind = p["type"]
    if kind == "timeseries":
        assert cols[0] == "time" and types[0].startswith("DateTime"), f"{where}: first column must be time, {types}"
        assert [c for c in numeric if c != "time"], f"{where}: no numeric value column ({types})"
        assert all(t.startswith(("String", "LowCardinality(String")) or NUMERIC.match(t)
                   for t in types[1:]), f"{where}: {types}"
    elif kind == "stat":
        assert numeric, f"{where}: stat needs a number ({types})"
        assert len(rows) == 1, f"{where}: stat should be one row, got {len(rows)}"
    elif kind == "histogram":
        assert numeric, where
    elif kind == "barchart":
        x = p["options"]["xField"]
        assert x in cols and numeric, f"{where}: {cols} {types}"
    elif kind == "table":
        named = {o["matcher"]["options"] for o in p["fieldConfig"]["overrides"]}
        assert named <= set(cols), f"{where}: overrides name missing columns {named - set(cols)}"
    elif kind == "traces":
        assert set(cols) >= TRACE_COLUMNS, f"{where}: missing {TRACE_COLUMNS - set(cols)}"
        typ = dict(zip(cols, types, strict=True))
        assert typ["startTime"].startswith("Float") and typ["duration"].startswith("Float"), typ
        assert typ["tags"] == typ["serviceTags"] == "Array(Map(String, String))", typ
        assert typ["logs"].replace("`", "").startswith("Array(Tuple(name String, timestamp String, fields Array(Map(String, String))"), typ
    else:
        raise AssertionError(f"{where}: panel type {kind} not checked")


def _scenario(populated: Populated, selection: dict[str, list[str]], run_key: str,
              tag: str) -> tuple[dict[str, str], dict[str, tuple[str, dict[str, Any]]]]:
    """Expand every variable and panel query for one selection of the variables."""
    queries: dict[str, str] = {}
    index: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, d in load_dashboards().items():
        variables: dict[str, Var] = {}
        for v in d["templating"]["list"]:
            if v["type"] == "query":
                value: list[str] | str = selection.get(v["name"], ["$__all"]) if v["multi"] else populated.runs[run_key]
                variables[v["name"]] = Var(value, [])
                queries[f"{tag}|{name}|var|{v['name']}"] = expand(v["query"]["rawSql"], variables, populated.frm,
                                                                  populated.to)
        for p in panels_of(d):
            key = f"{tag}|{name}|panel|{p['id']}"
            queries[key] = expand(p["targets"][0]["rawSql"], variables, populated.frm, populated.to)
            index[key] = (name, p)
    return queries, index


@pytest.fixture(scope="module")
def results(populated: Populated) -> dict[str, Any]:
    qa, ia = _scenario(populated, {}, "checkout", "all")
    qb, ib = _scenario(populated, {"project": ["default"], "service": ["shop"], "flow": ["checkout-flow"],
                                   "model": [MODEL]}, "troubled", "some")
    out = _child("query", str(populated.data_dir), stdin=json.dumps({**qa, **qb}))
    out["__index__"] = {**ia, **ib}
    return out


def _panel(results: dict[str, Any], tag: str, dash: str, title: str) -> dict[str, Any]:
    for key, (name, p) in results["__index__"].items():
        if key.startswith(tag + "|") and name == dash and p["title"] == title:
            return results[key]
    raise KeyError(title)


def _col(res: dict[str, Any], name: str) -> list[Any]:
    assert "error" not in res, res["error"]
    i = res["columns"].index(name)
    return [r[i] for r in res["rows"]]


def test_every_panel_runs_and_has_the_columns_its_type_needs(results: dict[str, Any]) -> None:
    for key, (_name, p) in results["__index__"].items():
        _check_panel(p, results[key], require_rows=key.startswith("all|"))
    for key, res in results.items():
        if "|var|" in key:
            assert "error" not in res, f"{key}: {res['error']}"


def test_variables_list_what_was_ingested(results: dict[str, Any], populated: Populated) -> None:
    def var(name: str) -> list[Any]:
        return [r[0] for r in results[f"all|llm-cost.json|var|{name}"]["rows"]]

    assert var("service") == ["shop", "support"]
    assert {"checkout-flow", "budgeted-flow", "triage-flow"} <= set(var("flow"))
    assert {MODEL, "gpt-4o", "mystery-model-1"} <= set(var("model"))
    assert var("project") == ["default"]
    run_ids = [r[0] for r in results["all|run-explorer.json|var|run"]["rows"]]
    assert set(populated.runs.values()) <= set(run_ids)
    shop_only = [r[0] for r in results["some|run-explorer.json|var|run"]["rows"]]
    assert populated.runs["troubled"] in shop_only and populated.runs["triage"] not in shop_only


def test_cost_panels_agree_with_the_collector(results: dict[str, Any], populated: Populated) -> None:
    total = sum(populated.costs.values())
    assert total > 0
    (cost,) = _col(_panel(results, "all", "llm-cost.json", "Total cost"), "cost_usd")
    assert abs(Decimal(str(cost)) - total) < Decimal("1e-12")
    assert _col(_panel(results, "all", "llm-cost.json", "Runs"), "runs") == [5]
    assert _col(_panel(results, "all", "llm-cost.json", "Unpriced calls"), "unpriced_calls") == [1]
    assert _col(_panel(results, "all", "llm-cost.json", "Unpriced calls"), "partially_priced_calls") == [1]
    top = _panel(results, "all", "llm-cost.json", "Top 20 most expensive runs")
    most = max(populated.costs, key=lambda k: populated.costs[k])
    assert _col(top, "RunId")[0] == populated.runs[most]
    assert len(_col(top, "RunId")) == 5
    flagged = {r: (u, p) for r, u, p in zip(_col(top, "RunId"), _col(top, "unpriced_calls"),
                                            _col(top, "partially_priced_calls"), strict=True) if u or p}
    assert flagged == {populated.runs["unpriced"]: (1, 1)}
    by_service = _panel(results, "all", "llm-cost.json", "Cost by service")
    assert set(_col(by_service, "ServiceName")) == {"shop", "support"}
    assert set(_col(_panel(results, "all", "llm-cost.json", "Cost by flow"), "Flow")) == {
        "checkout-flow", "budgeted-flow", "triage-flow"}
    unpriced = _panel(results, "all", "llm-cost.json", "Unpriced calls by model")
    assert _col(unpriced, "Model") == [MODEL, "mystery-model-1"]
    assert _col(unpriced, "unpriced_calls") == [0, 1] and _col(unpriced, "partially_priced_calls") == [1, 0]
    # filtered: shop + checkout-flow + one model is a strict, non-empty subset
    (some,) = _col(_panel(results, "some", "llm-cost.json", "Total cost"), "cost_usd")
    assert 0 < some < float(total)
    assert set(_col(_panel(results, "some", "llm-cost.json", "Cost by service"), "ServiceName")) == {"shop"}
    assert set(_col(_panel(results, "some", "llm-cost.json", "Cost by model"), "Model")) == {MODEL}


def test_reliability_panels(results: dict[str, Any]) -> None:
    assert _col(_panel(results, "all", "reliability.json", "Retries"), "retries") == [3]
    assert _col(_panel(results, "all", "reliability.json", "Fallbacks"), "fallbacks") == [1]
    assert _col(_panel(results, "all", "reliability.json", "Budget stops"), "budget_stops") == [1]
    (rate,) = _col(_panel(results, "all", "reliability.json", "LLM error rate"), "error_rate")
    assert 0 < rate < 1
    errors = _panel(results, "all", "reliability.json", "Errors by node")
    by_node = dict(zip(_col(errors, "node"), _col(errors, "errors"), strict=True))
    assert by_node["charge"] == 1 and by_node["plan"] == 0
    assert dict(zip(_col(errors, "node"), _col(errors, "top_error"), strict=True))["charge"] == "ValueError"
    lat = _panel(results, "all", "reliability.json", "Latency per model")
    assert all(a <= b <= c for a, b, c in zip(_col(lat, "p50_ms"), _col(lat, "p95_ms"), _col(lat, "p99_ms"),
                                              strict=True))
    ttfc = _panel(results, "all", "reliability.json", "Time to first chunk by model")
    assert _col(ttfc, "Model") and all(v > 0 for v in _col(ttfc, "ttfc_p50"))


def test_cache_panels(results: dict[str, Any]) -> None:
    (saved,) = _col(_panel(results, "all", "cache.json", "Saved by cache hits"), "saved_usd")
    assert Decimal(str(saved)) == CACHE_SAVED
    (rate,) = _col(_panel(results, "all", "cache.json", "Cache hit rate"), "hit_rate")
    assert 0 < rate < 1
    (tokens,) = _col(_panel(results, "all", "cache.json", "Prompt-cache read tokens"), "cache_read_tokens")
    assert tokens == 800 + 2000
    (prompt_saved,) = _col(_panel(results, "all", "cache.json", "Saved by provider prompt cache (est.)"),
                           "prompt_cache_saved_usd")
    # gpt-4o-mini: 800 cached at 0.15 vs 0.075 $/M; gpt-4o: 2000 cached at 2.50 vs 1.25 $/M
    assert abs(prompt_saved - (800 * 0.075 + 2000 * 1.25) / 1e6) < 1e-12


def test_run_explorer(results: dict[str, Any], populated: Populated) -> None:
    nodes = _panel(results, "all", "run-explorer.json", "Node sequence")
    assert _col(nodes, "node") == ["plan", "work", "finish"] and _col(nodes, "step") == [0, 1, 2]
    assert _col(nodes, "llm_calls") == [1, 1, 1]
    by_node = _panel(results, "all", "run-explorer.json", "Cost by node")
    assert abs(Decimal(str(sum(_col(by_node, "cost_usd")))) - populated.costs["checkout"]) < Decimal("1e-12")
    (cost,) = _col(_panel(results, "all", "run-explorer.json", "Cost"), "cost_usd")
    assert abs(Decimal(str(cost)) - populated.costs["checkout"]) < Decimal("1e-12")
    assert _col(_panel(results, "all", "run-explorer.json", "Status"), "status") == [0]
    trace = _panel(results, "all", "run-explorer.json", "Trace waterfall")
    assert len(trace["rows"]) == populated.spans["checkout"]
    assert len(set(_col(trace, "traceID"))) == 1
    span_ids = set(_col(trace, "spanID"))
    assert all(p == "" or p in span_ids for p in _col(trace, "parentSpanID"))
    assert sorted(_col(trace, "operationName"))[0].startswith("chat ")
    # the second scenario selects the troubled run: its error shows in status and the node table
    troubled = _panel(results, "some", "run-explorer.json", "Node sequence")
    assert dict(zip(_col(troubled, "node"), _col(troubled, "status"), strict=True))["charge"] == "error"
    assert _col(_panel(results, "some", "run-explorer.json", "Retries"), "retries") == [3]


if __name__ == "__main__":  # child-process entry points used by the fixtures above
    if sys.argv[1] == "populate":
        print(json.dumps(_populate(sys.argv[2], sys.argv[3])))
    elif sys.argv[1] == "query":
        print(json.dumps(_query_all(sys.argv[2], json.loads(sys.stdin.read()))))
    else:
        raise SystemExit(f"unknown command {sys.argv[1]!r}")
