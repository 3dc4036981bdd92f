"""Stops keep systemd's budget: SIGTERM while waiting for a missing microphone or
while the models load ends start-up at once (no READY=1), and a second SIGTERM
or a SIGHUP during the stop does not kill the daemon mid-stop."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from pathlib import Path

import pytest

from edge_agent.agent import daemon as daemon_module
from edge_agent.agent.daemon import Daemon
from edge_agent.config import load_config
from edge_agent.testbed.service import START_TIMEOUT, ServiceRun, config_text
from edge_agent.tools.voices import silence, write_wav

pytestmark = pytest.mark.slow


def wait_for_log(run: ServiceRun, text: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in line for line in run.stderr):
        assert run.proc.poll() is None, "\n".join(run.stderr[-30:])
        assert time.monotonic() < deadline, f"no {text!r} in the log"
        run.receive(0.05)


def test_sigterm_while_waiting_for_a_missing_microphone(tmp_path: Path) -> None:
    run = ServiceRun(tmp_path, config_text(tmp_path, "no-such-microphone"))
    try:
        # The control socket opens right before the microphone wait starts.
        wait_for_log(run, "control socket at")
        took = run.terminate()
    finally:
        run.close()
    print(f"SIGTERM during the microphone wait: exit after {took:.2f} s "
          f"(the wait is {daemon_module.MIC_READY_WAIT:g} s)")
    assert run.proc.returncode == 0, "\n".join(run.stderr[-30:])
    assert "READY" not in run.kinds(), "stopped before start-up ended: no READY=1"
    assert took < daemon_module.MIC_READY_WAIT / 2


def test_sigterm_while_models_load_exits_without_ready(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_wav(tmp_path / "in.wav", silence(2.0))
    config = tmp_path / "config.toml"
    config.write_text(config_text(tmp_path, str(tmp_path / "in.wav")))
    config.chmod(0o644)
    settings = load_config(config)
    loading, release = threading.Event(), threading.Event()
    real_build_offline = daemon_module.build_offline

    def slow_build_offline(s):  # a Vosk model taking its time on a Pi Zero
        loading.set()
        release.wait(60)
        return real_build_offline(s)

    monkeypatch.setattr(daemon_module, "build_offline", slow_build_offline)
    sent: list[str] = []

    async def scenario() -> float:
        daemon = Daemon(settings, pin_factory=False)
        monkeypatch.setattr(daemon.notifier, "ready", lambda *a, **k: sent.append("READY"))
        running = asyncio.create_task(daemon.run())
        await asyncio.to_thread(loading.wait, 30)
        started = time.monotonic()
        signal.raise_signal(signal.SIGTERM)
        # Before: run() waited for the load (here: forever) and sent READY=1 first.
        await asyncio.wait_for(running, 10)
        assert not daemon.ready.is_set()
        return time.monotonic() - started

    try:
        took = asyncio.run(scenario())
    finally:
        release.set()
    print(f"SIGTERM during model loading: run() returned after {took:.2f} s")
    assert sent == []


def test_second_sigterm_and_sighup_during_stop_do_not_kill_it(tmp_path: Path) -> None:
    write_wav(tmp_path / "in.wav", silence(30.0))
    run = ServiceRun(tmp_path, config_text(tmp_path, str(tmp_path / "in.wav")))
    try:
        run.wait_for("READY", "1", timeout=START_TIMEOUT)
        run.proc.send_signal(signal.SIGTERM)
        run.wait_for("STOPPING", "1")
        run.proc.send_signal(signal.SIGHUP)  # before: the default action, death
        run.proc.send_signal(signal.SIGTERM)
        run.proc.wait(timeout=30)
    finally:
        run.close()
    log = "\n".join(run.stderr[-30:])
    assert run.proc.returncode == 0, log
    assert any("stopped" in line for line in run.stderr), log
    assert not any("config reloaded" in line for line in run.stderr), log


def test_a_stop_without_turns_reports_no_stuck_thread(tmp_path: Path) -> None:
    """The start-up rehearsal (cloud STT's upload encoder) and Piper's prewarm start
    worker threads even with no key and no turn: the stop ends them instead of
    calling them stuck."""
    write_wav(tmp_path / "in.wav", silence(30.0))
    config = config_text(tmp_path, str(tmp_path / "in.wav")).replace(
        "[cloud]\nenabled = false", "[cloud]\nenabled = true")
    run = ServiceRun(tmp_path, config, env={"OPENAI_API_KEY": ""})
    try:
        run.wait_for("READY", "1", timeout=START_TIMEOUT)
        time.sleep(3.0)  # the rehearsal and the prewarm run after READY=1
        run.terminate()
    finally:
        run.close()
    log = "\n".join(run.stderr)
    assert run.proc.returncode == 0, log
    assert "API key is missing" in log  # the case reported: no key
    assert not any("stuck" in line for line in run.stderr), log
