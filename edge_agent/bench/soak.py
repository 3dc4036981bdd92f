"""Soak and rest: does the pipeline leak, and what does the daemon cost when
nobody talks to it?

Soak: hundreds of turns through the real TurnRunner (cloud engines on the fake
cloud, Vosk, Piper, local intents, the real-time .wav speaker) with seeded random
faults at every stage, and the connectivity probe running, so offline spells and
their recovery are part of it. Resident memory, open descriptors and threads of
this process are sampled after a warm-up (first allocations, model caches, pooled
connections) and every few turns; growth is end minus warm-up, and the slope of
a straight line through the samples.

Rest: the real daemon (`edge-agent run`, .wav microphone of silence, no cloud)
for a while after READY: CPU from /proc/<pid>/stat, peak and current RSS,
threads and descriptors from /proc/<pid>.

    python -m edge_agent.bench.soak [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.testbed.fakecloud import FakeCloud
from edge_agent.testbed.rig import make_rig
from edge_agent.testbed.service import START_TIMEOUT, ServiceRun, config_text
from edge_agent.tools.voices import silence, write_wav

SEED = 9
CLEAN_WARMUP_TURNS = 3
FAULT_RATE = 0.2
# Faults a real cloud produces, per stage. Offline ones (5xx, stalls before the first
# byte) take the whole cloud away until the probe finds it again.
# The fake cloud serves from threads of this process: stalls are kept short so
# its handler threads end soon and do not count as ours.
FAULTS: list[tuple[str, str, dict[str, Any]]] = [
    ("stt", "status", {"status": 503}),
    ("stt", "rate_limit", {"retry_after": 1}),
    ("stt", "malformed_json", {}),
    ("llm", "stall_first", {"seconds": 1.5}),
    ("llm", "disconnect", {}),
    ("llm", "reset_mid", {"after": 2}),
    ("llm", "malformed_sse", {"after": 1}),
    ("llm", "truncate", {"after": 2}),
    ("llm", "status", {"status": 500}),
    ("tts", "reset_mid", {"after": 1}),
    ("tts", "stall_mid", {"after": 1, "seconds": 1.5}),
    ("tts", "wrong_format", {"variant": "mp3"}),
]
# A question local intents also answer: when the LLM fails the device tells the
# time itself, a short answer, instead of reciting its offline help for seconds.
TRANSCRIPT = "what time is it"
REPLY = "Sure. It is late."


def _proc_status(pid: int | str = "self") -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            fields[key] = int(value.split()[0])
    return fields


def process_figures(pid: int | str = "self") -> dict[str, float]:
    """Resident and peak memory (MB), threads and open descriptors of a process."""
    status = _proc_status(pid)
    return {"rss_mb": round(status["VmRSS"] / 1024, 1),
            "peak_rss_mb": round(status["VmHWM"] / 1024, 1),
            "threads": status["Threads"],
            "fds": sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())}


def _open_things() -> dict[str, list[str]]:
    """What this process holds open, by name: to tell a leak from a pool that filled
    up when the figures grow."""
    fds = []
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):  # the listing's own descriptor is gone
            fds.append(str(fd.readlink()))
    return {"fds": sorted(fds), "threads": sorted(t.name for t in threading.enumerate())}


def _new(before: list[str], after: list[str]) -> list[str]:
    left = list(before)
    added = []
    for item in after:
        if item in left:
            left.remove(item)
        else:
            added.append(item)
    return added


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of a process (fields 14 and 15 of /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _soak(turns: int) -> dict[str, Any]:
    rng = random.Random(SEED)
    samples: list[tuple[int, dict[str, float]]] = []
    engines: dict[str, int] = {}
    faults = offline_turns = 0
    held: list[dict[str, list[str]]] = []
    began = time.monotonic()
    # The warm-up meets every fault once, so first-use allocations of every path
    # (Vosk, Piper, error handling) happen before the first sample.
    warmup = [None] * CLEAN_WARMUP_TURNS + list(FAULTS)
    with tempfile.TemporaryDirectory() as tmp, FakeCloud(
            transcript=TRANSCRIPT, reply=REPLY, seconds_per_char=0.01) as cloud:
        async with make_rig(Path(tmp), cloud, prefer_local=False) as rig:
            probe = asyncio.create_task(rig.connectivity.run(), name="soak-probe")
            try:
                for n in range(len(warmup) + turns):
                    fault = warmup[n] if n < len(warmup) else (
                        rng.choice(FAULTS) if rng.random() < FAULT_RATE else None)
                    if fault is not None:
                        stage, kind, params = fault
                        cloud.fail(stage, kind, **params)
                        faults += 1
                    offline_turns += not rig.connectivity.online
                    result = await rig.turn(turn_id=n)
                    key = f"{result.transcript_engine}/{result.reply_engine}"
                    engines[key] = engines.get(key, 0) + 1
                    # The rig's and the fake's own records would grow: not the device's.
                    cloud.reset()
                    rig.events.clear()
                    rig.conversation.clear()
                    measured = n + 1 - len(warmup)
                    if measured >= 0 and (measured % 25 == 0 or measured == turns):
                        gc.collect()
                        samples.append((measured, process_figures()))
                        held.append(_open_things())
            finally:
                probe.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(probe, 5)
    start, end = samples[0][1], samples[-1][1]
    done = np.array([n for n, _ in samples], dtype=float)
    slope = {}
    if len(samples) > 2:
        for key in ("rss_mb", "fds", "threads"):
            values = np.array([s[key] for _, s in samples], dtype=float)
            slope[key] = round(float(np.polyfit(done, values, 1)[0]) * 100, 2)
    return {
        "turns": turns,
        "warmup_turns": len(warmup),
        "seed": SEED,
        "faults_injected": faults,
        "turns_started_offline": offline_turns,
        "engines_stt_reply": engines,
        "seconds": round(time.monotonic() - began, 1),
        "after_warmup": {"turn": samples[0][0], **start},
        "end": {"turn": samples[-1][0], **end},
        "growth": {key: round(end[key] - start[key], 1) for key in ("rss_mb", "fds", "threads")},
        "growth_per_100_turns_fit": slope,
        "new_at_end": {key: _new(held[0][key], held[-1][key]) for key in ("fds", "threads")},
        "samples": [{"turn": n, **s} for n, s in samples],
    }


WARM_TIMEOUT = 120.0
"""Longest wait for the daemon's prewarm (Piper's notices) to end before measuring."""


def idle_daemon(seconds: float) -> dict[str, Any]:
    """The daemon at rest: wake word listening to a silent room, nothing else."""
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        write_wav(tmp / "silence.wav", silence(1.0))
        service = ServiceRun(tmp, config_text(tmp, str(tmp / "silence.wav")))
        try:
            service.wait_for("READY", "1", timeout=START_TIMEOUT)
            pid = service.proc.pid
            ready = process_figures(pid)
            # Start-up work done (the cloud connection, Piper's notices): idling from here.
            deadline = time.monotonic() + WARM_TIMEOUT
            while not any("warm: " in line for line in service.stderr):
                if time.monotonic() > deadline or service.proc.poll() is not None:
                    raise RuntimeError("the daemon never said it was warm:\n"
                                       + "\n".join(service.stderr[-20:]))
                service.receive(0.2)
            time.sleep(2.0)  # the first wake-word frames and the first watchdog ping
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            deadline = t0 + seconds
            while time.monotonic() < deadline:
                service.receive(min(0.5, max(0.0, deadline - time.monotonic())))
            cpu = cpu_seconds(pid) - cpu0
            wall = time.monotonic() - t0
            end = process_figures(pid)
            service.terminate()
        finally:
            service.close()
    return {"seconds": round(wall, 1),
            "cpu_percent": round(100 * cpu / wall, 2),
            "cpu_seconds_per_second": round(cpu / wall, 4),
            "rss_mb_ready": ready["rss_mb"],
            "rss_mb": end["rss_mb"],
            "peak_rss_mb": end["peak_rss_mb"],
            "threads": end["threads"],
            "fds": end["fds"],
            "note": "cloud disabled, no GPIO, .wav microphone of silence, from 2 s after the "
                    "prewarm ended; one core = 100 %"}


def run(quick: bool = False) -> dict[str, Any]:
    return {"idle_daemon": idle_daemon(20.0),
            "soak": asyncio.run(_soak(100 if quick else 500))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 turns instead of 500")
    print(json.dumps(run(parser.parse_args().quick), indent=2))


if __name__ == "__main__":
    main()
