"""Speculative turns: start answering at the first short pause, play at the end.

The end-of-turn wait (``turn.end_silence``) is dead time: the user has finished
and the device only makes sure. At the first short pause
(``turn.speculative_pause``) the utterance so far goes to the turn pipeline at
once, held: it is recognized, answered and synthesized, but nothing plays, no
tool acts and nothing is remembered until the end of the turn confirms it with
the same words. A word after the pause discards it: its task is cancelled (the
streams close), and a ``speculation`` event with ``outcome="wasted"`` counts it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge_agent.config import TurnSettings
from edge_agent.events import EventBus
from edge_agent.vad import Pause, TurnBounds

from .supervisor import cancel_within

log = logging.getLogger(__name__)

DISCARD_DEADLINE = 1.0
"""A discarded answer unwinds (closing its streams) within this before the next turn."""

Begin = Callable[[Pause, "asyncio.Future[None]"], "asyncio.Task[Any]"]
"""Starts the held answer for a pause; the future confirms it."""


@dataclass
class Speculation:
    """An answer started on a pause, held until ``confirm``."""

    pause: Pause
    confirmed: asyncio.Future[None]
    task: asyncio.Task[Any]

    async def confirm(self) -> Any:
        """Let it play and act; returns what the turn pipeline returns."""
        if not self.confirmed.done():
            self.confirmed.set_result(None)
        return await self.task


class Speculator:
    """Watches one turn's pauses: starts a speculation at a long enough pause,
    discards it when speech resumes, hands it over when the turn ends on it."""

    def __init__(self, settings: TurnSettings, bus: EventBus, begin: Begin) -> None:
        self._pause = settings.speculative_pause
        self._bus = bus
        self._begin = begin
        self._current: Speculation | None = None
        self._discarded: list[asyncio.Task[Any]] = []

    def observe(self, pause: Pause | None) -> None:
        """Called after every judged frame with the detector's current pause."""
        current = self._current
        if current is not None and (
                pause is None or pause.voiced_end_index != current.pause.voiced_end_index):
            self._discard("speech resumed")
            current = None
        if current is None and pause is not None and pause.seconds >= self._pause:
            loop = asyncio.get_running_loop()
            confirmed: asyncio.Future[None] = loop.create_future()
            self._current = Speculation(pause, confirmed, self._begin(pause, confirmed))
            log.debug("speculating after %.2f s of silence", pause.seconds)

    def take(self, bounds: TurnBounds) -> Speculation | None:
        """The speculation the ended turn confirms (same words), if any; any other
        is discarded."""
        current = self._current
        if current is None:
            return None
        if not current.pause.same_speech(bounds):
            self._discard(f"turn ended differently ({bounds.outcome})")
            return None
        self._current = None
        self._bus.emit("speculation", outcome="used",
                       pause=round(current.pause.seconds, 3))
        return current

    async def close(self) -> None:
        """Discard what was not taken and wait (bounded) until it has unwound."""
        if self._current is not None:
            self._discard("turn over")
        tasks, self._discarded = self._discarded, []
        if tasks:
            await cancel_within(tasks, DISCARD_DEADLINE)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.warning("discarded speculative answer failed: %r", task.exception())

    def _discard(self, reason: str) -> None:
        current, self._current = self._current, None
        if current is None:
            return
        current.task.cancel()
        current.confirmed.cancel()
        self._discarded = [t for t in self._discarded if not t.done()]
        self._discarded.append(current.task)
        log.info("speculative answer discarded: %s", reason)
        self._bus.emit("speculation", outcome="wasted", reason=reason,
                       pause=round(current.pause.seconds, 3))
