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
from typing import Any, TextIO

log = logging.getLogger(__name__)

# name -> required fields (beyond "t" and "event"). Extra fields are allowed.
EVENT_FIELDS: dict[str, frozenset[str]] = {
    name: frozenset(fields)
    for name, fields in {
        "state": ("state",),
        "wake": ("model", "score"),
        "utterance": ("start", "end", "duration"),
        "transcript": ("text", "engine"),
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


class EventLog:
    """Appends one JSON object per line and flushes it, so a crash or SIGKILL
    loses at most the event being written."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO | None = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        line = json.dumps(event.to_dict(), ensure_ascii=False, default=str)
        with self._lock:
            if self._file is None:
                return
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
