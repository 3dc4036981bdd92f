"""``edge-agent wake-test`` as an owner and our evaluation run it: the real
command, real WAV files, the daemon's detector."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from edge_agent.tools.voices import piper, silence, write_wav

RATE = 16000
SHIPPED_CONFIG = Path(__file__).parent.parent / "config" / "edge-agent.toml"  # not /etc's


def wake_test(*args: str | Path, config: Path | None = None) -> subprocess.CompletedProcess:
    extra = ["--config", str(config)] if config else []
    return subprocess.run([sys.executable, "-m", "edge_agent", "wake-test", *extra,
                           *map(str, args)], capture_output=True, text=True, timeout=300,
                          check=False,
                          env={**os.environ, "EDGE_AGENT_CONFIG": str(SHIPPED_CONFIG)})


def two_takes(path: Path) -> Path:
    """Takes of "hey jarvis" ending near 2.3 s and 7.0 s."""
    take = piper("hey jarvis, what time is it")
    audio = np.concatenate([silence(1.6), take, silence(5.5 - len(take) / RATE), take,
                            silence(1.0)])
    return write_wav(path, audio)


def test_prints_a_json_line_per_detection_with_its_time(tmp_path) -> None:
    wav = two_takes(tmp_path / "room.wav")
    result = wake_test(wav, wav)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 4, "the same file twice: the detector restarts at each file"
    for line in lines:
        assert {"file", "model", "score", "time_s"} <= line.keys()
        assert line["file"] == str(wav) and line["model"] == "hey_jarvis"
        assert 0.5 <= line["score"] <= 1.0
    times = [line["time_s"] for line in lines]
    assert times[:2] == times[2:]
    assert 1.6 < times[0] < 3.5 and 7.1 < times[1] < 9.0


def test_other_rates_and_channels_are_converted(tmp_path) -> None:
    wav = two_takes(tmp_path / "room.wav")
    stereo = tmp_path / "room48k.wav"
    subprocess.run(["sox", str(wav), "-r", "48000", "-c", "2", str(stereo)], check=True)
    result = wake_test(stereo)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2


def test_24_and_32_bit_recordings_are_read_and_float_ones_refused_with_a_reason(
        tmp_path) -> None:
    """What recorders write: 24-bit (sox and most write it as WAVE_FORMAT_EXTENSIBLE)
    and 32-bit integer PCM are read as the file microphone reads them; 32-bit
    float is refused, with the conversion to use."""
    wav = two_takes(tmp_path / "room.wav")
    made = {}
    for name, args in (("24bit.wav", ["-b", "24", "-r", "44100"]), ("32bit.wav", ["-b", "32"]),
                       ("float.wav", ["-e", "floating-point", "-b", "32"])):
        made[name] = tmp_path / name
        subprocess.run(["sox", str(wav), *args, str(made[name])], check=True)
    result = wake_test(made["24bit.wav"], made["32bit.wav"], made["float.wav"])
    assert result.returncode == 1
    files = [json.loads(line)["file"] for line in result.stdout.splitlines()]
    assert files == [str(made["24bit.wav"])] * 2 + [str(made["32bit.wav"])] * 2
    assert "float.wav" in result.stderr and "sox" in result.stderr


def test_an_unreadable_file_fails_after_the_others_are_read(tmp_path) -> None:
    wav = two_takes(tmp_path / "room.wav")
    (tmp_path / "notes.wav").write_text("not audio")
    result = wake_test(tmp_path / "notes.wav", tmp_path / "missing.wav", wav)
    assert result.returncode == 1
    assert len(result.stdout.splitlines()) == 2
    assert "notes.wav" in result.stderr and "missing.wav" in result.stderr
    assert "sox" in result.stderr, "says how to convert"


def test_the_config_wake_settings_are_used(tmp_path) -> None:
    wav = two_takes(tmp_path / "room.wav")
    config = tmp_path / "config.toml"
    config.write_text("[wake]\nthreshold = 1.0\n")
    config.chmod(0o600)
    result = wake_test(wav, config=config)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    config.write_text("[wake]\nengines = [\"telepathy\"]\n")
    result = wake_test(wav, config=config)
    assert result.returncode == 2
    assert "telepathy" in result.stderr
