"""Supervisor: a failing job is restarted with a backoff and reported, never fatal;
stopping has a deadline even when a job swallows its cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

import pytest

from edge_agent.agent.supervisor import Supervisor, cancel_within


def run(coro, timeout: float = 10.0):
    """Each test body runs on a fresh loop, under one overall timeout."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_failing_job_is_restarted_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    run(_failing_job_is_restarted_and_reported(caplog))


async def _failing_job_is_restarted_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    crashes: list[tuple[str, str]] = []
    runs = 0
    third_run = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise RuntimeError(f"boom {runs}")
        third_run.set()
        await asyncio.sleep(3600)

    sup = Supervisor(on_crash=lambda name, exc: crashes.append((name, str(exc))),
                     backoff_first=0.01, backoff_max=0.02)
    with caplog.at_level(logging.ERROR, logger="edge_agent.agent.supervisor"):
        sup.start("flaky", flaky)
        await asyncio.wait_for(third_run.wait(), 5)
    assert crashes == [("flaky", "boom 1"), ("flaky", "boom 2")]
    assert sup.restarts["flaky"] == 2
    assert sup.running() == {"flaky": True}
    # The traceback is in the log, not lost.
    assert any(r.exc_info and "boom 1" in str(r.exc_info[1]) for r in caplog.records)
    await asyncio.wait_for(sup.stop(1.0), 5)
    assert sup.running() == {}


def test_finished_job_is_not_restarted() -> None:
    run(_finished_job_is_not_restarted())


async def _finished_job_is_not_restarted() -> None:
    calls = 0

    async def once() -> None:
        nonlocal calls
        calls += 1

    sup = Supervisor(backoff_first=0.01)
    task = sup.start("once", once)
    await asyncio.wait_for(task, 5)
    await asyncio.sleep(0.05)
    assert calls == 1
    assert sup.running() == {"once": False}


def test_starting_a_running_job_twice_is_refused() -> None:
    run(_starting_a_running_job_twice_is_refused())


async def _starting_a_running_job_twice_is_refused() -> None:
    sup = Supervisor()
    sup.start("sleep", lambda: asyncio.sleep(3600))
    with pytest.raises(RuntimeError, match="already running"):
        sup.start("sleep", lambda: asyncio.sleep(3600))
    await asyncio.wait_for(sup.stop(1.0), 5)


def test_stop_abandons_a_job_that_swallows_cancellation() -> None:
    run(_stop_abandons_a_job_that_swallows_cancellation())


async def _stop_abandons_a_job_that_swallows_cancellation() -> None:
    """A library that eats CancelledError must not hang shutdown."""
    release = threading.Event()
    swallowed = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                swallowed.set()  # and carries on, as a badly written library would

    sup = Supervisor()
    task = sup.start("stubborn", stubborn)
    await asyncio.sleep(0.05)
    await asyncio.wait_for(sup.stop(0.1), 5)
    assert swallowed.is_set()
    assert not task.done()  # abandoned, not awaited forever
    release.set()
    await asyncio.wait_for(task, 5)


def test_cancel_within_returns_only_the_stuck_tasks() -> None:
    run(_cancel_within_returns_only_the_stuck_tasks())


async def _cancel_within_returns_only_the_stuck_tasks() -> None:
    async def polite() -> None:
        await asyncio.sleep(3600)

    async def deaf() -> None:
        for _ in range(100):
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.01)

    a, b = asyncio.create_task(polite()), asyncio.create_task(deaf())
    await asyncio.sleep(0.01)
    stuck = await asyncio.wait_for(cancel_within([a, b], 0.05), 5)
    assert stuck == {b}
    assert a.cancelled()
    await asyncio.wait_for(b, 5)
