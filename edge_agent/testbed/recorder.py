"""Every event a daemon emits, kept for a test to look at from any thread."""

from __future__ import annotations

import threading
from typing import Any

from edge_agent.events import Event


class EventRecorder:
    """Subscribe ``record`` to a bus; ``named`` filters what was seen."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def record(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def named(self, name: str, **match: Any) -> list[Event]:
        with self._lock:
            events = list(self.events)
        return [e for e in events if e.name == name
                and all(e.fields.get(k) == v for k, v in match.items())]
