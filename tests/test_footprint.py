"""edge_agent.footprint: the memory figures status reports, the heap hand-back,
and what the daemon's code imports (runtime dependencies are exactly those)."""

from __future__ import annotations

import json
import subprocess
import sys

from edge_agent.footprint import (
    process_age,
    process_memory,
    release_freed_heap,
    return_large_blocks,
)


def test_process_memory_reports_rss_pss_and_anonymous_megabytes() -> None:
    figures = process_memory()
    assert set(figures) == {"rss_mb", "pss_mb", "anon_mb"}
    assert 0 < figures["pss_mb"] <= figures["rss_mb"]
    assert 0 < figures["anon_mb"] <= figures["rss_mb"]


def test_process_memory_of_a_missing_process_is_empty() -> None:
    assert process_memory(2**22 + 1) == {}


def test_process_age_counts_from_the_process_start() -> None:
    age = process_age()
    assert age is not None and 0 < age < 24 * 3600


def test_heap_calls_are_safe_to_repeat() -> None:
    return_large_blocks()
    return_large_blocks()
    release_freed_heap()
    release_freed_heap()


# Packages the daemon must not load: test/bench tools (our own test bed and
# benchmarks among them), what only the vosk package's Python module (model
# downloads, subtitles) would pull in, and the openai SDK (the cloud speaks HTTP itself).
NOT_AT_RUNTIME = ("openwakeword", "scipy", "sklearn", "tqdm", "requests", "srt", "vosk",
                  "matplotlib", "pytest", "openai", "pydantic", "edge_agent.testbed",
                  "edge_agent.bench")


def test_the_daemon_imports_none_of_the_test_or_download_tools() -> None:
    code = ("import sys, json, edge_agent.cli, edge_agent.agent.daemon, edge_agent.cloud.warm; "
            f"print(json.dumps([m for m in {list(NOT_AT_RUNTIME)!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert json.loads(out) == []
