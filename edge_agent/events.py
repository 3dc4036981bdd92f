"""Typed events out of the core; LEDs, the JSON Lines log and the status socket
listen. The core never knows who is listening.

Every event has a name from ``EVENT_FIELDS`` and at least the fields listed
there; ``emit`` refuses anything else so the log's schema cannot drift.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

log = logging.getLogger(__name__)

# name -> required fields (beyond "t" and "event"). Extra fields are allowed.
EVENT_FIELDS: dict[str, frozenset[str]] = {
    name: frozenset(fields)
    for name, fields in {
        "state": ("state",),
        "wake": ("model", "score"),
        "wake_near_miss": ("model", "engine", "score", "threshold"),
        "wake_own_voice": ("model", "engine", "score"),
        "utterance": ("start", "end", "duration"),
        "transcript": ("text", "engine"),
        "transcript_partial": ("text",),
        "reply_text": ("text", "engine"),
        "audio_out_start": ("engine",),
        "audio_out_end": ("engine",),
        "barge_in": ("source",),
        "failover": ("stage", "from", "to", "reason"),
        "speculation": ("outcome",),
        "network": ("online",),
        "turn_done": ("timings",),
        "config_reloaded": (),
        "config_rejected": ("errors",),
        "mute": ("muted",),
        "audio_overrun": ("reader", "samples"),
        "audio_device": ("direction", "ok"),
        "error": ("where", "message"),
        "wake_arbitration": ("won", "claims"),
        "mqtt": ("connected",),
        "fault": ("where", "message", "ok"),
    }.items()
}


@dataclass(frozen=True)
class Event:
    name: str
    t: float
    """Monotonic seconds, comparable with ``time.monotonic()`` in the daemon."""
    fields: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"t": round(self.t, 6), "event": self.name, **self.fields}


Listener = Callable[[Event], None]


class EventBus:
    """Synchronous fan-out. Listeners must be quick and must not raise: a broken
    listener is logged and dropped from that one delivery, never the pipeline's
    problem. Thread-safe so audio and GPIO threads may emit too."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def emit(self, name: str, /, **fields: Any) -> Event:
        required = EVENT_FIELDS.get(name)
        if required is None:
            raise ValueError(f"unknown event {name!r}")
        missing = required - fields.keys()
        if missing:
            raise ValueError(f"event {name!r} lacks {sorted(missing)}")
        event = Event(name, time.monotonic(), fields)
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                log.exception("event listener %r failed on %s", listener, name)
        return event


MAX_EVENT_LOG_BYTES = 20 * 1024 * 1024
"""The log is rotated (one previous file, ``<name>.1``) when it grows past this."""
EVENT_LOG_RETRY_FIRST = 1.0
EVENT_LOG_RETRY_MAX = 60.0

ErrorReport = Callable[[str | None], None]
"""Told the reason when the log stops working, None when it works again."""


class EventLog:
    """Appends one JSON object per line, unbuffered, so a crash or SIGKILL loses at
    most the event being written.

    It never raises into the pipeline: a log that cannot be opened or written (a
    path under a file, a full disk) drops events, tells ``on_error`` and retries
    with doubling delays; closing never raises. Rotated at MAX_EVENT_LOG_BYTES.
    """

    def __init__(self, path: str | Path, *, on_error: ErrorReport | None = None,
                 max_bytes: int = MAX_EVENT_LOG_BYTES) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.on_error: ErrorReport = on_error or (lambda reason: None)
        """Told when the log stops or starts working again (replaceable)."""
        self._lock = threading.Lock()
        self._file: BinaryIO | None = None
        self._size = 0
        self._closed = False
        self._failing = False
        self._torn = False
        """A write was cut short: the next line starts on a new line of its own."""
        self._retry_at = 0.0
        self._delay = EVENT_LOG_RETRY_FIRST
        self._report(self._open_locked())

    def _open_locked(self) -> str | None:
        """Open (under the lock, or before it is shared); the failure reason or None."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("ab", buffering=0)
            self._size = self._file.tell()
        except OSError as exc:
            return self._failed(f"cannot open event log {self.path}: {exc}")
        return None

    def _failed(self, reason: str) -> str:
        self._retry_at = time.monotonic() + self._delay
        self._delay = min(self._delay * 2, EVENT_LOG_RETRY_MAX)
        return reason

    def _report(self, reason: str | None) -> None:
        """Outside the lock: the report may be an event that comes back here."""
        if reason is None and self._failing:
            self._failing = False
            self._delay = EVENT_LOG_RETRY_FIRST
            self.on_error(None)
        elif reason is not None and not self._failing:
            self._failing = True
            self.on_error(reason)

    def __call__(self, event: Event) -> None:
        line = (json.dumps(event.to_dict(), ensure_ascii=False, default=str) + "\n").encode()
        with self._lock:
            if self._closed or (self._failing and time.monotonic() < self._retry_at):
                return
            reason = self._write_locked(line)
        self._report(reason)

    def _write_locked(self, line: bytes) -> str | None:
        if self._file is None and (reason := self._open_locked()) is not None:
            return reason
        assert self._file is not None
        try:
            if self._size + len(line) > self.max_bytes and self._size:
                self._file.close()
                self._file = None
                self.path.replace(self.path.with_name(self.path.name + ".1"))
                if (reason := self._open_locked()) is not None:
                    return reason
                assert self._file is not None
            if self._torn:
                line = b"\n" + line
            written = self._file.write(line) or 0
            self._size += written
            self._torn = 0 < written < len(line)
            if written != len(line):
                raise OSError(f"short write ({written} of {len(line)} bytes)")
        except OSError as exc:
            return self._failed(f"cannot write event log {self.path}: {exc}")
        return None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError as exc:  # nothing buffered, but the file system may still say no
                log.warning("event log %s not closed cleanly: %s", self.path, exc)

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
