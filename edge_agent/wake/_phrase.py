"""Removing the wake phrase from the front of a transcript.

The utterance starts at the detector's estimate of where the wake phrase ends,
so speech recognition sometimes hears all or the tail of it ("jarvis, what
time is it"). Only the phrase's full wording or its tail is removed, never a
lone leading "hey" or "okay": those start ordinary sentences too.
"""

from __future__ import annotations

import re

from edge_agent.config import wake_model_name as model_name

# How recognizers spell the words of the bundled phrases.
_SPELLINGS = {"okay": r"(?:okay|ok|o\.k\.)", "hey": r"(?:hey|hay|hi|a)"}
_SEPARATORS = r"[\s,.!?;:\-]*"


def _phrase_words(model: str) -> list[str]:
    """ "hey_jarvis" -> ["hey", "jarvis"]; a custom "hey_computer_v2.tflite"
    -> ["hey", "computer"] (version tags are not spoken)."""
    words = re.split(r"[_\-\s]+", model_name(model).lower())
    return [w for w in words if w.isalpha() and not re.fullmatch(r"v\d*", w)]


def _pattern(models: list[str]) -> re.Pattern[str]:
    alternatives = []
    for model in models:
        words = _phrase_words(model)
        # Longest first, so "hey jarvis" wins over "jarvis".
        for start in range(len(words)):
            tail = words[start:]
            if start and len(tail) == 1 and tail[0] in _SPELLINGS:
                continue
            parts = [_SPELLINGS.get(w, re.escape(w)) for w in tail]
            alternatives.append(_SEPARATORS.join(parts))
    return re.compile(rf"^{_SEPARATORS}(?:{'|'.join(alternatives)})\b{_SEPARATORS}",
                      re.IGNORECASE)


def strip_wake_phrase(text: str, models: list[str]) -> str:
    """``text`` without a leading wake phrase (or its tail) of any of ``models``."""
    words = [m for m in models if _phrase_words(m)]
    if not words:
        return text.strip()
    return _pattern(words).sub("", text, count=1).strip()
