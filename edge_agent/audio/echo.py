"""Acoustic echo cancellation against the speaker's own playback.

The daemon knows every sample it plays and when: the player hands each period
to ``EchoReference.played`` with the time it will be heard (the fill time plus
the output latency PortAudio reports), which places it on the capture ring's
sample clock. The capture thread passes each microphone block through
``EchoCanceller``, which subtracts the echo of that reference (Speex's
adaptive filter, libspeexdsp through the speexdsp-aec binding) before the ring
sees it, so every reader (wake word, end of turn, STT) gets the cancelled
signal. The raw microphone stays in ``EchoCanceller.raw`` on the same clock.

When nothing has played for longer than the filter's tail, blocks pass
through untouched (no filter, no copy): idle costs nothing. The filter state
is kept across answers, since the speaker-to-microphone path does not move.

Measured choice: the "candidates" of docs/bench-echo.json (speexdsp-aec
against pyaec on the self-hearing room).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import numpy as np

from edge_agent.audio.convert import CaptureConverter
from edge_agent.audio.ring import SAMPLE_RATE, RingBuffer
from edge_agent.errors import AudioDeviceError

log = logging.getLogger(__name__)

FRAME = 160
"""10 ms frames: 2 dB more ERLE than 20 ms on the room benchmark, 4 per capture block."""
LEAD_SECONDS = 0.02
"""The reference is placed this much earlier than computed: the threads' jitter
must never put it after its echo (a filter cannot cancel what it has not seen
yet); an early reference only uses a little of the filter's tail."""
MAX_HOLD_SECONDS = 0.06
"""Capture audio waits at most this long for its reference. An output with no
latency of its own (the .wav one) hands a period over as it is heard, so the
reference for the newest capture samples may come a period late; a device
with a buffer hands it over well ahead, and nothing waits."""
REANCHOR_SECONDS = 0.02
"""A reference whose computed place is this far from where it continues, for
REANCHOR_PERIODS periods in a row (a stalled or reopened output), is placed
anew. A single late period is the threads' jitter, not a shift: moving the
reference for it would cost the filter its convergence."""
REANCHOR_PERIODS = 10
KEEP_SECONDS = 2.0
"""Reference kept ahead of and behind the capture; the output runs at most its
own buffer ahead, and the capture reads within a period."""
WINDOW_SECONDS = 0.5
"""Energy window of the convergence and divergence watch."""
READY_DB = 15.0
"""Attenuation over a window of playback that counts as converged."""
DIVERGED_DB = 1.0
"""Output louder than input by this much in a window counts against the filter."""
DIVERGED_WINDOWS = 4
"""Windows in a row whose output outweighs the input: the filter diverged (2 s)."""

NEVER = 1 << 62


Filter = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""An adaptive echo filter: ``(near, far) -> cleaned``, int16, whole frames."""
FilterFactory = Callable[[int, int], Filter]
"""Makes a filter for (frame samples, tail in ms)."""


def speex_filter(frame: int, tail_ms: int) -> Filter:
    """Speex's echo canceller (libspeexdsp), the measured choice."""
    try:
        from speexdsp_aec import SpeexAec
        aec = SpeexAec(SAMPLE_RATE, frame * 1000 // SAMPLE_RATE, tail_ms)
    except (ImportError, OSError, RuntimeError) as exc:  # RuntimeError: no libspeexdsp
        raise AudioDeviceError(
            f"echo cancellation is unavailable ({exc}); install libspeexdsp1 "
            "(scripts/setup does) or set echo.cancel = false") from exc
    return lambda near, far: np.frombuffer(aec.process(near, far), dtype=np.int16)


class EchoReference:
    """What the speaker played, on the capture ring's sample clock. The output
    thread writes, the capture thread reads; both hold the lock for a copy."""

    def __init__(self, ring: RingBuffer) -> None:
        self._ring = ring
        self._lock = threading.Lock()
        self._data = np.zeros(round(2 * KEEP_SECONDS * ring.rate), dtype=np.int16)
        self._next: int | None = None  # capture index where the reference continues
        self._heard_until = 0  # the last sound's end, or the burst's start
        self.sound_start = NEVER
        """Capture index of the first non-silent reference sample since idle."""
        self.sound_end = -NEVER
        """Capture index just after the last non-silent reference sample."""
        self._converter: CaptureConverter | None = None
        self.reanchors = 0
        self._off = 0  # periods in a row placed too far from where they continue

    def played(self, out: np.ndarray, heard_at: float, rate: int, channels: int) -> None:
        """Output thread: the period ``out`` (the device's format) will be heard at
        monotonic ``heard_at``. A silent period while idle costs one check."""
        if not out.any() and self._next is None:
            return
        if self._converter is None or (self._converter.rate, self._converter.channels) != (
                rate, channels):
            self._converter = CaptureConverter(rate, channels)
        samples = self._converter(out.tobytes())
        where = self._ring.index_at(heard_at) - round(LEAD_SECONDS * self._ring.rate)
        with self._lock:
            if self._next is None:  # a new burst: whatever the buffer held is stale
                self._data.fill(0)
                self._next = self._heard_until = where
            elif abs(where - self._next) <= REANCHOR_SECONDS * self._ring.rate:
                self._off = 0
            elif (off := self._off + 1) < REANCHOR_PERIODS:
                self._off = off
            else:
                self._off = 0
                self.reanchors += 1
                if where > self._next:  # a gap (underrun): silence, not last lap's audio
                    self._put(self._next, np.zeros(min(where - self._next, len(self._data)),
                                                   dtype=np.int16))
                self._next = where
            start, self._next = self._next, self._next + len(samples)
            self._put(start, samples)
            voiced = np.flatnonzero(samples)
            if len(voiced):
                if self.sound_start > self.sound_end:  # the first sound since idle
                    self.sound_start = start + int(voiced[0])
                self.sound_end = self._heard_until = start + int(voiced[-1]) + 1
            elif self._next - self._heard_until > KEEP_SECONDS * self._ring.rate:
                self._next = None  # idle again: the next sound is placed afresh
                self.sound_start = NEVER
                self._converter = None

    def _put(self, start: int, samples: np.ndarray) -> None:
        samples = samples[-len(self._data):]
        self._data[(start + np.arange(len(samples))) % len(self._data)] = samples

    @property
    def written_until(self) -> int:
        """Capture index up to which the reference is known (all of it while idle)."""
        with self._lock:
            return NEVER if self._next is None else self._next

    def take(self, start: int, n: int) -> np.ndarray:
        """Capture thread: the reference for capture samples [start, start + n)."""
        cap = len(self._data)
        with self._lock:
            out = self._data[(start + np.arange(n)) % cap].copy()
            newest = self._next if self._next is not None else self.sound_end
        # Never read what has not been written yet (or was written a lap ago).
        out[max(0, min(n, newest - start)):] = 0
        out[:max(0, min(n, newest - cap - start))] = 0
        return out


class EchoCanceller:
    """Called by the capture thread with each microphone block; returns the
    block with the speaker's echo removed (or untouched while nothing plays),
    which the caller writes to ``ring`` before the next call."""

    def __init__(self, ring: RingBuffer, *, tail_ms: int, raw_seconds: float,
                 engine: FilterFactory = speex_filter) -> None:
        self.tail = round(tail_ms * SAMPLE_RATE / 1000)
        self._ring = ring
        self.reference = EchoReference(ring)
        self.raw = RingBuffer(raw_seconds)
        """The microphone before cancellation, on the same sample clock (diagnostics)."""
        self._engine = engine
        self._filter = engine(FRAME, tail_ms)
        self._tail_ms = tail_ms
        self._pending = np.zeros(0, dtype=np.int16)
        self._max_hold = round(MAX_HOLD_SECONDS * SAMPLE_RATE)
        self._window = round(WINDOW_SECONDS * SAMPLE_RATE)
        self._energy_in = self._energy_out = 0.0
        self._counted = 0
        self._hot_windows = 0
        self.converged = False
        """The filter attenuated the echo by READY_DB once (and has not diverged since)."""
        self.diverged = 0
        """Times the filter was found diverged and reset."""
        self.processed = 0
        """Samples that went through the filter (the rest was bypassed)."""

    @property
    def held(self) -> int:
        """Capture samples waiting for their reference (not yet in the ring)."""
        return len(self._pending)

    @property
    def ready(self) -> bool:
        """Cancellation can be trusted now: the wake word needs no raised threshold."""
        return self.converged

    def __call__(self, block: np.ndarray) -> np.ndarray:
        self.raw.write(block)
        # Everything before the pending samples went to the ring: they start at its total.
        start = self._ring.total
        end = start + len(self._pending) + len(block)
        ref = self.reference
        if not (ref.sound_start < end and start < ref.sound_end + self.tail):
            # Nothing played within the filter's reach: pass through, flushing
            # what waited for a whole frame.
            if len(self._pending):
                block, self._pending = np.concatenate((self._pending, block)), self._pending[:0]
            return block
        audio = np.concatenate((self._pending, block)) if len(self._pending) else block
        known = min(len(audio), self.reference.written_until - start)
        usable = max(0, known, len(audio) - self._max_hold)
        whole = usable - usable % FRAME
        self._pending = audio[whole:].copy()
        near = np.ascontiguousarray(audio[:whole])
        far = self.reference.take(start, whole)
        out = self._filter(near, far)
        self.processed += whole
        self._watch(near, out)
        return out

    def _watch(self, near: np.ndarray, out: np.ndarray) -> None:
        """Convergence and divergence from energies: a filter that adds more than
        it removes for DIVERGED_WINDOWS in a row is reset, and the wake word goes
        back to its raised playback threshold until it converges again."""
        self._energy_in += float(np.dot(near.astype(np.float64), near))
        self._energy_out += float(np.dot(out.astype(np.float64), out))
        self._counted += len(near)
        if self._counted < self._window:
            return
        e_in, e_out = self._energy_in, self._energy_out
        self._energy_in = self._energy_out = 0.0
        self._counted = 0
        if e_in < self._window * 100.0:  # below -50 dBFS: too quiet to judge
            return
        if e_out > e_in * 10 ** (DIVERGED_DB / 10):
            self._hot_windows += 1
            if self._hot_windows >= DIVERGED_WINDOWS:
                log.warning("echo canceller diverged (output louder than input for "
                            "%.1f s); resetting it", DIVERGED_WINDOWS * WINDOW_SECONDS)
                self._filter = self._engine(FRAME, self._tail_ms)
                self.converged = False
                self.diverged += 1
                self._hot_windows = 0
            return
        self._hot_windows = 0
        if not self.converged and e_in >= e_out * 10 ** (READY_DB / 10):
            self.converged = True
            log.info("echo canceller converged")
