"""The real daemon as systemd runs it: `edge-agent run` in a subprocess with
NOTIFY_SOCKET bound here and a watchdog interval, its notifications and stderr
collected as they come."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

START_TIMEOUT = 120.0  # models load on a shared 2-core machine
WATCHDOG_USEC = 2_000_000  # pings every second


def config_text(tmp: Path, audio_input: str, extra: str = "") -> str:
    return f'''
[audio]
input = "{audio_input}"
output = "{tmp}/out.wav"

[cloud]
enabled = false

[gpio]
enabled = false

[earcons]
wake = "off"
end = "off"
error = "off"
offline = "off"

[log]
events = "{tmp}/events.jsonl"

[service]
state_dir = "{tmp}/state"
control_socket = "{tmp}/control.sock"
{extra}'''


class ServiceRun:
    """`edge-agent run` with a notify socket, its stderr collected line by line."""

    def __init__(self, tmp: Path, config: str, env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.config = tmp / "config.toml"
        self.write_config(config)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(tmp / "notify"))
        self.messages: list[tuple[float, dict[str, str]]] = []
        self.stderr: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "run", "--config", str(self.config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, cwd=tmp,
            env={**os.environ, **(env or {}), "NOTIFY_SOCKET": str(tmp / "notify"),
                 "WATCHDOG_USEC": str(WATCHDOG_USEC)})
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def write_config(self, text: str) -> None:
        self.config.write_text(text)
        self.config.chmod(0o644)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))

    def receive(self, timeout: float) -> dict[str, str] | None:
        """The next notification (kept in ``messages`` with its arrival time)."""
        readable, _, _ = select.select([self.sock], [], [], timeout)
        if not readable:
            return None
        data = self.sock.recv(4096).decode()
        message = dict(line.split("=", 1) for line in data.split("\n") if line)
        self.messages.append((time.monotonic(), message))
        return message

    def wait_for(self, key: str, value: str | None = None, timeout: float = 30.0,
                 ) -> dict[str, str]:
        """Read notifications until one has ``key`` (=``value``); fail on timeout or exit."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self.receive(min(left, 0.5))
            if message is not None and key in message and value in (None, message[key]):
                return message
            if message is None and self.proc.poll() is not None:
                break
        log = "\n".join(self.stderr[-30:])
        raise AssertionError(f"no {key}={value or '*'} within {timeout} s "
                             f"(exit {self.proc.poll()}); daemon log:\n{log}")

    def kinds(self, since: int = 0) -> list[str]:
        """The notifications received so far, as their first key, in order."""
        return [next(iter(m)) for _, m in self.messages[since:]]

    def events(self, name: str) -> list[dict]:
        path = self.tmp / "events.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return [e for e in map(json.loads, lines) if e["event"] == name]

    def wait_event(self, name: str, count: int = 1, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while len(self.events(name)) < count:
            assert time.monotonic() < deadline, f"no {name} event #{count}"
            assert self.proc.poll() is None, "\n".join(self.stderr[-30:])
            self.receive(0.05)  # keep collecting notifications meanwhile
        return self.events(name)[count - 1]

    def terminate(self) -> float:
        """SIGTERM; seconds until the process exited."""
        sent = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        took = time.monotonic() - sent
        while self.receive(0.2) is not None:
            pass
        return took

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._reader.join(timeout=10)
        self.sock.close()
