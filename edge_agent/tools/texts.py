"""Ordinary English text for evaluations and training, from what every
machine with Python has: the docstrings of standard modules, with the
sentences that name a wake word left out."""

from __future__ import annotations

import functools
import importlib
import inspect
import re
import sys
import warnings

WAKE_WORDS = re.compile(r"jarvis|alexa|mycroft|rhasspy|nabu", re.IGNORECASE)
UNSAFE_TO_IMPORT = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo",
                    "lib2to3", "ensurepip", "venv", "pydoc_data", "test", "__main__"}
"""Standard modules that open windows or browsers, print, or are not libraries."""


def docstring_sentences(modules: tuple[str, ...]) -> list[str]:
    """Sentences of 5 to 18 plain words from the docstrings of ``modules``
    (deterministic, thousands of them)."""
    found: list[str] = []
    for module in map(importlib.import_module, modules):
        for _, obj in [("", module), *inspect.getmembers(module)]:
            doc = inspect.getdoc(obj) if callable(obj) or inspect.ismodule(obj) else None
            for sentence in re.split(r"(?<=[.!?])\s+", (doc or "").replace("\n", " ")):
                words = sentence.rstrip(".!?").split()
                if 5 <= len(words) <= 18 and re.fullmatch(r"[A-Za-z ,']+", " ".join(words)):
                    found.append(" ".join(words))
    return list(dict.fromkeys(s for s in found if not WAKE_WORDS.search(s)))


@functools.cache
def stdlib_modules() -> tuple[str, ...]:
    """Every public standard module that imports on this machine."""
    modules = []
    for name in sorted(sys.stdlib_module_names - UNSAFE_TO_IMPORT):
        if name.startswith("_"):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                importlib.import_module(name)
        except Exception:  # platform modules (winreg, msvcrt...) fail here
            continue
        modules.append(name)
    return tuple(modules)
