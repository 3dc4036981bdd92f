"""The control socket: how `edge-agent status`, `say`, `mute`, `unmute` and
`listen` talk to the running daemon.

One JSON object per line each way over a Unix stream socket in the runtime
directory. The socket is mode 0660, so access is the service's group: an owner
on SSH is let in by group membership (or sudo), not by a password.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Protocol

from edge_agent.errors import EdgeAgentError, StateError

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 64 * 1024
SAY_MAX_CHARS = 2000
CLIENT_TIMEOUT = 30.0


class ControlTarget(Protocol):
    """What the daemon exposes to the socket (the Agent implements it)."""

    def status(self) -> dict[str, Any]: ...
    def trigger(self, source: str) -> None: ...
    def set_muted(self, muted: bool) -> None: ...
    def say(self, text: str) -> Awaitable[bool]: ...


class ControlError(EdgeAgentError):
    """The daemon could not be reached, or refused a request."""


class ControlServer:
    def __init__(self, path: Path, target: ControlTarget) -> None:
        self.path = path
        self._target = target
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket from a killed daemon
        # Created 0660 from the start: no window in which others could connect.
        old_umask = os.umask(0o117)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_REQUEST_BYTES)
        finally:
            os.umask(old_umask)
        log.info("control socket at %s", self.path)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=CLIENT_TIMEOUT)
            reply = await self._handle(line)
        except (TimeoutError, ValueError, ConnectionError) as exc:
            reply = {"ok": False, "error": f"bad request: {exc}"}
        try:
            writer.write(json.dumps(reply, default=str).encode() + b"\n")
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _handle(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            command = request["command"]
        except (json.JSONDecodeError, KeyError, TypeError):
            return {"ok": False, "error": "expected a JSON object with a 'command'"}
        target = self._target
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
            return {"ok": True, "result": {"spoken": await target.say(text)}}
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
                f"cannot open {path}: permission denied; join the edge-agent group "
                "(sudo usermod -aG edge-agent $USER, then log in again) or use sudo") from None
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
