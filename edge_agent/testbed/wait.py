"""Waiting on state that other threads change (the daemon's events, a device's
health): there is no event to await across threads, so these poll it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def poll_until(condition: Callable[[], bool], within: float) -> None:
    """Events come from several threads; polling a condition is the simple way to
    wait for them. Raises TimeoutError after ``within`` seconds."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def until(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    """Poll ``condition`` (state that another thread changes) under a deadline."""

    async def poll() -> None:
        while not condition():  # noqa: ASYNC110 - no event to wait on across threads
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), seconds)
