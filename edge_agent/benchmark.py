"""`edge-agent bench`: one entry point for every benchmark, one JSON report and
one PNG.

The benchmarks drive the real pipeline against the OpenAI-compatible test server
and the on-device engines; both live in the source checkout's ``tests/``
folder, so this command runs from a checkout (scripts/setup makes one).
Each benchmark module ``tests/bench/bench_<name>.py`` has ``run(quick) -> dict``.
"""

from __future__ import annotations

import importlib
import json
import logging
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
BENCHMARKS = ("audio", "controls", "wake", "offline", "cloud", "turn", "failover", "bargein",
              "service", "memory", "soak")
REPORT_JSON = "bench-report.json"
REPORT_PNG = "bench-report.png"


def checkout_root() -> Path:
    root = Path(__file__).resolve().parent.parent
    if not (root / "tests" / "bench").is_dir():
        raise EdgeAgentError(
            f"edge-agent bench needs a source checkout (no tests/bench under {root}); "
            "clone the repository and run scripts/setup")
    return root


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
    root = checkout_root()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    report: dict[str, Any] = {"quick": quick, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                              "command": " ".join(["edge-agent", *sys.argv[1:]]),
                              "results": {}}
    began = time.monotonic()
    for i, name in enumerate(names, 1):
        print(f"[{i}/{len(names)}] {name} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            module = importlib.import_module(f"tests.bench.bench_{name}")
            result = module.run(quick=quick)
        except Exception as exc:  # one broken benchmark must not lose the others' figures
            traceback.print_exc()
            result = {"error": f"{type(exc).__name__}: {exc}"}
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
        "wake_cpu_s_per_audio_s_quiet": _get(
            results, "wake", "idle_cpu_per_audio_second", "quiet_room", "ours_gated"),
        "wake_cpu_s_per_audio_s_tv": _get(
            results, "wake", "idle_cpu_per_audio_second", "tv_talking", "ours_gated"),
        "wake_false_reject_rate": _get(results, "wake", "wake_hey_jarvis", "false_reject_rate"),
        "wake_false_accepts_per_hour_ordinary_audio": _get(
            results, "wake", "false_accepts", "false_accepts_per_hour_ordinary_audio",
            "hey_jarvis"),
        "piper_first_audio_ms": _get(results, "offline", "piper_first_audio_ms"),
        "vosk_rtf": _get(results, "offline", "vosk_rtf_whole"),
        "daemon_idle_cpu_percent": _get(results, "soak", "idle_daemon", "cpu_percent"),
        "daemon_peak_rss_mb": _get(results, "soak", "idle_daemon", "peak_rss_mb"),
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
    for key, value in report["summary"].items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            lines.extend(f"    {k}: {v}" for k, v in value.items())
        else:
            lines.append(f"{key}: {value}")
    for name in failed(report):
        lines.append(f"FAILED {name}: {report['results'][name]['error']}")
    return "\n".join(lines)
