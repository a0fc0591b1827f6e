"""The API as /openapi.json describes it: every operation explained, its errors documented in
the shape they are answered in, and the answers outside the schema (unknown routes, HEAD) alike
(issue 20)."""

from __future__ import annotations

import httpx

ERROR_REF = "#/components/schemas/ErrorBody"


def _error_schema(op: dict, status: str) -> str | None:
    resp = op["responses"].get(status)
    if resp is None:
        return None
    return resp.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")


def test_every_operation_is_described_and_documents_its_errors(collector) -> None:
    spec = collector.get("/openapi.json").json()
    ops = [(method, path, op) for path, item in spec["paths"].items() for method, op in item.items()]
    assert len(ops) >= 15
    for method, path, op in ops:
        where = f"{method.upper()} {path}"
        assert op.get("description", "").strip(), f"{where} has no description"
        params = op.get("parameters", [])
        if path != "/healthz":  # the one route open without a key
            for status in ("401", "403"):
                assert _error_schema(op, status) == ERROR_REF, f"{where} does not document {status}"
        if params:
            assert _error_schema(op, "422") == ERROR_REF, f"{where} does not document 422 as ErrorBody"
        if any(p["in"] == "path" and p["name"] == "run_id" for p in params):
            assert _error_schema(op, "404") == ERROR_REF, f"{where} does not document 404"
    assert "HTTPValidationError" not in spec["components"]["schemas"]  # not what a 422 looks like here
    body = spec["components"]["schemas"]["ErrorBody"]
    assert set(body["required"]) == {"error", "status"}


def test_unknown_routes_and_head_answer_as_documented(collector) -> None:
    r = collector.get("/api/v1/no-such-route")
    assert r.status_code == 404
    assert set(r.json()) == {"error", "status"} and r.json()["status"] == 404
    r = collector.get("/api/v1/runs/no-such-run")
    assert r.status_code == 404 and set(r.json()) == {"error", "status"}
    for path in ("/healthz", "/readyz", "/version", "/metrics", "/api/v1/runs", "/api/v1/costs", "/openapi.json"):
        get = collector.get(path)
        head = httpx.head(collector.url + path, timeout=30)
        assert head.status_code == get.status_code == 200, path
        assert head.content == b"", path
        assert head.headers.get("content-type") == get.headers.get("content-type"), path
