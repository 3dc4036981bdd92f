"""Text helpers for local intents: normalizing what STT heard (cloud STT writes
"5 minutes.", Vosk says "five minutes") and speaking durations back."""

from __future__ import annotations

import re

_ONES = {w: i for i, w in enumerate([
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen"])}
_TENS = {w: 10 * i for i, w in enumerate(
    ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"], start=2)}
NUMBER_WORDS = (*_ONES, *_TENS, "hundred", "thousand")
"""Every word ``words_to_numbers`` understands."""
_UNITS = {"hour": 3600, "hr": 3600, "minute": 60, "min": 60, "second": 1, "sec": 1}
_UNIT = r"(?:hours?|hrs?|minutes?|mins?|seconds?|secs?)"
_AMOUNT = r"(?:\d+(?:\.\d+)?|an?)"
# One duration: "5 minutes", "an hour", "1 and a half hours", "half an hour",
# "1 hour and 30 minutes", "2 minutes 10 seconds".
_PART = rf"(?:{_AMOUNT} (?:and a half )?{_UNIT}(?: and a half)?|half an? {_UNIT})"
DURATION = rf"{_PART}(?:(?:,? and|,)? {_PART})*"
_PART_RE = re.compile(
    rf"(?P<half>half )?(?P<n>{_AMOUNT})? ?(?P<and_half>and a half )?(?P<unit>{_UNIT})"
    r"(?P<half_after> and a half)?")


def words_to_numbers(text: str) -> str:
    """"twenty five minutes" -> "25 minutes"; other words are left alone."""
    out: list[str] = []
    tokens = text.split()
    i = 0
    while i < len(tokens):
        value, i2 = _number_at(tokens, i)
        if i2 == i:
            out.append(tokens[i])
            i += 1
        else:
            out.append(str(value))
            i = i2
    return " ".join(out)


def _number_at(tokens: list[str], i: int) -> tuple[int, int]:
    """Parse a number below 10,000 spelled in words at ``tokens[i]``."""
    def below_100(j: int) -> tuple[int, int]:
        if j < len(tokens) and tokens[j] in _TENS:
            value = _TENS[tokens[j]]
            if j + 1 < len(tokens) and tokens[j + 1] in _ONES and 0 < _ONES[tokens[j + 1]] < 10:
                return value + _ONES[tokens[j + 1]], j + 2
            return value, j + 1
        if j < len(tokens) and tokens[j] in _ONES:
            return _ONES[tokens[j]], j + 1
        return 0, j

    scales = ("hundred", "thousand")
    value, j = below_100(i)
    if j == i and tokens[i] == "a" and i + 1 < len(tokens) and tokens[i + 1] in scales:
        j = i + 1  # "a hundred"
    if i < j < len(tokens) and tokens[j] in scales:
        scale = 100 if tokens[j] == "hundred" else 1000
        value = max(value, 1) * scale
        j += 1
        k = j + 1 if j < len(tokens) and tokens[j] == "and" else j
        rest, k2 = below_100(k)
        if k2 > k:
            value, j = value + rest, k2
    return value, j


def normalize(text: str) -> str:
    """Lowercase words and digits only: "Set a timer for Five minutes!" ->
    "set a timer for 5 minutes"."""
    text = text.lower().replace("\u2019", "'").replace("%", " percent ").replace("-", " ")
    text = re.sub(r"[^\w\s.']", " ", text)
    text = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", text)  # keep decimal points only
    return words_to_numbers(" ".join(text.split()))


def parse_duration(text: str) -> float | None:
    """Seconds in a normalized duration phrase, or None if it holds none."""
    total = 0.0
    found = False
    for m in _PART_RE.finditer(text):
        n = m["n"]
        amount = 1.0 if n in (None, "a", "an") else float(n)
        if m["half"]:
            amount = 0.5
        if m["and_half"] or m["half_after"]:
            amount += 0.5
        unit = m["unit"].rstrip("s") if m["unit"] not in ("secs", "hrs") else m["unit"][:-1]
        total += amount * _UNITS[unit]
        found = True
    return total if found and total > 0 else None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def say_duration(seconds: float) -> str:
    """Seconds as a listener wants to hear them: "1 hour and 30 minutes"."""
    s = max(0, round(seconds))
    if s < 60:
        return _plural(s, "second")
    hours, rest = divmod(s, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        parts = [_plural(hours, "hour")] + ([_plural(minutes, "minute")] if minutes else [])
    else:
        parts = [_plural(minutes, "minute")] + ([_plural(secs, "second")] if secs else [])
    return " and ".join(parts)
