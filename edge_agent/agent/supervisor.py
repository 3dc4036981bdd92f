"""One named asyncio task per long-lived job (capture, wake, turns, network
probe, timers, watchdog), restarted with a backoff when it fails.

A job that raises is logged with its traceback and reported (the daemon shows
the error state); it never takes the daemon down. A job that returns is done.
Stopping cancels everything with a deadline, because a library that swallows
``CancelledError`` must not keep ``systemctl stop`` waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]
CrashHandler = Callable[[str, BaseException], None]

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
HEALTHY_AFTER = 30.0
"""A job that ran this long before failing starts again from the first backoff."""


async def cancel_within(tasks: Iterable[asyncio.Task], deadline: float) -> set[asyncio.Task]:
    """Cancel ``tasks`` and wait at most ``deadline`` seconds for them; return the ones still
    running (stuck in a library), which the caller can only abandon."""
    pending = {t for t in tasks if not t.done()}
    for task in pending:
        task.cancel()
    if not pending:
        return set()
    _, stuck = await asyncio.wait(pending, timeout=deadline)
    for task in stuck:
        log.warning("task %s did not stop within %.1f s; abandoning it",
                    task.get_name(), deadline)
    return stuck


class Supervisor:
    """Runs named jobs; ``restarts[name]`` counts how often each was restarted."""

    def __init__(
        self,
        *,
        on_crash: CrashHandler | None = None,
        backoff_first: float = BACKOFF_FIRST,
        backoff_max: float = BACKOFF_MAX,
    ) -> None:
        self._on_crash = on_crash
        self._backoff_first = backoff_first
        self._backoff_max = backoff_max
        self._tasks: dict[str, asyncio.Task] = {}
        self.restarts: dict[str, int] = {}

    def start(self, name: str, job: Job) -> asyncio.Task:
        """Start (or replace) the job called ``name``."""
        old = self._tasks.get(name)
        if old is not None and not old.done():
            raise RuntimeError(f"job {name!r} is already running; stop it first")
        self.restarts.setdefault(name, 0)
        task = asyncio.create_task(self._keep_running(name, job), name=name)
        self._tasks[name] = task
        return task

    async def stop_job(self, name: str, deadline: float = 1.0) -> None:
        task = self._tasks.pop(name, None)
        if task is not None:
            await cancel_within([task], deadline)

    async def stop(self, deadline: float = 1.5) -> None:
        tasks, self._tasks = list(self._tasks.values()), {}
        await cancel_within(tasks, deadline)

    def running(self) -> dict[str, bool]:
        return {name: not task.done() for name, task in self._tasks.items()}

    async def _keep_running(self, name: str, job: Job) -> None:
        delay = self._backoff_first
        while True:
            started = time.monotonic()
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("job %s failed; restarting it", name)
                if self._on_crash is not None:
                    try:
                        self._on_crash(name, exc)
                    except Exception:  # the restart goes on; the report's failure is told
                        log.exception("reporting the failure of job %s failed", name)
            else:
                log.debug("job %s finished", name)
                return
            if time.monotonic() - started >= HEALTHY_AFTER:
                delay = self._backoff_first
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._backoff_max)
            self.restarts[name] += 1
            log.info("restarting job %s (restart %d)", name, self.restarts[name])
