"""The benchmark report as one PNG, one panel per benchmark that ran: where a
turn's latency goes (our streaming turn next to the naive cascade), how long each
cloud fault keeps the listener waiting for the fallback, and the figures of every
other benchmark as a table. A benchmark that did not run has no panel.

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

from edge_agent.benchmark import FIGURES_PER_BENCHMARK, case_label, figures

log = logging.getLogger(__name__)

# The turn bench's per-stage medians, each measured from the end of speech.
STAGE_LABELS = {
    "stt_done": "STT",
    "llm_first_token": "LLM first token",
    "first_sentence": "first sentence",
    "tts_first_byte": "TTS first byte",
    "first_audio": "to the speaker",
}
COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")


def _waterfall(ax: Axes, turn: dict[str, Any]) -> None:
    """One horizontal bar per pipeline, each stage a segment starting where the
    previous one ended. The turn bench times every stage of the streaming turn but only
    the total of the naive cascade; its STT is the same request, so the naive bar
    is that STT and then one "whole reply, then all its audio" segment. The title
    says the cloud was the fake one, so nobody reads it as their own latency."""
    injected = turn.get("injected_ms") or {}
    delays = (f"injected STT {injected.get('stt', '?')} ms, LLM first token "
              f"{injected.get('llm_first_token', '?')} ms at "
              f"{injected.get('tokens_per_second', '?')} tokens/s, TTS first byte "
              f"{injected.get('tts_first_byte', '?')} ms")
    ax.set_title(f"End of speech to first audio (median)\nlocal fake cloud on 127.0.0.1, "
                 f"{delays}", fontsize="medium")
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


def _failover(ax: Axes, failover: dict[str, Any]) -> None:
    ax.set_title("Failover: fault to first fallback audio (faults injected by the fake "
                 "cloud)", pad=26)
    cases = failover.get("cases") or []
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


def _table(ax: Axes, name: str, result: dict[str, Any]) -> None:
    """A benchmark without a chart of its own: its figures, as the terminal shows them."""
    ax.axis("off")
    ax.set_title(f"{name}: {result.get('error') or 'figures'}", loc="left")
    rows = [[key, f"{value:g}" if isinstance(value, float) else str(value)]
            for key, value in figures(result)[:FIGURES_PER_BENCHMARK]]
    if rows:
        # Filling the panel: its height was made from the number of rows.
        table = ax.table(cellText=rows, colWidths=[0.75, 0.25], bbox=(0, 0, 1, 1),
                         cellLoc="left", edges="horizontal")
        table.auto_set_font_size(False)
        table.set_fontsize(8)


def _panels(results: dict[str, Any]) -> list[tuple[str, float]]:
    """(benchmark, height in inches) for each benchmark that ran, in report order."""
    panels = []
    for name, result in results.items():
        if name == "turn" and "stages_median_ms" in result:
            panels.append((name, 3.0))
        elif name == "failover" and result.get("cases"):
            panels.append((name, max(3.0, 0.3 * len(result["cases"]) + 1.2)))
        else:
            shown = min(len(figures(result)), FIGURES_PER_BENCHMARK)
            panels.append((name, 0.45 + 0.17 * shown))  # rows of 8-point text
    return panels


def plot_report(report: dict[str, Any], path: Path) -> None:
    """Write the PNG: one panel per benchmark that ran, none for the others."""
    results = report.get("results", {})
    panels = _panels(results)
    heights = [h for _, h in panels] or [1.0]
    height = 1.2 + sum(heights)
    fig, axes = plt.subplots(len(heights), 1, figsize=(10, height),
                             gridspec_kw={"height_ratios": heights}, squeeze=False,
                             layout="constrained")  # per-row spacing, room for the title
    try:
        for ax, (name, _) in zip(axes[:, 0], panels, strict=False):
            result = results[name]
            if name == "turn" and "stages_median_ms" in result:
                _waterfall(ax, result)
            elif name == "failover" and result.get("cases"):
                _failover(ax, result)
            else:
                _table(ax, name, result)
        if not panels:
            axes[0, 0].axis("off")
            axes[0, 0].text(0.5, 0.5, "no benchmark ran", ha="center", va="center")
        mode = "quick" if report.get("quick") else "full"
        machine = (report.get("conditions") or {}).get("machine", "")
        fig.suptitle(f"edge-agent bench ({mode}, {report.get('started', '')})\n{machine}",
                     fontsize="medium")
        fig.savefig(path, dpi=80)
    finally:
        plt.close(fig)
    log.info("plot written to %s", path)
