"""What the daemon costs the device: its memory (the figures `status` and the
benchmarks report), handing freed heap back after a burst of inference, and
how long the process has been starting.

A Pi Zero 2 W has 512 MB for everything, so the daemon's budget is measured in
what the kernel charges it: RSS (resident pages) and PSS (each shared page
divided among the processes that map it), both from /proc/<pid>/smaps_rollup.
"""

from __future__ import annotations

import ctypes
import functools
import os
import time
from pathlib import Path

_FIELDS = {"Rss": "rss_mb", "Pss": "pss_mb", "Anonymous": "anon_mb"}


def process_memory(pid: int | str = "self") -> dict[str, float]:
    """RSS, PSS and anonymous memory of a process in MB; empty where the kernel
    has no smaps_rollup (before Linux 4.14, or not Linux)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return {}
    figures = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in _FIELDS:
            figures[_FIELDS[key]] = round(int(value.split()[0]) / 1024, 1)
    return figures


M_MMAP_THRESHOLD = -3
"""mallopt(3) parameter number, from glibc's malloc.h."""
MMAP_THRESHOLD = 1 << 20
"""Heap blocks from this size up get a mapping of their own."""


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    libc = ctypes.CDLL(None)  # the C library this process already uses
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


def return_large_blocks() -> None:
    """Make every block of MMAP_THRESHOLD or more a mapping of its own, returned
    to the system the moment it is freed; call once, before models load.

    glibc raises its mmap threshold each time such a block is freed (up to
    32 MB), after which Piper's tens of MB of per-sentence tensors come from
    the heap and stay there, fragmented across threads. Fixed at 1 MB (measured,
    nine offline sentences): 160 MB resident afterwards instead of 185, and a
    286 MB peak instead of 389. Elsewhere (not glibc) this does nothing."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def release_freed_heap() -> None:
    """Give the freed heap pages below the mmap threshold back to the system.

    A Piper sentence allocates and frees many tensors; glibc keeps freed
    chunks in its per-thread arenas, so without this the daemon keeps growing
    towards its largest sentence (measured: +80 to +145 MB once the notices
    were synthesized). It costs microseconds to a millisecond."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def process_age() -> float | None:
    """Seconds since this process started (interpreter start-up and imports
    included), from /proc/self/stat; None where that is not available."""
    try:
        stat = Path("/proc/self/stat").read_text()
        # Field 22, after the command name (which may hold spaces and parentheses).
        ticks = int(stat[stat.rindex(")") + 2:].split()[19])
        return time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None
