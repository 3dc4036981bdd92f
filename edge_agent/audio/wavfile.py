"""WAV reading (streamed) for the file microphone and a WAV writer that is a valid file at
every moment (its header is patched after each append), so a crash, SIGKILL or
a test peeking mid-run still finds a playable timeline."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soxr

from edge_agent.audio.ring import SAMPLE_RATE
from edge_agent.errors import AudioDeviceError

WAVE_FORMAT_PCM = 1
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
_PCM_SUBFORMAT = b"\x01\x00\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
"""KSDATAFORMAT_SUBTYPE_PCM: what sox and most recorders write above 16 bit or 2 channels."""
READ_FRAMES = 4096
"""Input frames read per step: memory stays small for an hour-long file."""


class WavReader:
    """A PCM WAV of any rate and channel count, 16, 24 or 32-bit integer, plain or
    WAVE_FORMAT_EXTENSIBLE, read a block at a time as 16 kHz mono int16. A file
    truncated mid-frame ends at its last whole frame."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._file: BinaryIO = self.path.open("rb")
        except OSError as exc:
            raise AudioDeviceError(f"cannot read WAV input {path}: {exc}") from exc
        try:
            self._parse_header()
        except (OSError, struct.error) as exc:
            self._file.close()
            raise AudioDeviceError(f"cannot read WAV input {path}: {exc}") from exc
        except AudioDeviceError:
            self._file.close()
            raise
        self._resampler = (soxr.ResampleStream(self.rate, SAMPLE_RATE, 1, dtype="int16")
                           if self.rate != SAMPLE_RATE else None)
        self._ended = False

    def _bad(self, why: str) -> AudioDeviceError:
        return AudioDeviceError(f"WAV input {self.path}: {why}")

    def _parse_header(self) -> None:
        f = self._file
        riff = f.read(12)
        if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
            raise self._bad("not a RIFF/WAVE file")
        fmt = None
        while True:
            head = f.read(8)
            if len(head) < 8:
                raise self._bad("no data chunk" if fmt else "no fmt chunk")
            chunk_id, size = head[:4], struct.unpack("<I", head[4:])[0]
            if chunk_id == b"fmt ":
                fmt = f.read(size + size % 2)[:size]
                self._parse_fmt(fmt)
            elif chunk_id == b"data":
                if fmt is None:
                    raise self._bad("data before fmt")
                self._data_left = size
                return
            else:
                f.seek(size + size % 2, 1)

    def _parse_fmt(self, fmt: bytes) -> None:
        if len(fmt) < 16:
            raise self._bad("fmt chunk too short")
        tag, self.channels, self.rate, _, self._block, bits = struct.unpack("<HHIIHH", fmt[:16])
        if tag == WAVE_FORMAT_EXTENSIBLE and len(fmt) >= 40 and fmt[24:40] == _PCM_SUBFORMAT:
            tag = WAVE_FORMAT_PCM
        if tag != WAVE_FORMAT_PCM:
            raise self._bad(f"unsupported format {tag:#x} (integer PCM only)")
        if bits not in (16, 24, 32):
            raise self._bad(f"{bits}-bit samples (16, 24 or 32-bit PCM only)")
        self._width = bits // 8
        if not self.channels or not self.rate or self._block != self._width * self.channels:
            raise self._bad("inconsistent fmt chunk")

    @property
    def duration(self) -> float:
        """Seconds of audio the header announces (less if the file was cut short)."""
        return self._data_left / self._block / self.rate

    def read(self) -> np.ndarray | None:
        """The next samples (16 kHz mono int16, possibly none yet); None at the end."""
        if self._ended:
            return None
        want = min(READ_FRAMES * self._block, self._data_left)
        raw = self._file.read(want) if want else b""
        raw = raw[:len(raw) - len(raw) % self._block]  # a frame cut short is dropped
        self._data_left -= len(raw)
        last = not raw
        if last:
            self._ended = True
        mono = self._to_mono(raw)
        if self._resampler is not None:
            mono = self._resampler.resample_chunk(mono, last=last)
        return mono if len(mono) or not last else None

    def _to_mono(self, raw: bytes) -> np.ndarray:
        if self._width == 2:
            samples = np.frombuffer(raw, dtype="<i2").astype(np.int32)
        elif self._width == 4:
            samples = np.frombuffer(raw, dtype="<i4") >> 16
        else:  # 24-bit: three bytes, little-endian, sign taken from the top one
            b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
            samples = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 16
        if self.channels > 1:
            samples = samples.reshape(-1, self.channels).sum(axis=1) // self.channels
        return samples.astype(np.int16)

    def close(self) -> None:
        self._file.close()


class WavWriter:
    """Appends int16 frames to a WAV file, keeping the header's sizes current."""

    def __init__(self, path: str | Path, rate: int, channels: int = 1) -> None:
        self.path = Path(path)
        self.rate = rate
        self.channels = channels
        self.frames = 0
        try:
            # Unbuffered: a write that failed (full disk) leaves nothing behind to be
            # flushed again later, twice, or to make close() raise.
            self._file: BinaryIO | None = self.path.open("wb", buffering=0)
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
        # Right after the last whole write: bytes of a failed one are overwritten.
        self._file.seek(44 + self.frames * 2 * self.channels)
        written = self._file.write(data)
        if written != len(data):
            raise OSError(f"short write ({written} of {len(data)} bytes)")
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
