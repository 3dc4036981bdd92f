"""Cutting sentences into bounded pieces for Piper and joining their audio."""

from __future__ import annotations

import random

import numpy as np
import pytest

from edge_agent.offline.pieces import (
    MAX_PIECE_PHONEMES,
    SILENT,
    WORD_GAP_SECONDS,
    join_pieces,
    sentence_pcm,
    split_phonemes,
)

RATE = 1000


def split(text: str, limit: int) -> list[str]:
    return ["".join(p) for p in split_phonemes(list(text), limit)]


def test_a_short_sentence_is_one_piece() -> None:
    assert split("hˈɛloʊ.", MAX_PIECE_PHONEMES) == ["hˈɛloʊ."]
    assert split("", 8) == []


def test_cuts_fall_at_the_last_clause_end_that_fits() -> None:
    assert split("ab, cd; ef gh ij", 11) == ["ab, cd;", "ef gh ij"]
    assert split("ab: cdefgh ijkl", 10) == ["ab:", "cdefgh", "ijkl"]


def test_without_a_clause_end_cuts_fall_between_words_in_even_shares() -> None:
    # Greedy would leave "k" alone at the end; even shares do not.
    assert split("abcdefgh ij k", 11) == ["abcdefgh", "ij k"]


def test_a_word_longer_than_a_piece_is_cut_inside() -> None:
    assert split("abcdefghij", 4) == ["abcd", "efgh", "ij"]


def test_a_piece_needs_room() -> None:
    with pytest.raises(ValueError, match="room"):
        split_phonemes(list("ab"), 0)


def test_every_phoneme_is_kept_and_no_piece_is_over_the_limit() -> None:
    rng = random.Random(7)
    for _ in range(500):
        text = "".join(rng.choice("abcˈ, ;.") for _ in range(rng.randrange(0, 120)))
        limit = rng.randrange(1, 40)
        pieces = split_phonemes(list(text), limit)
        assert all(0 < len(p) <= limit for p in pieces)
        # Only the spaces cuts fall on are dropped.
        assert "".join("".join(p) for p in pieces).replace(" ", "") == text.replace(" ", "")


def tone(seconds: float, pad: tuple[float, float]) -> np.ndarray:
    """Piper-like output: silence, a sound that is never silent, silence."""
    body = 0.3 + 0.2 * np.sin(np.arange(int(seconds * RATE)) * 0.3)
    return np.concatenate([np.zeros(int(pad[0] * RATE)), body,
                           np.zeros(int(pad[1] * RATE))]).astype(np.float32)


def silent_runs(audio: np.ndarray) -> list[int]:
    """Lengths of the silent stretches between sounds."""
    loud = np.flatnonzero(np.abs(audio) >= SILENT)
    return [int(n) - 1 for n in np.diff(loud) if n > 1]


def test_joins_between_words_lose_piper_s_padding_and_clause_ends_keep_their_pause() -> None:
    parts = [tone(1.0, (0.05, 0.2)) for _ in range(3)]
    pieces = [list("ab cd"), list("ef,"), list("gh.")]
    joined = join_pieces(parts, pieces, RATE)
    word_gap = sum(int(s * RATE) for s in WORD_GAP_SECONDS)
    gaps = silent_runs(joined)
    assert len(gaps) == 2
    assert gaps[0] <= word_gap  # "cd" to "ef": a gap between words, not a pause
    assert gaps[1] == int(0.25 * RATE)  # after "ef,": the pause Piper made
    # Nothing but padding is lost, and the trimmed edges fade: no step, no click.
    assert len(joined) == sum(map(len, parts)) - (int(0.25 * RATE) - word_gap)
    assert np.max(np.abs(np.diff(joined))) <= np.max(np.abs(np.diff(parts[0]))) + 1e-6


def test_one_piece_or_none_is_left_as_it_is() -> None:
    part = tone(0.5, (0.1, 0.1))
    assert np.array_equal(join_pieces([part], [list("ab")], RATE), part)
    assert join_pieces([], [], RATE).size == 0


def test_a_sentence_is_scaled_by_its_own_peak() -> None:
    quiet_then_loud = np.array([0.1, -0.2, 0.4], dtype=np.float32)
    pcm = np.frombuffer(sentence_pcm(quiet_then_loud), dtype=np.int16)
    assert pcm.tolist() == [8191, -16383, 32767]
    assert sentence_pcm(np.zeros(3, dtype=np.float32)) == bytes(6)
    assert sentence_pcm(np.zeros(0, dtype=np.float32)) == b""
