"""Lasting failures that are not a device going away: a state file that cannot be
saved, an event log on a full disk, a dead playback thread. Each is one named
entry until it works again; ``status`` lists them, the agent shows the error
state while any is set (LEDs follow), and each change is a ``fault`` event.
"""

from __future__ import annotations

import logging
import threading

from edge_agent.events import EventBus

log = logging.getLogger(__name__)


class Faults:
    """Thread-safe: the player thread and the event log report here too."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._faults: dict[str, str] = {}
        self._lock = threading.Lock()

    def set(self, where: str, message: str) -> None:
        """``where`` is broken; logged and announced once per new message."""
        with self._lock:
            if self._faults.get(where) == message:
                return
            self._faults[where] = message
        log.error("%s: %s", where, message)
        self._bus.emit("fault", where=where, message=message, ok=False)

    def clear(self, where: str) -> None:
        """``where`` works again."""
        with self._lock:
            if self._faults.pop(where, None) is None:
                return
        log.warning("%s works again", where)
        self._bus.emit("fault", where=where, message="", ok=True)

    def as_dict(self) -> dict[str, str]:
        with self._lock:
            return dict(self._faults)

    def __bool__(self) -> bool:
        with self._lock:
            return bool(self._faults)
