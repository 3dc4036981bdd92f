"""``edge-agent wake-test``: the configured wake-word engines over WAV files.

An owner checks a recording from their own room with it, and evaluations run
held-out sets through it: the daemon's own detector, settings and frame size,
the detector reset at each file's start (so its warm-up counts from there),
the file streamed in blocks so hours of audio take no more memory than seconds.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import numpy as np

from edge_agent.audio.wavfile import WavReader
from edge_agent.config import WakeSettings
from edge_agent.errors import AudioDeviceError
from edge_agent.wake._detector import RATE, WakeDetector

CONVERT = "integer PCM WAV is read; convert with: sox IN.wav -b 16 -e signed OUT.wav"


def wav_blocks(path: Path) -> Iterator[np.ndarray]:
    """A PCM WAV of any rate, channel count and integer width as 16 kHz mono
    int16 blocks: the file microphone's own reader."""
    try:
        reader = WavReader(path)
    except AudioDeviceError as exc:
        raise AudioDeviceError(f"{exc}; {CONVERT}") from exc
    try:
        while (block := reader.read()) is not None:
            yield block
    except OSError as exc:
        raise AudioDeviceError(f"cannot read {path}: {exc}") from exc
    finally:
        reader.close()


def detections(detector: WakeDetector, path: Path) -> Iterator[dict[str, object]]:
    """One record per detection in ``path``, times in seconds from its start."""
    detector.reset()
    position = 0
    pending = np.zeros(0, dtype=np.int16)
    frame = detector.FRAME_SAMPLES
    for block in wav_blocks(path):
        audio = np.concatenate([pending, block])
        whole = len(audio) - len(audio) % frame
        for start in range(0, whole, frame):
            position += frame
            found = detector.process(audio[start:start + frame], position)
            if found is not None:
                yield {"file": str(path), "model": found.model, "score": round(found.score, 3),
                       "time_s": round(position / RATE, 2), "engine": found.engine,
                       "phrase_end_s": round(found.end_index / RATE, 2)}
        pending = audio[whole:]


def run(settings: WakeSettings, paths: list[Path], out: TextIO = sys.stdout,
        err: TextIO = sys.stderr) -> bool:
    """Print a JSON line per detection; False if any file could not be read."""
    detector = WakeDetector(settings)
    ok = True
    for path in paths:
        try:
            for record in detections(detector, path):
                print(json.dumps(record), file=out, flush=True)
        except AudioDeviceError as exc:
            print(f"edge-agent wake-test: {exc}", file=err)
            ok = False
    return ok
