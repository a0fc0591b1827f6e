"""A batch: framed rows on their way to ClickHouse, with what building them counted."""

from __future__ import annotations

from dataclasses import dataclass, field

from .framing import count_rows


@dataclass
class Batch:
    """Spans ready to insert.

    ``payloads`` are chunks of rows in the framing of :mod:`.framing`, sent
    to ClickHouse as they are (:func:`flowscope_collector.store.insert.insert_rows`).
    """

    payloads: list[bytes] = field(default_factory=list)
    spans: int = 0
    truncated_values: int = 0
    python_spans: int = 0  # spans that needed the Python rewrite

    @classmethod
    def from_rows(cls, body: bytes) -> Batch:
        """A batch of rows as :meth:`RowBuilder.build` framed them (read back from the write-ahead log)."""
        return cls(payloads=[body], spans=count_rows(body))

    def extend(self, other: Batch) -> None:
        self.payloads.extend(other.payloads)
        self.spans += other.spans
        self.truncated_values += other.truncated_values
        self.python_spans += other.python_spans

    def body(self) -> bytes:
        """The insert body: every payload, in order."""
        return b"".join(self.payloads)
