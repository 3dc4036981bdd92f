"""The control socket has one owner and bounded use: a second daemon never takes
a live socket over (it fails naming the owner's pid), a stale socket is
replaced, a flood of idle connections cannot exhaust descriptors, and a deeply
nested request is answered with an error."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_agent.service import control
from edge_agent.service.control import ControlServer, SocketInUseError, request
from tests.test_control import Recorder

OWNER = """
import asyncio, sys
from pathlib import Path
from edge_agent.service.control import ControlServer
from tests.test_control import Recorder

async def main():
    server = ControlServer(Path(sys.argv[1]), Recorder())
    await server.start()
    print("serving", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.close()

asyncio.run(main())
"""


def run(coro, timeout: float = 60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_a_second_server_fails_naming_the_owner_and_leaves_the_socket(tmp_path: Path) -> None:
    sock = tmp_path / "control.sock"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(sock)], text=True, env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert owner.stdout.readline() == "serving\n"

        async def second() -> None:
            server = ControlServer(sock, Recorder())
            with pytest.raises(SocketInUseError, match=f"pid {owner.pid}") as refused:
                await server.start()
            assert refused.value.pid == owner.pid
            await server.close()  # a server that never owned the socket leaves it

        run(second())
        assert request(sock, "status")["state"] == "idle"  # the owner still serves
    finally:
        owner.communicate("", timeout=30)
    assert not sock.exists()


def test_a_live_socket_without_the_lock_is_not_taken_over(tmp_path: Path) -> None:
    """A daemon from before the lock file: the socket answers, so it is left alone."""
    sock = tmp_path / "control.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock))
    listener.listen(4)
    try:
        async def second() -> None:
            with pytest.raises(SocketInUseError, match=f"pid {os.getpid()}"):
                await ControlServer(sock, Recorder()).start()

        run(second())
        assert sock.exists()
    finally:
        listener.close()


def test_a_stale_socket_is_replaced(tmp_path: Path) -> None:
    sock = tmp_path / "control.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(sock))
    dead.close()  # what a SIGKILLed daemon leaves behind
    (tmp_path / "control.sock.lock").write_text("999999\n")

    async def scenario() -> dict:
        server = ControlServer(sock, Recorder())
        await server.start()
        try:
            return await asyncio.to_thread(request, sock, "status")
        finally:
            await server.close()

    assert run(scenario())["state"] == "idle"


def open_fds() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


def test_idle_connection_flood_keeps_descriptors_bounded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before the cap, every idle client held a server-side descriptor until its
    timeout (about 1100 exhausted the daemon's 1024)."""
    monkeypatch.setattr(control, "READ_TIMEOUT", 1.0)
    sock = tmp_path / "control.sock"
    flood = 300

    async def scenario() -> tuple[int, dict, float]:
        server = ControlServer(sock, Recorder())
        await server.start()
        clients: list[socket.socket] = []
        stall = 0.0

        async def ticker() -> None:  # the loop's longest stall while flooded
            nonlocal stall
            while True:
                before = time.monotonic()
                await asyncio.sleep(0.005)
                stall = max(stall, time.monotonic() - before - 0.005)

        ticking = asyncio.create_task(ticker())
        try:
            before = open_fds()
            for _ in range(flood):
                client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                client.setblocking(False)
                client.connect(str(sock))
                clients.append(client)
                await asyncio.sleep(0)  # let the server accept as they come
            await asyncio.sleep(0.3)
            server_side = open_fds() - before - flood
            # Once the idle ones time out, an operator gets through.
            await asyncio.sleep(1.2)
            status = await asyncio.to_thread(request, sock, "status")
            return server_side, status, stall
        finally:
            ticking.cancel()
            for client in clients:
                client.close()
            await server.close()

    server_side, status, stall = run(scenario())
    print(f"{flood} idle connections: {server_side} server-side descriptors, "
          f"longest event loop stall {stall * 1000:.1f} ms")
    assert server_side <= control.MAX_CONNECTIONS + 4
    assert status["state"] == "idle"


def test_deeply_nested_json_gets_an_error_reply(tmp_path: Path) -> None:
    sock = tmp_path / "control.sock"
    line = b"[" * 200_000 + b"\n"

    async def scenario() -> bytes:
        server = ControlServer(sock, Recorder())
        await server.start()
        try:
            def ask() -> bytes:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                    client.settimeout(10)
                    client.connect(str(sock))
                    client.sendall(line[:control.MAX_REQUEST_BYTES - 1] + b"\n")
                    return client.recv(65536)
            reply = await asyncio.to_thread(ask)
            status = await asyncio.to_thread(request, sock, "status")
            assert status["state"] == "idle"
            return reply
        finally:
            await server.close()

    assert b"nested too deeply" in run(scenario())


@pytest.mark.slow
def test_second_edge_agent_run_exits_naming_the_running_one(tmp_path: Path) -> None:
    from edge_agent.testbed.service import START_TIMEOUT, ServiceRun, config_text
    from edge_agent.tools.voices import silence, write_wav

    write_wav(tmp_path / "silence.wav", silence(1.0))
    first = ServiceRun(tmp_path, config_text(tmp_path, str(tmp_path / "silence.wav")))
    try:
        first.wait_for("READY", "1", timeout=START_TIMEOUT)
        started = time.monotonic()
        second = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "run", "--config", str(first.config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        # Meanwhile the first one's notifications are read: a full notify socket
        # would block its event loop (the kernel queues only a few datagrams).
        while second.poll() is None:
            assert time.monotonic() - started < 60
            first.receive(0.1)
        took = time.monotonic() - started
        stderr = second.stderr.read()
        second.stderr.close()
        assert second.returncode == 1
        assert f"pid {first.proc.pid}" in stderr
        print(f"second daemon refused in {took:.2f} s:", stderr)
        assert request(tmp_path / "control.sock", "status")["state"] == "idle"
    finally:
        first.close()


GROUPED = """
import asyncio, os, sys
from pathlib import Path
from edge_agent.service import control
from tests.test_control import Recorder

control.CONTROL_GROUP = sys.argv[2]

async def main():
    server = control.ControlServer(Path(sys.argv[1]), Recorder())
    await server.start()
    st = os.stat(sys.argv[1])
    print(oct(st.st_mode & 0o777), st.st_gid, flush=True)
    await server.close()

asyncio.run(main())
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as the service user")
def test_the_socket_belongs_to_the_operators_group(tmp_path: Path) -> None:
    """The daemon (here uid/gid 65534, member of group 'audio' standing in for
    edge-agent-control) hands the socket to the operators' group, not its own."""
    import grp
    import shutil
    import tempfile

    try:
        gid = grp.getgrnam("audio").gr_gid
    except KeyError:
        pytest.skip("no group 'audio' on this machine")
    folder = Path(tempfile.mkdtemp())
    folder.chmod(0o777)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    try:
        done = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", f"--groups={gid}", sys.executable,
             "-c", GROUPED, str(folder / "control.sock"), "audio"],
            capture_output=True, text=True, timeout=60, env=env, cwd=folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0o660", str(gid)]
