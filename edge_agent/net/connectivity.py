"""Is the cloud reachable? Passive (the agent reports how real requests went)
plus an active probe while offline, so going offline costs one timeout and
coming back is noticed without a user asking.

Offline-type failures (refused, DNS, TLS including a wrong clock before NTP,
timeouts before the first byte, 5xx: ``CloudError.offline``) trip every stage's
breaker, because all stages share one service. Anything else (429, a 4xx about
our request, a stream broken mid-way) only counts against its own stage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from edge_agent.config import Settings
from edge_agent.errors import CAUSES, KEY_CAUSES, CloudError
from edge_agent.events import EventBus
from edge_agent.net.breaker import BreakerState, CircuitBreaker

log = logging.getLogger(__name__)

STAGES = ("stt", "llm", "tts")
STAGE_FAILURES = 3
"""Consecutive non-offline failures of one stage that open its breaker."""
PROBE_TIMEOUT = 15.0
"""Backstop on one probe, in case the probe's own timeouts do not fire."""

Probe = Callable[[], Awaitable[bool]]
"""True when the service answers; False, or a CloudError whose ``cause`` says why, when not."""


class Connectivity:
    """Per-stage circuit breakers and the offline probe. Use from the event loop thread."""

    def __init__(self, settings: Settings, bus: EventBus, probe: Probe, *,
                 online: bool = True, unavailable: CloudError | None = None) -> None:
        """``unavailable``: known before any probe (no API key, cloud disabled): start
        offline with that cause, said once here rather than again by every probe."""
        self._bus = bus
        self._probe = probe
        self._interval = settings.offline.probe_interval
        self._max_interval = max(settings.offline.probe_max_interval, self._interval)
        self.breakers = {
            stage: CircuitBreaker(stage, threshold=STAGE_FAILURES, cooldown=self._interval,
                                  max_cooldown=self._max_interval)
            for stage in STAGES
        }
        self._online = online
        self.checked = asyncio.Event()
        """Set once the cloud's state is known: a probe or a real request answered or
        failed. Until then ``state`` is "checking", not "online"."""
        self.cause = ""
        """Why the cloud is unavailable: a CloudError.cause ("no_key", "dns"...) or ""."""
        self.reason = ""
        """The same in words, with the detail (status code, library error)."""
        self._offline = asyncio.Event()
        self._nudged = asyncio.Event()
        self._last_probe = float("-inf")
        self._failed_probe = ("no answer", "")
        self._not_before = float("-inf")  # a 503's Retry-After: no probe before this
        if unavailable is not None:
            self.checked.set()
            self._go_offline(unavailable.reason, unavailable.cause)
        elif not online:
            self._go_offline("assumed offline at start")
        self.probes = 0
        """Probes sent so far (for status and tests)."""

    @property
    def online(self) -> bool:
        return self._online

    @property
    def state(self) -> str:
        """"online", "offline" or "checking" (no answer yet: online is only assumed)."""
        if not self._online:
            return "offline"
        return "online" if self.checked.is_set() else "checking"

    @property
    def key_problem(self) -> str | None:
        """"the API key is missing" or "... was refused" while that keeps the cloud
        out: the owner must act, so the speaker says it instead of a generic notice."""
        if self._online or self.cause not in KEY_CAUSES:
            return None
        return CAUSES[self.cause]

    def allow(self, stage: str) -> bool:
        """False while the stage's breaker is open: fail over at once, pay no timeout."""
        return self.breakers[stage].allow()

    def record_success(self, stage: str) -> None:
        self.checked.set()
        self.breakers[stage].success()
        if not self._online:
            self._go_online(f"{stage} request succeeded")

    def record_failure(self, stage: str, error: CloudError) -> None:
        if error.offline:
            self.checked.set()
            if error.retry_after:  # capped: a wrong header must not keep us offline for hours
                hold = min(error.retry_after, self._max_interval)
                self._not_before = max(self._not_before, time.monotonic() + hold)
            if self._online:
                self._go_offline(f"{stage}: {error.reason}", error.cause)
            else:
                self._note_cause(error.reason, error.cause)
                self.breakers[stage].trip()
            return
        # 429: the service told us how long to stay away from this stage.
        self.breakers[stage].failure(hold=error.retry_after)
        if not self.breakers[stage].allow():
            log.warning("cloud %s paused after %s", stage, error.reason)

    def nudge(self) -> None:
        """Probe soon rather than after the whole backoff wait: call it when a turn
        starts while offline, so a network that came back serves the next turn.
        At most one probe per ``offline.probe_interval``."""
        if not self._online:
            self._nudged.set()

    def status(self) -> dict[str, object]:
        """For the status socket: the state, why it is offline, each breaker's state."""
        return {"online": self._online, "state": self.state, "cause": self.cause,
                "reason": self.reason, "probes": self.probes,
                "breakers": {s: str(b.state()) for s, b in self.breakers.items()}}

    def _go_offline(self, reason: str, cause: str = "") -> None:
        self._online = False
        self.cause, self.reason = cause, reason
        for breaker in self.breakers.values():
            breaker.trip()
        self._offline.set()
        log.warning("cloud unavailable: %s", reason)
        self._bus.emit("network", online=False, reason=reason, cause=cause)

    def _note_cause(self, reason: str, cause: str) -> None:
        """Offline already, for a new reason (DNS back but the key refused): logged
        when the kind changes, not on every failed probe."""
        if cause != self.cause:
            log.warning("cloud still unavailable: %s", reason)
        self.cause, self.reason = cause, reason

    def _go_online(self, reason: str) -> None:
        self._online = True
        self.cause = self.reason = ""
        for breaker in self.breakers.values():
            breaker.success()
        self._offline.clear()
        self._nudged.clear()
        log.info("back online: %s", reason)
        self._bus.emit("network", online=True, reason=reason)

    async def _probe_once(self) -> bool:
        """One probe; a failure's cause is kept for status (reported while offline)."""
        self.probes += 1
        self._last_probe = time.monotonic()
        try:
            answered = bool(await asyncio.wait_for(self._probe(), PROBE_TIMEOUT))
        except CloudError as exc:
            self._failed_probe = (exc.reason, exc.cause)
            answered = False
        except Exception as exc:  # TimeoutError included: a probe that fails is just "not yet"
            log.debug("probe failed: %r", exc)
            self._failed_probe = (f"no answer ({type(exc).__name__})", "")
            answered = False
        else:
            if not answered:
                self._failed_probe = ("no answer", "")
        self.checked.set()
        if not answered and not self._online:
            self._note_cause(*self._failed_probe)
        return answered

    async def first_check(self) -> None:
        """One probe, unless the cloud is known to be unavailable: online, or offline
        with the probe's cause (logged as the daemon logs it at start)."""
        if self._online:
            if await self._probe_once():
                log.info("cloud online: the service answered")
            elif self._online:
                self._go_offline(*self._failed_probe)

    async def run(self) -> None:
        """Probe once at start (the device may boot with no network), then, each
        time it goes offline, probe with a doubling wait until the service answers."""
        await self.first_check()
        while True:
            await self._offline.wait()
            wait = self._interval
            while not self._online:
                await self._sleep(wait)
                if self._online:  # a real request got through meanwhile
                    break
                if await self._probe_once():
                    if not self._online:
                        self._go_online("probe answered")
                    break
                wait = min(wait * 2, self._max_interval)
                log.debug("still offline; next probe in %.0f s", wait)

    async def _sleep(self, wait: float) -> None:
        """Wait ``wait`` seconds, or less when nudged (but a whole probe interval
        after the last probe at least), and never before a Retry-After ends."""
        deadline = time.monotonic() + wait
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._nudged.wait(), wait)
        self._nudged.clear()
        earliest = max(min(deadline, self._last_probe + self._interval), self._not_before)
        if (pause := earliest - time.monotonic()) > 0:
            await asyncio.sleep(pause)

    def __repr__(self) -> str:
        open_ = [s for s, b in self.breakers.items() if b.state() is not BreakerState.CLOSED]
        return f"<Connectivity online={self._online} open={open_}>"
