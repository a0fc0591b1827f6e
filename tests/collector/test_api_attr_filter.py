"""Runs can be filtered by the attributes set_run_attributes put on them."""

from __future__ import annotations

import uuid

import flowscope


def test_runs_list_filters_by_run_attribute(traced) -> None:
    tag = uuid.uuid4().hex[:8]
    ids = {}
    for tenant in ("acme", "globex"):
        with flowscope.run(f"attr-flow-{tag}") as run:
            flowscope.set_run_attributes(tenant=f"{tenant}-{tag}", user_id=f"user-{tenant}")
            with flowscope.node("work"):
                pass
        ids[tenant] = run.id
    flowscope.force_flush()
    for run_id in ids.values():
        traced.wait_for_run(run_id, spans=2)

    def listed(*attrs: str) -> list[str]:
        r = traced.get("/api/v1/runs", params=[("attr", a) for a in attrs] + [("flow", f"attr-flow-{tag}")])
        assert r.status_code == 200, r.text
        return [x["run_id"] for x in r.json()["runs"]]

    assert listed(f"tenant:acme-{tag}") == [ids["acme"]]
    assert listed(f"tenant:globex-{tag}", "user_id:user-globex") == [ids["globex"]]
    assert listed(f"tenant:acme-{tag}", "user_id:user-globex") == []
    assert sorted(listed()) == sorted(ids.values())


def test_malformed_attribute_filter_is_422(collector) -> None:
    r = collector.get("/api/v1/runs", params={"attr": "no-colon"})
    assert r.status_code == 422 and "NAME:VALUE" in r.json()["error"]
