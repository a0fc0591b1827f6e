"""Deployment files, checked without a Docker engine or a Kubernetes cluster.

Compose, Kubernetes and OpenTelemetry Collector files are parsed and
cross-checked against each other and against the code (every env var set is
one the collector reads, every probe path is a route, every mounted file
exists). The Dockerfile's health check runs against a real collector. The
cluster DDL goes through ClickHouse's own parser (chDB ``EXPLAIN AST``, which
accepts ``ON CLUSTER``), and the sharded layout is created for real in chDB
with a one-shard local cluster: spans inserted into the Distributed
``otel_traces`` must reach every derived table, and every dashboard panel must
run on the Distributed tables.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowscope_collector.store.connection import parse_dsn
from flowscope_collector.store.schema import SchemaOptions, load_migrations, shard_statements, sharded_tables

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
COLLECTOR_SRC = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "collector").rglob("*.py"))


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))


def k8s_docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    return docs


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in k8s_docs() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def collector_reads(env_name: str) -> bool:
    """True when the collector's code reads this variable (literally or as FLOWSCOPE_ + setting name)."""
    if f'"{env_name}"' in COLLECTOR_SRC:
        return True
    suffix = env_name.removeprefix("FLOWSCOPE_").lower()
    return env_name.startswith("FLOWSCOPE_") and '"FLOWSCOPE_" + name.upper()' in COLLECTOR_SRC and \
        f'"{suffix}"' in COLLECTOR_SRC


def route_paths() -> set[str]:
    return set(re.findall(r'@router\.(?:get|post)\("([^"]+)"', COLLECTOR_SRC))


# --- Dockerfile -------------------------------------------------------------------


def dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text(encoding="utf-8")


def test_dockerfile_runs_unprivileged_and_has_a_healthcheck() -> None:
    text = dockerfile()
    final = text.split("\nFROM ")[-1]  # the runtime stage
    users = re.findall(r"^USER\s+(\S+)", final, re.M)
    assert users, "runtime stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid not in ("0", "root")
    assert re.search(rf"useradd[^\n]*--uid {uid}\b", final), "the USER uid is not created"
    assert re.search(r"^EXPOSE 4318$", final, re.M)
    assert "HEALTHCHECK" in final and "/healthz" in final
    assert re.search(r'^ENTRYPOINT \["flowscope-collector"\]', final, re.M)
    assert 'flowscope-collector = "flowscope_collector.cli:main"' in (ROOT / "pyproject.toml").read_text()
    for src in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for item in src.split():
            assert (ROOT / item).exists(), f"COPY source {item} missing"
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert not {"sdk", "collector", "pyproject.toml", "README.md"} & set(ignored)


def test_dockerfile_healthcheck_command_works_against_a_real_collector(collector) -> None:
    m = re.search(r'HEALTHCHECK [^\n]*\\\n\s+CMD (\[.*\])', dockerfile())
    assert m, "HEALTHCHECK must be in exec form"
    argv = json.loads(m.group(1))
    assert argv[:2] == ["python", "-c"]
    env = {**os.environ, "FLOWSCOPE_PORT": str(collector.port)}
    ok = subprocess.run([sys.executable, "-c", argv[2]], env=env, timeout=30)
    assert ok.returncode == 0
    env["FLOWSCOPE_PORT"] = "1"  # nothing listens there: the check must fail, not pass vacuously
    bad = subprocess.run([sys.executable, "-c", argv[2]], env=env, timeout=30, capture_output=True)
    assert bad.returncode != 0


# --- docker compose -----------------------------------------------------------------


def test_compose_services_ports_volumes_and_healthchecks() -> None:
    c = compose()
    svc = c["services"]
    assert set(svc) == {"clickhouse", "collector", "grafana", "otel-collector"}
    assert svc["otel-collector"]["profiles"] == ["otel"]
    assert all("profiles" not in svc[s] for s in ("clickhouse", "collector", "grafana"))
    for name in ("clickhouse", "collector", "grafana"):
        hc = svc[name]["healthcheck"]["test"]
        assert hc[0] in ("CMD", "CMD-SHELL") and len(hc) > 1, name
    assert "/healthz" in " ".join(svc["collector"]["healthcheck"]["test"])

    def published(s: str) -> set[int]:
        return {int(str(p).split(":")[-1]) for p in svc[s].get("ports", [])}

    assert 4318 in published("collector")
    assert {8123, 9000} <= published("clickhouse")
    assert 3000 in published("grafana")
    assert {4317, 4318} <= published("otel-collector")

    for name in ("collector", "grafana", "otel-collector"):
        deps = svc[name]["depends_on"]
        assert all(v["condition"] == "service_healthy" for v in deps.values()), name

    build = svc["collector"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == (DEPLOY / "Dockerfile").resolve()

    named = set(c["volumes"])
    for name, s in svc.items():
        for vol in s.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("."):
                assert (DEPLOY / src).exists(), f"{name}: mount source {src} missing"
            else:
                assert src in named, f"{name}: volume {src} not declared"
    assert any(v.endswith(":/var/lib/flowscope") for v in svc["collector"]["volumes"])
    assert svc["collector"]["environment"]["FLOWSCOPE_WAL_DIR"].startswith("/var/lib/flowscope/")
    assert any(v.endswith(":/var/lib/clickhouse") for v in svc["clickhouse"]["volumes"])


def test_compose_collector_env_is_what_the_collector_reads() -> None:
    env = compose()["services"]["collector"]["environment"]
    assert {"FLOWSCOPE_CLICKHOUSE_DSN", "FLOWSCOPE_API_KEYS"} <= set(env)
    for key in env:
        assert collector_reads(key), f"compose sets {key}, which the collector never reads"
    dsn = env["FLOWSCOPE_CLICKHOUSE_DSN"].replace("${FLOWSCOPE_CLICKHOUSE_PASSWORD}", "pw")
    target = parse_dsn(dsn)
    assert not target.embedded and target.database == "flowscope"
    assert "@clickhouse:8123/" in dsn
    ch_env = compose()["services"]["clickhouse"]["environment"]
    assert ch_env["CLICKHOUSE_DB"] == target.database


def test_compose_required_variables_are_in_env_example() -> None:
    text = (DEPLOY / "docker-compose.yml").read_text()
    example = {line.split("=", 1)[0] for line in (DEPLOY / ".env.example").read_text().splitlines()
               if line and not line.startswith("#")}
    required = set(re.findall(r"\$\{(\w+):\?", text))
    assert required and required <= example, required - example
    users_xml = (DEPLOY / "clickhouse" / "users.d" / "flowscope-users.xml").read_text()
    for var in re.findall(r'from_env="(\w+)"', users_xml):
        assert var in compose()["services"]["clickhouse"]["environment"], var


def test_grafana_gets_plugin_datasource_and_dashboards() -> None:
    g = compose()["services"]["grafana"]
    assert "grafana-clickhouse-datasource" in g["environment"]["GF_INSTALL_PLUGINS"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in g["volumes"]}
    ds_dir = DEPLOY / mounts["/etc/grafana/provisioning/datasources"]
    ds_text = "\n".join(re.sub(r"#[^\n]*", "", p.read_text()) for p in ds_dir.glob("*.yaml"))
    for var in re.findall(r"\$\{(\w+)\}", ds_text):
        assert var in g["environment"], f"datasource provisioning needs {var}"
    prov = yaml.safe_load(next((DEPLOY / mounts["/etc/grafana/provisioning/dashboards"]).glob("*.yaml")).read_text())
    path = prov["providers"][0]["options"]["path"]
    assert path in mounts, "the dashboard provider reads a folder nothing is mounted at"
    assert sorted(p.name for p in (DEPLOY / mounts[path]).glob("*.json")) == [
        "cache.json", "llm-cost.json", "reliability.json", "run-explorer.json"]
    home = g["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (DEPLOY / mounts[path] / Path(home).name).exists() and home.startswith(path)


# --- OpenTelemetry Collector configs -------------------------------------------------


def otel(name: str) -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "otel" / name).read_text())


def _pipelines_resolve(cfg: dict[str, Any]) -> None:
    for ext in cfg["service"].get("extensions", []):
        assert ext in cfg["extensions"]
    for pipe in cfg["service"]["pipelines"].values():
        for section in ("receivers", "processors", "exporters"):
            for comp in pipe.get(section, []):
                assert comp in cfg[section], f"{section}: {comp} not defined"


def test_otel_gateway_config_forwards_to_the_collector() -> None:
    cfg = otel("otel-collector.yaml")
    _pipelines_resolve(cfg)
    (exporter,) = cfg["service"]["pipelines"]["traces"]["exporters"]
    assert exporter.startswith("otlphttp")
    assert cfg["exporters"][exporter]["endpoint"] == "${env:FLOWSCOPE_ENDPOINT}"
    env = compose()["services"]["otel-collector"]["environment"]
    assert env["FLOWSCOPE_ENDPOINT"] == "http://collector:4318"
    assert cfg["processors"]["batch"]["metadata_keys"] == ["authorization"]  # keys (projects) stay apart


def test_otel_loadbalancing_routes_by_trace_id_to_the_headless_service() -> None:
    cfg = otel("otel-collector-loadbalancing.yaml")
    _pipelines_resolve(cfg)
    lb = cfg["exporters"]["loadbalancing/flowscope"]
    assert lb["routing_key"] == "traceID"
    assert "otlp" in lb["protocol"]
    dns = lb["resolver"]["dns"]
    headless = one("Service", "flowscope-collector-headless")
    ns = headless["metadata"]["namespace"]
    assert dns["hostname"] == f"flowscope-collector-headless.{ns}.svc.cluster.local"
    assert int(dns["port"]) in {p["port"] for p in headless["spec"]["ports"]}
    assert headless["spec"]["clusterIP"] == "None"


# --- Kubernetes -----------------------------------------------------------------------


def test_kustomization_lists_existing_files() -> None:
    k = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for res in k["resources"]:
        assert (K8S / res).exists(), res
    kinds = {d["kind"] for d in k8s_docs()}
    assert {"Namespace", "ConfigMap", "Secret", "Deployment", "Service", "HorizontalPodAutoscaler",
            "PodDisruptionBudget"} <= kinds


def test_deployment_probes_env_and_security() -> None:
    dep = one("Deployment")
    pod = dep["spec"]["template"]["spec"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    containers = {c["name"]: c for c in pod["containers"]}
    col = containers["collector"]
    port_names = {p["name"]: p["containerPort"] for c in pod["containers"] for p in c.get("ports", [])}
    assert port_names["otlp-http"] == 4318 and port_names["otlp-grpc"] == 4317

    routes = route_paths()
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = col[probe]["httpGet"]
        assert get["path"] == path and path in routes
        assert port_names[get["port"]] == 4318

    secret = one("Secret")
    env = {e["name"]: e for e in col["env"]}
    for key in ("FLOWSCOPE_CLICKHOUSE_DSN", "FLOWSCOPE_API_KEYS"):
        ref = env[key]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
    assert not parse_dsn(secret["stringData"]["FLOWSCOPE_CLICKHOUSE_DSN"]).embedded  # replicas need a server

    cm_names = [e["configMapRef"]["name"] for e in col["envFrom"]]
    for name in cm_names:
        data = one("ConfigMap", name)["data"]
        for key in data:
            assert collector_reads(key), f"ConfigMap sets {key}, which the collector never reads"
        wal = data["FLOWSCOPE_WAL_DIR"]
        mount = next(m for m in col["volumeMounts"] if wal.startswith(m["mountPath"]))
        vol = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert "emptyDir" in vol or "persistentVolumeClaim" in vol

    uid = re.findall(r"^USER\s+(\d+)", dockerfile(), re.M)[-1]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == uid
    for c in pod["containers"]:
        assert c["securityContext"]["allowPrivilegeEscalation"] is False

    sidecar = containers["otlp-grpc"]
    cfg_vol = next(v for v in pod["volumes"] if v["name"] == sidecar["volumeMounts"][0]["name"])
    cfg = yaml.safe_load(one("ConfigMap", cfg_vol["configMap"]["name"])["data"]["config.yaml"])
    _pipelines_resolve(cfg)
    assert cfg["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4317")
    (exporter,) = cfg["service"]["pipelines"]["traces"]["exporters"]
    assert cfg["exporters"][exporter]["endpoint"] == "http://127.0.0.1:4318"


def test_services_and_hpa_target_the_deployment() -> None:
    dep = one("Deployment")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    container_ports = {p["name"] for c in dep["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
    for svc in (one("Service", "flowscope-collector"), one("Service", "flowscope-collector-headless")):
        assert svc["spec"]["selector"].items() <= labels.items()
        for p in svc["spec"]["ports"]:
            assert p["targetPort"] in container_ports
    ports = {p["port"] for p in one("Service", "flowscope-collector")["spec"]["ports"]}
    assert ports == {4317, 4318}
    hpa = one("HorizontalPodAutoscaler")
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", dep["metadata"]["name"])
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    assert hpa["spec"]["metrics"]
    pdb = one("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    client = one("ConfigMap", "flowscope-client-env")["data"]
    assert client["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://flowscope-collector.flowscope.svc.cluster.local:4318"
    assert client["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"


# --- schema: single node unchanged, cluster sharded -----------------------------------


def _all(options: SchemaOptions) -> list[str]:
    return [s for m in load_migrations(options) for s in m.statements]


def test_single_node_schema_has_no_cluster_layer() -> None:
    stmts = _all(SchemaOptions())
    text = "\n".join(stmts)
    assert "_local" not in text and "Distributed" not in text and "ON CLUSTER" not in text
    assert "Replicated" not in text


def test_cluster_schema_is_sharded_by_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWSCOPE_CLICKHOUSE_SHARDED", raising=False)
    opts = SchemaOptions(database="fs", cluster="c1")
    assert opts.distributed
    stmts = _all(opts)
    sharded = sharded_tables(load_migrations(SchemaOptions()))
    assert {"otel_traces", "flowscope_spans", "flowscope_runs", "flowscope_state_events"} <= sharded
    for name in sharded:
        local = [s for s in stmts if re.match(rf"CREATE TABLE IF NOT EXISTS fs\.{name}_local ON CLUSTER c1\b", s)]
        dist = [s for s in stmts if re.match(rf"CREATE TABLE IF NOT EXISTS fs\.{name} ON CLUSTER c1 AS fs\.{name}_local "
                                             rf"ENGINE = Distributed\(c1, fs, {name}_local, ", s)]
        assert len(local) == len(dist) == 1, name
        assert "ENGINE = Replicated" in local[0]
    by_key = {n: s for s in stmts for n in sharded if s.startswith(f"CREATE TABLE IF NOT EXISTS fs.{n} ON CLUSTER")}
    assert "cityHash64(RunId)" in by_key["flowscope_spans"] and "cityHash64(RunId)" in by_key["flowscope_runs"]
    assert "SpanAttributes['flowscope.run.id']" in by_key["otel_traces"]
    mvs = {re.search(r"VIEW IF NOT EXISTS fs\.(\w+)", s).group(1): s for s in stmts if "MATERIALIZED VIEW" in s}
    assert "TO fs.flowscope_spans_local" in mvs["flowscope_spans_mv"]
    assert "FROM fs.otel_traces_local" in mvs["flowscope_spans_mv"]
    assert "FROM fs.flowscope_spans_local" in mvs["flowscope_runs_mv"]
    for name, mv in mvs.items():  # an entry (Null) table's view writes the Distributed table
        src = re.search(r"\bFROM\s+fs\.(\w+)", mv).group(1)
        if src.removesuffix("_local") not in sharded:
            assert "_local" not in mv, name
    assert all(" ON CLUSTER c1" in s for s in stmts if s.startswith("CREATE"))


def test_cluster_without_sharding(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "\n".join(_all(SchemaOptions(database="fs", cluster="c1", sharded=False)))
    assert "Distributed" not in text and "_local" not in text and "ReplicatedMergeTree" in text
    monkeypatch.setenv("FLOWSCOPE_CLICKHOUSE_SHARDED", "false")
    assert not SchemaOptions(cluster="c1").distributed
    assert not SchemaOptions().distributed


def test_later_alters_reach_local_and_distributed_tables() -> None:
    opts = SchemaOptions(database="fs", cluster="c1", sharded=True)
    out = shard_statements((
        "ALTER TABLE fs.flowscope_spans ON CLUSTER c1 ADD COLUMN IF NOT EXISTS Foo String",
        "ALTER TABLE fs.flowscope_spans ON CLUSTER c1 ADD INDEX idx_foo Foo TYPE bloom_filter GRANULARITY 1",
        "ALTER TABLE fs.other ON CLUSTER c1 ADD COLUMN Bar String",
        "ALTER TABLE fs.flowscope_spans_mv ON CLUSTER c1 MODIFY QUERY SELECT RunId FROM fs.flowscope_spans",
    ), {"flowscope_spans"}, opts)
    assert out == (
        "ALTER TABLE fs.flowscope_spans_local ON CLUSTER c1 ADD COLUMN IF NOT EXISTS Foo String",
        "ALTER TABLE fs.flowscope_spans ON CLUSTER c1 ADD COLUMN IF NOT EXISTS Foo String",
        "ALTER TABLE fs.flowscope_spans_local ON CLUSTER c1 ADD INDEX idx_foo Foo TYPE bloom_filter GRANULARITY 1",
        "ALTER TABLE fs.other ON CLUSTER c1 ADD COLUMN Bar String",
        # a view's new SELECT reads the local shard, as the view did
        "ALTER TABLE fs.flowscope_spans_mv ON CLUSTER c1 MODIFY QUERY SELECT RunId FROM fs.flowscope_spans_local",
    )


# --- the committed cluster DDL, through ClickHouse's parser and a real chDB cluster ----

SCHEMA_SQL = DEPLOY / "clickhouse" / "cluster" / "schema.sql"


def _split(sql: str) -> list[str]:
    sql = re.sub(r"--[^\n]*", "", sql)
    return [s.strip() for s in sql.split(";") if s.strip()]


def test_committed_cluster_ddl_matches_the_collector() -> None:
    """The file equals what the collector applies, for the migrations it covers.

    Migrations added later are not in the file until it is regenerated; they are
    still checked on the live rendering in the chDB cluster test below.
    """
    sys.path.insert(0, str(DEPLOY / "clickhouse"))
    try:
        import render_schema
    finally:
        sys.path.pop(0)
    committed = SCHEMA_SQL.read_text()
    covered = max(int(v) for v in re.findall(r"^-- migration (\d{3})_", committed, re.M))
    opts = SchemaOptions(database="flowscope", cluster="flowscope", sharded=True)
    rendered = render_schema.render(opts)
    cut = re.search(rf"^-- migration {covered + 1:03d}_", rendered, re.M)
    expected = rendered[:cut.start()].rstrip() + "\n" if cut else rendered
    assert committed == expected, "regenerate: python deploy/clickhouse/render_schema.py --cluster flowscope " \
                                  "--database flowscope > deploy/clickhouse/cluster/schema.sql"


CLUSTER_XML = """<clickhouse>
  <tcp_port>9000</tcp_port>
  <remote_servers><flowscope><shard><replica><host>localhost</host><port>9000</port></replica></shard></flowscope>
  </remote_servers>
  <macros><shard>01</shard><replica>r1</replica></macros>
</clickhouse>
"""


def _chdb_child(mode: str, payload: dict[str, Any], tmp: Path) -> dict[str, Any]:
    (tmp / "config.xml").write_text(CLUSTER_XML)
    proc = subprocess.run([sys.executable, "-m", "tests.collector.test_deploy", mode, str(tmp / "config.xml")], cwd=ROOT,
                          input=json.dumps(payload), capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _run_chdb(mode: str, config: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Child process: chDB allows one engine per process, so each check gets its own."""
    import chdb

    conn = chdb.connect(f":memory:?config-file={config}")
    cur = conn.cursor()

    def q(sql: str) -> list[tuple[Any, ...]]:
        cur.execute(sql)
        return list(cur.fetchall())

    out: dict[str, Any] = {}
    if mode == "parse":
        for i, stmt in enumerate(payload["statements"]):
            try:
                q(f"EXPLAIN AST {stmt}")
                out[str(i)] = "ok"
            except Exception as exc:
                out[str(i)] = f"{type(exc).__name__}: {exc}"[:500]
        return out
    # mode == "apply": the cluster DDL as-is except what needs Keeper (documented in the test)
    for stmt in payload["statements"]:
        q(stmt)
    for sql in payload["inserts"]:
        q(sql)
    for key, sql in payload["queries"].items():
        try:
            out[key] = {"rows": [[str(v) for v in r] for r in q(sql)]}
        except Exception as exc:
            out[key] = {"error": f"{type(exc).__name__}: {exc}"[:1500]}
    return out


def test_cluster_ddl_parses_with_clickhouse(tmp_path: Path) -> None:
    stmts = _split(SCHEMA_SQL.read_text())
    ddl = [s for s in stmts if not s.startswith("INSERT")]  # one-off backfills (005, 009) run from one node
    assert sum("ON CLUSTER flowscope" in s for s in ddl) == len(ddl) and len(stmts) - len(ddl) <= 3
    res = _chdb_child("parse", {"statements": [*stmts, "CREATE TABLE x ON CLUSTER c (a"]}, tmp_path)
    assert res.pop(str(len(stmts))) != "ok"  # the parser does reject broken DDL
    bad = {stmts[int(i)][:80]: err for i, err in res.items() if err != "ok"}
    assert not bad, bad


def _without_keeper(stmt: str) -> str:
    """chDB has no Keeper: drop ON CLUSTER and the Replicated prefix; keep the Distributed layout."""
    stmt = stmt.replace(" ON CLUSTER flowscope", "")
    return re.sub(r"Replicated(\w*MergeTree)\('[^']*', '[^']*'\)", r"\1()", stmt)


def test_sharded_layout_works_end_to_end_in_chdb(tmp_path: Path) -> None:
    from tests.collector.test_dashboards import Var, expand, load_dashboards, panels_of

    opts = SchemaOptions(database="flowscope", cluster="flowscope", sharded=True)
    stmts = ["CREATE DATABASE IF NOT EXISTS flowscope"] + [_without_keeper(s) for s in _all(opts)]
    assert any("ENGINE = Distributed(flowscope, flowscope, otel_traces_local" in s for s in stmts)
    spans = []
    for run, service in (("run-a", "shop"), ("run-b", "support")):
        trace = ("a" if run == "run-a" else "b") * 32
        spans.append((trace, f"{run}-root", "", f"invoke_workflow {run}", service,
                      {"flowscope.run.id": run, "flowscope.span.kind": "run", "gen_ai.workflow.name": f"flow-{run}"}))
        spans.append((trace, f"{run}-n0", f"{run}-root", "plan", service,
                      {"flowscope.run.id": run, "flowscope.span.kind": "node", "flowscope.node.name": "plan",
                       "flowscope.node.step": "0"}))
        spans.append((trace, f"{run}-llm", f"{run}-n0", "chat gpt-4o-mini", service,
                      {"flowscope.run.id": run, "flowscope.span.kind": "llm", "flowscope.node.name": "plan",
                       "flowscope.node.step": "0", "gen_ai.provider.name": "openai",
                       "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": "100",
                       "gen_ai.usage.output_tokens": "10", "flowscope.cost.usd": "0.000021",
                       "flowscope.cost.source": "computed"}))

    def lit(m: dict[str, str]) -> str:
        return "map(" + ", ".join(f"'{k}', '{v}'" for k, v in m.items()) + ")"

    values = ", ".join(
        f"(now64(9) - INTERVAL {i} SECOND, '{t}', '{s}', '{p}', '{n}', '{svc}', {lit(a)}, "
        f"map('service.name', '{svc}'), 1000000, 'Unset')"
        for i, (t, s, p, n, svc, a) in enumerate(spans))
    insert = ("INSERT INTO flowscope.otel_traces (Timestamp, TraceId, SpanId, ParentSpanId, SpanName, ServiceName, "
              "SpanAttributes, ResourceAttributes, Duration, StatusCode) "
              f"SETTINGS distributed_foreground_insert = 1 VALUES {values}")

    from datetime import datetime, timedelta
    now = datetime.now()
    frm, to = now - timedelta(hours=1), now + timedelta(minutes=5)
    queries = {
        "local_traces": "SELECT count() FROM flowscope.otel_traces_local",
        "dist_spans": "SELECT count() FROM flowscope.flowscope_spans",
        "local_spans": "SELECT count() FROM flowscope.flowscope_spans_local",
        "runs": "SELECT RunId, toString(sum(CostUsd)), max(FlowName) FROM flowscope.flowscope_runs "
                "GROUP BY RunId ORDER BY RunId",
        "trace_ts": "SELECT count() FROM flowscope.otel_traces_trace_id_ts",
        "traces_engine": "SELECT engine FROM system.tables WHERE database = 'flowscope' AND name = 'otel_traces'",
    }
    for name, d in load_dashboards().items():
        variables = {v["name"]: Var(["$__all"] if v["multi"] else "run-a", []) for v in d["templating"]["list"]
                     if v["type"] == "query"}
        for v in d["templating"]["list"]:
            if v["type"] == "query":
                queries[f"{name}|var|{v['name']}"] = expand(v["query"]["rawSql"], variables, frm, to)
        for p in panels_of(d):
            queries[f"{name}|{p['title']}"] = expand(p["targets"][0]["rawSql"], variables, frm, to)
    # the dashboards name tables without a database, as the datasource's default database resolves them
    res = _chdb_child("apply", {"statements": [*stmts, "USE flowscope"], "inserts": [insert], "queries": queries},
                      tmp_path)
    assert res["local_traces"]["rows"] == [["6"]]
    assert res["dist_spans"]["rows"] == [["6"]] == res["local_spans"]["rows"]
    assert res["runs"]["rows"] == [["run-a", "0.000021", "flow-run-a"], ["run-b", "0.000021", "flow-run-b"]]
    assert res["trace_ts"]["rows"] == [["2"]]
    assert res["traces_engine"]["rows"] == [["Distributed"]]
    failed = {k: v["error"] for k, v in res.items() if "error" in v}
    assert not failed, failed
    assert res["llm-cost.json|Cost by service"]["rows"], "no rows through the Distributed tables"
    assert len(res["run-explorer.json|Trace waterfall"]["rows"]) == 3


if __name__ == "__main__":  # child-process entry point for the chDB checks
    print(json.dumps(_run_chdb(sys.argv[1], sys.argv[2], json.loads(sys.stdin.read()))))


def _version() -> str:
    return str(re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1))  # type: ignore[union-attr]


def test_one_collector_image_name_everywhere() -> None:
    """The manifests used ``flowscope/collector:0.1.0``, which nothing builds; compose built
    ``flowscope-collector:local``. One name, the version's tag, in compose, manifests and docs."""
    image = f"flowscope-collector:{_version()}"
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert compose["services"]["collector"]["image"] == image
    dep = one("Deployment")
    (collector,) = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "collector"]
    assert collector["image"] == image
    k = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert [(i["name"], i["newTag"]) for i in k["images"]] == [("flowscope-collector", _version())]
    assert f"docker build -f deploy/Dockerfile -t {image} ." in (ROOT / "docs/deploy.md").read_text()


def test_the_documented_kubernetes_order_creates_the_namespace_before_the_secret() -> None:
    """``kubectl apply -k`` after creating the Secret failed: the Secret's namespace did not exist yet."""
    text = (ROOT / "docs/deploy.md").read_text()
    steps = [line.split("  #")[0].strip() for line in text.splitlines()
             if line.strip().startswith(("kubectl ", "docker build"))]
    ns = steps.index("kubectl apply -f deploy/kubernetes/namespace.yaml")
    secret = steps.index("kubectl apply -f my-secret.yaml")
    assert steps.index("docker build -f deploy/Dockerfile -t flowscope-collector:" + _version() + " .") < ns
    assert ns < secret < steps.index("kubectl apply -k deploy/kubernetes")
    secret_doc = yaml.safe_load((K8S / "secret.example.yaml").read_text())
    namespace = yaml.safe_load((K8S / "namespace.yaml").read_text())
    assert secret_doc["metadata"]["namespace"] == namespace["metadata"]["name"]
    assert "secret.example.yaml" not in yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]


def test_kustomize_renders_the_manifests_with_the_one_image(tmp_path: Path) -> None:
    """What ``kubectl apply -k`` would send, rendered client-side (no cluster needed)."""
    import shutil

    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; the structural checks above still run")
    r = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    assert docs[0]["kind"] == "Namespace"  # kustomize puts it first: everything else lives in it
    assert all(d["metadata"].get("namespace") == "flowscope" for d in docs[1:])
    images = [c["image"] for d in docs if d["kind"] == "Deployment"
              for c in d["spec"]["template"]["spec"]["containers"]]
    assert f"flowscope-collector:{_version()}" in images
    assert not [i for i in images if "flowscope/collector" in i]
