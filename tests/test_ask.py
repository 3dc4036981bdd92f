"""`edge-agent ask`: the answer path from typed text, as an owner runs it with no
daemon, no microphone and no network, and against the fake cloud."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_agent.agent.ask import ask
from edge_agent.config import CloudSettings, OfflineSettings, Settings
from edge_agent.errors import CAUSES
from edge_agent.testbed.fakecloud import FakeCloud
from edge_agent.tools.voices import read_wav

TIME = re.compile(r"It's \d{1,2}:\d{2} [AP]M\.")
LOUD = 500.0  # RMS over 20 ms above this is sound, not the output's silence


def closed_port_url() -> str:
    """A base_url where nothing listens: connections are refused (no network)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def run_ask(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "config.toml"
    config.write_text(f'[cloud]\nbase_url = "{closed_port_url()}"\n'
                      f'[audio]\noutput = "{tmp_path / "speaker.wav"}"\n')
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", "ask", "--config", str(config), *args],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)


def loud_seconds(audio: np.ndarray) -> float:
    frames = audio[: len(audio) // 320 * 320].astype(np.float64).reshape(-1, 320)
    return float((np.sqrt((frames**2).mean(axis=1)) > LOUD).sum()) * 320 / 16000


def test_ask_print_answers_the_time_with_no_network(tmp_path: Path) -> None:
    done = run_ask(tmp_path, "--print", "what", "time", "is", "it")
    assert done.returncode == 0, done.stderr
    assert TIME.fullmatch(done.stdout.strip()), done.stdout
    assert not (tmp_path / "speaker.wav").exists()  # --print opens no speaker


@pytest.mark.slow
def test_ask_speaks_the_time_with_piper_into_a_wav_with_no_network(tmp_path: Path) -> None:
    done = run_ask(tmp_path, "what time is it")
    assert done.returncode == 0, done.stderr
    assert TIME.search(done.stdout), done.stdout
    assert loud_seconds(read_wav(tmp_path / "speaker.wav")) > 0.5


def test_ask_without_a_speaker_fails_and_says_why(tmp_path: Path) -> None:
    done = run_ask(tmp_path, "--output", "no-such-speaker-xyz", "what time is it")
    assert done.returncode == 1
    assert "no-such-speaker-xyz" in done.stderr


def test_ask_goes_to_the_cloud_llm_and_voice_when_it_answers(
        fake_cloud: FakeCloud, tmp_path: Path) -> None:
    fake_cloud.reply = "Paris is the capital of France."
    out = tmp_path / "speaker.wav"
    settings = Settings(cloud=fake_cloud.settings())
    result = asyncio.run(asyncio.wait_for(
        ask(settings, "what is the capital of France", output=str(out)), 60))
    assert result.reply_engine == "cloud"
    assert result.reply == "Paris is the capital of France."
    assert result.spoken
    assert not fake_cloud.requests_for("stt")  # typed text: no speech recognition
    assert fake_cloud.requests_for("tts")
    assert loud_seconds(read_wav(out)) > 0.3


def test_ask_print_uses_no_voice(fake_cloud: FakeCloud) -> None:
    settings = Settings(cloud=fake_cloud.settings(),
                        offline=OfflineSettings(prefer_local=False))
    result = asyncio.run(asyncio.wait_for(
        ask(settings, "what time is it", speak=False), 30))
    assert result.reply_engine == "cloud"
    assert result.reply == "It is a fine day."
    assert not fake_cloud.requests_for("tts")


def test_ask_offline_without_a_local_answer_gives_the_offline_notice() -> None:
    settings = Settings(cloud=CloudSettings(base_url=closed_port_url()))
    result = asyncio.run(asyncio.wait_for(
        ask(settings, "what is the capital of France", speak=False), 30))
    assert result.reply_engine == "offline"
    assert result.reply


@pytest.mark.parametrize("key", ["missing", "refused"])
def test_ask_names_the_key_problem_as_the_daemon_does(
        key: str, fake_cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    if key == "missing":
        monkeypatch.delenv("OPENAI_API_KEY")
    else:
        fake_cloud.fail("models", "status", status=401, times=None)
    settings = Settings(cloud=fake_cloud.settings())
    with caplog.at_level(logging.WARNING):
        result = asyncio.run(asyncio.wait_for(
            ask(settings, "what is the weather", speak=False), 30))
    cause = CAUSES["no_key" if key == "missing" else "key_refused"]
    assert result.reply_engine == "offline"
    assert cause in result.reply  # what the speaker would say, not "I'm offline"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(w.startswith("cloud unavailable") and cause in w for w in warnings), warnings
    if key == "missing":
        assert "$OPENAI_API_KEY" in " ".join(warnings)  # where to put it
