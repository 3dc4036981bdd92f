"""clean_for_speech: what a voice would read aloud as symbols is removed, the
words are kept."""

from __future__ import annotations

import pytest

from edge_agent.text import clean_for_speech, speakable

CASES = [
    ("**Bold** and __strong__ words.", "Bold and strong words."),
    ("An *italic* and _emphasised_ word.", "An italic and emphasised word."),
    ("Keep my_variable_name as it is.", "Keep my_variable_name as it is."),
    ("2*3 and 4 * 5 are products.", "2 times 3 and 4 times 5 are products."),
    ("~~Old~~ new price.", "Old new price."),
    ("Run `ls -la` now.", "Run ls -la now."),
    ("```python\nprint('hi')\n```", "print('hi')"),
    ("## Weather today", "Weather today"),
    ("> A quote here.", "A quote here."),
    ("- first item", "first item"),
    ("* starred item", "starred item"),
    ("3. third item", "third item"),
    ("See [the guide](https://example.com/guide \"Guide\") first.", "See the guide first."),
    ("![a cat](https://example.com/cat.png) is cute.", "a cat is cute."),
    ("Visit https://example.com/path?q=1 for more.", "Visit for more."),
    ("Go to www.example.org today.", "Go to today."),
    ("Mail <mailto:me@example.com> me.", "Mail me."),
    ("Line one<br>line two.", "Line one line two."),
    ("| Day | Temp |", "Day, Temp"),
    ("---", ""),
    ("Great job! 🎉🎉", "Great job!"),
    ("Family 👨‍👩‍👧 time ❤️ and ⭐ stars.", "Family time and stars."),
    ("Flags 🇫🇷 wave.", "Flags wave."),
    ("It is 20°C and sunny ☀️.", "It is 20°C and sunny."),
    ("Prices: €5, £4 and ¥300.", "Prices: €5, £4 and ¥300."),
    ("I love C# and C++.", "I love C# and C++."),
    ("Set a timer ⏰ for 10:30.", "Set a timer for 10:30."),
    ("Too    many\n\nspaces .", "Too many spaces."),
    ("Café, naïve, Straße.", "Café, naïve, Straße."),
    ("", ""),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0][:25] for c in CASES])
def test_clean_for_speech(text: str, expected: str) -> None:
    assert clean_for_speech(text) == expected


def test_plain_text_is_unchanged() -> None:
    text = "It is ten past ten, and the timer has 3.5 minutes left."
    assert clean_for_speech(text) == text


@pytest.mark.parametrize(("text", "expected"), [
    ("Hello", True), ("42", True), ("é", True), ("...", False), ("", False), (" - ", False),
])
def test_speakable(text: str, expected: bool) -> None:
    assert speakable(text) is expected
