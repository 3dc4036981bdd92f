"""The control socket: how `edge-agent status`, `say`, `mute`, `unmute` and
`listen` talk to the running daemon.

One JSON object per line each way over a Unix stream socket in the runtime
directory. The socket is mode 0660 and belongs to the group edge-agent-control
when the daemon is in it (the unit adds it): an owner on SSH is let in by that
group (or sudo), not by a password, and that group cannot read the API key or
the service's files (the service's own group edge-agent could).

One daemon per socket: ``control.sock.lock`` next to it is held (flock) for the
daemon's life, and a socket that still answers is never removed, so a second
``edge-agent run`` exits naming the owner's pid instead of taking the socket over.
A stranger in the group cannot exhaust the daemon's descriptors: connections
beyond MAX_CONNECTIONS are refused at once and each one gets READ_TIMEOUT to ask.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import grp
import json
import logging
import os
import socket
import struct
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Protocol

from edge_agent.errors import BusyError, EdgeAgentError, StateError

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 64 * 1024
SAY_MAX_CHARS = 2000
CLIENT_TIMEOUT = 30.0
CONTROL_GROUP = "edge-agent-control"
"""The operators' group: the socket's group when the daemon is a member."""
MAX_CONNECTIONS = 32
"""Connections served at once; more are told "busy" and closed (descriptors stay bounded)."""
READ_TIMEOUT = 5.0
"""A client gets this long to send its request line (the CLI sends it at once)."""
WRITE_TIMEOUT = 5.0
"""A client that does not read its reply for this long is dropped."""


class ControlTarget(Protocol):
    """What the daemon exposes to the socket (the Agent implements it)."""

    def status(self) -> dict[str, Any]: ...
    def trigger(self, source: str) -> None: ...
    def set_muted(self, muted: bool) -> None: ...
    def say(self, text: str) -> Awaitable[bool]: ...


class ControlError(EdgeAgentError):
    """The daemon could not be reached, or refused a request."""


class SocketInUseError(ControlError):
    """Another daemon serves this control socket (``pid`` when known)."""

    def __init__(self, path: Path, pid: int | None) -> None:
        self.pid = pid
        owner = f"edge-agent pid {pid}" if pid else "another edge-agent"
        super().__init__(f"{owner} is already running with the control socket {path}; "
                         "stop it first (sudo systemctl stop edge-agent) or give this one "
                         "another service.control_socket")


class ControlServer:
    """``target`` may be set after ``claim()``: a daemon claims the socket first,
    before it spends seconds loading models it would not use."""

    def __init__(self, path: Path, target: ControlTarget | None) -> None:
        self.path = path
        self.target = target
        self._server: asyncio.AbstractServer | None = None
        self._lock_fd: int | None = None
        self._connections = 0

    @property
    def _lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def claim(self) -> None:
        """Take the socket's lock; SocketInUseError if another daemon holds it or the
        socket still answers (a daemon without the lock)."""
        if self._lock_fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise SocketInUseError(self.path, int(pid) if pid.isdigit() else None) from None
        except BaseException:
            os.close(fd)
            raise
        owner = _socket_owner(self.path)
        if owner is not None:
            os.close(fd)
            raise SocketInUseError(self.path, owner or None)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # the lock file stays: unlinking it would race
            self._lock_fd = None

    async def start(self) -> None:
        self.claim()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket from a killed daemon (nobody answers)
        self._server = await asyncio.start_unix_server(
            self._serve, sock=_bind_private(self.path), limit=MAX_REQUEST_BYTES)
        log.info("control socket at %s", self.path)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._lock_fd is not None:  # only the owner removes the socket
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self._release()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._connections >= MAX_CONNECTIONS:
            reply: dict[str, Any] = {"ok": False, "error": "busy: too many connections"}
            await self._reply(writer, reply)
            return
        self._connections += 1
        try:
            try:
                line = await asyncio.wait_for(reader.readline(), timeout=READ_TIMEOUT)
                reply = await self._handle(line)
            except (TimeoutError, ValueError, ConnectionError) as exc:
                reply = {"ok": False, "error": f"bad request: {exc!r}"}
            await self._reply(writer, reply)
        finally:
            self._connections -= 1

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, reply: dict[str, Any]) -> None:
        try:
            writer.write(json.dumps(reply, default=str).encode() + b"\n")
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
        except (ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()

    async def _handle(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            command = request["command"]
        except (json.JSONDecodeError, KeyError, TypeError):
            return {"ok": False, "error": "expected a JSON object with a 'command'"}
        except RecursionError:
            return {"ok": False, "error": "request nested too deeply"}
        target = self.target
        if target is None:
            return {"ok": False, "error": "starting up"}
        if command == "status":
            return {"ok": True, "result": target.status()}
        if command in ("mute", "unmute"):
            try:
                target.set_muted(command == "mute")
            except StateError as exc:
                now = "muted" if command == "mute" else "unmuted"
                return {"ok": False,
                        "error": f"{now} for now, but not saved for a restart: {exc}"}
            return {"ok": True, "result": {"muted": command == "mute"}}
        if command == "listen":
            target.trigger("control")
            return {"ok": True, "result": {}}
        if command == "say":
            text = str(request.get("text", "")).strip()
            if not text:
                return {"ok": False, "error": "nothing to say"}
            if len(text) > SAY_MAX_CHARS:
                return {"ok": False, "error": f"text longer than {SAY_MAX_CHARS} characters"}
            try:
                spoken = await target.say(text)
            except BusyError as exc:  # MAX_SAYS in flight
                return {"ok": False, "error": str(exc)}
            return {"ok": True, "result": {"spoken": spoken}}
        return {"ok": False, "error": f"unknown command {command!r}"}


def request(path: Path, command: str, **fields: Any) -> dict[str, Any]:
    """Send one request to the running daemon and return its result."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(CLIENT_TIMEOUT)
    try:
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise ControlError(
                f"edge-agent is not running (no daemon listening on {path})") from None
        except PermissionError:
            raise ControlError(
                f"cannot open {path}: permission denied; join the {CONTROL_GROUP} group "
                f"(sudo usermod -aG {CONTROL_GROUP} $USER, then log in again) or use sudo"
            ) from None
        sock.sendall(json.dumps({"command": command, **fields}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        raise ControlError(f"edge-agent did not answer within {CLIENT_TIMEOUT:g} s") from None
    finally:
        sock.close()
    try:
        reply = json.loads(data)
    except json.JSONDecodeError:
        raise ControlError("edge-agent sent an unreadable reply") from None
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error", "request refused")))
    return reply.get("result", {})


def _bind_private(path: Path) -> socket.socket:
    """A listening socket at ``path`` that is 0660 and the operators' from the
    moment it has that name: bound under a private name, fixed, then renamed.
    (Not os.umask: it is process-wide, and other threads create files meanwhile.)"""
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()
        sock.bind(str(staging))
        try:
            staging.chmod(0o660)
            _hand_to_operators(staging)
            staging.rename(path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                staging.unlink()
            raise
        sock.listen(100)
    except BaseException:
        sock.close()
        raise
    return sock


def _hand_to_operators(path: Path) -> None:
    """Give the socket to CONTROL_GROUP when this process may (it is a member)."""
    try:
        gid = grp.getgrnam(CONTROL_GROUP).gr_gid
    except KeyError:
        return  # not installed as a service: the daemon's own group stays
    if gid in os.getgroups() or gid == os.getgid():
        os.chown(path, -1, gid)


def _socket_owner(path: Path) -> int | None:
    """The pid serving ``path`` (0 when the kernel does not say), None when nobody
    answers there (no socket, or a stale one left by a killed daemon)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
        creds = probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                 struct.calcsize("3i"))
        return struct.unpack("3i", creds)[0]
    except (FileNotFoundError, ConnectionRefusedError):
        return None
    except OSError:
        return 0  # something is there and not stale (e.g. a full backlog): keep off
    finally:
        probe.close()


def socket_candidates(configured: str) -> list[Path]:
    """Where a client looks for the daemon: the configured socket, else the system
    service's runtime directory, else a daemon run by hand in this user's session."""
    if configured:
        return [Path(configured)]
    places = []
    if os.environ.get("RUNTIME_DIRECTORY"):
        places.append(Path(os.environ["RUNTIME_DIRECTORY"].split(":")[0]) / "control.sock")
    places.append(Path("/run/edge-agent/control.sock"))
    if os.environ.get("XDG_RUNTIME_DIR"):
        places.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "edge-agent" / "control.sock")
    return places


def find_socket(configured: str) -> Path:
    candidates = socket_candidates(configured)
    return next((p for p in candidates if p.exists()), candidates[0])
