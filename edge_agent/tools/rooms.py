"""Rooms for evaluations: what a real microphone adds to a take.

- ``clean``: a -64 dBFS noise floor, as a quiet room and a decent microphone.
- ``digital silence``: exact zeros around the speech (noise-gated and some
  USB microphones deliver them).
- ``reverb``: a synthetic room impulse response with an RT60 of 0.5 s and
  the direct sound 3 dB above the reverberant tail (a few metres away in a
  living room), plus the noise floor.
- ``babble``: four other talkers at 10 dB below the take.
- ``noise``: white noise at 10 dB below the take.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edge_agent.tools.voices import RATE, noise

ROOMS = ("clean", "digital silence", "reverb", "babble", "noise")
NOISE_FLOOR = 20.0
"""Standard deviation of the noise floor: -64 dBFS."""
RT60 = 0.5
DIRECT_TO_REVERB_DB = 3.0


def floor_noise(samples: int, seed: int, level: float = NOISE_FLOOR) -> np.ndarray:
    """Exactly ``samples`` of white noise (``level`` = its standard deviation)."""
    return noise((samples + 1) / RATE, level=level, seed=seed)[:samples].astype(np.float64)


def impulse_response(seed: int, rt60: float = RT60) -> np.ndarray:
    """Direct path, then exponentially decaying noise that falls 60 dB in ``rt60``."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rt60 * 1.2 * RATE)) / RATE
    tail = rng.normal(0, 1, len(t)) * np.exp(-6.9 * t / rt60)
    tail[: int(0.003 * RATE)] = 0.0  # first reflections arrive a few ms late
    tail *= 10 ** (-DIRECT_TO_REVERB_DB / 20) / np.sqrt(np.sum(tail**2))
    tail[0] = 1.0
    return tail


def reverberate(audio: np.ndarray, seed: int) -> np.ndarray:
    """``audio`` in the room, at the same peak level."""
    h = impulse_response(seed)
    n = len(audio) + len(h) - 1
    size = 1 << (n - 1).bit_length()
    wet = np.fft.irfft(np.fft.rfft(audio.astype(np.float64), size) * np.fft.rfft(h, size),
                       size)[: len(audio)]
    wet *= np.abs(audio).max() / max(np.abs(wet).max(), 1e-9)
    return wet


def at_snr(take: np.ndarray, speech_span: tuple[int, int], background: np.ndarray,
           snr_db: float) -> np.ndarray:
    """``background`` scaled so the speech in ``speech_span`` is ``snr_db`` above it."""
    start, end = speech_span
    p_s = np.mean(take[start:end].astype(np.float64) ** 2) + 1e-9
    bg = np.resize(background, take.shape).astype(np.float64)
    p_n = np.mean(bg**2) + 1e-9
    return bg * np.sqrt(p_s / (p_n * 10 ** (snr_db / 10)))


def in_room(take: np.ndarray, speech_span: tuple[int, int], room: str, seed: int,
            babble: Callable[[int, int], np.ndarray]) -> np.ndarray:
    """``take`` (speech with digital silence around it) as heard in ``room``;
    ``babble(samples, seed)`` makes the talkers."""
    x = take.astype(np.float64)
    if room == "digital silence":
        pass
    elif room == "clean":
        x = x + floor_noise(len(x), seed)
    elif room == "reverb":
        x = reverberate(x, seed) + floor_noise(len(x), seed)
    elif room == "babble":
        x = x + at_snr(take, speech_span, babble(len(x), seed), 10.0)
    elif room == "noise":
        x = x + at_snr(take, speech_span, floor_noise(len(x), seed, level=1000), 10.0)
    else:
        raise ValueError(f"unknown room {room!r}")
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)
