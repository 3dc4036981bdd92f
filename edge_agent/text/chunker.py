"""Sentence chunking of a streamed reply, so TTS starts on the first sentence
while the model is still writing the rest.

A "." usually ends a sentence only once the next word is seen: "3." may become
"3.5", "Dr." is followed by a name, "U.S." may or may not end a sentence, "1."
opens a list item. Where the end is already certain, the sentence goes at once,
without waiting a token for the next word: "?" and "!", and a full stop after a
word that is no abbreviation or initial ("Paris.", "today."). That is safe because
tokenizers keep a dot that goes on with its continuation ("example" then ".com",
"3" then ".5" is caught as a number); a run of terminators split across deltas
("Wait." then "..") is the price.

Each cut looks at no more than SCAN_CHARS of the text, so chunking is linear in
the reply's length however a hostile server writes it.
"""

from __future__ import annotations

import re

from edge_agent.text.speech import clean_for_speech, speakable

# Abbreviations that are followed by more of the same sentence.
_NEVER_END = frozenset({
    "dr", "mr", "mrs", "ms", "prof", "sr", "jr", "st", "mt", "ft", "vs", "cf", "approx",
    "e.g", "i.e", "ca", "gen", "gov", "sen", "rep", "capt", "lt", "col", "sgt", "rev", "hon",
    "dept",
})
# Abbreviations that may also end a sentence: an end only before a capital letter.
_MAYBE_END = frozenset({"etc", "inc", "ltd", "co", "corp", "am", "pm", "a.m", "p.m", "min",
                        "ave", "blvd", "rd", "hwy", "univ", "bros",
                        "u.s", "u.k", "u.n", "e.u", "jan", "feb", "mar", "apr", "jun", "jul",
                        "aug", "sep", "sept", "oct", "nov", "dec", "mon", "tue", "wed", "thu",
                        "fri", "sat", "sun"})
# Abbreviations before a number ("No. 5", "Fig. 2"); otherwise ordinary words ("no.").
_BEFORE_NUMBER = frozenset({"no", "nos", "fig", "vol", "p", "pp", "ch", "sec", "art"})
_DOTTED = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]")  # U.S, e.g, a.m, i.e

# Possessive runs that start only at the first terminator of a run: "......" costs
# one pass, not one per dot (the search is linear in the window).
_END = re.compile(
    r"(?P<end>(?<![.!?…])[.!?…]++[\"'”’»)\]*_`]*+)(?P<space>\s++)(?P<next>\S)"  # ". Next"
    r"|(?P<cjk>[。！？]+)"                                        # CJK ends need no space
    r"|(?P<line>\n)"                                              # a new line or list item
)
_CLAUSE = re.compile(r"(?:[,;:]|\s[-–—])(?=\s)")  # , ; : or a spaced dash, before a space
_OPENERS = "\"'“‘«([*_"
_CLOSERS = "\"'”’»)]*_`"
_NONSPACE = re.compile(r"\S")
_PAIRS = (("(", ")"), ("[", "]"), ("“", "”"), ("«", "»"))
_TOGGLES = ('"', "*", "_", "`")

SCAN_CHARS = 1000
"""The most text searched for one sentence end. A sentence longer than ``max_chars``
is cut anyway, so looking further only costs time; bounded, every cut is O(1) and
chunking linear (a 250 KB delta with no full stop blocked the loop 12 s when each
cut rescanned and copied the whole buffer). It also bounds the text held back."""
_WORD_LOOKBACK = 64
"""Characters looked back for the word before a full stop: no abbreviation is longer."""


class SentenceChunker:
    """Feed LLM deltas, get sentences ready for TTS (already cleaned for speech).

    ``max_chars``: a sentence longer than this is cut at its last clause boundary
    (or word) so TTS never waits on a run-on sentence.
    ``first_chars``: the first sentence of a reply is cut early, at a clause
    boundary, once it is this long: the listener hears something sooner.
    ``min_clause_chars``: no cut leaves a piece shorter than this (bad prosody).
    """

    def __init__(
        self, *, max_chars: int = 200, first_chars: int = 80, min_clause_chars: int = 20,
    ) -> None:
        self.max_chars = max_chars
        self.first_chars = first_chars
        self.min_clause_chars = min_clause_chars
        self._scan = max(SCAN_CHARS, 2 * max_chars)
        self._buffer = ""
        self._sent_any = False

    def feed(self, delta: str) -> list[str]:
        """Sentences completed by ``delta`` (often none)."""
        self._buffer += delta
        return self._drain(final=False)

    def flush(self) -> list[str]:
        """The rest, at the end of the stream; the chunker is then ready for a new reply."""
        sentences = self._drain(final=True)
        self._buffer = ""
        self._sent_any = False
        return sentences

    @property
    def pending(self) -> str:
        """Text received but not yet returned as a sentence."""
        return self._buffer

    def _drain(self, *, final: bool) -> list[str]:
        sentences: list[str] = []
        text, at = self._buffer, 0
        while True:
            window = text[at:at + self._scan]
            whole = at + len(window) == len(text)
            cut = self._boundary(window, at_end=whole and not final)
            if cut is None:
                cut = self._long_cut(window)
            if cut is None:
                if whole and not (final and window.strip()):
                    break
                cut = len(window)  # the end of the stream, or nothing to cut at in reach
            text_cut = clean_for_speech(window[:cut])
            if speakable(text_cut):
                sentences.append(text_cut)
                self._sent_any = True
            at += cut
            space = _NONSPACE.search(text, at)
            at = space.start() if space is not None else len(text)
        self._buffer = text[at:]
        return sentences

    def _boundary(self, text: str, *, at_end: bool) -> int | None:
        """Index just after the first real sentence end in ``text``, if any; with
        ``at_end`` (nothing follows yet), also one that needs no next word."""
        first = _first_nonspace(text)
        for m in _END.finditer(text):
            if m.group("line") is not None:
                if m.start() > first:
                    return m.end()
                continue
            if m.group("cjk") is not None:
                return m.end()
            if _ends_sentence(text, m.start(), m.group("end"), m.group("next"), first):
                return m.start("space")
        return _certain_end(text) if at_end else None

    def _long_cut(self, text: str) -> int | None:
        """A cut for a sentence too long to wait for its end."""
        limit = self.max_chars if self._sent_any else min(self.first_chars, self.max_chars)
        if len(text.strip()) <= limit:
            return None
        window = text[: self.max_chars]
        clauses = [m.end() for m in _CLAUSE.finditer(window) if m.end() >= self.min_clause_chars]
        if clauses:
            return clauses[-1]
        if len(text.strip()) <= self.max_chars:
            return None  # only the first-sentence rule applies, and it needs a clause
        space = window.rfind(" ", self.min_clause_chars)
        return space if space > 0 else self.max_chars


def _first_nonspace(text: str) -> int:
    found = _NONSPACE.search(text)
    return found.start() if found is not None else len(text)


def _word_before(text: str, at: int) -> str:
    """The word that ends at ``text[at]``, without opening quotes or brackets."""
    head = text[max(0, at - _WORD_LOOKBACK):at]
    return head.rsplit(None, 1)[-1].lstrip(_OPENERS) if head.strip() else ""


def _ends_sentence(text: str, at: int, end: str, following: str, first: int) -> bool:
    """Whether the terminator ``end`` at ``text[at]`` (followed by ``following``) ends
    a sentence; ``first`` is where the sentence's text starts."""
    if "!" in end or "?" in end:
        return True
    word = _word_before(text, at)
    key = word.lower()
    upper_next = following.isupper() or following in "\"'“‘«("
    if following.islower():
        return False  # "approx. five", "e.g. apples", "the U.S. economy"
    if key in _BEFORE_NUMBER:
        return not following.isdigit()  # "No. 5" goes on; "The answer is no." ends
    if key in _NEVER_END or (len(word) == 1 and word.isalpha()):
        return False  # "Dr. Smith", an initial: "J. K. Rowling"
    if key in _MAYBE_END or _DOTTED.fullmatch(word):
        return upper_next
    # A list number opening the sentence ("1. Drink water.") is no sentence of its own.
    return not (word.isdigit() and len(word) <= 3 and at - len(word) <= first)


def _certain_end(text: str) -> int | None:
    """Where ``text`` ends if its last character already ends a sentence, whatever
    comes next: "?" or "!", or "." after a word that is no abbreviation or initial
    ("Paris." and "today." cannot become a decimal, "Dr." and "J." can go on). Not
    inside an open quote or bracket, whose closing mark is still to come."""
    sentence = text.rstrip()
    core = sentence.rstrip(_CLOSERS)
    if not core or not _balanced(sentence):
        return None
    if core[-1] in "?!":
        return len(sentence)
    if core[-1] != "." or core[-2:-1] in (".", "…"):
        return None  # no terminator, or an ellipsis that may go on
    word = _word_before(core, len(core) - 1)
    key = word.lower()
    if (len(word) > 1 and word.isalpha()
            and key not in _NEVER_END and key not in _MAYBE_END and key not in _BEFORE_NUMBER):
        return len(sentence)
    return None


def _balanced(text: str) -> bool:
    """No quote, bracket or emphasis mark left open in ``text``."""
    return (all(text.count(a) == text.count(b) for a, b in _PAIRS)
            and all(text.count(mark) % 2 == 0 for mark in _TOGGLES))
