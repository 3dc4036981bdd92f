"""The speaker: one output kept open for the daemon's life, fed by streams of
PCM chunks (one per answer or earcon) that play one after another.

The device thread (PortAudio callback, or the clock thread of a .wav output)
pulls one period at a time from the queue, so ``stop()`` only has to empty the
queue: the next period handed to the device is silence.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import threading
import time
from collections.abc import Callable

import numpy as np
import pyaudio

from edge_agent.audio.capture import (
    CLOSE_DEADLINE_SECONDS,
    FIRST_RETRY_SECONDS,
    WATCH_INTERVAL_SECONDS,
    is_wav_spec,
)
from edge_agent.audio.convert import PlaybackConverter
from edge_agent.audio.devices import StreamFormat, open_stream
from edge_agent.audio.echo import EchoReference
from edge_agent.audio.ring import SAMPLE_RATE, resolve_threadsafe
from edge_agent.audio.room import Room
from edge_agent.audio.wavfile import WavWriter
from edge_agent.errors import AudioDeviceError
from edge_agent.events import EventBus

log = logging.getLogger(__name__)

PERIOD_SECONDS = 0.01
"""Device period: stop() takes effect at the next period, so 10 ms keeps it well
inside the 50 ms promise even with the device's own buffer on top. The .wav
output ticks at the same period, so what it measures is what a DAC would do."""
WAV_RETRY_MAX_SECONDS = 30.0
"""Longest wait between attempts to write a .wav output that failed (full disk)."""
PLAYBACK_STALL_SECONDS = 3.0
"""An open output whose device thread has not asked for a period this long is hung."""

Fill = Callable[[int], np.ndarray]


class PlaybackStream:
    """One answer (or earcon): int16 mono chunks at any rate, played in order."""

    def __init__(self, player: Player, engine: str, events: bool,
                 loop: asyncio.AbstractEventLoop | None) -> None:
        self.engine = engine
        self.events = events
        self.first_frame_at: float | None = None
        self.first_queued_at: float | None = None
        """When its first audio was queued: up to a device period before first_frame_at."""
        self.stopped = False
        self._player = player
        self._loop = loop
        self._converter: PlaybackConverter | None = None
        self._odd = b""  # a sample split across two network chunks
        self._chunks: collections.deque[np.ndarray] = collections.deque()
        self._queued = 0  # samples in _chunks not yet handed to the device
        self._offset = 0
        self._ended = False
        self._done = threading.Event()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._room: tuple[asyncio.AbstractEventLoop, asyncio.Future, int] | None = None

    def write(self, pcm: bytes, rate: int) -> None:
        """Queue int16 mono PCM at ``rate``; converted to the device format here."""
        if self.stopped:
            return
        if self._ended:
            raise ValueError("write() after end()")
        pcm = self._odd + pcm
        cut = len(pcm) - len(pcm) % 2
        pcm, self._odd = pcm[:cut], pcm[cut:]
        if self._converter is None or self._converter.rate != rate:
            # A new engine mid-answer (TTS failover) may bring a new rate. The
            # device format never changes: a reopened output keeps the old one.
            self._flush_converter()
            self._converter = self._player._converter(rate)
        self._player._append(self, self._converter(pcm))

    def _flush_converter(self) -> None:
        if self._converter is not None:
            self._player._append(self, self._converter(b"", last=True))

    def end(self) -> None:
        """No more audio will come; the stream finishes when its queue empties."""
        if self._ended or self.stopped:
            return
        self._flush_converter()
        self._player._end(self)

    async def drained(self) -> None:
        """Returns once everything written was handed to the device, or on stop."""
        if self._done.is_set():
            return
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._player._lock:
            if self._done.is_set():
                return
            self._waiters.append((loop, future))
        await future

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def queued_seconds(self) -> float:
        """Audio written but not yet handed to the device."""
        return self._queued / self._player.channels / self._player.device_rate

    async def room(self, seconds: float) -> None:
        """Wait until no more than ``seconds`` of audio wait for the device (or the
        stream is stopped): back-pressure, so a writer fed by a fast network holds
        only what playback needs next instead of the whole answer."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._player._lock:
            limit = round(seconds * self._player.device_rate) * self._player.channels
            if self.stopped or self._done.is_set() or self._queued <= limit:
                return
            self._room = (loop, future, limit)
        await future

    def _finish(self) -> None:
        """Under the player's lock: wake every drained() waiter."""
        self._done.set()
        for loop, future in self._waiters:
            resolve_threadsafe(loop, future)
        self._waiters.clear()
        self._queued = 0
        self._wake_writer()

    def _wake_writer(self) -> None:
        """Under the player's lock: wake a room() waiter once there is room."""
        if self._room is not None and (self._done.is_set() or self._queued <= self._room[2]):
            loop, future, _ = self._room
            self._room = None
            resolve_threadsafe(loop, future)

    def _take(self, out: np.ndarray, start: int) -> int:
        """Under the player's lock: copy queued samples into out[start:]; how many."""
        filled = start
        while filled < len(out) and self._chunks:
            chunk = self._chunks[0]
            n = min(len(chunk) - self._offset, len(out) - filled)
            out[filled:filled + n] = chunk[self._offset:self._offset + n]
            filled += n
            self._offset += n
            if self._offset == len(chunk):
                self._chunks.popleft()
                self._offset = 0
        self._queued -= filled - start
        self._wake_writer()
        return filled - start


class PortAudioSink:
    """A PortAudio output stream in callback mode pulling periods from ``fill``."""

    def __init__(self, spec: str, fill: Fill, *, rate: int | None,
                 channels: int | None) -> None:
        self._fill = fill
        opened = open_stream(spec, "output", self._callback, period_seconds=PERIOD_SECONDS,
                             preferred=[],
                             forced=StreamFormat(rate, channels) if rate and channels else None)
        self._opened = opened
        self.rate, self.channels = opened.format.rate, opened.format.channels
        self.latency = float(opened.stream.get_output_latency())
        self.description = opened.description
        opened.start()

    def _callback(self, in_data: bytes | None, frame_count: int, time_info: dict,
                  status: int) -> tuple[bytes, int]:
        return self._fill(frame_count).tobytes(), pyaudio.paContinue

    @property
    def active(self) -> bool:
        return self._opened.active

    def close(self) -> None:
        self._opened.close(drain=True)


class WavSink:
    """A .wav file written in real time, like a DAC: every 10 ms one period,
    silence when nothing plays, so the file is a listener's timeline.

    A write that fails (a full disk) does not end the thread: the periods are
    still pulled, so answers drain and turns end, ``on_health`` reports the
    speaker broken, and the write is retried with doubling delays."""

    latency = 0.0

    def __init__(self, path: str, fill: Fill,
                 on_health: Callable[[bool, str], None] | None = None,
                 room: Room | None = None) -> None:
        self.rate, self.channels = SAMPLE_RATE, 1
        self._writer = WavWriter(path, self.rate)
        self._fill = fill
        self._room = room
        self._on_health = on_health or (lambda ok, reason: None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wav-playback", daemon=True)
        self.description = f"{path} (real time, {self.rate} Hz)"
        self._thread.start()

    def _run(self) -> None:
        frames = round(self.rate * PERIOD_SECONDS)
        deadline = time.monotonic() + PERIOD_SECONDS
        retry_at, delay, failing = 0.0, FIRST_RETRY_SECONDS, False
        while not self._stop.wait(max(0.0, deadline - time.monotonic())):
            deadline += PERIOD_SECONDS
            samples = self._fill(frames)
            if self._room is not None:
                self._room.played(samples)
            if time.monotonic() < retry_at:
                continue  # dropped, like a DAC that lost its clock
            try:
                self._writer.write(samples)
            except (OSError, AudioDeviceError) as exc:
                if not failing:
                    self._on_health(False, f"cannot write {self._writer.path}: {exc}")
                failing, retry_at = True, time.monotonic() + delay
                delay = min(delay * 2, WAV_RETRY_MAX_SECONDS)
                continue
            if failing:
                self._on_health(True, "writing again")
                failing, delay = False, FIRST_RETRY_SECONDS

    def close(self) -> None:
        self._stop.set()
        self._thread.join(CLOSE_DEADLINE_SECONDS)
        self._writer.close()


class Player:
    """Plays streams one after another on the output named by ``spec``
    (device name substring, "default", or a .wav path).

    ``rate``/``channels`` force a device format; otherwise the device's own
    rate is used and each stream is resampled to it once, on write.
    ``echo_reference`` is told every period with the time it will be heard (the
    echo canceller's reference); ``room`` hears a .wav output (the test room).
    """

    def __init__(self, spec: str, bus: EventBus, *, volume: float = 0.8,
                 rate: int | None = None, channels: int | None = None,
                 reconnect_max: float = 30.0, echo_reference: EchoReference | None = None,
                 room: Room | None = None) -> None:
        self.spec = spec
        self.echo_reference = echo_reference
        self.room = room
        self.bus = bus
        self.volume = volume
        self.reconnect_max = reconnect_max
        self.healthy = False
        """False while the output device is missing or failed (it is being reopened)."""
        self.device_rate = rate or SAMPLE_RATE
        self.channels = channels or 1
        self.last_stop_latency: float | None = None
        """Seconds from the last stop() to the first silent period handed to the
        device, plus the device's own output latency."""
        self._rate, self._channels_wanted = rate, channels
        self._sink: PortAudioSink | WavSink | None = None
        self._lock = threading.Lock()
        self._queue: collections.deque[PlaybackStream] = collections.deque()
        self._interrupted: list[PlaybackStream] = []
        self._stop_called_at: float | None = None
        self._closed = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._format_known = False
        self._last_fill = 0.0

    @property
    def volume(self) -> float:
        return self._volume

    @volume.setter
    def volume(self, value: float) -> None:
        self._volume = min(1.0, max(0.0, float(value)))

    def open(self) -> None:
        """Open the output once; it stays open (no open latency per answer).

        A speaker missing at start (DAC not probed yet, USB speaker unplugged) is
        reopened in the background like one that vanished later: the microphone,
        wake word and LEDs still start, and the error state says why it is silent.
        """
        if self._sink is not None or self._supervisor is not None:
            return
        self._closed.clear()
        if is_wav_spec(self.spec):
            self._sink = WavSink(self.spec, self._fill, self._set_health, self.room)
        else:
            try:
                self._sink = PortAudioSink(self.spec, self._fill, rate=self._rate,
                                           channels=self._channels_wanted)
            except AudioDeviceError as exc:
                self._set_health(False, str(exc))
            self._supervisor = threading.Thread(target=self._supervise, name="output-watch",
                                                daemon=True)
            self._supervisor.start()
            if self._sink is None:
                return
        self._installed(self._sink)
        self.healthy = True

    def _installed(self, sink: PortAudioSink | WavSink) -> None:
        self.device_rate, self.channels = sink.rate, sink.channels
        self._format_known = True
        log.info("playing to %s", sink.description)

    def close(self) -> None:
        """Stop everything and release the output; safe to call twice."""
        self._closed.set()
        self.stop()
        if self._supervisor is not None:
            self._supervisor.join(CLOSE_DEADLINE_SECONDS)
            self._supervisor = None
        with self._lock:
            sink, self._sink = self._sink, None
        self.healthy = False
        if sink is not None:
            sink.close()

    def _supervise(self) -> None:
        """A PortAudio output stops calling back when its device fails or is
        unplugged; everything queued would then wait forever. Drop it (drained()
        returns), report, and reopen with doubling delays until it is back."""
        while not self._closed.wait(WATCH_INTERVAL_SECONDS):
            sink = self._sink
            if sink is None:  # missing since start
                self._reopen()
            elif isinstance(sink, PortAudioSink) and not sink.active:
                self._lose(sink)
                self._reopen()

    def _lose(self, sink: PortAudioSink) -> None:
        with self._lock:
            self._sink = None  # writes fail fast instead of queueing for later
        self._set_health(False, "the output stream stopped")
        self.stop()
        with self._lock:  # no period will be pulled to announce them
            interrupted, self._interrupted = self._interrupted, []
        self._announce_interrupted(interrupted)
        sink.close()

    def _reopen(self) -> None:
        delay = FIRST_RETRY_SECONDS
        while not self._closed.wait(delay):
            try:
                # The same format as before: queued streams' converters were made for
                # it. A device never opened yet gets its own format.
                sink = PortAudioSink(
                    self.spec, self._fill,
                    rate=self.device_rate if self._format_known else self._rate,
                    channels=self.channels if self._format_known else self._channels_wanted)
            except AudioDeviceError as exc:
                log.info("output %r: %s; retrying in %.1f s", self.spec, exc, delay)
                delay = min(delay * 2, self.reconnect_max)
                continue
            with self._lock:
                installed = not self._closed.is_set()
                if installed:
                    self._sink = sink
            if installed:
                self._installed(sink)
                self._set_health(True, "reopened")
            else:  # the player was closed while the device was opening
                sink.close()
            return

    def _set_health(self, ok: bool, reason: str) -> None:
        self.healthy = ok
        if ok:
            log.info("output %r is working again", self.spec)
        else:
            log.error("output %r failed: %s", self.spec, reason)
        self.bus.emit("audio_device", direction="output", ok=ok, reason=reason)

    def __enter__(self) -> Player:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stream(self, *, engine: str, events: bool = True) -> PlaybackStream:
        """A new stream, queued behind any that are still playing."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        stream = PlaybackStream(self, engine, events, loop)
        with self._lock:
            self._queue.append(stream)
        return stream

    def stop(self) -> None:
        """Silence now: drop everything queued of every stream. Any thread."""
        with self._lock:
            for stream in list(self._queue):
                self._drop(stream)
            self._stop_called_at = time.monotonic()

    def _drop(self, stream: PlaybackStream) -> None:
        """Under the lock: end ``stream`` now, unheard parts discarded."""
        stream.stopped = True
        stream._chunks.clear()
        stream._finish()
        if stream in self._queue:
            self._queue.remove(stream)
        if stream.first_frame_at is not None:
            self._interrupted.append(stream)

    @property
    def playing(self) -> bool:
        """Some stream's audio is queued or being played."""
        with self._lock:
            return any(s.first_frame_at is not None or s._chunks for s in self._queue)

    def stalled(self) -> str | None:
        """Why the open output's device thread looks hung (no period pulled for
        PLAYBACK_STALL_SECONDS), or None; the watchdog asks. A missing device is
        not a stall: it is being reopened."""
        last = self._last_fill
        if self._sink is None or not last:
            return None
        age = time.monotonic() - last
        return f"playback stalled {age:.1f} s" if age > PLAYBACK_STALL_SECONDS else None

    @property
    def output_latency(self) -> float:
        """The device's own buffering after a period is handed to it."""
        return self._sink.latency if self._sink is not None else 0.0

    # --- called by streams ------------------------------------------------------

    def _converter(self, rate: int) -> PlaybackConverter:
        return PlaybackConverter(rate, self.device_rate, self.channels)

    def _append(self, stream: PlaybackStream, samples: np.ndarray) -> None:
        with self._lock:
            if self._sink is None:
                # The stream is over: left in the queue it would hold back every
                # stream behind it, since its writer may never call end().
                self._drop(stream)
                raise AudioDeviceError(f"output {self.spec!r} is not open or unavailable")
            if len(samples) and not stream.stopped:
                if stream.first_queued_at is None:
                    stream.first_queued_at = time.monotonic()
                stream._chunks.append(samples)
                stream._queued += len(samples)

    def _end(self, stream: PlaybackStream) -> None:
        with self._lock:
            stream._ended = True

    # --- the device thread ------------------------------------------------------

    def _fill(self, frames: int) -> np.ndarray:
        """One period for the device: queued audio at the current volume, else silence."""
        out = np.zeros(frames * self.channels, dtype=np.int16)
        now = self._last_fill = time.monotonic()
        started: list[PlaybackStream] = []
        finished: list[PlaybackStream] = []
        with self._lock:
            interrupted, self._interrupted = self._interrupted, []
            if self._stop_called_at is not None:
                self.last_stop_latency = now - self._stop_called_at + self.output_latency
                self._stop_called_at = None
            filled = 0
            while filled < len(out) and self._queue:
                stream = self._queue[0]
                n = stream._take(out, filled)
                if n and stream.first_frame_at is None:
                    stream.first_frame_at = now
                    started.append(stream)
                filled += n
                if stream._ended and not stream._chunks:
                    self._queue.popleft()
                    finished.append(stream)
                elif filled < len(out):
                    break  # underrun: the stream waits for more audio; silence fills in
        if self._volume != 1.0:
            out = (out * self._volume).astype(np.int16)
        if self.echo_reference is not None:
            self.echo_reference.played(out, now + self.output_latency, self.device_rate,
                                       self.channels)
        for stream in started:
            self._emit(stream, "audio_out_start", engine=stream.engine)
        self._announce_interrupted(interrupted)
        for stream in finished:
            if stream.first_frame_at is not None:
                self._emit(stream, "audio_out_end", engine=stream.engine, interrupted=False)
        if finished:
            # Only now wake drained(): both go through call_soon_threadsafe, so whoever
            # awaited the stream sees its audio_out_end already delivered.
            with self._lock:
                for stream in finished:
                    stream._finish()
        return out

    def _announce_interrupted(self, streams: list[PlaybackStream]) -> None:
        for stream in streams:
            self._emit(stream, "audio_out_end", engine=stream.engine, interrupted=True)

    def _emit(self, stream: PlaybackStream, name: str, **fields: object) -> None:
        """Listeners (LEDs, the event log) must not run on the audio thread."""
        if not stream.events:
            return
        emit = functools.partial(self.bus.emit, name, **fields)
        if stream._loop is not None and not stream._loop.is_closed():
            try:
                stream._loop.call_soon_threadsafe(emit)
                return
            except RuntimeError:
                pass
        emit()
