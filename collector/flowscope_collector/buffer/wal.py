"""Write-ahead log: accepted OTLP requests on local disk, fsync'd before we say yes.

An exporter is told "stored" only once its request is in this log and the log
is on the disk, so a crash, a kill -9 or a ClickHouse outage loses nothing
that was acknowledged. The log is a directory of append-only segment files;
each record is one accepted request (its rows as ClickHouse will parse them,
see ``ingest.records.wal_payload``, or, from older collectors, its canonical protobuf
bytes; the project it belongs to and its digest), framed with a length and a CRC so a
torn write at the end of the last segment is recognised and cut off on
recovery. A torn record was never acknowledged, because acknowledgement waits
for the fsync that covers it.

Which records went into which ClickHouse insert is written down (the
*intent*) before the insert is sent: in the checkpoint, and appended to an
intent journal (``intents.log``) that keeps every intent whose records are
still on disk. After a restart the first insert repeats that exact range with
the same deduplication token, so ClickHouse drops it if it had landed; and
when the checkpoint is lost or cannot be trusted, every stored record still
on disk is replayed in the groups and under the tokens the journal names, so
a replay never doubles a row or a cost, in raw ``otel_traces`` either.
Segments are deleted once every record in them is in ClickHouse.

fsyncs are grouped: request threads only ``write()``; one flusher thread
calls ``fsync`` for everything written since its last call and resolves the
waiting futures, so many concurrent requests share one disk flush.
"""

from __future__ import annotations

import bisect
import fcntl
import json
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger("flowscope.collector")

_FRAME = struct.Struct("<II")  # body length, crc32(body)
_HEAD = struct.Struct("<QIH32s")  # seq, spans, len(project), digest
_SUFFIX = ".wal"
_CHECKPOINT = "checkpoint.json"
_JOURNAL = "intents.log"
_LOCK = "LOCK"
MAX_RECORD_BYTES = 1 << 30
# How many records past a damaged one recovery looks for the next intact one.
_RESYNC_SEQS = 64


class WALError(Exception):
    """The log cannot take more writes (disk full, fsync failed, closed)."""


@dataclass
class Record:
    """Where one accepted request lives in the log; its bytes may also be cached."""

    seq: int
    project: str
    digest: bytes
    spans: int
    segment: Path
    offset: int  # of the payload within the segment
    length: int  # of the payload
    disk_bytes: int  # the whole framed record
    payload: bytes | None = None
    durable: Future[None] = field(default_factory=Future)


@dataclass(frozen=True)
class Intent:
    """The records of one ClickHouse insert and its deduplication token."""

    first: int
    last: int
    token: str


@dataclass
class Recovery:
    pending: list[Record]  # not yet known to be in ClickHouse, in order
    committed: list[Record]  # still on disk and already in ClickHouse (for duplicate detection)
    intent: Intent | None
    truncated_bytes: int  # torn tail cut off
    # every journaled insert that covers a pending record, by first seq: a replay regroups
    # those records exactly so, under the same tokens
    intents: list[Intent] = field(default_factory=list)


def _ranges(seqs: list[int]) -> str:
    """``1-3, 7`` for [1, 2, 3, 7]: lost records named compactly in one log line."""
    out: list[str] = []
    start = prev = seqs[0]
    for seq in [*seqs[1:], None]:
        if seq is not None and seq == prev + 1:
            prev = seq
            continue
        out.append(f"{start}-{prev}" if prev != start else str(start))
        if seq is not None:
            start = prev = seq
    return ", ".join(out)


def _segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{_SUFFIX}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WAL:
    def __init__(self, directory: str | os.PathLike[str], *, segment_bytes: int = 64 * 1024 * 1024,
                 fsync: bool = True) -> None:
        self.dir = Path(directory)
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self._lock = threading.Lock()  # guards the active segment and seq
        self._cond = threading.Condition(threading.Lock())  # guards the flusher's waiting list
        self._waiting: list[Record] = []
        self._fd: int | None = None
        self._active: Path | None = None
        self._active_size = 0
        self._next_seq = 1
        self._committed = 0
        self._segments: dict[Path, int] = {}  # segment -> last seq in it
        self._journal: list[Intent] = []  # intents whose records may still be on disk
        self._failed: BaseException | None = None
        self._closed = False
        self._lock_fd: int | None = None
        self._flusher: threading.Thread | None = None
        self.fsyncs = 0
        self.disk_bytes = 0  # bytes of records not yet committed
        self.corruptions = 0  # damaged regions found on opening (not torn tails)
        self.lost: list[int] = []  # acknowledged, not committed, unreadable or missing on disk

    # --- opening and recovery -----------------------------------------------------

    def open(self) -> Recovery:
        """Lock the directory, read what a previous process left, start the flusher."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.dir / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise WALError(f"another collector is using the write-ahead log in {self.dir}") from None
        committed, intent = self._read_checkpoint()
        self._journal = self._read_journal()
        self._committed = committed
        pending: list[Record] = []
        done: list[Record] = []
        truncated = 0
        segments = sorted(self.dir.glob("*" + _SUFFIX))
        last_seq = committed
        seen: set[int] = set()
        for i, seg in enumerate(segments):
            records, good_end, damaged = self._scan(seg)
            size = seg.stat().st_size
            if damaged:
                # Intact records follow a bad one: not a torn write (only the end of the
                # newest segment is ever half-written), so every record after the damage
                # is kept and the file is not cut.
                self.corruptions += len(damaged)
                for at, length in damaged:
                    logger.error("write-ahead log segment %s is damaged at byte %d (%d bytes unreadable); "
                                 "the intact records after it are kept", seg, at, length)
            if good_end < size:
                if i != len(segments) - 1:
                    self.corruptions += 1
                    logger.error("write-ahead log segment %s is damaged at byte %d; %d bytes unreadable",
                                 seg, good_end, size - good_end)
                else:
                    logger.warning("cutting a torn record (%d bytes, never acknowledged: no intact record "
                                   "follows it) off the end of %s", size - good_end, seg)
                    with open(seg, "r+b") as f:
                        f.truncate(good_end)
                        f.flush()
                        os.fsync(f.fileno())
                    truncated += size - good_end
            for rec in records:
                rec.durable.set_result(None)
                last_seq = max(last_seq, rec.seq)
                seen.add(rec.seq)
                (pending if rec.seq > committed else done).append(rec)
            self._segments[seg] = records[-1].seq if records else committed
        # Sequence numbers are dense: one missing between the checkpoint and the newest
        # record was acknowledged (a later record's fsync covered it) and is gone from
        # the disk (a damaged record, a truncated or deleted segment). Say which.
        # Records before the oldest segment were deleted because they were stored
        # (its name is its first seq), whatever a missing checkpoint says.
        base = committed
        if segments and segments[0].name[: -len(_SUFFIX)].isdigit():
            base = max(base, int(segments[0].name[: -len(_SUFFIX)]) - 1)
        self.lost = [seq for seq in range(base + 1, last_seq + 1) if seq not in seen]
        if self.lost:
            logger.error("write-ahead log: %d acknowledged requests not yet in ClickHouse are unreadable "
                         "or missing on disk and are lost: seq %s", len(self.lost), _ranges(self.lost))
        on_disk = [r for r in done + pending]
        if on_disk and committed > max(r.seq for r in on_disk):
            # The newest segment is never deleted, so the log always holds the last
            # record written: a checkpoint past it was not written by this log (copied,
            # restored, hand-edited). Trusting it would drop every record on disk;
            # replaying them is safe instead (flowscope_spans keeps a span once,
            # migration 008), so the log, not the checkpoint, decides.
            logger.error("write-ahead log checkpoint says %d requests are stored, but the log ends at %d: "
                         "not trusted; replaying the %d requests on disk", committed,
                         max(r.seq for r in on_disk), len(on_disk))
            self.corruptions += 1
            committed = self._committed = min(r.seq for r in on_disk) - 1
            pending = sorted(on_disk, key=lambda r: r.seq)
            done = []
            intent = None
            last_seq = max(r.seq for r in on_disk)
        self._next_seq = last_seq + 1
        self.disk_bytes = sum(r.disk_bytes for r in pending)
        if intent is not None and intent.last <= committed:
            intent = None
        if intent is not None and not any(intent.first <= r.seq <= intent.last for r in pending):
            # Every record of the interrupted insert is lost (see above): nothing to
            # repeat, and a writer waiting to regroup them would wait forever.
            intent = None
        seqs = sorted(r.seq for r in pending)

        def covers(i: Intent) -> bool:
            at = bisect.bisect_left(seqs, i.first)
            return at < len(seqs) and seqs[at] <= i.last

        replay = {i for i in self._journal if i.last > committed and covers(i)}
        if intent is not None:
            replay.add(intent)
        self._delete_committed_segments()
        self._flusher = threading.Thread(target=self._flush_loop, name="flowscope-wal-fsync", daemon=True)
        self._flusher.start()
        return Recovery(pending, done, intent, truncated, sorted(replay, key=lambda i: (i.first, i.last)))

    def _scan(self, seg: Path) -> tuple[list[Record], int, list[tuple[int, int]]]:
        """The intact records of ``seg``, where the last one ends, and the damaged regions before it.

        At a record that does not check out, the next intact record is looked
        for (its frame and CRC checking out, its seq one of the next few): found,
        the bytes between are a damaged region and scanning goes on; not found,
        the scan ends there (a torn tail, for the newest segment).
        """
        records: list[Record] = []
        damaged: list[tuple[int, int]] = []
        offset = 0
        with open(seg, "rb") as f:
            data = f.read()
        while offset + _FRAME.size <= len(data):
            rec = self._record_at(seg, data, offset)
            if rec is None:
                after = records[-1].seq + 1 if records else None
                resync = self._resync(seg, data, offset + 1, after)
                if resync is None:
                    break
                damaged.append((offset, resync - offset))
                offset = resync
                continue
            records.append(rec)
            offset += rec.disk_bytes
        return records, offset, damaged

    @staticmethod
    def _record_at(seg: Path, data: bytes, offset: int) -> Record | None:
        if offset + _FRAME.size > len(data):
            return None
        length, crc = _FRAME.unpack_from(data, offset)
        start = offset + _FRAME.size
        end = start + length
        if length < _HEAD.size or length > MAX_RECORD_BYTES or end > len(data):
            return None
        body = memoryview(data)[start:end]
        if zlib.crc32(body) != crc:
            return None
        seq, spans, plen, digest = _HEAD.unpack_from(body, 0)
        if _HEAD.size + plen > length:
            return None
        project = bytes(body[_HEAD.size:_HEAD.size + plen]).decode("utf-8", "replace")
        payload_off = start + _HEAD.size + plen
        return Record(seq, project, digest, spans, seg, payload_off, end - payload_off, end - offset)

    def _resync(self, seg: Path, data: bytes, pos: int, next_seq: int | None) -> int | None:
        """Offset of the first intact record at or after ``pos`` whose seq is among the next few."""
        if next_seq is None:  # damage before the segment's first record: its name says the first seq
            try:
                next_seq = int(seg.name[: -len(_SUFFIX)])
            except ValueError:
                return None
        best: int | None = None
        for seq in range(next_seq, next_seq + _RESYNC_SEQS):
            needle = struct.pack("<Q", seq)
            at = data.find(needle, pos + _FRAME.size)
            while at != -1 and (best is None or at - _FRAME.size < best):
                start = at - _FRAME.size
                rec = self._record_at(seg, data, start)
                if rec is not None and rec.seq == seq:
                    best = start
                    break
                at = data.find(needle, at + 1)
        return best

    def _read_checkpoint(self) -> tuple[int, Intent | None]:
        path = self.dir / _CHECKPOINT
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            return 0, None
        except (OSError, ValueError) as exc:
            # Starting from 0 replays everything still on disk; the insert
            # tokens of records already stored are unknown, so say so loudly.
            logger.error("write-ahead log checkpoint %s unreadable (%s); replaying all segments", path, exc)
            return 0, None
        raw = doc.get("intent")
        intent = Intent(int(raw["first"]), int(raw["last"]), str(raw["token"])) if raw else None
        return int(doc.get("committed", 0)), intent

    # --- appending ----------------------------------------------------------------

    @property
    def next_seq(self) -> int:
        return self._next_seq

    def append(self, project: str, digest: bytes, spans: int, payload: bytes, *, cache: bool = True) -> Record:
        """Write one request; ``record.durable`` resolves once it is fsync'd."""
        pbytes = project.encode("utf-8")
        with self._lock:
            if self._failed is not None:
                raise WALError(f"write-ahead log unusable: {self._failed}")
            if self._closed:
                raise WALError("write-ahead log is closed")
            seq = self._next_seq
            head = _HEAD.pack(seq, spans, len(pbytes), digest)
            body_len = len(head) + len(pbytes) + len(payload)
            crc = zlib.crc32(payload, zlib.crc32(pbytes, zlib.crc32(head)))
            frame = _FRAME.pack(body_len, crc)
            if self._fd is None or self._active_size >= self.segment_bytes:
                self._rotate(seq)
            assert self._fd is not None and self._active is not None
            start = self._active_size
            try:
                _write_all(self._fd, (frame, head, pbytes, payload))
            except OSError as exc:
                # Leave no half record behind: later records must follow a whole one.
                try:
                    os.ftruncate(self._fd, start)
                except OSError:
                    self._failed = exc
                raise WALError(f"could not write to the write-ahead log: {exc}") from exc
            size = _FRAME.size + body_len
            self._active_size += size
            self._next_seq = seq + 1
            self._segments[self._active] = seq
            self.disk_bytes += size
            rec = Record(seq, project, digest, spans, self._active, start + _FRAME.size + len(head) + len(pbytes),
                         len(payload), size, payload if cache else None)
        with self._cond:
            self._waiting.append(rec)
            self._cond.notify()
        return rec

    def _rotate(self, first_seq: int) -> None:
        if self._fd is not None:
            if self.fsync:
                os.fsync(self._fd)  # everything in the old segment is durable before we leave it
            os.close(self._fd)
        path = self.dir / _segment_name(first_seq)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._active = path
        self._active_size = os.fstat(self._fd).st_size
        self._segments.setdefault(path, first_seq - 1)
        if self.fsync:
            _fsync_dir(self.dir)

    def _flush_loop(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closed:
                    self._cond.wait()
                batch, self._waiting = self._waiting, []
                if not batch and self._closed:
                    return
            error: BaseException | None = None
            with self._lock:
                fd = self._fd
            try:
                if self.fsync and fd is not None:
                    os.fsync(fd)
                self.fsyncs += 1
            except OSError as exc:
                # After a failed fsync the kernel may have dropped the dirty pages;
                # nothing written since can be promised, so stop taking writes.
                error = exc
                with self._lock:
                    self._failed = exc
                logger.error("fsync of the write-ahead log failed: %s", exc)
            for rec in batch:
                if not rec.durable.done():
                    if error is None:
                        rec.durable.set_result(None)
                    else:
                        rec.durable.set_exception(WALError(f"write-ahead log fsync failed: {error}"))

    # --- reading and committing -------------------------------------------------------

    def read(self, rec: Record) -> bytes:
        if rec.payload is not None:
            return rec.payload
        with open(rec.segment, "rb") as f:
            f.seek(rec.offset)
            data = f.read(rec.length)
        if len(data) != rec.length:
            raise WALError(f"record {rec.seq} is shorter on disk than recorded")
        return data

    def _read_journal(self) -> list[Intent]:
        """The intents journaled by earlier processes (a torn or garbled line is skipped)."""
        try:
            text = (self.dir / _JOURNAL).read_text(errors="replace")
        except OSError:
            return []
        out = []
        for line in text.splitlines():
            try:
                raw = json.loads(line)
                out.append(Intent(int(raw["first"]), int(raw["last"]), str(raw["token"])))
            except (ValueError, KeyError, TypeError):
                continue
        return out

    def begin(self, intent: Intent) -> None:
        """Write down an insert's range and token before sending it (durably): journal, then checkpoint."""
        line = json.dumps({"first": intent.first, "last": intent.last, "token": intent.token}) + "\n"
        with open(self.dir / _JOURNAL, "a") as f:
            f.write(line)
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        self._journal.append(intent)
        self._write_checkpoint({"committed": self._committed,
                                "intent": {"first": intent.first, "last": intent.last, "token": intent.token}},
                               durable=True)

    def commit(self, last_seq: int, released_bytes: int) -> None:
        """Everything up to ``last_seq`` is in ClickHouse: forget it."""
        self._committed = max(self._committed, last_seq)
        # Not fsync'd: if this is lost, the intent is replayed and deduplicated.
        self._write_checkpoint({"committed": self._committed, "intent": None}, durable=False)
        with self._lock:
            self.disk_bytes = max(0, self.disk_bytes - released_bytes)
        self._delete_committed_segments()

    def _write_checkpoint(self, doc: dict[str, object], *, durable: bool) -> None:
        tmp = self.dir / (_CHECKPOINT + ".tmp")
        with open(tmp, "w") as f:
            f.write(json.dumps(doc))
            f.flush()
            if durable and self.fsync:
                os.fsync(f.fileno())
        os.replace(tmp, self.dir / _CHECKPOINT)
        if durable and self.fsync:
            _fsync_dir(self.dir)

    def _delete_committed_segments(self) -> None:
        """Delete fully stored segments, keeping the newest sealed one.

        The kept segment lets a restarted collector still recognise an exporter
        retrying a request that was acknowledged just before the crash.
        """
        with self._lock:
            sealed = sorted(p for p in self._segments if p != self._active)
            doomed = [p for p in sealed[:-1] if self._segments[p] <= self._committed]
            for p in doomed:
                del self._segments[p]
        for p in doomed:
            try:
                p.unlink()
            except FileNotFoundError:
                pass
        if doomed:
            logger.debug("deleted %d stored write-ahead log segments", len(doomed))
            self._prune_journal()

    def _prune_journal(self) -> None:
        """Forget the intents of records no longer on disk (atomically: old or new file, both valid)."""
        with self._lock:
            oldest = min((int(p.name[: -len(_SUFFIX)]) for p in self._segments
                          if p.name[: -len(_SUFFIX)].isdigit()), default=self._committed + 1)
        keep = [i for i in self._journal if i.last >= oldest]
        if len(keep) == len(self._journal):
            return
        tmp = self.dir / (_JOURNAL + ".tmp")
        with open(tmp, "w") as f:
            f.write("".join(json.dumps({"first": i.first, "last": i.last, "token": i.token}) + "\n" for i in keep))
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        os.replace(tmp, self.dir / _JOURNAL)
        self._journal = keep

    def segments(self) -> Iterator[Path]:
        with self._lock:
            return iter(sorted(self._segments))

    @property
    def committed_seq(self) -> int:
        return self._committed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._flusher is not None:
            self._flusher.join(10)
            self._flusher = None
        with self._lock:
            if self._fd is not None:
                if self.fsync and self._failed is None:
                    try:
                        os.fsync(self._fd)
                    except OSError:
                        pass
                os.close(self._fd)
                self._fd = None
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = None


def _write_all(fd: int, parts: tuple[bytes, ...]) -> None:
    data = b"".join(parts)
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
