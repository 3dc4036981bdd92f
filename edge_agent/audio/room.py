"""A room that hears itself: what the speaker plays comes back into the
microphone after a delay, through a room response, at a gain.

Without hardware the ``.wav`` devices never played the answer back into the
microphone, so no test could see echo. ``RoomResponse`` is the acoustic path
(a synthetic impulse response: a direct sound after ``delay_s`` and an
exponentially decaying diffuse tail); ``Room`` joins a .wav output to a .wav
input on one sample clock, like a codec whose DAC and ADC share a crystal:
each played sample lands in the capture exactly ``delay`` samples later.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np

from edge_agent.audio.ring import SAMPLE_RATE

log = logging.getLogger(__name__)

WAIT_FOR_OUTPUT_SECONDS = 1.0
"""How long the capture thread waits for the output thread to produce the audio
it needs: a loaded machine may hold one thread back for a few hundred ms, and
a capture that went on alone would shift the echo's place on its clock. After
that the output counts as stopped and the capture goes on without waiting
until it plays again."""
KEEP_SECONDS = 2.0
"""Played audio kept for the capture side; more than any capture lag."""


@dataclass(frozen=True)
class RoomResponse:
    """The speaker-to-microphone path of a small room."""

    delay_s: float = 0.02
    """Speaker to microphone: 5-50 ms (a few centimetres of air plus converter latency)."""
    gain_db: float = 0.0
    """Level of the direct sound relative to what was played (0 dB: as loud)."""
    rt60_s: float = 0.15
    """Reverberation time: the diffuse tail decays by 60 dB in this long."""
    reverb_db: float = -10.0
    """Energy of the diffuse tail relative to the direct sound."""
    seed: int = 0
    """The tail is noise: the same seed gives the same room."""

    def impulse(self, rate: int = SAMPLE_RATE) -> np.ndarray:
        """The impulse response, float64, ``delay`` zeros first."""
        if not 0.0 <= self.delay_s <= 1.0 or self.rt60_s < 0.0:
            raise ValueError(f"implausible room: delay {self.delay_s} s, rt60 {self.rt60_s} s")
        delay = round(self.delay_s * rate)
        tail_n = round(self.rt60_s * rate)
        direct = 10 ** (self.gain_db / 20)
        ir = np.zeros(delay + 1 + tail_n)
        ir[delay] = direct
        if tail_n:
            t = np.arange(1, tail_n + 1) / rate
            tail = np.random.default_rng(self.seed).standard_normal(tail_n)
            tail *= np.exp(-6.9 * t / self.rt60_s)  # -60 dB at rt60
            wanted = direct**2 * 10 ** (self.reverb_db / 10)
            tail *= np.sqrt(wanted / np.sum(tail**2))
            ir[delay + 1:] = tail
        return ir


class EchoPath:
    """Streaming convolution with a room response: feed played blocks in
    order, get the echo they make, block for block."""

    def __init__(self, response: RoomResponse, rate: int = SAMPLE_RATE) -> None:
        self.impulse = response.impulse(rate)
        self._history = np.zeros(len(self.impulse) - 1)

    def __call__(self, played: np.ndarray) -> np.ndarray:
        """The echo (float64) of ``played``, including the tails of earlier blocks."""
        x = np.concatenate((self._history, np.asarray(played, dtype=np.float64)))
        self._history = x[len(x) - len(self._history):]
        return _convolve_valid(x, self.impulse)


def _convolve_valid(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """np.convolve(x, h, "valid") by FFT: rooms have thousands of taps."""
    n = len(x) + len(h) - 1
    size = 1 << (n - 1).bit_length()
    full = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[:n]
    return full[len(h) - 1:len(x)]


def hear(played: np.ndarray, near: np.ndarray, response: RoomResponse) -> np.ndarray:
    """The whole-file version: ``near`` (what the room's people say) plus the echo
    of ``played``, both int16 on the same clock, clipped like an ADC."""
    n = max(len(played), len(near))
    echo = EchoPath(response)(np.pad(played, (0, n - len(played))))
    mixed = echo + np.pad(near, (0, n - len(near))).astype(np.float64)
    return np.clip(np.round(mixed), -32768, 32767).astype(np.int16)


class Room:
    """Joins a .wav output to a .wav input: the output thread calls ``played``
    with each period it writes; the capture thread calls ``heard`` with each
    block it reads and gets it back with the echo added.

    Both sides count samples from the first period each handled, so the echo
    sits at a fixed place on the capture clock whatever the threads' jitter:
    tests bound by sample counts stay deterministic on a loaded machine."""

    def __init__(self, response: RoomResponse, rate: int = SAMPLE_RATE, *,
                 wait_seconds: float = WAIT_FOR_OUTPUT_SECONDS) -> None:
        self.response = response
        self._wait = wait_seconds
        self._path = EchoPath(response, rate)
        self._rate = rate
        self._cond = threading.Condition()
        self._played = np.zeros(round(KEEP_SECONDS * rate), dtype=np.int16)
        self._played_total = 0  # samples played so far (the output's clock)
        self._heard_total: int | None = None  # samples captured so far (the input's clock)
        self._stalled = False
        self._closed = False

    def played(self, samples: np.ndarray) -> None:
        """Output thread: ``samples`` (16 kHz mono int16) just went to the speaker."""
        samples = np.asarray(samples, dtype=np.int16)
        with self._cond:
            n, cap = len(samples), len(self._played)
            self._played = np.roll(self._played, -min(n, cap))
            self._played[cap - min(n, cap):] = samples[-cap:]
            self._played_total += n
            self._stalled = False
            self._cond.notify_all()

    def heard(self, block: np.ndarray) -> np.ndarray:
        """Capture thread: ``block`` with the echo of what played at the same
        samples of the shared clock."""
        n = len(block)
        with self._cond:
            start = self._heard_total
            if start is None or abs(self._played_total - start) > len(self._played) // 2:
                # The capture (re)started, or one side stopped for long: the
                # capture clock joins the output's, this block hearing the
                # period that played last.
                start = max(0, self._played_total - n)
            if not self._stalled and self._played_total:
                self._stalled = not self._cond.wait_for(
                    lambda: self._closed or self._played_total >= start + n,
                    self._wait)
                if self._stalled:
                    log.warning("test room: nothing played for %.1f s; the capture goes on "
                                "alone", self._wait)
            self._heard_total = start + n
            played = self._played_since(start, n)
        echo = self._path(played)
        mixed = echo + block.astype(np.float64)
        return np.clip(np.round(mixed), -32768, 32767).astype(np.int16)

    def _played_since(self, start: int, n: int) -> np.ndarray:
        """Under the lock: played samples [start, start + n), zeros where none were."""
        out = np.zeros(n, dtype=np.int16)
        kept_from = self._played_total - len(self._played)
        lo, hi = max(start, kept_from), min(start + n, self._played_total)
        if hi > lo:
            base = len(self._played) - self._played_total
            out[lo - start:hi - start] = self._played[base + lo:base + hi]
        return out

    def close(self) -> None:
        """Release a capture thread waiting for output that will not come."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
