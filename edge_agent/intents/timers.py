"""Kitchen timers that ring even offline and survive a restart.

Deadlines are kept on the monotonic clock while the daemon runs (a Pi without
a real-time clock jumps hours when NTP syncs after boot) and persisted as wall
clock time, the only clock that means anything across a restart. A timer that
came due while the daemon was down rings as soon as ``run`` starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edge_agent.errors import StateError
from edge_agent.statefile import StateSaver, load_json, move_aside

if TYPE_CHECKING:
    from edge_agent.faults import Faults

log = logging.getLogger(__name__)

MAX_TIMERS = 20
"""Timers running at once: a kitchen needs a handful; a flood of them (a runaway
model, a script) would ring for minutes and fill the state file."""
MAX_LABEL_CHARS = 40
"""Characters of a timer's name ("the second batch of cookies" fits)."""


def timer_label(label: str) -> str:
    """The one spelling of a timer's name: "The Pasta Timer" -> "pasta"."""
    label = " ".join(label.lower().split())
    label = label.removeprefix("the ").removeprefix("my ")
    return label.removesuffix("timer").strip()


@dataclass(frozen=True)
class Timer:
    label: str
    """Lowercase name ("pasta"); empty for an unnamed timer."""
    duration: float
    """Seconds it was set for."""
    deadline: float
    """``time.monotonic()`` at which it rings."""

    @property
    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    @property
    def overdue(self) -> float:
        """Seconds since it was due: more than a moment when it came due while
        the daemon was down ("your pasta timer went off 3 minutes ago")."""
        return max(0.0, time.monotonic() - self.deadline)


class Timers:
    """The set of running timers, persisted as JSON at ``path``.

    ``on_ring`` is called on the event loop thread, once per timer, when it is
    due; a rung timer is gone from the set. A failed save is reported to
    ``faults`` (the timer still rings today); a corrupt file is moved aside.
    """

    def __init__(self, path: Path | str, on_ring: Callable[[Timer], None], *,
                 faults: Faults | None = None) -> None:
        self.path = Path(path)
        self._on_ring = on_ring
        self._faults = faults
        self._saver = StateSaver(self.path, self._save_failed)
        self._timers: list[Timer] = self._load()
        self._changed = asyncio.Event()

    def _load(self) -> list[Timer]:
        try:
            records = load_json(self.path)
        except StateError as exc:
            log.warning("%s; starting without timers", exc)
            return []
        if records is None:
            return []
        offset = time.monotonic() - time.time()
        timers = []
        bad = not isinstance(records, list)
        for record in records if isinstance(records, list) else []:
            try:
                timers.append(Timer(str(record["label"]), float(record["duration"]),
                                    float(record["due"]) + offset))
            except (KeyError, TypeError, ValueError):
                log.warning("timers file %s: skipping bad entry %r", self.path, record)
                bad = True
        if bad:  # the next save would drop what could not be read: keep it for the owner
            log.warning("timers file %s has unreadable content; %s", self.path,
                        move_aside(self.path))
        if timers:
            log.info("restored %d timer(s) from %s", len(timers), self.path)
        return sorted(timers, key=lambda t: t.deadline)

    def _save(self) -> None:
        offset = time.time() - time.monotonic()
        records = [{"label": t.label, "duration": t.duration, "due": round(t.deadline + offset, 3)}
                   for t in self._timers]
        self._changed.set()
        # A full or read-only disk must not stop a timer from ringing today: the
        # failure is reported and the save retried.
        with contextlib.suppress(StateError):
            self._saver.save(records)

    def _save_failed(self, reason: str | None) -> None:
        if self._faults is None:
            if reason is not None:
                log.warning("%s", reason)
        elif reason is None:
            self._faults.clear("timers")
        else:
            self._faults.set("timers", reason)

    def set(self, seconds: float, label: str = "") -> Timer:
        """Start a timer; a new one with the label of a running one replaces it.
        ValueError (a sentence to speak) past MAX_TIMERS or MAX_LABEL_CHARS."""
        if not seconds > 0:
            raise ValueError(f"timer length must be positive, got {seconds}")
        label = timer_label(label)
        if len(label) > MAX_LABEL_CHARS:
            raise ValueError(f"A timer name can be at most {MAX_LABEL_CHARS} characters.")
        replaces = bool(label) and any(t.label == label for t in self._timers)
        if len(self._timers) >= MAX_TIMERS and not replaces:
            raise ValueError(f"I can run at most {MAX_TIMERS} timers at once.")
        timer = Timer(label, float(seconds), time.monotonic() + seconds)
        if label:
            self._timers = [t for t in self._timers if t.label != label]
        self._timers = sorted([*self._timers, timer], key=lambda t: t.deadline)
        self._save()
        log.info("timer %r set for %.0f s", label, seconds)
        return timer

    def cancel(self, label: str | None = None) -> int:
        """Cancel the timer(s) with this label, or all with None; the number cancelled."""
        keep = [] if label is None else [t for t in self._timers
                                         if t.label != timer_label(label)]
        cancelled = len(self._timers) - len(keep)
        if cancelled:
            self._timers = keep
            self._save()
        return cancelled

    def remaining(self) -> list[Timer]:
        """Running timers, soonest first."""
        return list(self._timers)

    async def run(self) -> None:
        """Ring timers as they come due, until cancelled."""
        while True:
            self._changed.clear()
            now = time.monotonic()
            due = [t for t in self._timers if t.deadline <= now]
            if due:
                self._timers = [t for t in self._timers if t.deadline > now]
                self._save()
                for timer in due:
                    log.info("timer %r rings", timer.label)
                    try:
                        self._on_ring(timer)
                    except Exception:
                        log.exception("timer ring handler failed")
                continue
            wait = self._timers[0].deadline - now if self._timers else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), wait)
