"""The daemon as systemd sees it: `edge-agent run` as a subprocess with a real
NOTIFY_SOCKET (READY, WATCHDOG, STOPPING) and SIGTERM; SIGHUP with a good and a
bad config; a crashing job that is restarted while the daemon keeps serving;
config errors exit 2."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edge_agent.cli import main
from edge_agent.testbed.fakecloud import FakeCloud
from edge_agent.testbed.harness import Harness, config_text, run
from edge_agent.testbed.wait import poll_until
from edge_agent.tools.voices import RATE, piper, silence, write_wav

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def notify_socket() -> Iterator[socket.socket]:
    """A bound datagram socket like systemd's; short path (AF_UNIX allows ~107 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="ea-notify-", dir="/tmp"))
    path = folder / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    try:
        yield sock
    finally:
        sock.close()
        path.unlink(missing_ok=True)
        folder.rmdir()


def receive(sock: socket.socket, until: str, within: float) -> list[str]:
    """Datagrams (as "KEY=value" lines) until one holds ``until``."""
    lines: list[str] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            lines.extend(sock.recv(4096).decode().splitlines())
            if until in lines:
                return lines
    raise AssertionError(f"no {until} within {within} s; got {lines}")


def test_run_subprocess_notifies_and_stops_on_sigterm(tmp_path: Path) -> None:
    write_wav(tmp_path / "in.wav", silence(30.0))
    with FakeCloud() as fake, notify_socket() as sock:
        config = tmp_path / "config.toml"
        config.write_text(config_text(tmp_path, fake, "[gpio]\nenabled = false\n").replace(
            "[gpio]\nbutton = 17\n", ""))
        env = {**os.environ, "NOTIFY_SOCKET": sock.getsockname(), "WATCHDOG_USEC": "1000000"}
        env.pop("WATCHDOG_PID", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "run", "--config", str(config)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            lines = receive(sock, "READY=1", 90)
            status = [line for line in lines if line.startswith("STATUS=")]
            assert status[-1] == "STATUS=listening for hey jarvis, cloud online"
            # The watchdog pings while capture advances.
            receive(sock, "WATCHDOG=1", 10)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
            took = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
            _, stderr = proc.communicate(5)
        print(f"SIGTERM to exit: {took * 1000:.0f} ms")
        assert proc.returncode == 0, stderr
        assert "STOPPING=1" in receive(sock, "STOPPING=1", 1) + lines
    # The speaker WAV was finished: its header matches what was written.
    out = tmp_path / "out.wav"
    with wave.open(str(out), "rb") as w:
        frames = w.getnframes()
        assert w.getframerate() == RATE
        assert len(w.readframes(frames)) == frames * 2
    assert out.stat().st_size == 44 + frames * 2
    assert frames > 0
    # The event log was closed after the last event, every line whole.
    log_lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert log_lines and all(line.endswith("}") for line in log_lines)


def test_sighup_applies_a_good_config_and_rejects_a_bad_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    audio = silence(30.0)

    async def scenario(sock: socket.socket) -> None:
        with FakeCloud() as fake:
            async with Harness(tmp_path, fake, audio, gpio=False) as h:
                await asyncio.to_thread(receive, sock, "READY=1", 5)
                good = h.config.read_text().replace(
                    "[audio]\n", "[audio]\nvolume = 0.5\n").replace(
                    "[cloud]\n", '[wake]\nmodels = ["alexa"]\n\n[cloud]\n')
                h.config.write_text(good)
                os.kill(os.getpid(), signal.SIGHUP)
                reloaded = await h.wait_event("config_reloaded")
                assert reloaded.fields["keys"] == ["audio.volume", "wake.models"]
                assert h.daemon.player.volume == 0.5
                assert h.daemon.agent.wake.model_names == ["alexa"]
                lines = await asyncio.to_thread(receive, sock, "READY=1", 5)
                assert lines.index("RELOADING=1") < lines.index("READY=1")

                h.config.write_text(good.replace("volume = 0.5", "volume = 7"))
                os.kill(os.getpid(), signal.SIGHUP)
                rejected = await h.wait_event("config_rejected")
                assert any("audio.volume" in e for e in rejected.fields["errors"])
                # Still running on the old settings, still capturing.
                assert h.daemon.player.volume == 0.5
                assert h.daemon.settings.audio.volume == 0.5
                total = h.daemon.ring.total
                await poll_until(lambda: h.daemon.ring.total > total + RATE // 10, 5)
                assert h.daemon.agent.status()["wake_models"] == ["alexa"]

                # A new microphone: capture reopens on it and the ring keeps its clock.
                write_wav(tmp_path / "in2.wav", np.concatenate(
                    [silence(0.5), piper("alexa"), silence(3.0)]))
                h.config.write_text(good.replace("in.wav", "in2.wav"))
                before = h.daemon.ring.total
                os.kill(os.getpid(), signal.SIGHUP)
                reloaded = await h.wait_event("config_reloaded", count=2)
                assert reloaded.fields["keys"] == ["audio.input"]
                wake = await h.wait_event("wake")
                assert wake.fields["model"] == "alexa"
                assert wake.fields["end_index"] > before

    with notify_socket() as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", sock.getsockname())
        run(scenario(sock))


def test_a_crashing_job_shows_the_error_state_and_is_restarted(tmp_path: Path) -> None:
    async def scenario() -> None:
        with FakeCloud() as fake:
            async with Harness(tmp_path, fake, silence(20.0), gpio=False) as h:
                runs = 0

                async def broken() -> None:
                    nonlocal runs
                    runs += 1
                    raise OSError("device went away")

                h.daemon.supervisor.start("broken", broken)
                error = await h.wait_event("error")
                assert error.fields == {"where": "broken",
                                        "message": "OSError: device went away"}
                await h.wait_event("state", state="error")
                await poll_until(lambda: runs >= 2, 10)  # restarted after a backoff
                await h.wait_event("state", state="idle", within=10)
                # The daemon kept serving all along.
                assert h.daemon.supervisor.running()["capture"]
                h.daemon.agent.trigger("test")
                await h.wait_event("state", state="listening", count=1)

    run(scenario())


def test_run_with_a_bad_config_exits_2_naming_the_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[turn]\nend_silence = -1\n")
    assert main(["run", "--config", str(config)]) == 2
    assert "turn.end_silence" in capsys.readouterr().err



def without_device(tmp_path: Path, fake: FakeCloud, key: str, device: str) -> Harness:
    """A daemon whose ``audio.<key>`` names a device that does not exist."""
    h = Harness(tmp_path, fake, silence(1.0), gpio=False)
    h.config.write_text(h.config.read_text().replace(
        f'{key} = "{tmp_path}/{"in" if key == "input" else "out"}.wav"',
        f'{key} = "{device}"'))
    return h


def test_without_a_microphone_it_starts_shows_error_and_keeps_retrying(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        with FakeCloud() as fake:
            async with without_device(tmp_path, fake, "input", "no-such-microphone") as h:
                assert h.daemon.status_line() == "no microphone (retrying)"
                status = h.daemon.agent.status()
                assert status["microphone"] is False
                assert status["state"] == "error"
                # The rest still works: it can speak.
                assert await asyncio.wait_for(h.daemon.agent.say("Hello."), 30)

    run(scenario())


def test_without_a_speaker_it_starts_shows_error_and_keeps_listening(tmp_path: Path) -> None:
    async def scenario() -> None:
        with FakeCloud() as fake:
            async with without_device(tmp_path, fake, "output", "no-such-speaker") as h:
                assert h.daemon.status_line() == "no speaker (retrying)"
                status = h.daemon.agent.status()
                assert status["speaker"] is False
                assert status["microphone"] is True
                assert status["state"] == "error"
                # It still listens: a button press starts a turn.
                h.daemon.agent.trigger("control")
                await h.wait_event("state", state="listening")

    run(scenario())

