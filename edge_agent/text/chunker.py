"""Sentence chunking of a streamed reply, so TTS starts on the first sentence
while the model is still writing the rest.

A "." ends a sentence only once the next word is seen: "3." may become "3.5",
"Dr." is followed by a name, "U.S." may or may not end a sentence, "1." opens a
list item. That costs one token of latency (the next word usually arrives in
the same delta as the space) and saves reading "Doctor" as a whole sentence.
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
                        "u.s", "u.k", "u.n", "e.u", "jan", "feb", "mar", "apr", "jun", "jul",
                        "aug", "sep", "sept", "oct", "nov", "dec", "mon", "tue", "wed", "thu",
                        "fri", "sat", "sun"})
# Abbreviations before a number ("No. 5", "Fig. 2"); otherwise ordinary words ("no.").
_BEFORE_NUMBER = frozenset({"no", "nos", "fig", "vol", "p", "pp", "ch", "sec", "art"})
_DOTTED = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]")  # U.S, e.g, a.m, i.e

_END = re.compile(
    r"(?P<end>[.!?…]+[\"'”’»)\]*_`]*)(?P<space>\s+)(?P<next>\S)"  # ". Next" (needs the next)
    r"|(?P<cjk>[。！？]+)"                                        # CJK ends need no space
    r"|(?P<line>\n)"                                              # a new line or list item
)
_CLAUSE = re.compile(r"(?:[,;:]|\s[-–—])(?=\s)")  # , ; : or a spaced dash, before a space
_OPENERS = "\"'“‘«([*_"


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
        while True:
            cut = self._boundary()
            if cut is None:
                cut = self._long_cut()
            if cut is None:
                if final and self._buffer.strip():
                    cut = len(self._buffer)
                else:
                    return sentences
            piece, self._buffer = self._buffer[:cut], self._buffer[cut:].lstrip()
            text = clean_for_speech(piece)
            if speakable(text):
                sentences.append(text)
                self._sent_any = True

    def _boundary(self) -> int | None:
        """Index just after the first real sentence end in the buffer, if any."""
        text = self._buffer
        for m in _END.finditer(text):
            if m.group("line") is not None:
                if text[: m.start()].strip():
                    return m.end()
                continue
            if m.group("cjk") is not None:
                return m.end()
            if _ends_sentence(text, m.start(), m.group("end"), m.group("next")):
                return m.start("space")
        return None

    def _long_cut(self) -> int | None:
        """A cut for a sentence too long to wait for its end."""
        text = self._buffer
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


def _ends_sentence(text: str, at: int, end: str, following: str) -> bool:
    """Whether the terminator ``end`` at ``text[at]`` (followed by ``following``) ends
    a sentence."""
    if "!" in end or "?" in end:
        return True
    before = text[:at]
    word = before.rsplit(None, 1)[-1].lstrip(_OPENERS) if before.strip() else ""
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
    return not (word.isdigit() and len(word) <= 3
                and not before[: len(before) - len(word)].strip())
