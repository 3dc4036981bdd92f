"""Earcons: the generated ones, "off", and custom WAV files of other formats."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from edge_agent.config import EarconSettings
from edge_agent.controls import EARCON_NAMES, Earcons
from edge_agent.errors import ConfigError


def pcm(sound: tuple[bytes, int] | None) -> np.ndarray:
    assert sound is not None
    return np.frombuffer(sound[0], np.int16)


def dominant_hz(audio: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / rate)[np.argmax(spectrum)])


def test_builtin_earcons_are_short_clean_and_distinct() -> None:
    earcons = Earcons(EarconSettings())
    sounds = {name: earcons.get(name) for name in EARCON_NAMES}
    for name, sound in sounds.items():
        assert sound is not None and sound[1] == 16000, name
        audio = pcm(sound)
        assert 0.1 < len(audio) / 16000 < 0.5, f"{name} is a short cue"
        peak = np.abs(audio).max()
        assert 0.2 * 32767 < peak < 0.5 * 32767, f"{name} is audible, not blaring"
        # Faded in and out: no click at either end.
        assert abs(int(audio[0])) < 0.02 * peak and abs(int(audio[-1])) < 0.02 * peak, name
        assert np.abs(audio[:16]).max() < 0.25 * peak, f"{name} fades in over the first ms"
        assert np.abs(audio[-16:]).max() < 0.25 * peak, f"{name} fades out"
    assert len({sound[0] for sound in sounds.values()}) == len(EARCON_NAMES)

    def halves(name: str) -> tuple[float, float]:
        audio = pcm(sounds[name]).astype(np.float64)
        middle = len(audio) // 2
        return dominant_hz(audio[:middle], 16000), dominant_hz(audio[middle:], 16000)

    wake_first, wake_last = halves("wake")
    end_first, end_last = halves("end")
    assert wake_first < wake_last, "wake rises"
    assert end_first > end_last, "end falls"
    assert max(halves("error")) < min(wake_first, end_last), "error sits low"


def test_off_gives_none_and_unknown_names_are_refused() -> None:
    earcons = Earcons(EarconSettings(wake="off", end="off", error="builtin", offline="off"))
    assert earcons.get("wake") is None
    assert earcons.get("end") is None
    assert earcons.get("error") is not None
    with pytest.raises(KeyError, match="ding"):
        earcons.get("ding")


def write_wav(path: Path, frames: np.ndarray, rate: int, width: int) -> None:
    """``frames`` (samples x channels, floats in -1..1) as a PCM WAV of ``width`` bytes."""
    scaled = np.round(frames * (2 ** (8 * width - 1) - 1)).astype(np.int64)
    if width == 1:
        raw = (scaled + 128).astype(np.uint8).tobytes()
    else:
        little = scaled.astype("<i8").view(np.uint8).reshape(*scaled.shape, 8)
        raw = little[..., :width].tobytes()
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(frames.shape[1])
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(raw)


@pytest.mark.parametrize(("width", "channels", "rate"),
                         [(2, 1, 16000), (2, 2, 44100), (3, 2, 48000), (1, 1, 8000),
                          (4, 3, 22050)])
def test_custom_wav_of_any_format_becomes_mono_int16_at_its_rate(
        tmp_path: Path, width: int, channels: int, rate: int) -> None:
    t = np.arange(int(rate * 0.2)) / rate
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    silent = np.zeros_like(tone)
    # Channels differ (silent, half inverted): the mix-down is their mean.
    columns = {1: [tone], 2: [tone, silent], 3: [tone, -0.5 * tone, silent]}[channels]
    frames = np.stack(columns, axis=1)
    path = tmp_path / f"chime-{width}-{channels}.wav"
    write_wav(path, frames, rate, width)

    sound = Earcons(EarconSettings(wake=str(path))).get("wake")
    assert sound is not None and sound[1] == rate
    audio = pcm(sound)
    assert len(audio) == len(t)
    expected = frames.mean(axis=1) * 32767
    tolerance = 2 if width > 1 else 300  # 8-bit keeps 8 bits only
    assert np.abs(audio - expected).max() <= tolerance
    assert dominant_hz(audio.astype(np.float64), rate) == pytest.approx(440, abs=rate / len(t))


def test_float_wav_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "float.wav"
    data = np.zeros(1600, "<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, 16000, 64000, 4, 32)  # WAVE_FORMAT_IEEE_FLOAT
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE"
                     + b"fmt " + struct.pack("<I", len(fmt)) + fmt
                     + b"data" + struct.pack("<I", len(data)) + data)
    with pytest.raises(ConfigError, match=r"earcons\.offline"):
        Earcons(EarconSettings(offline=str(path)))


def test_a_file_that_is_not_a_wav_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("la la la")
    with pytest.raises(ConfigError, match=r"earcons\.end"):
        Earcons(EarconSettings(end=str(path)))
