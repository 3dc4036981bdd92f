"""docs/benchmarks.md against the committed report it is generated from."""

from __future__ import annotations

import json
from pathlib import Path

from edge_agent.benchdocs import BEGIN, DOCS, END, main, render, splice
from edge_agent.benchmark import figures

REPORT = {"quick": True, "started": "2026-12-01T23:49:38", "total_seconds": 70.0,
          "command": "edge-agent bench --only controls turn --quick",
          "conditions": {"machine": "Test CPU, 2 cores", "load_average_at_start": 3.5,
                         "cloud": "the cloud is a local fake server"},
          "results": {"controls": {"led_show_ms": {"median": 0.21, "worst": 6.0}},
                      "turn": {"streaming": {"median_ms": 880.0}, "ratio_median": 1.7},
                      "wake": {"error": "RuntimeError: boom"}},
          "summary": {"end_of_speech_to_first_audio_median_ms": 880.0}}


def test_the_committed_page_is_what_the_committed_report_gives() -> None:
    assert main(["--check"]) == 0, "run: python -m edge_agent.benchdocs"


def test_every_figure_and_the_conditions_are_on_the_page() -> None:
    text = render(REPORT)
    for name in ("controls", "turn"):
        for key, value in figures(REPORT["results"][name]):
            assert f"| {key} | {value:g} |" in text
    assert "Test CPU, 2 cores" in text and "local fake server" in text
    assert "RuntimeError: boom" in text
    assert "not run: audio" in text  # what is missing is said, not left blank


def test_a_stale_page_is_found_and_rewritten(tmp_path: Path) -> None:
    report, page = tmp_path / "report.json", tmp_path / "page.md"
    report.write_text(json.dumps(REPORT))
    page.write_text(f"# Prose stays\n\n{BEGIN}\n| old | 1 |\n{END}\nTail stays.\n")
    assert main(["--report", str(report), "--page", str(page), "--check"]) == 1
    assert main(["--report", str(report), "--page", str(page)]) == 0
    text = page.read_text()
    assert text.startswith("# Prose stays") and text.endswith("Tail stays.\n")
    assert "| old | 1 |" not in text and "880" in text
    assert main(["--report", str(report), "--page", str(page), "--check"]) == 0
    assert splice(text, render(REPORT)) == text


def test_the_committed_report_is_in_docs() -> None:
    assert (DOCS / "bench-report.json").is_file()
