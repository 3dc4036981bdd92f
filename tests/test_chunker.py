"""SentenceChunker: sentences out as soon as they are complete, never split on
decimals, abbreviations, list numbers or times; long sentences cut at clauses."""

from __future__ import annotations

import random
import re
import time

import pytest

from edge_agent.text import SentenceChunker


def stream(text: str, chunker: SentenceChunker | None = None) -> list[str]:
    """Feed ``text`` as a model streams it (a word and its leading space a delta)."""
    chunker = chunker or SentenceChunker()
    out: list[str] = []
    for delta in re.findall(r"\s*\S+|\s+$", text):
        out += chunker.feed(delta)
    return out + chunker.flush()


def by_char(text: str) -> list[str]:
    """Character by character, except a run of terminators ("?!", "..."): tokenizers
    keep those in one token, and a "?" alone is flushed at once."""
    chunker = SentenceChunker()
    out = [s for ch in re.findall(r"[.!?…]+|.", text, re.DOTALL) for s in chunker.feed(ch)]
    return out + chunker.flush()


def at_once(text: str) -> list[str]:
    chunker = SentenceChunker()
    return chunker.feed(text) + chunker.flush()


CASES = [
    ("Hello there. How are you?", ["Hello there.", "How are you?"]),
    ("It is 3.5 degrees outside. Wear a coat.", ["It is 3.5 degrees outside.", "Wear a coat."]),
    ("Pi is about 3.14159 and e is about 2.718.", ["Pi is about 3.14159 and e is about 2.718."]),
    ("Version 2.0 is out. Update now!", ["Version 2.0 is out.", "Update now!"]),
    ("It costs $3.50. That is cheap.", ["It costs $3.50.", "That is cheap."]),
    ("Dr. Smith will see you. Mr. Jones will not.",
     ["Dr. Smith will see you.", "Mr. Jones will not."]),
    ("Mrs. Brown and Ms. Green met Prof. Plum. They talked.",
     ["Mrs. Brown and Ms. Green met Prof. Plum.", "They talked."]),
    ("Eat fruit, e.g. apples or pears. Or i.e. anything sweet.",
     ["Eat fruit, e.g. apples or pears.", "Or i.e. anything sweet."]),
    ("Bring fruit, e.g. Apples. Then rest.", ["Bring fruit, e.g. Apples.", "Then rest."]),
    ("The U.S. economy is large. It grew.", ["The U.S. economy is large.", "It grew."]),
    ("I live in the U.S. It is big.", ["I live in the U.S.", "It is big."]),
    ("Meet at 10:30. Bring snacks.", ["Meet at 10:30.", "Bring snacks."]),
    ("See you at 10 a.m. tomorrow. Bye.", ["See you at 10 a.m. tomorrow.", "Bye."]),
    ("The shop opens at 9 a.m. Come early.", ["The shop opens at 9 a.m.", "Come early."]),
    ("Apples, pears, etc. are fruit. Bananas too.",
     ["Apples, pears, etc. are fruit.", "Bananas too."]),
    ("I like apples, pears, etc. They are sweet.",
     ["I like apples, pears, etc.", "They are sweet."]),
    ("It's Apple vs. Google today. Who wins?", ["It's Apple vs. Google today.", "Who wins?"]),
    ("J. K. Rowling wrote it. Read it.", ["J. K. Rowling wrote it.", "Read it."]),
    ("The value is approx. five. Good.", ["The value is approx. five.", "Good."]),
    ("1. Drink water. 2. Sleep well. 3. Eat.", ["Drink water.", "Sleep well.", "Eat."]),
    ("Here are tips:\n1. Drink water.\n2. Sleep well.\n",
     ["Here are tips:", "Drink water.", "Sleep well."]),
    ("Steps:\n- Open the door\n- Walk in\n", ["Steps:", "Open the door", "Walk in"]),
    ("There are 3. Three is enough.", ["There are 3.", "Three is enough."]),
    ('He said "Hi." Then he left.', ['He said "Hi."', "Then he left."]),
    ("Is it raining (or not?) Maybe.", ["Is it raining (or not?)", "Maybe."]),
    ("Really?! Yes. Wow!", ["Really?!", "Yes.", "Wow!"]),
    ("Wait... what?", ["Wait... what?"]),
    ("**Bold** move. _Nice_ one.", ["Bold move.", "Nice one."]),
    ("Great job! 🎉🎉 See you soon 😀.", ["Great job!", "See you soon."]),
    ("# Weather\nIt is sunny.", ["Weather", "It is sunny."]),
    ("Check [the docs](https://example.com/a.b) today. Done.", ["Check the docs today.",
                                                               "Done."]),
    ("你好。今天天气很好。", ["你好。", "今天天气很好。"]),
    ("No terminator at all", ["No terminator at all"]),
    ("Trailing space. ", ["Trailing space."]),
    ("The answer is no. Sorry about that.", ["The answer is no.", "Sorry about that."]),
    ("See No. 5 on the list. Done.", ["See No. 5 on the list.", "Done."]),
    ("It takes 5 min. Then rest.", ["It takes 5 min.", "Then rest."]),
    ("**Note.** Then go.", ["Note.", "Then go."]),
    ("It opens on Jan. 5 at noon. Be there.", ["It opens on Jan. 5 at noon.", "Be there."]),
    ("", []),
    ("🎉", []),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0][:30] for c in CASES])
def test_sentences(text: str, expected: list[str]) -> None:
    assert stream(text) == expected


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0][:30] for c in CASES])
def test_sentences_do_not_depend_on_how_deltas_are_cut(text: str, expected: list[str]) -> None:
    assert by_char(text) == expected
    assert at_once(text) == expected


def test_a_sentence_comes_out_while_the_stream_goes_on() -> None:
    chunker = SentenceChunker()
    assert chunker.feed("Hello") == []
    assert chunker.feed(" it is 3.") == []  # "3." might yet become "3.5"
    assert chunker.feed(" How") == ["Hello it is 3."]
    assert chunker.pending == "How"
    assert chunker.feed(" are you?") == ["How are you?"]  # "?" needs no next word
    assert chunker.feed(" Fine") == []
    assert chunker.flush() == ["Fine"]
    assert chunker.pending == ""


def test_not_word_by_word() -> None:
    chunker = SentenceChunker()
    assert [chunker.feed(w) for w in ("The", " cat", " sat", " on", " the", " mat")] == [[]] * 6
    assert chunker.flush() == ["The cat sat on the mat"]


def test_several_sentences_in_one_delta() -> None:
    chunker = SentenceChunker()
    assert chunker.feed("One. Two! Three? Fo") == ["One.", "Two!", "Three?"]
    assert chunker.flush() == ["Fo"]


def test_a_new_line_ends_a_piece_at_once() -> None:
    chunker = SentenceChunker()
    assert chunker.feed("Shopping list:\n") == ["Shopping list:"]


LONG = ("The museum, which was founded in the nineteenth century by a group of wealthy "
        "merchants, holds paintings, sculptures and manuscripts from all over the world; "
        "its east wing, rebuilt after the war, is now devoted to modern art, photography "
        "and design, and it welcomes more than a million visitors every single year")


def test_an_over_long_sentence_is_cut_at_clauses() -> None:
    assert len(LONG) > 300
    pieces = stream(LONG + ". Next.")
    assert pieces[-1] == "Next."
    assert all(len(p) <= 200 for p in pieces)
    assert len(pieces) >= 3
    assert _words(" ".join(pieces[:-1])) == _words(LONG)
    rest = LONG
    for piece in pieces[:-2]:  # each cut falls right after a clause mark
        start = rest.index(piece.split()[0])
        end = rest.index(piece.split()[-1], start) + len(piece.split()[-1])
        assert rest[end] in ",;:", piece
        rest = rest[end + 1:]


def test_a_long_sentence_without_clauses_is_cut_between_words() -> None:
    text = " ".join(f"Word{n}" for n in range(80)) + "."
    pieces = stream("Hi. " + text)
    assert pieces[0] == "Hi."
    assert all(len(p) <= 200 for p in pieces)
    assert _words(" ".join(pieces[1:])) == _words(text)


def test_the_first_sentence_is_cut_early_at_a_clause() -> None:
    text = ("The weather in Paris today is mostly sunny with a few clouds in the afternoon, "
            "and a high of twenty degrees, so bring a light jacket if you go out tonight.")
    chunker = SentenceChunker(first_chars=80)
    early: list[str] = []
    for delta in re.findall(r"\s*\S+", text):
        early += chunker.feed(delta)
        if early:
            break
    assert early == ["The weather in Paris today is mostly sunny with a few clouds in the "
                     "afternoon"]
    assert chunker.pending == "and"


def test_only_the_first_sentence_is_cut_early() -> None:
    second = ("Later this week the temperature drops a little, with rain on Thursday and "
              "strong winds along the coast.")
    assert 80 < len(second) < 200
    assert stream("Hello. " + second) == ["Hello.", second]


def test_a_short_opening_clause_is_not_cut_off() -> None:
    text = ("Sure, the quick brown fox jumps over the lazy dog and then keeps running "
            "through the forest until nightfall comes.")
    assert stream(text)[0].startswith("Sure, the quick")


def test_flush_starts_a_new_reply() -> None:
    chunker = SentenceChunker(first_chars=40)
    stream("Hello there. All good.", chunker)
    text = "This sentence is long enough, so it gets cut early on."
    assert stream(text, chunker) == ["This sentence is long enough", "so it gets cut early on."]


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text)


PROSE = [
    "Dr. Smith arrived at 10:30 a.m. with 3.5 kilos of apples, e.g. Gala and Fuji. "
    "She paid $4.20. Was it enough? Yes! The U.S. market, however, is larger.",
    LONG + ". " + LONG + "!",
    "First, mix the flour; then add water. Bake for 20 min. Done.",
]


@pytest.mark.parametrize("seed", range(20))
def test_no_word_is_lost_however_the_stream_is_cut(seed: int) -> None:
    rng = random.Random(seed)
    for text in PROSE:
        chunker = SentenceChunker(first_chars=rng.choice([40, 80, 200]))
        out: list[str] = []
        at = 0
        while at < len(text):
            step = rng.randint(1, 12)
            out += chunker.feed(text[at:at + step])
            at += step
        out += chunker.flush()
        assert _words(" ".join(out)) == _words(text)
        assert all(len(s) <= chunker.max_chars for s in out)


@pytest.mark.parametrize(("delta", "expected"), [
    ("The capital of France is Paris.", ["The capital of France is Paris."]),
    ("Is it far?", ["Is it far?"]),
    ("What a view!", ["What a view!"]),
    ('He said "Go to Rome."', ['He said "Go to Rome."']),
    ("I met Mr. Smith.", ["I met Mr. Smith."]),
    ("It is late.", ["It is late."]),
    ("It is sunny and warm today.", ["It is sunny and warm today."]),
    # Ambiguous until the next word: wait as before.
    ("Call Dr.", []), ("It is 3.", []), ("Eat fruit, e.g.", []), ("Born in the U.S.", []),
    ("Written by J.", []), ("Wait...", []), ("Sold at a loss, approx.", []),
    ('He said "Go to Rome.', []), ("It is far (is it?", []), ("See No.", []),
    ("Open at 9 a.m.", []), ("1.", []),
])
def test_a_certain_end_goes_without_waiting_for_the_next_word(
        delta: str, expected: list[str]) -> None:
    chunker = SentenceChunker()
    assert chunker.feed(delta) == expected
    if expected:
        assert chunker.feed(" and") == []  # nothing was held back


def test_a_dot_that_goes_on_comes_in_its_continuation_s_token() -> None:
    """"example.com" streams as "example" then ".com": no end is taken early."""
    chunker = SentenceChunker()
    assert [chunker.feed(d) for d in ("Visit", " example", ".com", " for", " more", ".")] == [
        [], [], [], [], [], ["Visit example.com for more."]]


def test_a_token_after_an_early_end_starts_the_next_sentence() -> None:
    chunker = SentenceChunker()
    assert [chunker.feed(d) for d in ("It is in", " Paris", ".", " The", " end", ".")] == [
        [], [], ["It is in Paris."], [], [], ["The end."]]
    assert chunker.flush() == []


@pytest.mark.parametrize("unit", ["word ", "a", "Dr. ", ".", "1. ", "**a ", " "])
def test_chunking_is_linear_and_holds_back_little(unit: str) -> None:
    """A hostile stream (no sentence end for 256 KB, abbreviations, dots) costs time
    in proportion to its length, and what waits for a sentence end is bounded."""
    from edge_agent.text.chunker import SCAN_CHARS

    def per_char(size: int) -> float:
        text = (unit * (size // len(unit) + 1))[:size]
        chunker = SentenceChunker()
        start = time.perf_counter()
        pieces = chunker.feed(text)
        assert len(chunker.pending) <= SCAN_CHARS
        pieces += chunker.flush()
        took = time.perf_counter() - start
        assert all(len(p) <= SCAN_CHARS for p in pieces)
        return took / size

    small = min(per_char(16_000) for _ in range(3))
    large = per_char(256_000)
    print(f"{unit!r}: {small * 1e6:.2f} us/char at 16 KB, {large * 1e6:.2f} at 256 KB")
    # Linear: about 1; rescanning the buffer per cut made it 16 and more.
    assert large < 5 * small + 2e-6
