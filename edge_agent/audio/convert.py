"""Format conversion at the two seams: device format -> 16 kHz mono on capture,
TTS rate -> device format on playback. soxr's stream resampler keeps its filter
state between chunks, so chunked audio converts exactly as one piece would."""

from __future__ import annotations

import numpy as np
import soxr

from edge_agent.audio.ring import SAMPLE_RATE


class CaptureConverter:
    """Interleaved int16 at the device's rate and channels -> 16 kHz mono int16."""

    def __init__(self, rate: int, channels: int) -> None:
        self.rate = rate
        self.channels = channels
        self._resampler = (None if rate == SAMPLE_RATE
                           else soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="int16"))

    def __call__(self, data: bytes) -> np.ndarray:
        samples = np.frombuffer(data, dtype=np.int16)
        if self.channels > 1:
            # Averaging the channels is the usual downmix; identical channels stay exact.
            frames = samples.reshape(-1, self.channels).astype(np.int32)
            samples = (frames.sum(axis=1) // self.channels).astype(np.int16)
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples)
        return samples


class PlaybackConverter:
    """int16 mono PCM at ``rate`` -> interleaved int16 at the device's format."""

    def __init__(self, rate: int, device_rate: int, channels: int) -> None:
        self.rate = rate
        self.channels = channels
        self._resampler = (None if rate == device_rate
                           else soxr.ResampleStream(rate, device_rate, 1, dtype="int16"))

    def __call__(self, pcm: bytes, *, last: bool = False) -> np.ndarray:
        samples = np.frombuffer(pcm, dtype=np.int16)
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples, last=last)
        if self.channels > 1:
            samples = np.repeat(samples, self.channels)
        return samples
