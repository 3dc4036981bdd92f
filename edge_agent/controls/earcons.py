"""Earcons: the short sounds for wake, end of listening, error and offline.

The built-in ones are generated with numpy at start-up (a few kilobytes each),
so there are no audio files to ship or lose. A custom .wav of any rate, width
and channel count is mixed down to mono int16 and keeps its rate; the player
resamples once, to the device's rate.
"""

from __future__ import annotations

import functools
import logging
import wave
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge_agent.errors import ConfigError

if TYPE_CHECKING:
    from edge_agent.config import EarconSettings

log = logging.getLogger(__name__)

EARCON_NAMES = ("wake", "end", "error", "offline")
BUILTIN_RATE = 16000
_LEVEL = 0.3  # of full scale: clearly audible, well under a loud TTS voice
_EDGE = 0.005  # fade at each note's ends; an abrupt start or stop clicks

# (frequency Hz, seconds) per note; 0 Hz is a rest. Rising for "I'm listening",
# falling for "done", low for trouble, a falling triad for "gone offline".
_MELODIES: dict[str, tuple[tuple[float, float], ...]] = {
    "wake": ((880.0, 0.07), (1318.5, 0.09)),
    "end": ((1318.5, 0.07), (880.0, 0.09)),
    "error": ((392.0, 0.12), (0.0, 0.04), (261.6, 0.22)),
    "offline": ((784.0, 0.08), (659.3, 0.08), (523.3, 0.16)),
}


class Earcons:
    """The four earcons as ready-to-play PCM, loaded once so playing one costs nothing."""

    def __init__(self, settings: EarconSettings) -> None:
        self._sounds = {name: _load(name, getattr(settings, name)) for name in EARCON_NAMES}

    def get(self, name: str) -> tuple[bytes, int] | None:
        """(16-bit mono PCM, its rate) for ``name``, or None when that earcon is off."""
        if name not in self._sounds:
            raise KeyError(f"unknown earcon {name!r}; expected one of {EARCON_NAMES}")
        return self._sounds[name]


def _load(name: str, source: str) -> tuple[bytes, int] | None:
    if source == "off":
        return None
    if source == "builtin":
        return builtin(name), BUILTIN_RATE
    try:
        return read_wav_mono16(Path(source).expanduser())
    except (OSError, wave.Error, EOFError, ValueError) as exc:
        raise ConfigError(f"earcons.{name}: cannot use {source!r}: {exc}") from exc


@functools.cache
def builtin(name: str) -> bytes:
    """The generated earcon ``name`` as 16 kHz mono int16 PCM."""
    notes = []
    for freq, seconds in _MELODIES[name]:
        t = np.arange(round(seconds * BUILTIN_RATE)) / BUILTIN_RATE
        note = np.sin(2 * np.pi * freq * t) if freq else np.zeros_like(t)
        ramp = min(round(_EDGE * BUILTIN_RATE), len(t) // 2)
        envelope = np.ones_like(t)
        envelope[:ramp] = np.linspace(0.0, 1.0, ramp)
        envelope[len(t) - ramp:] = np.linspace(1.0, 0.0, ramp)
        notes.append(note * envelope)
    audio = np.concatenate(notes) * _LEVEL * 32767
    return audio.astype(np.int16).tobytes()


def read_wav_mono16(path: Path) -> tuple[bytes, int]:
    """A PCM .wav of 8/16/24/32-bit samples and any channel count -> (mono int16, rate)."""
    with wave.open(str(path), "rb") as wav:
        channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
        raw = wav.readframes(wav.getnframes())
    if width == 1:  # 8-bit WAV is unsigned
        samples = (np.frombuffer(raw, np.uint8).astype(np.int32) - 128) << 24
    elif width == 3:  # little-endian 24-bit: put each sample in the top of an int32
        triplets = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        samples = (triplets[:, 0] << 8) | (triplets[:, 1] << 16) | (triplets[:, 2] << 24)
    elif width in (2, 4):
        samples = np.frombuffer(raw, f"<i{width}").astype(np.int32) << (32 - 8 * width)
    else:
        raise ValueError(f"{width * 8}-bit samples are not supported")
    if len(samples) == 0:
        raise ValueError("the file holds no audio")
    # Mix down as the mean of the channels, in int32 scale, then keep the top 16 bits.
    mono = samples.reshape(-1, channels).astype(np.float64).mean(axis=1)
    pcm = np.clip(np.round(mono / 65536), -32768, 32767).astype(np.int16)
    return pcm.tobytes(), rate
