"""Announcements: texts from Home Assistant spoken one after the other, each
waiting for the conversation in progress to end, never cutting into it.

The agent speaks them like `edge-agent say`, so barge-in and stop cut one
short as they would a turn; mute drops it and everything queued behind it
(a muted speaker is asked for silence, not for a backlog later).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING

from edge_agent.state import AgentState

if TYPE_CHECKING:
    from edge_agent.agent.agent import Agent
    from edge_agent.events import Event, EventBus

log = logging.getLogger(__name__)

QUEUE_LIMIT = 5
"""Announcements waiting at most; more are refused (a flood must not pile up)."""
FREE_STATES = (AgentState.IDLE, AgentState.ERROR)


class Announcer:
    def __init__(self, agent: Agent, bus: EventBus) -> None:
        self._agent = agent
        self._queue: asyncio.Queue[str] = asyncio.Queue(QUEUE_LIMIT)
        self._changed = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._unsubscribe = bus.subscribe(self._on_event)

    def put(self, text: str) -> bool:
        """Queue a text; False (and a log line) when the queue is full or muted."""
        if self._agent.muted:
            log.info("announcement dropped: muted")
            return False
        try:
            self._queue.put_nowait(text)
        except asyncio.QueueFull:
            log.warning("announcement dropped: %d already waiting", QUEUE_LIMIT)
            return False
        return True

    async def run(self) -> None:
        try:
            while True:
                text = await self._queue.get()
                if not await self._wait_until_free():
                    dropped = 1 + self._drain()
                    log.info("%d announcement(s) dropped: muted", dropped)
                    continue
                log.info("announcement: %d characters", len(text))
                try:
                    spoken = await self._agent.announce(text)
                except Exception:  # the next announcement must still be heard
                    log.exception("announcement failed")
                    continue
                if not spoken:
                    log.info("announcement cut off")
        finally:
            self._unsubscribe()

    async def _wait_until_free(self) -> bool:
        """Until no conversation runs (the state says so before its task has quite
        ended); False when the speaker is muted meanwhile."""
        agent = self._agent
        while agent.state not in FREE_STATES:
            if agent.muted:
                return False
            self._changed.clear()
            await self._changed.wait()
        return True

    def _drain(self) -> int:
        n = 0
        while not self._queue.empty():
            self._queue.get_nowait()
            n += 1
        return n

    def _on_event(self, event: Event) -> None:
        if event.name not in ("state", "mute"):
            return
        if threading.get_ident() == self._loop_thread:
            self._changed.set()
        else:
            self._loop.call_soon_threadsafe(self._changed.set)
