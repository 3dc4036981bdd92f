"""WAV reading for the file microphone and a WAV writer that is a valid file at
every moment (its header is patched after each append), so a crash, SIGKILL or
a test peeking mid-run still finds a playable timeline."""

from __future__ import annotations

import struct
import wave
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soxr

from edge_agent.audio.ring import SAMPLE_RATE
from edge_agent.errors import AudioDeviceError


def load_wav(path: str | Path) -> np.ndarray:
    """A PCM16 WAV of any rate and channel count as 16 kHz mono int16."""
    try:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2:
                raise AudioDeviceError(f"{path}: only 16-bit PCM WAV is supported")
            channels, rate = w.getnchannels(), w.getframerate()
            samples = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    except (OSError, EOFError, wave.Error) as exc:
        raise AudioDeviceError(f"cannot read WAV input {path}: {exc}") from exc
    if channels > 1:
        samples = (samples.reshape(-1, channels).astype(np.int32).sum(axis=1)
                   // channels).astype(np.int16)
    if rate != SAMPLE_RATE:
        samples = soxr.resample(samples, rate, SAMPLE_RATE)
    return samples


class WavWriter:
    """Appends int16 frames to a WAV file, keeping the header's sizes current."""

    def __init__(self, path: str | Path, rate: int, channels: int = 1) -> None:
        self.path = Path(path)
        self.rate = rate
        self.channels = channels
        self.frames = 0
        try:
            self._file: BinaryIO | None = self.path.open("wb")
        except OSError as exc:
            raise AudioDeviceError(f"cannot write WAV output {path}: {exc}") from exc
        self._file.write(self._header(0))
        self._file.flush()

    def _header(self, data_bytes: int) -> bytes:
        block = 2 * self.channels
        return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
                + b"fmt " + struct.pack("<IHHIIHH", 16, 1, self.channels, self.rate,
                                        self.rate * block, block, 16)
                + b"data" + struct.pack("<I", data_bytes))

    def write(self, samples: np.ndarray) -> None:
        if self._file is None:
            return
        data = np.asarray(samples, dtype=np.int16).tobytes()
        self._file.seek(0, 2)
        self._file.write(data)
        self.frames += len(data) // (2 * self.channels)
        data_bytes = self.frames * 2 * self.channels
        self._file.seek(4)
        self._file.write(struct.pack("<I", 36 + data_bytes))
        self._file.seek(40)
        self._file.write(struct.pack("<I", data_bytes))
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
