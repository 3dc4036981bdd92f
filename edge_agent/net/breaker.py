"""A circuit breaker per cloud stage, so an unreachable or failing service
costs one timeout, not one per turn.

    closed --failure--> open --cooldown over--> half-open --success--> closed
                          ^                         |
                          +---------failure---------+   (cooldown doubles)
"""

from __future__ import annotations

import enum
import math
import time


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Tracks one stage. Times are monotonic seconds; ``now`` is for tests."""

    def __init__(self, name: str, *, threshold: int = 1, cooldown: float = 5.0,
                 max_cooldown: float = 60.0) -> None:
        self.name = name
        self.threshold = threshold
        """Consecutive failures that open the breaker."""
        self.cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.failures = 0
        self._open_until: float | None = None  # None: closed; math.inf: until reset()
        self._trips = 0

    def state(self, now: float | None = None) -> BreakerState:
        if self._open_until is None:
            return BreakerState.CLOSED
        now = time.monotonic() if now is None else now
        return BreakerState.OPEN if now < self._open_until else BreakerState.HALF_OPEN

    def allow(self, now: float | None = None) -> bool:
        """True when a request may go out (closed, or half-open for a trial)."""
        return self.state(now) is not BreakerState.OPEN

    def success(self) -> None:
        self.failures = 0
        self._trips = 0
        self._open_until = None

    def failure(self, *, hold: float | None = None, now: float | None = None) -> None:
        """Count a failure. ``hold`` keeps it open that long (a Retry-After, or
        math.inf until ``success``); otherwise the cooldown doubles with each trip."""
        now = time.monotonic() if now is None else now
        self.failures += 1
        if hold is None and self.failures < self.threshold and self._open_until is None:
            return
        if hold is None:
            hold = min(self.max_cooldown, self.cooldown * 2 ** self._trips)
            self._trips += 1
        self._open_until = max(self._open_until or now, now + hold)

    def trip(self) -> None:
        """Open until ``success`` (the network is gone; the probe says when it is back)."""
        self.failure(hold=math.inf)
