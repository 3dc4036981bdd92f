"""`edge-agent bench`: the real command on a cheap benchmark, and the plot of a
report holding the turn and failover figures."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import matplotlib.colors
import matplotlib.image
import numpy as np
import pytest

from edge_agent.benchmark import BENCHMARKS, REPORT_JSON, REPORT_PNG, format_summary, summarize
from edge_agent.benchplot import COLORS, plot_report

# The shapes edge_agent.bench.turn and .failover return (figures from a quick run).
TURN = {"streaming": {"median_ms": 880.0, "p95_ms": 920.0},
        "naive": {"median_ms": 1500.0, "p95_ms": 1520.0},
        "ratio_median": 1.7, "overhead": {"median_ms": 30.0},
        "stages_median_ms": {"stt_done": 309.0, "llm_first_token": 564.0,
                             "first_sentence": 712.0, "tts_first_byte": 866.0,
                             "first_audio": 880.0}}
FAILOVER = {"max_longest_silence_ms": 1600.0, "cases": [
    {"case": "stt-status-status503", "stt_mode": "fallback", "detect_ms": 5.0,
     "to_fallback_audio_ms": 252.0},
    {"case": "llm-stall_first", "stt_mode": "fallback", "detect_ms": 980.0,
     "to_fallback_audio_ms": 1327.0},
    {"case": "tts-refused", "stt_mode": "fallback", "detect_ms": 3.0,
     "to_fallback_audio_ms": None}]}


def bench(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_agent", "bench", *args],
                          capture_output=True, text=True, timeout=300, cwd=tmp)


def share_of(png: np.ndarray, color: str) -> float:
    """Fraction of the image's pixels drawn in ``color``."""
    rgb = np.array(matplotlib.colors.to_rgb(color))
    return float((np.abs(png[..., :3] - rgb).max(axis=-1) < 0.02).mean())


@pytest.mark.slow
def test_bench_only_audio_writes_a_report_and_a_plot(tmp_path: Path) -> None:
    out = tmp_path / "report"
    done = bench(tmp_path, "--only", "audio", "--quick", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "[1/1] audio" in done.stderr  # progress while it runs

    report = json.loads((out / REPORT_JSON).read_text())
    assert report["quick"] is True
    assert list(report["results"]) == ["audio"]
    audio = report["results"]["audio"]
    assert "error" not in audio
    assert audio["bench_seconds"] > 0
    assert len(audio) > 1  # its own figures besides our timing
    assert report["summary"] == {}  # audio has none of the headline figures

    png = matplotlib.image.imread(out / REPORT_PNG)
    assert png.ndim == 3 and png.shape[0] > 200 and png.shape[1] > 400


def test_an_unknown_benchmark_is_refused_before_anything_runs(tmp_path: Path) -> None:
    done = bench(tmp_path, "--only", "audio", "nosuch", "--out", str(tmp_path))
    assert done.returncode == 2
    assert "nosuch" in done.stderr and "soak" in done.stderr
    assert not (tmp_path / REPORT_JSON).exists()


def test_every_listed_benchmark_exists() -> None:
    assert all(importlib.util.find_spec(f"edge_agent.bench.{name}") for name in BENCHMARKS)


def test_plot_draws_the_waterfall_and_each_failover_case(tmp_path: Path) -> None:
    empty, full = tmp_path / "empty.png", tmp_path / "full.png"
    plot_report({"quick": True, "results": {}}, empty)
    plot_report({"quick": True, "results": {"turn": TURN, "failover": FAILOVER}}, full)

    drawn, blank = matplotlib.image.imread(full), matplotlib.image.imread(empty)
    # Every stage of the streaming turn and the naive cascade's remainder is on it.
    for color in COLORS:
        assert share_of(drawn, color) > 0.0005, color
        assert share_of(blank, color) == 0.0, color
    # The naive cascade's remainder (1191 ms) is wider than the whole streaming bar.
    assert share_of(drawn, COLORS[5]) > share_of(drawn, COLORS[1])


def test_summary_picks_the_headline_figures() -> None:
    summary = summarize({"turn": TURN, "failover": FAILOVER})
    assert summary["end_of_speech_to_first_audio_median_ms"] == 880.0
    assert summary["naive_over_streaming_ratio"] == 1.7
    assert summary["failover_to_fallback_audio_ms"]["llm-stall_first"] == 1327.0
    assert "vosk_rtf" not in summary  # offline did not run: left out, not None


CONTROLS = {"button_idle_loop": {"press_to_on_press": {"median_ms": 0.3, "worst_ms": 10.8}},
            "led_show_ms": {"median": 0.02}, "samples": [1, 2, 3], "bench_seconds": 10.0}


def test_help_lists_every_benchmark() -> None:
    done = subprocess.run([sys.executable, "-m", "edge_agent", "bench", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    for name in BENCHMARKS:
        assert any(line.split()[:1] == [name] and len(line.split()) > 2 for line in lines), name


def test_every_benchmark_that_ran_prints_its_figures() -> None:
    report = {"quick": True, "total_seconds": 12.0, "results": {"controls": CONTROLS},
              "conditions": {"machine": "test cpu, 2 cores", "cloud": "a fake"}}
    report["summary"] = summarize(report["results"])
    text = format_summary(report)
    assert "button_idle_loop press_to_on_press median_ms: 0.3" in text
    assert "led_show_ms median: 0.02" in text
    assert "test cpu, 2 cores" in text


def test_a_benchmark_that_did_not_run_has_no_panel(tmp_path: Path) -> None:
    paths = {name: tmp_path / f"{name}.png" for name in ("controls", "turn", "both")}
    plot_report({"quick": True, "results": {"controls": CONTROLS}}, paths["controls"])
    plot_report({"quick": True, "results": {"turn": TURN}}, paths["turn"])
    plot_report({"quick": True, "results": {"turn": TURN, "failover": FAILOVER}}, paths["both"])
    controls, turn, both = (matplotlib.image.imread(paths[n]) for n in ("controls", "turn",
                                                                       "both"))
    # Only controls ran: a table of its figures, no turn or failover chart.
    assert all(share_of(controls, color) == 0.0 for color in COLORS)
    assert (controls[..., :3] < 0.5).mean() > 0.005  # text was drawn
    # The turn alone: its waterfall, and no room kept for the failover panel.
    assert share_of(turn, COLORS[0]) > 0.0005
    assert turn.shape[0] < both.shape[0]
