"""How built rows are laid out in bytes: length-delimited ``Row`` messages, one per span.

A ``Row`` is a span with its resource and scope (resource = 1, scope = 2,
span = 3; the message is declared in :data:`flowscope_collector.store.insert.OTLP_SCHEMA`,
which ClickHouse parses). The row builder writes this framing, the write-ahead
log keeps it as it is, and :func:`rows_to_request` turns it back into an OTLP
request for people (quarantine files) and older tools.
"""

from __future__ import annotations

from collections.abc import Iterator


def field(tag: int, payload: bytes) -> bytes:
    return bytes((tag,)) + varint(len(payload)) + payload


def _varint_slow(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


# Every span and row is length-prefixed: a table covers the lengths spans have.
_VARINTS = [_varint_slow(n) for n in range(1 << 14)]


def varint(n: int) -> bytes:
    return _VARINTS[n] if n < 16384 else _varint_slow(n)


def read_varint(body: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it."""
    value, shift = 0, 0
    while True:
        b = body[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def frames(body: bytes) -> Iterator[tuple[int, int]]:
    """(start, end) of each length-delimited row in ``body``."""
    pos, n = 0, len(body)
    while pos < n:
        length, pos = read_varint(body, pos)
        if pos + length > n:
            raise ValueError("truncated row framing")
        yield pos, pos + length
        pos += length


def rows_to_request(body: bytes) -> bytes:
    """Rows (``Row``: resource = 1, scope = 2, span = 3) back into an OTLP request, one resource per row.

    ``Row``'s resource and scope fields have ResourceSpans' and ScopeSpans'
    field numbers, so each row only needs re-wrapping: the span moves into a
    ScopeSpans next to the scope, which moves into a ResourceSpans.
    """
    out: list[bytes] = []
    for start, end in frames(body):
        resource = scope = span = b""
        pos = start
        while pos < end:
            tag = body[pos]
            length, pos = read_varint(body, pos + 1)
            part = body[pos:pos + length]
            pos += length
            if tag == 0x0A:
                resource = part
            elif tag == 0x12:
                scope = part
            elif tag == 0x1A:
                span = part
        scope_spans = field(0x0A, scope) + field(0x12, span)
        out.append(field(0x0A, field(0x0A, resource) + field(0x12, scope_spans)))
    return b"".join(out)


def count_rows(body: bytes) -> int:
    """How many rows ``body`` frames."""
    return sum(1 for _ in frames(body))
