"""Debug recordings (``log.debug_recordings``): the audio of the last utterances and
wake detections as WAV files, so an owner can hear what the speaker heard when a
turn went wrong. Off by default (privacy); bounded by count and age.

A listener on the event bus: at a ``wake`` or ``utterance`` event it copies the
span from the ring (the same absolute sample indices the events carry) and writes
it in a worker thread, so the pipeline never waits on the disk.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import wave
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge_agent.errors import AudioDeviceError

if TYPE_CHECKING:
    from edge_agent.audio import RingBuffer
    from edge_agent.events import Event, EventBus

log = logging.getLogger(__name__)

KEEP_FILES = 50
"""At most this many recordings are kept; the oldest go first."""
KEEP_SECONDS = 7 * 24 * 3600.0
"""Recordings older than a week are deleted."""
WAKE_SECONDS = 2.0
"""Audio kept before a wake detection's end index: the phrase and what led to it."""


class DebugRecorder:
    """Writes ``<time>-<kind>.wav`` (16 kHz mono) into ``directory`` (made 0700,
    files 0600: they hold the household's voices). With echo cancellation on,
    ``raw`` (the microphone before it, same sample clock) is written beside it
    as ``<time>-<kind>-raw.wav``. Call ``close()`` at the end."""

    def __init__(self, directory: str | Path, ring: RingBuffer,
                 raw: RingBuffer | None = None) -> None:
        self.directory = Path(directory)
        self._ring = ring
        self._raw = raw
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="debug-recordings")
        self._warned = False

    def __call__(self, event: Event) -> None:
        """Event listener: must be quick, so only the copy happens here."""
        if event.name == "wake":
            end = event.fields.get("end_index")
            if end is None:
                return
            start, kind = end - round(WAKE_SECONDS * self._ring.rate), "wake"
        elif event.name == "utterance":
            start, end = event.fields.get("start_index"), event.fields.get("end_index")
            if start is None or end is None:
                return
            kind = "utterance"
        else:
            return
        stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{time.time_ns() // 1_000_000 % 1000:03d}"
        for ring, name in ((self._ring, f"{stamp}-{kind}.wav"),
                           (self._raw, f"{stamp}-{kind}-raw.wav")):
            if ring is None:
                continue
            try:
                audio = ring.read_range(max(start, ring.oldest), end)
            except (ValueError, AudioDeviceError) as exc:
                log.debug("no debug recording of %s: %s", kind, exc)
                return
            self._writer.submit(self._write, name, audio)

    def _write(self, name: str, audio: np.ndarray) -> None:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Created 0600: no moment in which others could read it.
            fd = os.open(self.directory / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as file, contextlib.closing(wave.open(file, "wb")) as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(self._ring.rate)
                w.writeframes(np.asarray(audio, dtype="<i2").tobytes())
            self.prune()
        except OSError as exc:
            if not self._warned:  # once: a full disk would otherwise log every turn
                log.warning("cannot write debug recordings to %s: %s", self.directory, exc)
                self._warned = True

    def prune(self, now: float | None = None) -> None:
        """Delete recordings past KEEP_SECONDS, then the oldest past KEEP_FILES."""
        now = time.time() if now is None else now
        files = sorted(self.directory.glob("*.wav"), key=lambda p: p.stat().st_mtime)
        keep = []
        for path in files:
            if now - path.stat().st_mtime > KEEP_SECONDS:
                path.unlink(missing_ok=True)
            else:
                keep.append(path)
        for path in keep[:max(0, len(keep) - KEEP_FILES)]:
            path.unlink(missing_ok=True)

    def close(self) -> None:
        """Finish the writes in hand, then stop the worker."""
        self._writer.shutdown(wait=True)


def attach(directory: str, ring: RingBuffer, bus: EventBus,
           raw: RingBuffer | None = None) -> Callable[[], None]:
    """Record into ``directory`` (empty: off) from ``bus``; returns the function
    that stops recording (safe to call twice)."""
    if not directory:
        return lambda: None
    recorder = DebugRecorder(directory, ring, raw)
    unsubscribe = bus.subscribe(recorder)
    log.info("debug recordings of wake words and utterances go to %s (the last %d, at most "
             "%.0f days old)", directory, KEEP_FILES, KEEP_SECONDS / 86400)

    def stop() -> None:
        unsubscribe()
        recorder.close()

    return stop
