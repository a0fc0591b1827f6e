"""API keys: parsing, the loopback rule, and two projects that cannot see each other.

The isolation test walks every GET route the collector publishes in
``/openapi.json`` (so a route added later is covered without editing this
file) with project A's key, pointed at project B's run, and requires that no
answer mentions B.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowscope_collector.server.auth import KeyConfigError, KeyStore, check_bind, key_from_headers
from tests._collector_kit import CollectorProcess, free_port, otlp_body

KEY_A = "fs_a_" + "1" * 24
KEY_B = "fs_b_" + "2" * 24
KEY_A_INGEST = "fs_ai_" + "3" * 24
KEY_A_READ = "fs_ar_" + "4" * 24
KEY_B_HASHED = "fs_bh_" + "5" * 24
KEY_OPS = "fs_op_" + "6" * 24
ALL_KEYS = (KEY_A, KEY_B, KEY_A_INGEST, KEY_A_READ, KEY_B_HASHED, KEY_OPS)
PB = {"content-type": "application/x-protobuf"}


# --- key configuration ------------------------------------------------------------------


def test_keys_from_env_lines_scopes_and_hashes() -> None:
    digest = hashlib.sha256(KEY_B_HASHED.encode()).hexdigest()
    keys = KeyStore.load(f"{KEY_A}=alpha, {KEY_A_INGEST}=alpha:ingest\n{KEY_A_READ}=alpha:read  # reader\n"
                         f"sha256:{digest}=beta:ingest+read")
    assert len(keys) == 4 and keys.projects() == {"alpha", "beta"}
    a = keys.authenticate(KEY_A)
    assert a is not None and a.project == "alpha" and a.may("ingest") and a.may("read")
    ing = keys.authenticate(KEY_A_INGEST)
    assert ing is not None and ing.may("ingest") and not ing.may("read")
    rd = keys.authenticate(KEY_A_READ)
    assert rd is not None and rd.may("read") and not rd.may("ingest")
    hb = keys.authenticate(KEY_B_HASHED)
    assert hb is not None and hb.project == "beta"
    assert keys.authenticate("fs_a_" + "1" * 23) is None
    assert keys.authenticate("") is None and keys.authenticate(None) is None
    for k in ALL_KEYS:
        assert k not in repr(keys)


def test_keys_file_json_and_lines(tmp_path: Path) -> None:
    j = tmp_path / "keys.json"
    j.write_text(json.dumps({"keys": [{"key": KEY_A, "project": "alpha", "scopes": ["read"]},
                                      {"sha256": hashlib.sha256(KEY_B.encode()).hexdigest(), "project": "beta"}]}))
    keys = KeyStore.load(None, str(j))
    assert keys.authenticate(KEY_A).scopes == frozenset({"read"})  # type: ignore[union-attr]
    assert keys.authenticate(KEY_B).project == "beta"  # type: ignore[union-attr]
    t = tmp_path / "keys.txt"
    t.write_text(f"# team keys\n{KEY_A}=alpha\n\n{KEY_B}=beta:ingest\n")
    both = KeyStore.load(f"{KEY_A_READ}=alpha:read", str(t))
    assert len(both) == 3


@pytest.mark.parametrize("text,needle", [
    (f"{KEY_A}", "KEY=PROJECT"),
    (f"{KEY_A}=bad project", "project"),
    (f"{KEY_A}=alpha:write", "unknown scopes"),
    ("short=alpha", "at least 8"),
    (f"{KEY_A}=alpha,{KEY_A}=beta", "twice"),
    ("sha256:abc=alpha", "64 hex"),
])
def test_bad_key_config_is_refused_without_echoing_keys(text: str, needle: str) -> None:
    with pytest.raises(KeyConfigError) as info:
        KeyStore.load(text)
    assert needle in str(info.value)
    assert KEY_A not in str(info.value)


def test_key_headers() -> None:
    assert key_from_headers([(b"authorization", b"Bearer abc123456")]) == "abc123456"
    assert key_from_headers([(b"Authorization", b"bearer   xyz98765 ")]) == "xyz98765"
    assert key_from_headers([(b"x-api-key", b"k-1234567")]) == "k-1234567"
    assert key_from_headers([(b"authorization", b"Basic Zm9vOmJhcg==")]) is None


def test_binding_beyond_loopback_needs_keys() -> None:
    none = KeyStore()
    assert "127.0.0.1 only" in check_bind("127.0.0.1", none, False)
    assert "only" in check_bind("::1", none, False)
    with pytest.raises(KeyConfigError, match=r"refusing to listen on 0\.0\.0\.0"):
        check_bind("0.0.0.0", none, False)
    assert "INSECURE" in check_bind("0.0.0.0", none, True)
    assert "API keys required" in check_bind("0.0.0.0", KeyStore.load(f"{KEY_A}=alpha"), False)


def test_cli_refuses_0_0_0_0_without_keys(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWSCOPE_API_KEYS")}
    env["FLOWSCOPE_CLICKHOUSE_DSN"] = f"chdb://{tmp_path / 'data'}"
    out = subprocess.run([sys.executable, "-m", "flowscope_collector", "serve", "--host", "0.0.0.0", "--port",
                          str(free_port())], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "refusing to listen on 0.0.0.0 without API keys" in out.stderr
    assert "--insecure" in out.stderr


def test_start_up_says_it_listens_on_loopback_only(collector: CollectorProcess) -> None:
    assert "no API keys configured: listening on 127.0.0.1 only" in collector.log.read_text()


# --- two projects on one collector ---------------------------------------------------------


class KeyedCollector(CollectorProcess):
    """A collector with API keys: readiness is polled with a key, and the access log is on."""

    key = KEY_A

    def start(self, timeout_s: float = 60.0) -> KeyedCollector:
        env = {**os.environ, **self.env, "FLOWSCOPE_CLICKHOUSE_DSN": f"chdb://{self.data_dir}"}
        self._logf = open(self.log, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flowscope_collector", "serve", "--port", str(self.port), "--log-level", "info"],
            env=env, stdout=self._logf, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(self.url + "/readyz", headers=_auth(self.key), timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(self.log.read_text()[-3000:])


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    keys_file = tmp_path_factory.mktemp("keys") / "keys.txt"
    digest = hashlib.sha256(KEY_B_HASHED.encode()).hexdigest()
    keys_file.write_text(f"{KEY_B}=beta\nsha256:{digest}=beta:read\n")
    env = {
        "FLOWSCOPE_API_KEYS": f"{KEY_A}=alpha,{KEY_A_INGEST}=alpha:ingest,{KEY_A_READ}=alpha:read,"
                              f"{KEY_OPS}=ops:operator",
        "FLOWSCOPE_API_KEYS_FILE": str(keys_file),
    }
    proc = KeyedCollector(tmp_path_factory.mktemp("secured") / "data", env=env).start()
    yield proc
    proc.stop()


def _auth(key: str, style: str = "bearer") -> dict[str, str]:
    return {"authorization": f"Bearer {key}"} if style == "bearer" else {"x-api-key": key}


def _send_with_otel_exporter(url: str, key: str, service: str, run_id: str, spans: int) -> None:
    """Spans through the real OTel SDK and OTLP/HTTP exporter, the way an app sends them."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=url + "/v1/traces",
                                                                     headers=_auth(key))))
    tracer = provider.get_tracer("auth-test")
    with tracer.start_as_current_span(f"invoke_workflow {service}-flow",
                                      attributes={"flowscope.run.id": run_id, "flowscope.span.kind": "run",
                                                  "gen_ai.workflow.name": f"{service}-flow"}):
        for i in range(spans - 1):
            with tracer.start_as_current_span(f"step {i}", attributes={"flowscope.run.id": run_id}):
                pass
    provider.shutdown()


@pytest.fixture(scope="module")
def two_projects(secured: CollectorProcess) -> dict[str, str]:
    _send_with_otel_exporter(secured.url, KEY_A, "alpha-svc", "run-alpha-1", 3)
    _send_with_otel_exporter(secured.url, KEY_B, "beta-svc", "run-beta-1", 4)
    # the same run id in both projects: each must see only its own spans
    _send_with_otel_exporter(secured.url, KEY_A, "alpha-svc", "run-shared", 2)
    _send_with_otel_exporter(secured.url, KEY_B, "beta-svc", "run-shared", 5)
    for key, run, n in ((KEY_A, "run-alpha-1", 3), (KEY_B, "run-beta-1", 4), (KEY_A, "run-shared", 2),
                        (KEY_B, "run-shared", 5)):
        deadline = time.monotonic() + 30
        while True:
            r = httpx.get(f"{secured.url}/api/v1/runs/{run}", headers=_auth(key), timeout=10)
            if r.status_code == 200 and r.json()["spans"] >= n:
                break
            assert time.monotonic() < deadline, r.text
            time.sleep(0.1)
    return {"a_run": "run-alpha-1", "b_run": "run-beta-1"}


# (/docs and the run explorer at / are static pages without data: public, see tests/ui/test_auth.py)
@pytest.mark.parametrize("path", ["/v1/traces", "/api/v1/runs", "/api/v1/runs/x", "/metrics",
                                  "/version", "/openapi.json", "/api/v1/costs"])
def test_every_route_but_healthz_needs_a_key(secured: CollectorProcess, path: str) -> None:
    if path == "/v1/traces":
        r = httpx.post(secured.url + path, content=otlp_body(1), headers=PB, timeout=10)
    else:
        r = httpx.get(secured.url + path, timeout=10)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert "API key" in r.json()["error"]
    wrong = httpx.get(secured.url + path, headers=_auth("fs_wrong_" + "9" * 20), timeout=10)
    assert wrong.status_code == 401
    assert httpx.get(secured.url + "/healthz", timeout=10).status_code == 200


def test_readyz_without_a_key_says_only_whether_it_is_ready(secured: CollectorProcess) -> None:
    """A probe cannot hold a secret: it gets the status code and the word, nothing more."""
    bare = httpx.get(secured.url + "/readyz", timeout=10)
    assert bare.status_code == 200 and bare.json() == {"status": "ready"}
    full = httpx.get(secured.url + "/readyz", headers=_auth(KEY_A_READ), timeout=10).json()
    assert full["status"] == "ready" and "clickhouse" in full and "schema_version" in full


def test_scopes_are_enforced(secured: CollectorProcess) -> None:
    body = otlp_body(2, run_id="scoped", service="alpha-svc")
    r = httpx.post(secured.url + "/v1/traces", content=body, headers={**PB, **_auth(KEY_A_READ)}, timeout=10)
    assert r.status_code == 403 and "ingest" in r.json()["error"]
    r = httpx.post(secured.url + "/v1/traces", content=body, headers={**PB, **_auth(KEY_A_INGEST, "x")},
                   timeout=10)
    assert r.status_code == 200
    r = httpx.get(secured.url + "/api/v1/runs", headers=_auth(KEY_A_INGEST), timeout=10)
    assert r.status_code == 403 and "read" in r.json()["error"]
    assert httpx.get(secured.url + "/api/v1/runs", headers=_auth(KEY_A_READ, "x"), timeout=10).status_code == 200


def test_metrics_is_for_an_operator_key_only(secured: CollectorProcess) -> None:
    """``/metrics`` counts every project's spans and refusals: no project's key may read it."""
    for key in (KEY_A, KEY_A_READ, KEY_B):
        r = httpx.get(secured.url + "/metrics", headers=_auth(key), timeout=10)
        assert r.status_code == 403 and "operator" in r.json()["error"], key
    r = httpx.get(secured.url + "/metrics", headers=_auth(KEY_OPS), timeout=10)
    assert r.status_code == 200 and "flowscope_spans_received_total" in r.text
    # and an operator key reads nothing of any project, nor writes
    assert httpx.get(secured.url + "/api/v1/runs", headers=_auth(KEY_OPS), timeout=10).status_code == 403
    r = httpx.post(secured.url + "/v1/traces", content=otlp_body(1), headers={**PB, **_auth(KEY_OPS)}, timeout=10)
    assert r.status_code == 403


def test_operator_scope_is_never_a_default() -> None:
    keys = KeyStore.load(f"{KEY_A}=alpha,{KEY_OPS}=ops:operator+read")
    assert keys.authenticate(KEY_A) is not None and not keys.authenticate(KEY_A).may("operator")
    ops = keys.authenticate(KEY_OPS)
    assert ops is not None and ops.may("operator") and ops.may("read") and not ops.may("ingest")


def _get_params(op: dict[str, Any], run_id: str) -> dict[str, Any] | None:
    params: dict[str, Any] = {}
    for p in op.get("parameters", []):
        if p["in"] != "query":
            continue
        name = p["name"]
        if name in ("a", "b"):
            params[name] = run_id
        elif name in ("at", "from", "to"):
            params[name] = -1
        elif name == "timeout":
            params[name] = 1
        elif name == "wait":
            params[name] = 0
        elif p.get("required"):
            return None
    return params


def test_projects_cannot_see_each_other_through_any_endpoint(secured: CollectorProcess,
                                                             two_projects: dict[str, str]) -> None:
    spec = httpx.get(secured.url + "/openapi.json", headers=_auth(KEY_A), timeout=10).json()
    checked = 0
    for path, ops in spec["paths"].items():
        op = ops.get("get")
        if op is None or path == "/healthz":
            continue
        variants: list[dict[str, Any]] = [{}]
        for p in op.get("parameters", []):
            enum = p.get("schema", {}).get("enum")
            if p["in"] == "query" and p["name"] == "group_by":
                enum = ["model", "provider", "service", "flow", "node", "day"]
            if enum:
                variants = [{**v, p["name"]: e} for v in variants for e in enum]
        for target_key, run in ((KEY_B, two_projects["b_run"]), (KEY_A, two_projects["b_run"]),
                                (KEY_A, "run-shared")):
            for extra in variants:
                params = _get_params(op, run)
                if params is None:
                    continue
                url = secured.url + path.replace("{run_id}", run)
                with httpx.stream("GET", url, params={**params, **extra}, headers=_auth(target_key),
                                  timeout=15) as r:
                    text = r.read().decode("utf-8", "replace")
                checked += 1
                assert r.status_code < 500, (path, r.status_code, text[:500])
                if target_key == KEY_A:
                    # nothing of B's: its service, flow, or its run (other than a 404 echoing the asked id)
                    assert "beta-svc" not in text, (path, extra, text[:500])
                    if "run-beta-1" in text:
                        assert r.status_code == 404, (path, extra, text[:500])
    assert checked >= 10
    # positive controls: each project does see its own
    b = httpx.get(f"{secured.url}/api/v1/runs/run-beta-1", headers=_auth(KEY_B), timeout=10)
    assert b.status_code == 200 and b.json()["service"] == "beta-svc"
    hashed = httpx.get(f"{secured.url}/api/v1/runs/run-beta-1", headers=_auth(KEY_B_HASHED), timeout=10)
    assert hashed.status_code == 200
    assert httpx.get(f"{secured.url}/api/v1/runs/run-beta-1", headers=_auth(KEY_A), timeout=10).status_code == 404
    shared_a = httpx.get(f"{secured.url}/api/v1/runs/run-shared", headers=_auth(KEY_A), timeout=10).json()
    shared_b = httpx.get(f"{secured.url}/api/v1/runs/run-shared", headers=_auth(KEY_B), timeout=10).json()
    assert (shared_a["spans"], shared_a["service"]) == (2, "alpha-svc")
    assert (shared_b["spans"], shared_b["service"]) == (5, "beta-svc")
    runs_a = httpx.get(f"{secured.url}/api/v1/runs", headers=_auth(KEY_A_READ), timeout=10).json()["runs"]
    assert {r["service"] for r in runs_a} == {"alpha-svc"}


def test_a_client_cannot_claim_another_project_in_the_payload(secured: CollectorProcess,
                                                             two_projects: dict[str, str]) -> None:
    body = otlp_body(1, run_id="claims-beta", service="sneaky", attrs={"flowscope.project": "beta"})
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    req = ExportTraceServiceRequest.FromString(body)
    kv = req.resource_spans[0].resource.attributes.add()
    kv.key, kv.value.string_value = "flowscope.project", "beta"
    r = httpx.post(secured.url + "/v1/traces", content=req.SerializeToString(), headers={**PB, **_auth(KEY_A)},
                   timeout=10)
    assert r.status_code == 200
    deadline = time.monotonic() + 20
    while httpx.get(f"{secured.url}/api/v1/runs/claims-beta", headers=_auth(KEY_A), timeout=10).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert httpx.get(f"{secured.url}/api/v1/runs/claims-beta", headers=_auth(KEY_B), timeout=10).status_code == 404


def test_keys_never_reach_the_log(secured: CollectorProcess, two_projects: dict[str, str]) -> None:
    httpx.get(secured.url + "/api/v1/runs", headers=_auth("fs_wrong_" + "8" * 20), timeout=10)
    log = secured.log.read_text()
    assert "GET /api/v1/runs" in log  # the access log is on, and still
    for key in (*ALL_KEYS, "fs_wrong_" + "8" * 20):
        assert key not in log
    assert "API keys required: 6 keys for projects alpha, beta, ops" in log


@pytest.mark.parametrize("field", ["service", "flow", "cursor", "since", "group_by"])
def test_sql_in_filters_cannot_cross_projects(secured: CollectorProcess, two_projects: dict[str, str],
                                              field: str) -> None:
    """Filters are bound as query parameters: SQL in them is only a string that matches nothing."""
    for attack in ("' OR 1=1 OR '' = '", "x') OR ('1'='1", "beta' --", "\\' OR 1=1 #", "1; DROP TABLE otel_traces"):
        path = "/api/v1/costs" if field == "group_by" else "/api/v1/runs"
        r = httpx.get(secured.url + path, params={field: attack}, headers=_auth(KEY_A), timeout=10)
        assert r.status_code < 500, (field, attack, r.text[:300])
        assert "beta-svc" not in r.text and "run-beta-1" not in r.text
    # and the table is still there
    assert httpx.get(f"{secured.url}/api/v1/runs/run-beta-1", headers=_auth(KEY_B), timeout=10).status_code == 200
