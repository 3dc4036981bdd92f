"""Real PortAudio devices without a sound card: ALSA's ``file`` PCM plugin.

A capture device reads its samples from ``infile`` (raw interleaved int16 at
whatever rate and channel count the stream opens with); a playback device
writes what it is given to ``file``. Neither is clocked: they run as fast as
the CPU allows, so bound capture tests by sample count, or feed the capture
device through a FIFO (``FifoFeed``) to pace it from the test.

PortAudio reads the ALSA configuration when it initialises, and edge-agent
makes a fresh PortAudio session for every (re)open, so setting the
environment (``monkeypatch.setenv`` with ``env``) before opening is enough.
"""

from __future__ import annotations

import fcntl
import os
import select
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

F_SETPIPE_SZ = 1031  # Linux fcntl codes, absent from Python 3.11's fcntl module
F_GETPIPE_SZ = 1032


def asoundrc(
    directory: str | Path,
    *,
    capture: Mapping[str, str | Path] | None = None,
    playback: Mapping[str, str | Path] | None = None,
) -> dict[str, str]:
    """Write ``directory``/asoundrc with one ``type file`` PCM per name and return
    the environment that selects it: {"ALSA_CONFIG_PATH": ..., ...}.

    ``capture`` maps device name -> raw input file (it may not exist yet: the
    device is then missing until it does); ``playback`` maps name -> raw output file.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    blocks = []
    for name, infile in (capture or {}).items():
        blocks.append(_pcm(name, file="/dev/null", infile=Path(infile)))
    for name, outfile in (playback or {}).items():
        blocks.append(_pcm(name, file=Path(outfile)))
    path = directory / "asoundrc"
    path.write_text("\n".join(blocks))
    return {
        "ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{path}",
        # No JACK here: do not let PortAudio try to start a server.
        "JACK_NO_START_SERVER": "1",
    }


def _pcm(name: str, *, file: str | Path, infile: Path | None = None) -> str:
    lines = [f"pcm.{name} {{", "  type file", '  slave.pcm "null"', f'  file "{file}"',
             '  format "raw"']
    if infile is not None:
        lines.append(f'  infile "{infile}"')
    return "\n".join([*lines, "}", ""])


def write_raw(path: str | Path, samples: np.ndarray) -> Path:
    """Samples (n,) mono or (n, channels) as the raw interleaved int16 a device reads.
    Written aside and renamed, so a device opened meanwhile never sees half a file."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    np.ascontiguousarray(samples, dtype=np.int16).tofile(partial)
    partial.replace(path)
    return path


def read_raw(path: str | Path, channels: int = 1) -> np.ndarray:
    """What a playback device wrote, as (n,) or (n, channels) int16."""
    data = np.fromfile(path, dtype=np.int16)
    return data if channels == 1 else data[: len(data) - len(data) % channels].reshape(
        -1, channels)


class FifoFeed:
    """A FIFO used as a capture device's ``infile``: the device delivers what the
    test wrote, then waits, instead of racing on past the end of a file.

    Write everything (up to ``capacity`` bytes) BEFORE opening the stream: ALSA's
    file plugin loses samples when a read of the pipe comes back short, which
    happens when the device catches up with a writer feeding it live.
    Hold the feed open for as long as a stream may be opened on the device (ALSA
    opens ``infile`` when PortAudio probes devices) and ``close()`` it before
    closing the stream: a stream blocked reading an empty FIFO cannot stop.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():  # a second feed on the same FIFO: the device is back
            os.mkfifo(self.path)
        # Read-write, so opening neither blocks nor ends the stream when idle.
        self._fd: int | None = os.open(self.path, os.O_RDWR)
        try:
            max_size = int(Path("/proc/sys/fs/pipe-max-size").read_text())
            self.capacity = fcntl.fcntl(self._fd, F_SETPIPE_SZ, max_size)
        except OSError:
            self.capacity = fcntl.fcntl(self._fd, F_GETPIPE_SZ)
        self._written = 0

    def write(self, samples: np.ndarray) -> None:
        """Queue samples (raw device format) for the device; never blocks."""
        assert self._fd is not None, "FifoFeed is closed"
        data = np.ascontiguousarray(samples, dtype=np.int16).tobytes()
        if self._written + len(data) > self.capacity:
            raise ValueError(f"{self._written + len(data)} bytes do not fit the "
                             f"{self.capacity}-byte pipe")
        os.write(self._fd, data)
        self._written += len(data)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FifoFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FifoListener:
    """The reading end of a FIFO used as a playback device's ``file``: drains what
    the device writes (counting the bytes) until ``close()``, after which the
    device's next write fails with a broken pipe, as an unplugged speaker does.

    Open it before PortAudio probes the device: ALSA opens ``file`` for writing
    then, which waits for a reader.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            os.mkfifo(self.path)
        self.received = 0
        self._fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="fifo-listener", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([self._fd], [], [], 0.02)
                if not ready:
                    continue
                try:
                    data = os.read(self._fd, 1 << 20)
                except BlockingIOError:
                    continue
                if not data:  # no writer connected right now
                    time.sleep(0.005)
                self.received += len(data)
        finally:
            os.close(self._fd)  # closed here, never under a read in progress

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
