"""sd_notify and the watchdog against a real Unix datagram socket standing in
for systemd's notification socket (what systemd reads is exactly what is sent)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import socket
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.service.notify import Notifier, Watchdog, progress_check, stall_check

WATCHDOG_SECONDS = 0.4  # pings every 0.2 s: quick tests, still many loop turns apart


def run(scenario: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(scenario, 30))


class NotifySocket:
    """The systemd end: a bound datagram socket, read one message at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)

    @staticmethod
    def parse(data: bytes) -> dict[str, str]:
        return dict(line.split("=", 1) for line in data.decode().split("\n") if line)

    def receive(self, timeout: float = 5.0) -> dict[str, str]:
        """The next message, for tests that notify from their own thread."""
        readable, _, _ = select.select([self.sock], [], [], timeout)
        assert readable, "no notification within the timeout"
        return self.parse(self.sock.recv(4096))

    def pending(self) -> list[dict[str, str]]:
        """Every message already queued, without waiting."""
        messages = []
        with contextlib.suppress(BlockingIOError):
            while True:
                messages.append(self.parse(self.sock.recv(4096)))
        return messages

    async def next_ping(self) -> None:
        """Wait, without blocking the loop, for a WATCHDOG=1 message (callers bound it)."""
        loop = asyncio.get_running_loop()
        while self.parse(await loop.sock_recv(self.sock, 4096)).get("WATCHDOG") != "1":
            pass


@pytest.fixture
def systemd_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    server = NotifySocket(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(server.path))
    monkeypatch.setenv("WATCHDOG_USEC", str(int(WATCHDOG_SECONDS * 1_000_000)))
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    yield server
    server.sock.close()


def test_without_notify_socket_everything_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    notifier = Notifier()
    assert not notifier.enabled
    assert notifier.notify("READY=1") is False
    notifier.ready("listening")
    notifier.stopping()
    assert notifier.watchdog_interval() is None


def test_lifecycle_messages(systemd_socket: NotifySocket) -> None:
    notifier = Notifier()
    notifier.ready("listening for hey jarvis,\ncloud online")
    assert systemd_socket.receive() == {
        "READY": "1", "STATUS": "listening for hey jarvis, cloud online"}
    notifier.status("thinking")
    assert systemd_socket.receive() == {"STATUS": "thinking"}

    before = time.monotonic_ns() // 1000
    notifier.reloading()
    message = systemd_socket.receive()
    assert message["RELOADING"] == "1"
    # systemd compares MONOTONIC_USEC with CLOCK_MONOTONIC, which time.monotonic reads.
    assert before <= int(message["MONOTONIC_USEC"]) <= time.monotonic_ns() // 1000
    notifier.ready("listening")
    assert systemd_socket.receive()["READY"] == "1"

    notifier.extend_timeout(2.5)
    assert systemd_socket.receive() == {"EXTEND_TIMEOUT_USEC": "2500000"}
    notifier.stopping()
    assert systemd_socket.receive()["STOPPING"] == "1"


def test_watchdog_interval_comes_from_the_environment(
    systemd_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Notifier().watchdog_interval() == pytest.approx(WATCHDOG_SECONDS)
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # meant for another process
    assert Notifier().watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_PID")
    assert Notifier().watchdog_interval() == pytest.approx(WATCHDOG_SECONDS)
    monkeypatch.setenv("WATCHDOG_USEC", "0")
    assert Notifier().watchdog_interval() is None


def test_a_vanished_socket_is_logged_once_and_never_raises(
    systemd_socket: NotifySocket, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier()
    systemd_socket.path.unlink()
    with caplog.at_level(logging.WARNING, logger="edge_agent.service.notify"):
        for _ in range(3):
            notifier.watchdog()
    assert [r.getMessage() for r in caplog.records if "cannot notify" in r.getMessage()] == [
        "cannot notify systemd (WATCHDOG): No such file or directory"]


def test_pings_stop_while_a_check_fails_and_resume_after(
    systemd_socket: NotifySocket, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        stalled = 0
        checked = asyncio.Event()

        def capture() -> str | None:
            nonlocal stalled
            checked.set()
            if not stalled:
                return None
            stalled += 1  # the reason grows with the stall, as a real one does
            return f"capture stalled {stalled} s"

        async def ticks(n: int) -> None:
            for _ in range(n):
                checked.clear()
                await checked.wait()

        watchdog = Watchdog(Notifier(), [lambda: None, capture])
        task = asyncio.create_task(watchdog.run())
        try:
            for _ in range(3):
                await asyncio.wait_for(systemd_socket.next_ping(), 5)

            stalled = 2
            await asyncio.wait_for(ticks(1), 5)
            systemd_socket.pending()  # anything sent before the stall was seen
            await asyncio.wait_for(ticks(4), 5)
            assert systemd_socket.pending() == []
            assert watchdog.failing is not None
            assert watchdog.failing.startswith("capture stalled")

            stalled = 0
            await asyncio.wait_for(systemd_socket.next_ping(), 5)
            assert watchdog.failing is None
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        unhealthy = [r for r in caplog.records if "unhealthy" in r.getMessage()]
        assert len(unhealthy) == 1  # once, not on every tick
        assert "capture stalled 3 s" in unhealthy[0].getMessage()
        assert any("healthy again" in r.getMessage() for r in caplog.records)

    run(scenario())


def test_a_blocked_event_loop_sends_no_pings(
    systemd_socket: NotifySocket, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        watchdog = Watchdog(Notifier(), [])
        task = asyncio.create_task(watchdog.run())
        try:
            await asyncio.wait_for(systemd_socket.next_ping(), 5)

            async def hog_the_loop() -> list[dict[str, str]]:
                systemd_socket.pending()
                # A library call that never yields, the very thing the watchdog is for.
                time.sleep(WATCHDOG_SECONDS * 2.5)  # noqa: ASYNC251
                return systemd_socket.pending()

            assert await asyncio.wait_for(hog_the_loop(), 10) == []
            # The loop answers again, so do the pings.
            await asyncio.wait_for(systemd_socket.next_ping(), 5)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert watchdog.max_lag > WATCHDOG_SECONDS
        assert any("event loop was blocked" in r.getMessage() for r in caplog.records)

    run(scenario())


def test_a_check_that_raises_counts_as_unhealthy(
    systemd_socket: NotifySocket, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        ran = asyncio.Event()

        def broken() -> str | None:
            ran.set()
            raise RuntimeError("sensor gone")

        watchdog = Watchdog(Notifier(), [broken])
        task = asyncio.create_task(watchdog.run())
        try:
            await asyncio.wait_for(ran.wait(), 5)
            for _ in range(2):  # two more ticks: the first has finished, and another
                ran.clear()
                await asyncio.wait_for(ran.wait(), 5)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert watchdog.failing == "health check failed: RuntimeError('sensor gone')"
        assert watchdog.pings == 0
        assert systemd_socket.pending() == []
        tracebacks = [r for r in caplog.records if r.exc_info]
        assert len(tracebacks) == 1  # once, not on every tick

    run(scenario())


def test_without_a_watchdog_checks_still_run_but_nothing_is_sent(
    systemd_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        monkeypatch.delenv("WATCHDOG_USEC")
        ran = asyncio.Event()

        def check() -> str | None:
            ran.set()
            return None

        watchdog = Watchdog(Notifier(), [check])
        task = asyncio.create_task(watchdog.run())
        try:
            await asyncio.wait_for(ran.wait(), 5)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert watchdog.pings == 0
        assert systemd_socket.pending() == []

    run(scenario())


def test_stall_check_reports_how_long_progress_stopped() -> None:
    last: float | None = None
    check = stall_check("capture", lambda: last, limit=2.0)
    assert check() is None  # not started yet
    last = time.monotonic()
    assert check() is None
    last = time.monotonic() - 3.25
    reason = check()
    assert reason is not None
    assert reason.startswith("capture stalled 3.")


def test_progress_check_fails_only_while_the_count_stands_still() -> None:
    total = 0
    check = progress_check("capture", lambda: total, limit=0.05)
    assert check() is None
    time.sleep(0.1)
    reason = check()
    assert reason is not None and reason.startswith("capture stalled")
    total += 320  # audio arrived: healthy again at once
    assert check() is None


def test_a_full_notify_queue_drops_messages_instead_of_blocking(
        systemd_socket: NotifySocket) -> None:
    """Nobody reads the socket (systemd busy, a test that does not drain it):
    once its queue is full a ping is dropped with EAGAIN; the event loop that
    sends it must never wait on systemd."""
    notifier = Notifier()
    sent = [notifier.notify("WATCHDOG=1") for _ in range(200)]
    assert sent[0] is True
    assert sent[-1] is False, "the queue filled up and the send did not wait"
    systemd_socket.sock.setblocking(False)
    drained = 0
    with contextlib.suppress(BlockingIOError):
        while systemd_socket.sock.recv(4096):
            drained += 1
    assert drained == sent.count(True)
    assert notifier.notify("READY=1") is True, "sends again once there is room"
