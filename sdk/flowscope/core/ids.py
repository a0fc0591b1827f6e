"""Run identifiers.

Run ids are UUIDv7 in 32-hex form: the same shape as an OTel trace id (so a run
that no flowscope root covers can use its trace id and nothing downstream
cares which it got), and time-ordered, so ClickHouse cursor pagination and
"newest runs first" are cheap range reads.
"""

from __future__ import annotations

import os
import re
import threading
import time

# What a run id may be wherever one is stored or asked for: the SDK's own are 32 hex digits, a
# run id given by hand (``flowscope.run(run_id=...)``) or another producer's must be 1-128 of
# these, so it fits a URL path segment as it is. The collector refuses a span naming any other
# (OTLP partial success, with the reason) instead of storing a run no one can open.
RUN_ID_PATTERN = r"^[A-Za-z0-9_\-:.]{1,128}$"
_RUN_ID_RE = re.compile(RUN_ID_PATTERN.encode())
# is_valid_run_id for bytes, as the bare match: ingest asks it of every span
match_run_id_bytes = _RUN_ID_RE.fullmatch

_lock = threading.Lock()
_last_ms = 0
_seq = 0


def new_run_id() -> str:
    """Return a UUIDv7 as 32 lowercase hex digits, monotonic within this process."""
    global _last_ms, _seq
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            _seq = (_seq + 1) & 0xFFF
            if _seq == 0:  # 4096 ids in one millisecond: borrow the next one
                ms += 1
        else:
            _seq = int.from_bytes(os.urandom(2), "big") & 0x7FF
        _last_ms = ms
        seq = _seq
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | seq << 64 | 0b10 << 62 | rand
    return f"{value:032x}"


def is_run_id(value: str) -> bool:
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)


def is_valid_run_id(value: str | bytes) -> bool:
    """True when ``value`` matches :data:`RUN_ID_PATTERN` (any run id the API can open)."""
    raw = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
    return _RUN_ID_RE.fullmatch(raw) is not None
