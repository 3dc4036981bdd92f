"""The pieces of mid-turn failover that every stage shares: a deadline on each
streamed item (so a stalled server becomes a typed error, not silence), and one
place that reports a fault to the circuit breaker and to the event bus."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, TypeVar

from edge_agent.errors import CloudError
from edge_agent.events import EventBus

if TYPE_CHECKING:
    from edge_agent.net import Connectivity

log = logging.getLogger(__name__)

T = TypeVar("T")

# A cloud TTS stream produces audio several times faster than real time, so a pause
# this long inside one sentence is a stall; waiting longer would be heard as silence.
TTS_GAP_SECONDS = 1.0


class Hold:
    """Pauses the deadline of a ``timed`` stream while the stream works for us rather
    than waits on a server: a tool call runs inside the LLM's stream, and its time is
    no silence of the model's."""

    def __init__(self) -> None:
        self._timeout: asyncio.Timeout | None = None
        self._limit = 0.0
        self._depth = 0

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        self._depth += 1
        if self._timeout is not None:
            self._timeout.reschedule(None)
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth and self._timeout is not None:
                self._timeout.reschedule(asyncio.get_running_loop().time() + self._limit)

    @contextlib.contextmanager
    def _armed(self, timeout: asyncio.Timeout, limit: float) -> Iterator[None]:
        self._timeout, self._limit = timeout, limit
        if self._depth:
            timeout.reschedule(None)
        try:
            yield
        finally:
            self._timeout = None


async def timed(
    stream: AsyncIterator[T], *, first: float, gap: float, error: type[CloudError],
    hold: Hold | None = None,
) -> AsyncIterator[T]:
    """Yield from ``stream``, raising ``error`` (a stage's CloudError) when the first
    item takes longer than ``first`` seconds or a later one longer than ``gap``.

    Only the wait on ``stream`` is timed, never the consumer's work between items.
    The engines have their own timeouts; this one guarantees the bound whatever an
    engine does, and closes the stream (and its HTTP response) on every exit.
    A stall before the first item says the service is out of reach (``offline``);
    a stall after it is a broken stream (``partial``). While ``hold`` is paused the
    clock stops.
    """
    limit, started = first, False
    try:
        while True:
            try:
                async with asyncio.timeout(limit) as deadline:
                    with hold._armed(deadline, limit) if hold else contextlib.nullcontext():
                        item = await anext(stream)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise error(f"stalled: nothing for {limit:g} s", offline=not started,
                            partial=started) from None
            limit, started = gap, True
            yield item
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


# The failover line in the owner's words: what failed, and what happens instead.
_WHAT = {"stt": "speech recognition ({})", "llm": "the answer from {}",
         "tts": "speech synthesis ({})"}
_INSTEAD = {
    "none": "no offline speech recognizer is installed",
    "offline": "saying what works offline",
    "local": "answering on the device",
    "vosk": "Vosk recognizes it instead",
    "piper": "Piper speaks instead",
}


class Failover:
    """Reports each cloud outcome to the per-stage circuit breaker and announces a
    switch of engine with a ``failover`` event (stage, from, to, reason)."""

    def __init__(self, bus: EventBus, connectivity: Connectivity, turn_id: int | None) -> None:
        self.bus = bus
        self.connectivity = connectivity
        self.turn_id = turn_id

    def allow(self, stage: str) -> bool:
        """False while the stage's breaker is open: skip it without paying a timeout."""
        return self.connectivity.allow(stage)

    def succeeded(self, stage: str) -> None:
        self.connectivity.record_success(stage)

    def failed(self, stage: str, error: BaseException, *, to: str, source: str = "cloud") -> None:
        """Record ``error`` and announce the switch from ``source`` to ``to``."""
        if isinstance(error, CloudError):
            self.connectivity.record_failure(stage, error)
            reason = error.reason
        else:
            # Not converted at the seam: still a failed stage, but a bug to fix there.
            log.error("%s engine %s raised %r", stage, source, error, exc_info=error)
            reason = f"unexpected {type(error).__name__}: {error}"
        log.warning("turn %s: %s failed (%s); %s", self.turn_id, _WHAT[stage].format(source),
                    reason, _INSTEAD.get(to, "using {} instead").format(to))
        self.bus.emit("failover", stage=stage, **{"from": source}, to=to, reason=reason,
                      turn_id=self.turn_id)
