"""Capture of scored encounters: buffered, written by a background thread, never in the way.

`Capturer.scored` only appends the already-made response objects to a queue (microseconds);
turning them into rows, keying the ids and writing to the sink happen on the flusher thread.
Nothing here raises into a prediction: a full buffer drops records and a failing sink loses
its batch, and both are counted in `stats` (and logged as counts, never values).
"""

from __future__ import annotations

import atexit
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from clinrisk.capture.keys import IdKeyer
from clinrisk.capture.records import Role, ScoredRecord, Source, identifiers, refused_row, scored_row
from clinrisk.ports import CaptureSink

log = logging.getLogger(__name__)
_INDEX = re.compile(r"\[\d+\]")


def problem_field(path: str) -> str:
    """`$.encounters[3].age` → `$.encounters[].age`: counted per field, whichever encounter."""
    return _INDEX.sub("[]", path)


@dataclass
class CaptureStats:
    captured: int = 0
    written: int = 0
    dropped: int = 0
    errors: int = 0


@dataclass(frozen=True)
class _Pending:
    at: float
    request_id: str
    version: int
    source: Source
    role: Role
    items: Sequence[ScoredRecord] | Callable[[], Sequence[ScoredRecord]]
    refused: Sequence[str] = ()
    task: str | None = None  # None: the capturer's own task


@dataclass
class Capturer:
    sink: CaptureSink
    keyer: IdKeyer
    task: str
    batch_records: int = 500
    flush_seconds: float = 2.0
    buffer_limit: int = 50_000
    clock: Callable[[], float] = time.time
    stats: CaptureStats = field(default_factory=CaptureStats)
    _queue: deque[_Pending] = field(default_factory=deque)
    _queued: int = 0
    _wake: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def scored(
        self,
        *,
        request_id: str,
        version: int,
        items: Sequence[ScoredRecord] | Callable[[], Sequence[ScoredRecord]],
        count: int,
        source: Source = "api",
        role: Role = "answer",
        task: str | None = None,
    ) -> None:
        """Queue `count` scored encounters. `items` may be a function that makes them, so the
        caller pays only for the append; it runs on the flusher thread. `task` names the task
        they were scored for (the capturer's own when None), so monitoring keeps tasks apart."""
        try:
            self._enqueue(_Pending(self.clock(), request_id, version, source, role, items, task=task), count)
        except Exception:  # capture must never fail a prediction
            self.stats.errors += count

    def refused(self, *, request_id: str, paths: Sequence[str], task: str | None = None) -> None:
        """A request refused by validation (422): the field paths of its problems, no values."""
        fields = sorted({problem_field(p) for p in paths})
        try:
            self._enqueue(_Pending(self.clock(), request_id, 0, "api", "answer", (), fields, task=task), 1)
        except Exception:
            self.stats.errors += 1

    def _enqueue(self, pending: _Pending, count: int) -> None:
        with self._lock:
            if self._queued + count > self.buffer_limit:
                self.stats.dropped += count
                return
            self._queue.append(pending)
            self._queued += count
            self.stats.captured += count
            if self._thread is None:
                self._start()
        if self._queued >= self.batch_records:
            self._wake.set()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="clinrisk-capture", daemon=True)
        self._thread.start()
        atexit.register(self.flush)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Write everything queued so far; returns the rows written. Safe from any thread."""
        with self._lock:
            pending = list(self._queue)
            self._queue.clear()
            self._queued = 0
        rows = self._rows(pending)
        written = 0
        for start in range(0, len(rows), self.batch_records):
            batch = rows[start : start + self.batch_records]
            try:
                self.sink.put(batch)
            except Exception as error:  # counted, never raised: see the module docstring
                self.stats.errors += len(batch)
                log.warning("capture write failed", extra={"rows": len(batch), "error": type(error).__name__})
            else:
                written += len(batch)
        self.stats.written += written
        return written

    def _rows(self, pending: list[_Pending]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for entry in pending:
            try:
                rows.extend(self._entry_rows(entry))
            except Exception as error:
                self.stats.errors += 1
                log.warning("capture record failed", extra={"error": type(error).__name__})
        return rows

    def _entry_rows(self, entry: _Pending) -> list[dict[str, Any]]:
        common = {
            "task": entry.task or self.task,
            "model_version": entry.version,
            "date": datetime.fromtimestamp(entry.at, UTC).strftime("%Y-%m-%d"),
            "captured_at": entry.at,
            "request_id": entry.request_id,
            "source": entry.source,
            "role": entry.role,
        }
        if entry.refused:
            return [refused_row(entry.refused, common=common)]
        items = entry.items() if callable(entry.items) else entry.items
        rows = []
        for item in items:
            encounter, patient = item.ids or identifiers(item.record)
            keyed = (self.keyer.record_key(encounter), self.keyer.patient_key(patient))
            rows.append(scored_row(item, keyed=keyed, common=common))
        return rows
