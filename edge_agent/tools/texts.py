"""Ordinary English text for evaluations and training, from what every
machine with Python has: the docstrings of standard modules (and of pinned
dependencies), with the sentences that name a wake word left out."""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
import re
import sys
import warnings
from collections.abc import Iterable

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


def importable(names: Iterable[str]) -> tuple[str, ...]:
    """Those of ``names`` that import on this machine, quietly."""
    found = []
    for name in names:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                importlib.import_module(name)
        except Exception:  # platform modules (winreg, msvcrt...), optional back ends
            continue
        found.append(name)
    return tuple(found)


@functools.cache
def stdlib_modules() -> tuple[str, ...]:
    """Every public standard module that imports on this machine."""
    return importable(name for name in sorted(sys.stdlib_module_names - UNSAFE_TO_IMPORT)
                      if not name.startswith("_"))


NOT_LIBRARY = ("test", "distutils")
"""Parts of a module name that mark test suites and build tools, not library text."""


def package_modules(package: str) -> tuple[str, ...]:
    """``package``'s public modules that import on this machine: for a pinned
    dependency, the same text everywhere."""
    root = importlib.import_module(package)
    # walk_packages imports subpackages to list theirs (numpy.distutils warns
    # that it is deprecated); onerror skips those that fail (a test suite
    # whose data is not installed).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        walked = list(pkgutil.walk_packages(root.__path__, f"{package}.",
                                            onerror=lambda _: None))
    names = (m.name for m in walked
             if not any(p.startswith("_") or any(w in p for w in NOT_LIBRARY)
                        for p in m.name.split(".")))
    return importable(names)
