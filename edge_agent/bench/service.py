"""Service benchmark: the real daemon as systemd runs it (`edge-agent run` with a
notify socket, .wav devices, no cloud), timed from what systemd would see.

Per run: start to READY=1; SIGHUP to READY=1 for a reload that changes nothing,
one that rebuilds the wake detector and one that reopens the microphone; SIGTERM
to exit (the issue's budget is 2 s); the spacing of watchdog pings (the daemon
aims for half of WatchdogSec); resident memory once ready.

    python -m edge_agent.bench.service [--quick]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.testbed.service import WATCHDOG_USEC, ServiceRun, config_text
from edge_agent.tools.voices import noise, silence, write_wav


def _timed_reload(service: ServiceRun, config: str) -> float:
    service.write_config(config)
    sent = time.monotonic()
    service.proc.send_signal(signal.SIGHUP)
    service.wait_for("READY", "1", timeout=120)
    return time.monotonic() - sent


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _one_run(tmp: Path) -> dict[str, float]:
    for name in ("a.wav", "b.wav"):
        write_wav(tmp / name, np.concatenate([noise(1.0), silence(1.0)]))
    base = config_text(tmp, f"{tmp}/a.wav")
    started = time.monotonic()
    service = ServiceRun(tmp, base)
    try:
        service.wait_for("READY", "1", timeout=180)
        figures = {"start_to_ready_s": time.monotonic() - started,
                   "rss_mb_ready": _rss_mb(service.proc.pid)}
        figures["reload_nothing_s"] = _timed_reload(service, base)
        figures["reload_wake_s"] = _timed_reload(
            service, base + "\n[wake]\nthreshold = 0.6\n")
        figures["reload_input_s"] = _timed_reload(
            service, config_text(tmp, f"{tmp}/b.wav") + "\n[wake]\nthreshold = 0.6\n")
        mark = len(service.messages)
        for _ in range(6):
            service.wait_for("WATCHDOG", "1", timeout=10)
        pings = [t for t, m in service.messages[mark:] if "WATCHDOG" in m]
        gaps = np.diff(pings)
        figures["watchdog_gap_mean_s"] = float(np.mean(gaps))
        figures["watchdog_gap_max_s"] = float(np.max(gaps))
        figures["sigterm_to_exit_s"] = service.terminate()
    finally:
        service.close()
    return figures


def run(quick: bool = False) -> dict[str, Any]:
    runs = []
    for _ in range(1 if quick else 3):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(_one_run(Path(tmp)))
    result: dict[str, Any] = {"runs": len(runs),
                              "watchdog_period_target_s": WATCHDOG_USEC / 2e6,
                              "stop_budget_s": 2.0}
    for key in runs[0]:
        values = [r[key] for r in runs]
        result[key] = round(statistics.median(values), 3)
        if len(values) > 1:
            result[key.replace("_s", "_worst_s") if key.endswith("_s") else key + "_worst"] = (
                round(max(values), 3))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run instead of three")
    args = parser.parse_args()
    print(json.dumps(run(quick=args.quick), indent=2))


if __name__ == "__main__":
    main()
