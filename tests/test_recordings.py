"""Debug recordings: the audio of wake detections and utterances, bounded."""

from __future__ import annotations

import os
import stat
import time
import wave
from pathlib import Path

import numpy as np

from edge_agent.audio import RingBuffer
from edge_agent.events import EventBus
from edge_agent.service import recordings
from edge_agent.service.recordings import KEEP_FILES, KEEP_SECONDS, DebugRecorder

RATE = 16000


def frames(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels()) == (RATE, 1)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def test_wakes_and_utterances_are_written_as_wav(tmp_path: Path) -> None:
    ring, bus = RingBuffer(10.0), EventBus()
    ring.write(np.arange(5 * RATE, dtype=np.int64).astype(np.int16))
    folder = tmp_path / "rec"
    stop = recordings.attach(str(folder), ring, bus)
    bus.emit("wake", model="hey_jarvis", score=0.9, end_index=3 * RATE)
    bus.emit("utterance", start=0.0, end=1.0, duration=1.0, start_index=3 * RATE,
             end_index=4 * RATE)
    bus.emit("wake", model="hey_jarvis", score=0.9, end_index=9 * RATE)  # not yet heard
    stop()
    stop()  # twice is fine
    wake, = folder.glob("*-wake.wav")
    utterance, = folder.glob("*-utterance.wav")
    assert len(frames(wake)) == 2 * RATE
    assert np.array_equal(frames(utterance),
                          np.arange(3 * RATE, 4 * RATE, dtype=np.int64).astype(np.int16))
    assert stat.S_IMODE(utterance.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_off_by_default_records_nothing(tmp_path: Path) -> None:
    ring, bus = RingBuffer(1.0), EventBus()
    ring.write(np.zeros(RATE, np.int16))
    stop = recordings.attach("", ring, bus)
    bus.emit("wake", model="hey_jarvis", score=0.9, end_index=RATE)
    stop()
    assert list(tmp_path.iterdir()) == []


def test_old_and_surplus_recordings_are_deleted(tmp_path: Path) -> None:
    now = time.time()
    for i in range(KEEP_FILES + 5):
        path = tmp_path / f"{i:03d}-utterance.wav"
        path.write_bytes(b"")
        os.utime(path, (now - 1000 + i, now - 1000 + i))
    stale = tmp_path / "old-wake.wav"
    stale.write_bytes(b"")
    os.utime(stale, (now - KEEP_SECONDS - 1, now - KEEP_SECONDS - 1))
    recorder = DebugRecorder(tmp_path, RingBuffer(1.0))
    recorder.prune(now)
    recorder.close()
    left = sorted(p.name for p in tmp_path.glob("*.wav"))
    assert len(left) == KEEP_FILES and "old-wake.wav" not in left
    assert left[0] == "005-utterance.wav"  # the oldest went first


def test_the_raw_microphone_is_written_beside_the_cancelled_audio(tmp_path: Path) -> None:
    ring, raw, bus = RingBuffer(10.0), RingBuffer(10.0), EventBus()
    ring.write(np.zeros(2 * RATE, np.int16))
    raw.write(np.full(2 * RATE, 7, np.int16))
    stop = recordings.attach(str(tmp_path), ring, bus, raw)
    bus.emit("utterance", start=0.0, end=1.0, duration=1.0, start_index=RATE,
             end_index=2 * RATE)
    stop()
    cancelled, = tmp_path.glob("*-utterance.wav")
    before, = tmp_path.glob("*-utterance-raw.wav")
    assert not frames(cancelled).any()
    assert np.array_equal(frames(before), np.full(RATE, 7, np.int16))
