"""Talking to systemd: readiness, status, reload and stop notifications, and a
watchdog that pings only while the pipeline is healthy.

Run by hand (no ``NOTIFY_SOCKET``) every call is a no-op, so the daemon calls
these unconditionally.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

Check = Callable[[], str | None]
"""A health check: None when healthy, else a short reason ("capture stalled 3.2 s")."""

# Without a systemd watchdog the checks still run this often, so a stalled
# pipeline shows up in the log of a daemon started by hand too.
UNSUPERVISED_CHECK_INTERVAL = 5.0


def _send_nonblocking(path: str) -> Callable[[str], bool]:
    """sd_notify(3)'s protocol without its blocking send: a notify socket whose
    queue is full (systemd busy, or a test that is not reading) drops the message
    with EAGAIN instead of stalling the event loop that sends it."""
    address = "\0" + path[1:] if path.startswith("@") else path

    def send(message: str) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.sendto(message.encode(), address)
        return True

    return send


class Notifier:
    """sd_notify(3): each message is one datagram of ``KEY=value`` lines to
    ``$NOTIFY_SOCKET``, sent without blocking."""

    def __init__(self) -> None:
        path = os.environ.get("NOTIFY_SOCKET", "")
        self.enabled = path.startswith(("/", "@"))
        self._send: Callable[[str], bool] | None = _send_nonblocking(path) if self.enabled \
            else None
        self._failed = False

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` ("READY=1", "STATUS=...") as one message; False if not sent."""
        if self._send is None:
            return False
        try:
            sent = bool(self._send("\n".join(fields)))
        except OSError as exc:
            sent = False
            reason = exc.strerror or str(exc)
        else:
            reason = "sd_notify returned no delivery"
        if not sent and not self._failed:
            # Once: a vanished socket would otherwise log on every watchdog ping.
            log.warning("cannot notify systemd (%s): %s", fields[0].split("=")[0], reason)
        self._failed = not sent
        return sent

    def ready(self, status: str) -> None:
        """Start-up (or a reload) is complete: audio open, models loaded."""
        self.notify("READY=1", f"STATUS={_one_line(status)}")

    def status(self, text: str) -> None:
        """A human line for ``systemctl status``, e.g. "listening for hey jarvis, cloud online"."""
        self.notify(f"STATUS={_one_line(text)}")

    def reloading(self) -> None:
        """A reload has begun; ``ready()`` ends it. MONOTONIC_USEC lets systemd tell
        this reload from an earlier one (Type=notify-reload needs it)."""
        self.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}",
                    "STATUS=reloading configuration")

    def stopping(self) -> None:
        self.notify("STOPPING=1", "STATUS=stopping")

    def extend_timeout(self, seconds: float) -> None:
        """Ask for ``seconds`` more before systemd gives up on a slow start or stop."""
        self.notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    def watchdog(self) -> None:
        """One keep-alive ping. Use ``Watchdog`` rather than calling this directly."""
        self.notify("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Seconds systemd waits for a ping (WatchdogSec=), or None without a watchdog."""
        if not self.enabled:
            return None
        try:
            usec = int(os.environ.get("WATCHDOG_USEC", "0"))
            pid = int(os.environ.get("WATCHDOG_PID") or os.getpid())
        except ValueError:
            log.warning("ignoring malformed WATCHDOG_USEC/WATCHDOG_PID")
            return None
        # WATCHDOG_PID names the process systemd expects pings from; a child that
        # inherited the environment must not ping in its parent's name.
        if usec <= 0 or pid != os.getpid():
            return None
        return usec / 1_000_000


def _one_line(text: str) -> str:
    """STATUS= ends at a newline, so a multi-line text would spill into other fields."""
    return " ".join(text.split())


class Watchdog:
    """Pings WATCHDOG=1 every half interval, but only while every check passes.

    The pings come from a task on the event loop, so a blocked loop stops them by
    itself; the checks cover what the loop cannot see, above all the audio
    thread (capture no longer advancing). When a check fails the pings stop and
    systemd restarts the service after WatchdogSec; the reason is logged once,
    and again when health returns.
    """

    def __init__(self, notifier: Notifier, checks: list[Check]) -> None:
        self.notifier = notifier
        self.checks = list(checks)
        self.interval = notifier.watchdog_interval()
        self.failing: str | None = None
        """The current reason pings are withheld, None while healthy."""
        self._failing_check: Check | None = None
        self.pings = 0
        self.max_lag = 0.0
        """Longest the loop made the watchdog wait beyond its period, in seconds."""

    @property
    def period(self) -> float:
        return self.interval / 2 if self.interval else UNSUPERVISED_CHECK_INTERVAL

    def _first_failure(self) -> tuple[Check, str] | None:
        """The first failing check and its reason, or None when all pass."""
        for check in self.checks:
            try:
                reason = check()
            except Exception as exc:
                if check is not self._failing_check:  # the traceback once, not every tick
                    log.exception("watchdog check %r raised", check)
                reason = f"health check failed: {exc!r}"
            if reason:
                return check, reason
        return None

    async def run(self) -> None:
        """Check and ping until cancelled. Without a systemd watchdog it only logs."""
        if self.interval:
            log.info("watchdog: pinging every %.1f s while healthy", self.period)
        deadline = time.monotonic()
        while True:
            self._tick()
            deadline += self.period
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
            lag = time.monotonic() - deadline
            self.max_lag = max(self.max_lag, lag)
            if lag > self.period:
                # The loop was blocked (or the machine suspended); pinging now is
                # right since the loop answers again, but it deserves a line.
                log.warning("event loop was blocked for %.1f s", lag)
                deadline = time.monotonic()

    def _tick(self) -> None:
        found = self._first_failure()
        check, reason = found if found else (None, None)
        # Logged when the failing check changes, not on every tick: its reason
        # text changes as a stall grows ("stalled 3.0 s", "stalled 4.0 s"...).
        if check is not self._failing_check:
            if reason is None:
                log.warning("healthy again; watchdog pings resume")
            elif self.interval:
                log.error("unhealthy: %s; withholding watchdog pings so systemd restarts "
                          "edge-agent within %.0f s unless it recovers", reason, self.interval)
            else:
                log.error("unhealthy: %s", reason)
        self._failing_check = check
        self.failing = reason
        if reason is None and self.interval:
            self.notifier.watchdog()
            self.pings += 1


def stall_check(name: str, last_progress: Callable[[], float | None], limit: float) -> Check:
    """A check failing once ``last_progress()`` (a monotonic time, e.g.
    ``Microphone.last_write``) is more than ``limit`` seconds old. None or 0 means
    "not started yet" and passes, so the watchdog can run before the device opens."""

    def check() -> str | None:
        last = last_progress()
        if not last:
            return None
        age = time.monotonic() - last
        return f"{name} stalled {age:.1f} s" if age > limit else None

    check.__name__ = check.__qualname__ = f"stall_check[{name}]"
    return check


def progress_check(name: str, counter: Callable[[], int], limit: float) -> Check:
    """A check failing once ``counter()`` (e.g. ``RingBuffer.total``) has not grown
    for ``limit`` seconds. Unlike a timestamp that a reopen refreshes, a count only
    moves when audio really arrives, so a device that keeps reopening without ever
    delivering still stops the pings."""
    last_value = counter()
    last_change = time.monotonic()

    def check() -> str | None:
        nonlocal last_value, last_change
        value, now = counter(), time.monotonic()
        if value != last_value:
            last_value, last_change = value, now
            return None
        age = now - last_change
        return f"{name} stalled {age:.1f} s" if age > limit else None

    check.__name__ = check.__qualname__ = f"progress_check[{name}]"
    return check
