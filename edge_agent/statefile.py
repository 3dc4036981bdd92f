"""Durable JSON state files (mute, timers) under ``state_dir``.

A save writes a temp file, fsyncs it, renames it over the old one and fsyncs the
directory, so after a crash, a SIGKILL or a power cut the file is the old one or
the new one, never half of one, and the rename itself is on disk. A save that
fails raises ``StateError`` (the caller tells the user) and leaves no temp file
behind, also when the disk is full. A file that cannot be parsed is moved aside
with a timestamp for the owner to look at, never overwritten by the next save.
``StateSaver`` retries a failed save with backoff and reports it meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_agent.errors import StateError

log = logging.getLogger(__name__)

MAX_STATE_BYTES = 1024 * 1024
"""A state file bigger than this is not ours (ours are a few KB): treated as corrupt."""


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def save_json(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` durably; StateError (with no temp file left) on failure."""
    text = json.dumps(data)
    tmp = path.with_name(f"{_temp_prefix(path)}{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)
        _fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StateError(f"cannot save {path}: {exc.strerror or exc}") from exc


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_json(path: Path) -> Any:
    """The parsed file; None when there is none. A file that does not parse is moved
    aside and StateError raised; an unreadable one (permissions) raises StateError
    and is left where it is. Temp files of earlier, killed writers are removed."""
    remove_stale_temps(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_STATE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        if len(raw) > MAX_STATE_BYTES:
            raise ValueError(f"larger than {MAX_STATE_BYTES} bytes")
        return json.loads(raw.decode("utf-8"))
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise StateError(f"{path} is corrupt ({exc}); {move_aside(path)}") from None


def move_aside(path: Path) -> str:
    """Rename a bad state file to ``<name>.corrupt-<UTC time>``; says where it went."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    try:
        path.replace(aside)
    except OSError as exc:
        return f"could not move it aside: {exc.strerror or exc}"
    log.error("moved corrupt state file %s to %s", path, aside)
    return f"kept as {aside.name}"


def remove_stale_temps(path: Path) -> None:
    """Temp files a killed writer left next to ``path`` (ours are named after the pid)."""
    with contextlib.suppress(OSError):
        for tmp in path.parent.glob(f"{_temp_prefix(path)}*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()


SAVE_RETRY_FIRST = 1.0
SAVE_RETRY_MAX = 60.0


class StateSaver:
    """Saves one state file from the event loop. A failed save is reported to
    ``on_error`` (a reason; None once it works again) and retried with doubling
    delays with the newest value, so a disk that fills up and frees again loses
    nothing but time."""

    def __init__(self, path: Path, on_error: Callable[[str | None], None]) -> None:
        self.path = path
        self._on_error = on_error
        self._data: Any = None
        self._retry: asyncio.TimerHandle | None = None
        self._delay = SAVE_RETRY_FIRST

    def save(self, data: Any) -> None:
        """Save now; StateError (after scheduling a retry) when it failed."""
        self._data = data
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        try:
            save_json(self.path, data)
        except StateError as exc:
            self._on_error(str(exc))
            with contextlib.suppress(RuntimeError):  # no loop (a script): no retry
                self._retry = asyncio.get_running_loop().call_later(self._delay, self._again)
                self._delay = min(self._delay * 2, SAVE_RETRY_MAX)
            raise
        self._delay = SAVE_RETRY_FIRST
        self._on_error(None)

    def _again(self) -> None:
        self._retry = None
        with contextlib.suppress(StateError):
            self.save(self._data)

    def close(self) -> None:
        """No more retries (the last value is saved once more by its owner if needed)."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
