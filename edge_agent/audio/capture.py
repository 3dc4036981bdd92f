"""The supervised microphone: opens the input (a PortAudio device or a .wav file
replayed in real time), fills the ring buffer from the device thread, and
reopens with backoff when the device fails, vanishes or stops delivering.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable

import numpy as np
import pyaudio

from edge_agent.audio.convert import CaptureConverter
from edge_agent.audio.devices import StreamFormat, open_stream
from edge_agent.audio.echo import EchoCanceller
from edge_agent.audio.ring import SAMPLE_RATE, RingBuffer
from edge_agent.audio.room import Room
from edge_agent.audio.wavfile import WavReader
from edge_agent.errors import AudioDeviceError
from edge_agent.events import EventBus

log = logging.getLogger(__name__)

PERIOD_SECONDS = 0.02
"""Capture period: 20 ms keeps callbacks rare (CPU on a Pi) and latency low."""
FIRST_RETRY_SECONDS = 0.5
CLOSE_DEADLINE_SECONDS = 2.0
"""A driver that blocks in close must not hang reconnection or shutdown."""
WATCH_INTERVAL_SECONDS = 0.25

Sink = Callable[[np.ndarray], None]


def is_wav_spec(spec: str) -> bool:
    return spec.lower().endswith(".wav")


class PortAudioSource:
    """A PortAudio input stream in callback mode, converted to 16 kHz mono."""

    def __init__(self, spec: str, sink: Sink, *, rate: int | None, channels: int | None) -> None:
        self.failed: str | None = None
        self.overflows = 0
        """Periods in which the device dropped input (we were late to read it)."""
        self._sink = sink
        wanted = StreamFormat(rate or SAMPLE_RATE, channels or 1)
        # Asked for a format explicitly: that one or nothing.
        opened = open_stream(spec, "input", self._callback, period_seconds=PERIOD_SECONDS,
                             preferred=[wanted], forced=wanted if rate and channels else None)
        self._opened = opened
        self._convert = CaptureConverter(opened.format.rate, opened.format.channels)
        self.description = opened.description
        opened.start()

    def _callback(self, in_data: bytes | None, frame_count: int, time_info: dict,
                  status: int) -> tuple[None, int]:
        # The PortAudio thread: convert and copy into the ring, nothing else.
        if status & pyaudio.paInputOverflow:
            self.overflows += 1
        try:
            if in_data:
                self._sink(self._convert(in_data))
        except Exception as exc:
            self.failed = f"capture callback failed: {exc!r}"
            return None, pyaudio.paAbort
        return None, pyaudio.paContinue

    @property
    def active(self) -> bool:
        return self._opened.active

    def close(self) -> None:
        self._opened.close()


class WavSource:
    """A .wav file played into the ring in real time (20 ms blocks), then silence
    forever, like a microphone in a quiet room. The file is streamed, a block
    ahead, never loaded whole. In a ``room``, what the speaker plays is heard too."""

    overflows = 0

    def __init__(self, path: str, sink: Sink, room: Room | None = None) -> None:
        self.failed: str | None = None
        self._reader = WavReader(path)
        self._sink = sink
        self._room = room
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wav-capture", daemon=True)
        self.description = f"{path} ({self._reader.duration:.1f} s, real time)"
        self._thread.start()

    def _run(self) -> None:
        block = round(SAMPLE_RATE * PERIOD_SECONDS)
        pending = np.zeros(0, dtype=np.int16)
        reader: WavReader | None = self._reader
        # Deadlines, not sleeps: a late wake-up writes its backlog at once, so the
        # sample clock keeps pace with the wall clock as a real device would.
        deadline = time.monotonic() + PERIOD_SECONDS
        try:
            while not self._stop.wait(max(0.0, deadline - time.monotonic())):
                while reader is not None and len(pending) < block:
                    more = reader.read()
                    if more is None:
                        reader = None
                    else:
                        pending = np.concatenate((pending, more))
                chunk, pending = pending[:block], pending[block:]
                if len(chunk) < block:
                    chunk = np.concatenate((chunk, np.zeros(block - len(chunk), np.int16)))
                if self._room is not None:
                    chunk = self._room.heard(chunk)
                self._sink(chunk)
                deadline += PERIOD_SECONDS
        except OSError as exc:  # the file vanished or the disk failed mid-read
            self.failed = f"cannot read WAV input: {exc}"
        finally:
            self._reader.close()

    @property
    def active(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(CLOSE_DEADLINE_SECONDS)


Source = PortAudioSource | WavSource


class Microphone:
    """Fills ``ring`` from the input named by ``spec``: a device name
    (case-insensitive substring), "default", or a .wav path.

    ``rate``/``channels`` force a device format (tests, odd hardware); otherwise
    16 kHz mono is tried first, then the device's own rate. ``canceller``
    removes the speaker's echo before the ring sees a block; ``room`` makes a
    .wav input hear the speaker (the test room).
    """

    def __init__(
        self,
        spec: str,
        ring: RingBuffer,
        bus: EventBus,
        *,
        reconnect_max: float = 30.0,
        rate: int | None = None,
        channels: int | None = None,
        stall_timeout: float = 2.0,
        canceller: EchoCanceller | None = None,
        room: Room | None = None,
    ) -> None:
        self.spec = spec
        self.canceller = canceller
        self.room = room
        self.ring = ring
        self.bus = bus
        self.reconnect_max = reconnect_max
        self.rate = rate
        self.channels = channels
        self.stall_timeout = stall_timeout
        self.healthy = False
        self.reason = "not opened yet"
        self.last_write = time.monotonic()
        self._reported: bool | None = None

    def _write(self, samples: np.ndarray) -> None:
        now = time.monotonic()
        held = 0
        if self.canceller is not None:
            samples = self.canceller(samples)
            held = self.canceller.held
        # The last sample written was captured before the ones the canceller
        # still holds: stamping it "now" would move the ring's clock with the hold.
        self.ring.write(samples, captured_at=now - held / SAMPLE_RATE)
        self.last_write = now

    def _open(self) -> Source:
        if is_wav_spec(self.spec):
            return WavSource(self.spec, self._write, self.room)
        return PortAudioSource(self.spec, self._write, rate=self.rate, channels=self.channels)

    async def run(self) -> None:
        """Capture until cancelled, reopening a failed input with doubling delays
        (up to ``reconnect_max``); never raises for a device problem."""
        unsubscribe = self.ring.on_overrun(self._overrun)
        delay = FIRST_RETRY_SECONDS
        try:
            while True:
                try:
                    source = await self._open_in_thread()
                except AudioDeviceError as exc:
                    self._set_health(False, str(exc))
                    log.info("input %r: retrying in %.1f s", self.spec, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.reconnect_max)
                    continue
                opened_at = time.monotonic()
                self.last_write = opened_at
                log.info("capturing from %s", source.description)
                self._set_health(True, "opened")
                try:
                    await self._watch(source)
                except AudioDeviceError as exc:
                    self._set_health(False, str(exc))
                finally:
                    await self._close(source)
                # A device that fails right after opening is retried with backoff;
                # one that ran for a while is retried promptly.
                if time.monotonic() - opened_at > self.reconnect_max:
                    delay = FIRST_RETRY_SECONDS
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.reconnect_max)
        finally:
            unsubscribe()
            self.healthy = False

    async def _open_in_thread(self) -> Source:
        """Open off the loop (PortAudio enumerates devices, which takes a while); a
        source that finishes opening after we were cancelled is closed, not leaked."""
        opening = asyncio.ensure_future(asyncio.to_thread(self._open))
        try:
            return await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(_close_late_source)
            raise

    async def _watch(self, source: Source) -> None:
        overflows = 0
        while True:
            await asyncio.sleep(WATCH_INTERVAL_SECONDS)
            if source.overflows > overflows:
                # Samples the device dropped: the sample clock now lags the wall clock.
                log.warning("input %r overflowed %d times: audio was lost",
                            self.spec, source.overflows - overflows)
                overflows = source.overflows
            if source.failed:
                raise AudioDeviceError(source.failed)
            if not source.active:
                raise AudioDeviceError("the input stream stopped")
            silent_for = time.monotonic() - self.last_write
            if silent_for > self.stall_timeout:
                raise AudioDeviceError(f"no audio from the input for {silent_for:.1f} s")

    async def _close(self, source: Source) -> None:
        closing = asyncio.ensure_future(asyncio.to_thread(source.close))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(closing), CLOSE_DEADLINE_SECONDS)
        if not closing.done():
            log.warning("input %r did not close within %.0f s; abandoning it",
                        self.spec, CLOSE_DEADLINE_SECONDS)

    def _set_health(self, ok: bool, reason: str) -> None:
        self.healthy = ok
        self.reason = reason
        if ok == self._reported:
            return
        self._reported = ok
        if ok:
            log.info("input %r is working", self.spec)
        else:
            log.error("input %r failed: %s", self.spec, reason)
        self.bus.emit("audio_device", direction="input", ok=ok, reason=reason)

    def _overrun(self, reader: str, skipped: int) -> None:
        self.bus.emit("audio_overrun", reader=reader, samples=skipped)


def _close_late_source(opening: asyncio.Future) -> None:
    if not opening.cancelled() and opening.exception() is None:
        threading.Thread(target=opening.result().close, name="close-input",
                         daemon=True).start()
