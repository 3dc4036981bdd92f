"""The benchmark report as one PNG: where a turn's latency goes (our streaming
turn next to the naive cascade), and how long each cloud fault keeps the
listener waiting for the fallback.

matplotlib (the ``bench`` extra) with the Agg backend: no display on a Pi.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after use(): the backend is chosen before pyplot loads
from matplotlib.axes import Axes

from edge_agent.benchmark import case_label

log = logging.getLogger(__name__)

# bench_turn's per-stage medians, each measured from the end of speech.
STAGE_LABELS = {
    "stt_done": "STT",
    "llm_first_token": "LLM first token",
    "first_sentence": "first sentence",
    "tts_first_byte": "TTS first byte",
    "first_audio": "to the speaker",
}
COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")


def _waterfall(ax: Axes, turn: dict[str, Any] | None) -> None:
    """One horizontal bar per pipeline, each stage a segment starting where the
    previous one ended. bench_turn times every stage of the streaming turn but only
    the total of the naive cascade; its STT is the same request, so the naive bar
    is that STT and then one "whole reply, then all its audio" segment."""
    ax.set_title("End of speech to first audio (median)")
    if not turn or "stages_median_ms" not in turn:
        ax.text(0.5, 0.5, "bench_turn did not run", ha="center", va="center",
                transform=ax.transAxes)
        return
    stages = turn["stages_median_ms"]
    previous = 0.0
    for i, (key, label) in enumerate(STAGE_LABELS.items()):
        end = max(stages.get(key, previous), previous)
        ax.barh(1, end - previous, left=previous, color=COLORS[i], label=label)
        previous = end
    stt = stages.get("stt_done", 0.0)
    naive = turn["naive"]["median_ms"]
    ax.barh(0, stt, color=COLORS[0])
    ax.barh(0, naive - stt, left=stt, color=COLORS[5], label="naive: whole reply, whole audio")
    ax.set_yticks([1, 0], [f"streaming\n{turn['streaming']['median_ms']:.0f} ms",
                           f"naive cascade\n{naive:.0f} ms"])
    ax.set_xlabel("ms after the end of speech")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=3, fontsize="small")


def _failover(ax: Axes, failover: dict[str, Any] | None) -> None:
    ax.set_title("Failover: fault to first fallback audio", pad=26)
    cases = (failover or {}).get("cases") or []
    if not cases:
        ax.text(0.5, 0.5, "bench_failover did not run", ha="center", va="center",
                transform=ax.transAxes)
        return
    labels = [case_label(c) for c in cases]
    detect = [c["detect_ms"] for c in cases]
    # A case with no fallback audio at all is drawn as an empty bar, not left out.
    to_audio = [c["to_fallback_audio_ms"] or 0.0 for c in cases]
    rows = range(len(cases))
    ax.barh(rows, to_audio, color=COLORS[3], label="fault to fallback audio")
    ax.barh(rows, detect, color=COLORS[0], label="fault detected (failover event)")
    ax.set_yticks(list(rows), labels, fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel("ms after the fault reached the server")
    # Above the panel: any bar may be the longest, so no corner inside is free.
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize="small",
              frameon=False)


def plot_report(report: dict[str, Any], path: Path) -> None:
    """Write the PNG; panels whose benchmark did not run say so instead."""
    results = report.get("results", {})
    cases = len((results.get("failover") or {}).get("cases") or [])
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(10, 4 + max(3.0, 0.3 * cases)),
        gridspec_kw={"height_ratios": [1.0, max(1.0, cases / 8)]})
    try:
        _waterfall(top, results.get("turn"))
        _failover(bottom, results.get("failover"))
        mode = "quick" if report.get("quick") else "full"
        fig.suptitle(f"edge-agent bench ({mode}, {report.get('started', '')})")
        fig.tight_layout()
        fig.savefig(path, dpi=80)
    finally:
        plt.close(fig)
    log.info("plot written to %s", path)
