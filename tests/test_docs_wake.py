"""docs/wake-eval.md says exactly what the committed docs/wake-eval.json does
(and wake-eval-1-phase.md and wake-eval-8-phase.md their runs with
wake.phases = 1 and 8)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_agent.tools.wake_eval import FAMILIES, page

DOCS = Path(__file__).parents[1] / "docs"


@pytest.mark.parametrize("name", ["wake-eval", "wake-eval-1-phase", "wake-eval-8-phase"])
def test_the_wake_page_is_rendered_from_the_committed_report(name: str) -> None:
    report = json.loads((DOCS / f"{name}.json").read_text())
    assert (DOCS / f"{name}.md").read_text() == page(report)


def test_the_report_covers_every_family_and_three_hours_of_speech() -> None:
    report = json.loads((DOCS / "wake-eval.json").read_text())
    assert set(report["positives"]["miss_rate"]["openwakeword"]) == set(FAMILIES)
    assert report["read_speech"]["hours"] >= 3.0
