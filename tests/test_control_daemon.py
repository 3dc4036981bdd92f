"""The operator's verbs against the real daemon: `edge-agent run` as systemd
starts it (.wav microphone of silence, .wav speaker, no cloud, no GPIO), and
`edge-agent status/say/mute/unmute/listen` as separate processes finding the
control socket through the same config file."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edge_agent.testbed.service import START_TIMEOUT, ServiceRun, config_text
from edge_agent.tools.voices import RATE, read_wav, silence, write_wav

pytestmark = pytest.mark.slow

LOUD = 1000.0


def cli(service: ServiceRun, *args: str) -> subprocess.CompletedProcess[str]:
    verb, *rest = args
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", verb, "--config", str(service.config), *rest],
        capture_output=True, text=True, timeout=60, cwd=service.tmp)


def status(service: ServiceRun) -> dict:
    done = cli(service, "status", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def wait_for_state(service: ServiceRun, state: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while status(service)["state"] != state:
        assert time.monotonic() < deadline, f"never {state}: {status(service)}"
        service.receive(0.1)  # keep collecting notifications meanwhile


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ServiceRun]:
    write_wav(tmp_path / "silence.wav", silence(1.0))
    run = ServiceRun(tmp_path, config_text(tmp_path, str(tmp_path / "silence.wav")))
    try:
        run.wait_for("READY", "1", timeout=START_TIMEOUT)
        yield run
    finally:
        run.close()


def test_operator_verbs_drive_the_running_daemon(service: ServiceRun) -> None:
    first = status(service)
    assert first["state"] == "idle"
    assert first["muted"] is False
    assert first["wake_models"]
    readable = cli(service, "status")
    assert readable.returncode == 0
    assert "state: idle" in readable.stdout

    # say: spoken by Piper (no cloud) on the daemon's own speaker, and the verb
    # returns only once it was spoken.
    said = cli(service, "say", "The kitchen timer is done.")
    assert said.returncode == 0, said.stderr
    (start,) = service.events("audio_out_start")
    assert start["engine"] == "piper"
    assert service.events("audio_out_end")

    assert cli(service, "mute").stdout.strip() == "muted"
    assert status(service)["muted"] is True
    assert status(service)["state"] == "muted"
    assert cli(service, "unmute").stdout.strip() == "unmuted"
    assert status(service)["muted"] is False
    wait_for_state(service, "idle")

    # listen: a turn starts as if the button were pressed; the silent room ends it.
    assert cli(service, "listen").stdout.strip() == "listening"
    states = []
    deadline = time.monotonic() + 30
    while "listening" not in states:
        assert time.monotonic() < deadline, f"no listening state in {states}"
        states = [e["state"] for e in service.events("state")]
        service.receive(0.1)
    wait_for_state(service, "idle", within=30)

    uptime = status(service)["uptime_s"]
    assert uptime >= first["uptime_s"]
    service.terminate()

    # The spoken announcement is on the speaker's timeline.
    audio = read_wav(service.tmp / "out.wav")
    frames = audio[: len(audio) // 320 * 320].astype(np.float64).reshape(-1, 320)
    assert (np.sqrt((frames**2).mean(axis=1)) > LOUD).sum() * 320 / RATE > 0.5

    gone = cli(service, "status")
    assert gone.returncode == 1
    assert "not running" in gone.stderr
