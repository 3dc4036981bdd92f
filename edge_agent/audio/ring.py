"""The ring buffer every consumer reads from: one writer (the capture thread),
many readers, each with its own cursor on one absolute sample clock.

A slow reader never stalls capture or another reader: when it falls more than
the buffer behind it is resynchronised to the live edge and the overrun is
counted and reported (never silent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from edge_agent.errors import AudioDeviceError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
"""Inside the daemon audio is 16 kHz mono int16."""

OverrunListener = Callable[[str, int], None]
"""Called with (reader name, samples skipped) on the first overrun of a burst."""


class RingBuffer:
    """A preallocated int16 ring with an absolute sample clock (``total``)."""

    def __init__(self, seconds: float, rate: int = SAMPLE_RATE) -> None:
        self.rate = rate
        self.capacity = max(1, round(seconds * rate))
        self._data = np.zeros(self.capacity, dtype=np.int16)
        self.total = 0
        self._muted = False
        # One lock for writer and readers' copies: both hold it for a memcpy only.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._blocking_waiters = 0
        self._async_waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._overrun_listeners: list[OverrunListener] = []
        # The time anchor: the monotonic capture time of sample total-1.
        self._anchor_index = 0
        self._anchor_time = time.monotonic()

    # --- writer side (capture thread) ---------------------------------------------

    @property
    def muted(self) -> bool:
        return self._muted

    @muted.setter
    def muted(self, value: bool) -> None:
        """Muting also wipes what is kept, so no reader can reach back (pre-roll,
        read_range) to audio captured before the mute."""
        with self._lock:
            self._muted = bool(value)
            if self._muted:
                self._data.fill(0)

    def write(self, samples: np.ndarray, *, captured_at: float | None = None) -> None:
        """Append int16 samples; ``captured_at`` is the monotonic time of the last one."""
        n = len(samples)
        if n == 0:
            return
        with self._lock:
            start = self.total % self.capacity
            if n >= self.capacity:  # only the newest capacity samples can be kept
                samples = samples[-self.capacity:]
                start = (self.total + n - self.capacity) % self.capacity
            m = len(samples)
            first = min(m, self.capacity - start)
            if self._muted:
                self._data[start:start + first] = 0
                self._data[:m - first] = 0
            else:
                self._data[start:start + first] = samples[:first]
                self._data[:m - first] = samples[first:]
            self.total += n
            self._anchor_index = self.total - 1
            self._anchor_time = time.monotonic() if captured_at is None else captured_at
            ready = self._pop_ready_waiters()
            if self._blocking_waiters:
                self._cond.notify_all()
        for loop, future in ready:
            resolve_threadsafe(loop, future)

    def _pop_ready_waiters(self) -> list[tuple[asyncio.AbstractEventLoop, asyncio.Future]]:
        if not self._async_waiters:
            return []
        ready = [(loop, fut) for target, loop, fut in self._async_waiters if target <= self.total]
        if ready:
            self._async_waiters = [w for w in self._async_waiters if w[0] > self.total]
        return ready

    # --- readers ----------------------------------------------------------------

    @property
    def oldest(self) -> int:
        """Absolute index of the oldest sample still kept."""
        return max(0, self.total - self.capacity)

    def reader(self, name: str, *, start: int | None = None) -> RingReader:
        """A cursor starting at absolute ``start`` (clamped to what is kept), or now."""
        with self._lock:
            position = self.total if start is None else max(start, self.oldest)
        return RingReader(self, name, position)

    def on_overrun(self, listener: OverrunListener) -> Callable[[], None]:
        """Be told of overruns (once per burst); returns an unsubscribe function."""
        self._overrun_listeners.append(listener)
        return lambda: self._overrun_listeners.remove(listener)

    def read_range(self, start: int, end: int) -> np.ndarray:
        """A copy of absolute samples [start, end).

        Raises ValueError for a range not yet written and AudioDeviceError for
        one already overwritten (a caller holding indices for too long)."""
        if end < start:
            raise ValueError(f"empty range [{start}, {end})")
        with self._lock:
            if end > self.total:
                raise ValueError(f"range end {end} is in the future (total {self.total})")
            if start < self.oldest:
                raise AudioDeviceError(
                    f"samples [{start}, {end}) are gone; the ring keeps from {self.oldest}")
            return self._copy(start, end)

    def _copy(self, start: int, end: int) -> np.ndarray:
        a, b = start % self.capacity, end % self.capacity
        if end - start == 0:
            return np.zeros(0, dtype=np.int16)
        if a < b:
            return self._data[a:b].copy()
        return np.concatenate((self._data[a:], self._data[:b]))

    def time_of(self, index: int) -> float:
        """Best estimate of the monotonic time sample ``index`` was captured:
        extrapolated at the nominal rate from the latest write."""
        with self._lock:
            anchor_index, anchor_time = self._anchor_index, self._anchor_time
        return anchor_time - (anchor_index - index) / self.rate

    def index_at(self, t: float) -> int:
        """The absolute index captured at monotonic time ``t`` (inverse of time_of)."""
        with self._lock:
            anchor_index, anchor_time = self._anchor_index, self._anchor_time
        return anchor_index + round((t - anchor_time) * self.rate)

    def _report_overrun(self, name: str, skipped: int) -> None:
        log.warning("audio reader %r fell %d samples (%.2f s) behind; resynchronised",
                    name, skipped, skipped / self.rate)
        for listener in list(self._overrun_listeners):
            try:
                listener(name, skipped)
            except Exception:
                log.exception("overrun listener failed")


def resolve_threadsafe(loop: asyncio.AbstractEventLoop, future: asyncio.Future) -> None:
    """Wake an asyncio waiter from any thread; a closed loop has no one to wake."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future) -> None:
    if not future.done():  # the waiter may have been cancelled meanwhile
        future.set_result(None)


class RingReader:
    """One consumer's cursor. Not shared between tasks: one reader, one consumer."""

    def __init__(self, ring: RingBuffer, name: str, position: int) -> None:
        self.ring = ring
        self.name = name
        self.position = position
        self.overruns = 0
        self._last_overrun_at: int | None = None
        self._closed = False

    async def read(self, n: int) -> np.ndarray:
        """The next ``n`` samples, waiting (asyncio) until they exist."""
        ring = self.ring
        self._check_size(n)
        while True:
            with ring._lock:
                self._check_open()
                skipped = self._resync_if_behind()
                if ring.total >= self.position + n:
                    out = self._take(n)
                else:
                    out = None
                    loop = asyncio.get_running_loop()
                    future = loop.create_future()
                    ring._async_waiters.append((self.position + n, loop, future))
            if skipped:
                ring._report_overrun(self.name, skipped)
            if out is not None:
                return out
            try:
                await future
            finally:
                if not future.done():  # cancelled: withdraw the waiter
                    with ring._lock:
                        ring._async_waiters = [w for w in ring._async_waiters
                                               if w[2] is not future]

    def read_blocking(self, n: int, timeout: float | None = None) -> np.ndarray | None:
        """The next ``n`` samples for a worker thread; None if ``timeout`` passes first."""
        ring = self.ring
        self._check_size(n)
        deadline = None if timeout is None else time.monotonic() + timeout
        out = None
        skipped = 0
        with ring._cond:
            while True:
                self._check_open()
                skipped = max(skipped, self._resync_if_behind())
                if ring.total >= self.position + n:
                    out = self._take(n)
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                ring._blocking_waiters += 1
                try:
                    ring._cond.wait(remaining)
                finally:
                    ring._blocking_waiters -= 1
        if skipped:
            ring._report_overrun(self.name, skipped)
        return out

    @property
    def available(self) -> int:
        """Samples ready to read without waiting."""
        return max(0, self.ring.total - self.position)

    def seek(self, index: int) -> None:
        """Move the cursor to absolute ``index`` (clamped to the oldest kept)."""
        with self.ring._lock:
            self.position = max(index, self.ring.oldest)

    def close(self) -> None:
        """Later reads raise ValueError (a reader left behind by a finished turn)."""
        self._closed = True

    def _check_size(self, n: int) -> None:
        # More than the ring holds could never be returned whole: it would overrun forever.
        if not 0 <= n <= self.ring.capacity:
            raise ValueError(f"cannot read {n} samples from a ring of {self.ring.capacity}")

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"reader {self.name!r} is closed")

    def _take(self, n: int) -> np.ndarray:
        out = self.ring._copy(self.position, self.position + n)
        self.position += n
        return out

    def _resync_if_behind(self) -> int:
        """Called under the ring's lock. A reader whose next sample is gone jumps to
        the live edge: the backlog it lost is stale anyway, and catching up through
        a full buffer would only add latency. Returns the samples skipped when this
        starts a new burst (to be reported outside the lock), else 0."""
        ring = self.ring
        if self.position >= ring.oldest:
            return 0
        skipped = ring.total - self.position
        self.overruns += 1
        # One burst: overruns less than a second of audio apart are reported once.
        new_burst = (self._last_overrun_at is None
                     or self.position - self._last_overrun_at > ring.rate)
        self._last_overrun_at = ring.total
        self.position = ring.total
        return skipped if new_burst else 0

    def __repr__(self) -> str:
        return f"RingReader({self.name!r}, position={self.position}, overruns={self.overruns})"
