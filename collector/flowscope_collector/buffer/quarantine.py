"""The quarantine directory: acknowledged requests ClickHouse would not take.

A quarantined request was acknowledged to its client and then refused by the
store, so it is a loss until someone replays it; that is why it is counted in
``/metrics`` and shown by ``/readyz`` from what is on disk (a restart must not
hide it), and why ``flowscope-collector quarantine list|replay`` exists. Each
entry is ``<seq>.pb`` (the request as OTLP protobuf, which any OTLP receiver
takes) and ``<seq>.json`` (its project, span count and the store's error).
Replaying sends the ``.pb`` to a running collector's ``/v1/traces`` so it goes
through today's checks; a replayed entry moves to ``replayed/``, so it is
neither sent twice nor forgotten.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SUBDIR = "quarantine"
REPLAYED = "replayed"


@dataclass(frozen=True)
class Entry:
    seq: int
    project: str
    spans: int
    error: str
    path: Path  # the .pb file


def directory(wal_dir: str | Path) -> Path:
    return Path(wal_dir) / SUBDIR


def entries(wal_dir: str | Path) -> list[Entry]:
    """The requests waiting in quarantine, oldest first (replayed ones are not listed)."""
    qdir = directory(wal_dir)
    out: list[Entry] = []
    if not qdir.is_dir():
        return out
    for pb in sorted(qdir.glob("*.pb")):
        meta: dict[str, object] = {}
        try:
            meta = json.loads(pb.with_suffix(".json").read_text())
        except (OSError, ValueError):
            pass  # the .pb alone is still the data; say what we can
        spans = meta.get("spans")
        out.append(Entry(seq=int(pb.stem) if pb.stem.isdigit() else -1, project=str(meta.get("project", "?")),
                         spans=spans if isinstance(spans, int) else -1, error=str(meta.get("error", ""))[:300],
                         path=pb))
    return out


def totals(wal_dir: str | Path) -> tuple[int, int]:
    """(requests, spans) in quarantine now; spans of entries without readable metadata count as 0."""
    found = entries(wal_dir)
    return len(found), sum(max(e.spans, 0) for e in found)


def mark_replayed(entry: Entry) -> None:
    """Move ``entry`` out of the way once a collector has acknowledged it again."""
    done = entry.path.parent / REPLAYED
    done.mkdir(exist_ok=True)
    for path in (entry.path, entry.path.with_suffix(".json")):
        if path.exists():
            path.replace(done / path.name)
