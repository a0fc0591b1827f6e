"""``flowscope.Client``: the collector's REST API from Python.

    fs = flowscope.Client("http://localhost:4318", api_key="...")
    for run in fs.iter_runs(flow="checkout-flow", since="24h"):
        print(run["run_id"], run["cost_usd"])
    fs.costs(group_by="model", since="7d").to_pandas()

Every method is one API call (``iter_runs`` follows cursors). Money fields
(``*_usd``) come back as :class:`~decimal.Decimal`, never float; lists are
:class:`Table` objects, plain lists of dicts that turn into a pandas
DataFrame with ``to_pandas()`` where pandas is installed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:4318"


class FlowscopeError(Exception):
    """The collector answered with an error; ``message`` says what to do about it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def _money(value: Any) -> Any:
    """Decimal for every ``*_usd`` field, recursively."""
    if isinstance(value, dict):
        return {k: (Decimal(v) if k.endswith("_usd") and isinstance(v, str) else _money(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_money(v) for v in value]
    return value


class Table(list):  # type: ignore[type-arg]
    """A list of row dicts, with whatever page or total information came with it."""

    next_cursor: str | None = None  # on a page of runs: the cursor of the next page

    def __init__(self, rows: list[dict[str, Any]], **meta: Any) -> None:
        super().__init__(rows)
        self.meta = meta
        for key, value in meta.items():
            setattr(self, key, value)

    def to_pandas(self, *, money: str = "decimal") -> Any:
        """The rows as a pandas DataFrame. Needs ``pip install flowscope[pandas]``.

        Money columns (``*_usd``) hold ``Decimal`` by default: sums stay exact. pandas keeps
        them as ``object`` columns, which plotting libraries refuse, so ``money="float"``
        gives float64 columns to plot (not to add up into invoices).
        """
        if money not in ("decimal", "float"):
            raise ValueError(f'money must be "decimal" or "float", not {money!r}')
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_pandas() needs pandas: pip install 'flowscope[pandas]'") from None
        df = pd.DataFrame(list(self))
        for col in ("start", "end", "timestamp"):
            if col in df.columns:
                df[col] = pd.to_datetime(df[col], utc=True, errors="coerce")
        if money == "float":
            for col in df.columns:
                if str(col).endswith("_usd"):
                    df[col] = df[col].astype("float64")
        return df


def _when(value: str | datetime | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.isoformat()


class Client:
    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = (url or os.environ.get("FLOWSCOPE_URL") or DEFAULT_URL).rstrip("/")
        key = api_key or os.environ.get("FLOWSCOPE_API_KEY")
        headers = {"authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, **params: Any) -> httpx.Response:
        clean = {k: v for k, v in params.items() if v is not None}
        return self._send("GET", path, params=clean)

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; a transport failure or an error answer becomes :class:`FlowscopeError` with its reason."""
        try:
            r = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise FlowscopeError(0, f"cannot reach the collector at {self.url}: {exc}") from exc
        if r.status_code >= 400:
            try:
                message = r.json().get("error") or r.text
            except ValueError:
                message = r.text
            raise FlowscopeError(r.status_code, message)
        return r

    def _json(self, path: str, **params: Any) -> Any:
        return _money(self._get(path, **params).json())

    def _post_json(self, path: str, body: Mapping[str, Any]) -> Any:
        return _money(self._send("POST", path, json=body).json())

    # --- runs -----------------------------------------------------------------------

    def runs(
        self,
        *,
        service: str | None = None,
        flow: str | None = None,
        status: str | None = None,
        since: str | datetime | None = None,
        until: str | datetime | None = None,
        min_cost: Decimal | str | None = None,
        sort: str = "start",
        order: str = "desc",
        limit: int = 50,
        cursor: str | None = None,
        attrs: Mapping[str, str] | None = None,
    ) -> Table:
        """One page of runs; ``.next_cursor`` fetches the next (``since="24h"`` works as well as ISO times).

        ``attrs={"tenant": "acme", "user_id": "u-42"}`` keeps the runs with every one of those run
        attributes (named as ``flowscope.run(attributes=...)`` names them): the API's ``attr=``.
        """
        attr = [f"{k}:{v}" for k, v in (attrs or {}).items()] or None
        body = self._json("/api/v1/runs", service=service, flow=flow, status=status, since=_when(since),
                          until=_when(until), min_cost=None if min_cost is None else str(min_cost), sort=sort,
                          order=order, limit=limit, cursor=cursor, attr=attr)
        return Table(body["runs"], next_cursor=body.get("next_cursor"))

    def iter_runs(self, *, page_size: int = 200, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every run that matches, page after page."""
        cursor = None
        while True:
            page = self.runs(limit=page_size, cursor=cursor, **filters)
            yield from page
            cursor = page.next_cursor
            if not cursor:
                return

    def run(self, run_id: str) -> dict[str, Any]:
        """The run's summary: status, timing, tokens, cost (with breakdown, by model, by node), and who
        it was for (``user_id``, ``session_id``, ``tenant``, ``attributes``)."""
        return self._json(f"/api/v1/runs/{run_id}")  # type: ignore[no-any-return]

    def nodes(self, run_id: str) -> Table:
        return Table(self._json(f"/api/v1/runs/{run_id}/nodes")["nodes"], run_id=run_id)

    def spans(self, run_id: str) -> dict[str, Any]:
        """The span tree (``roots``, each with ``children``), with attributes and events."""
        return self._json(f"/api/v1/runs/{run_id}/spans")  # type: ignore[no-any-return]

    def state(self, run_id: str, at: int) -> Any:
        """The run's state after step ``at`` (-1: its input)."""
        return self.state_at(run_id, at)["state"]

    def state_at(self, run_id: str, at: int) -> dict[str, Any]:
        """The whole answer: ``state`` after step ``at``, the ``node`` that ran it, every step with state."""
        return self._get(f"/api/v1/runs/{run_id}/state", at=at).json()  # type: ignore[no-any-return]

    def state_diff(self, run_id: str, from_step: int, to_step: int) -> dict[str, Any]:
        """Paths ``added``, ``removed`` and ``changed`` between two steps."""
        return self._get(f"/api/v1/runs/{run_id}/state/diff", **{"from": from_step, "to": to_step}).json()  # type: ignore[no-any-return]

    def graph(self, run_id: str, format: str = "mermaid") -> str:
        """The run's path as Mermaid (default) or Graphviz DOT text."""
        return self._get(f"/api/v1/runs/{run_id}/graph", format=format).text

    def compare(self, a: str, b: str) -> dict[str, Any]:
        return self._json("/api/v1/runs/compare", a=a, b=b)  # type: ignore[no-any-return]

    def stream(self, run_id: str, *, wait: float = 30, timeout: float = 3600) -> Iterator[dict[str, Any]]:
        """The run's live events (``event`` says which), history first; ends after ``summary``."""
        params = {"wait": wait, "timeout": timeout}
        with self._http.stream("GET", f"/api/v1/runs/{run_id}/stream", params=params,
                               timeout=httpx.Timeout(self._http.timeout.connect, read=None)) as r:
            if r.status_code >= 400:
                r.read()
                raise FlowscopeError(r.status_code, r.json().get("error", r.text))
            data: list[str] = []
            for line in r.iter_lines():
                if line.startswith("data:"):
                    data.append(line[5:].strip())
                elif line == "" and data:
                    yield _money(json.loads("\n".join(data)))
                    data = []

    # --- costs ------------------------------------------------------------------------

    def costs(
        self,
        group_by: str = "model",
        *,
        since: str | datetime | None = None,
        until: str | datetime | None = None,
        limit: int = 1000,
        pricing: str | Mapping[str, Any] | os.PathLike[str] = "stored",
    ) -> Table:
        """Cost and tokens grouped by model, provider, service, flow, node, day or ``attr:KEY``.

        ``.total_usd`` is the sum; rows are most expensive first (by day: in date order).
        ``pricing``: ``"stored"``, the figures stored when each call was priced; ``"current"``,
        every call priced again under the collector's catalog now; or a pricing document
        (a mapping, or the path of a JSON pricing file) added to the bundled catalog. The
        last two write nothing: they show what ``flowscope-collector reprice`` would store.
        """
        if isinstance(pricing, str) and pricing in ("stored", "current"):
            body = self._json("/api/v1/costs", group_by=group_by, since=_when(since), until=_when(until),
                              limit=limit, pricing=pricing)
        else:
            document = pricing if isinstance(pricing, Mapping) else json.loads(Path(pricing).read_text())
            body = self._post_json("/api/v1/costs/preview", {
                "group_by": group_by, "since": _when(since), "until": _when(until), "limit": limit,
                "pricing": document})
        return Table(body["groups"], group_by=body["group_by"], total_usd=body["total_usd"],
                     llm_calls=body["llm_calls"], unpriced_calls=body.get("unpriced_calls", 0),
                     partially_priced_calls=body.get("partially_priced_calls", 0),
                     cost_complete=body.get("cost_complete", True), since=body["since"], until=body["until"],
                     pricing_version=body.get("pricing_version"))

    # --- ops ---------------------------------------------------------------------------

    def ready(self) -> dict[str, Any]:
        r = self._http.get("/readyz")
        return r.json()  # type: ignore[no-any-return]

    def version(self) -> dict[str, Any]:
        return self._json("/version")  # type: ignore[no-any-return]
