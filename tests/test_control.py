"""The control socket and the CLI verbs that use it, over a real Unix socket.
The daemon end-to-end path is covered in the daemon tests; here the target is a
small recorder so each verb's wire behaviour is checked on its own."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from edge_agent.cli import main
from edge_agent.service.control import ControlServer


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def status(self) -> dict[str, Any]:
        return {"state": "idle", "online": True, "muted": False, "wake_models": ["hey_jarvis"],
                "uptime": 12.5, "last_turns": [
                    {"id": 3, "transcript": "what time is it", "engine": "cloud",
                     "latency_ms": {"stt": 310.2, "llm_first_token": 255.0}}]}

    def trigger(self, source: str) -> None:
        self.calls.append(("trigger", source))

    def set_muted(self, muted: bool) -> None:
        self.calls.append(("muted", muted))

    async def say(self, text: str) -> bool:
        self.calls.append(("say", text))
        return True


async def run_cli(*argv: str) -> int:
    return await asyncio.wait_for(asyncio.to_thread(main, list(argv)), timeout=30)


def test_verbs_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sock = tmp_path / "run" / "control.sock"
    target = Recorder()

    async def scenario() -> list[int]:
        server = ControlServer(sock, target)
        await server.start()
        try:
            return [
                await run_cli("status", "--socket", str(sock)),
                await run_cli("mute", "--socket", str(sock)),
                await run_cli("unmute", "--socket", str(sock)),
                await run_cli("listen", "--socket", str(sock)),
                await run_cli("say", "--socket", str(sock), "hello", "there"),
            ]
        finally:
            await server.close()

    codes = asyncio.run(scenario())
    assert codes == [0, 0, 0, 0, 0]
    out = capsys.readouterr().out
    assert "state: idle" in out
    assert "'what time is it'" in out and "stt=310ms llm_first_token=255ms" in out
    assert target.calls == [("muted", True), ("muted", False), ("trigger", "control"),
                            ("say", "hello there")]
    assert not sock.exists(), "the socket is removed on close"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_socket_is_group_only_and_strangers_are_told_why() -> None:
    folder = Path(tempfile.mkdtemp())
    folder.chmod(0o755)
    sock = folder / "control.sock"
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
           sys.executable, "-m", "edge_agent", "status", "--socket", str(sock)]

    async def scenario() -> tuple[int, subprocess.CompletedProcess[str]]:
        server = ControlServer(sock, Recorder())
        await server.start()
        try:
            mode = stat.S_IMODE(sock.stat().st_mode)
            result = await asyncio.wait_for(asyncio.to_thread(
                subprocess.run, cmd, capture_output=True, text=True, check=False,
                cwd=Path(__file__).parent.parent), timeout=60)
            return mode, result
        finally:
            await server.close()

    mode, result = asyncio.run(scenario())
    assert mode == 0o660
    assert result.returncode == 1
    assert "permission denied" in result.stderr


def test_socket_is_0660_without_touching_the_process_umask(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The umask is process-wide: changing it while binding made files that other
    threads created meanwhile (recordings, state) come out with the wrong mode."""
    sock = tmp_path / "control.sock"
    umask_calls: list[int] = []
    monkeypatch.setattr(os, "umask", lambda mask: umask_calls.append(mask) or 0o022)

    async def scenario() -> int:
        server = ControlServer(sock, Recorder())
        await server.start()
        try:
            return stat.S_IMODE(sock.stat().st_mode)
        finally:
            await server.close()

    assert asyncio.run(scenario()) == 0o660
    assert umask_calls == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["control.sock.lock"]


def test_daemon_not_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--socket", str(tmp_path / "none.sock")]) == 1
    assert "edge-agent is not running" in capsys.readouterr().err


def test_bad_requests_get_errors_not_crashes(tmp_path: Path) -> None:
    sock = tmp_path / "control.sock"

    async def ask(payload: bytes) -> bytes:
        reader, writer = await asyncio.open_unix_connection(str(sock))
        writer.write(payload)
        await writer.drain()
        reply = await reader.readline()
        writer.close()
        return reply

    async def scenario() -> list[bytes]:
        server = ControlServer(sock, Recorder())
        await server.start()
        try:
            return [await asyncio.wait_for(ask(p), timeout=10) for p in (
                b"not json\n", b'{"command": "reboot"}\n', b'{"command": "say", "text": ""}\n',
                b'{"command": "say", "text": "' + b"x" * 5000 + b'"}\n', b"[1, 2]\n")]
        finally:
            await server.close()

    replies = asyncio.run(scenario())
    assert all(b'"ok": false' in r for r in replies)
    assert b"unknown command 'reboot'" in replies[1]
    assert b"nothing to say" in replies[2]
    assert b"longer than" in replies[3]
