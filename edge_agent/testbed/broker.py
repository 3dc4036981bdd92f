"""A real Mosquitto broker for tests and benchmarks: its own process on a free
loopback port, a temporary config, no persistence and no system service. ``kill``
and ``start`` again on the same port play a broker that dies and comes back."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path

from edge_agent.testbed import UnavailableError

START_TIMEOUT = 10.0


def mosquitto_path() -> str | None:
    # Debian installs the broker in /usr/sbin, which a user's PATH may lack.
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, tmp: Path, *, port: int | None = None) -> None:
        binary = mosquitto_path()
        if binary is None:
            raise UnavailableError("mosquitto is not installed (scripts/setup installs it)")
        self.binary = binary
        self.port = port or free_port()
        self.config = tmp / "mosquitto.conf"
        self.log = tmp / "mosquitto.log"
        # Run as whoever runs the tests: as root, mosquitto would switch to its own user.
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            f"user {getpass.getuser()}\nlog_dest stderr\nlog_type error\nlog_type warning\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> Broker:
        log = self.log.open("ab")
        self.proc = subprocess.Popen([self.binary, "-c", str(self.config)],
                                     stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.02)
        raise TimeoutError(f"mosquitto not listening on {self.port}")

    def kill(self) -> None:
        """SIGKILL: no goodbye to the clients, as when the broker's host dies."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def section(self, device_id: str, *, group: str = "", window: float = 0.2) -> str:
        """The [mqtt] section of a speaker's config that uses this broker."""
        return (f'[mqtt]\nhost = "127.0.0.1"\nport = {self.port}\ndevice_id = "{device_id}"\n'
                f'group = "{group}"\narbitration_window = {window}\n')
