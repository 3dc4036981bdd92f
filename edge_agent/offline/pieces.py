"""Cutting a sentence's phonemes into pieces Piper can voice in bounded memory.

Piper's decoder holds about 1 MB per phoneme (about 18 MB per second of speech)
while it voices one input, so a 10 s sentence in one call grew the daemon by
190 MB. Voiced piece by piece, the working memory is that of the longest piece.
Pieces end where the speaker would pause anyway (a comma, colon or semicolon),
else between words, so the joins are not heard.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_PIECE_PHONEMES = 32
"""Phonemes per Piper call: about 1.8 s of speech and +37 MB while it is made
(measured on the joe voice: +5 MB plus 1 MB per phoneme)."""

CLAUSE_ENDS = frozenset(",;:")
"""Phonemes after which a speaker pauses mid-sentence (espeak keeps them, with a space)."""

SILENT = 0.01
"""Piper's raw output below this (its peaks are 0.3 to 0.8) is the silence it
pads every input with."""

WORD_GAP_SECONDS = (0.03, 0.02)
"""Silence kept after a piece and before the next where a cut fell between
words: Piper pads each input with 0.1-0.25 s at its end and 0.03-0.07 s at its
start, a pause no speaker makes between two words of a phrase."""

FADE_SECONDS = 0.005
"""Fade over a trimmed edge, so what is left of the padding cannot click."""


def split_phonemes(phonemes: Sequence[str],
                   limit: int = MAX_PIECE_PHONEMES) -> list[list[str]]:
    """One sentence's phonemes as pieces of at most ``limit``: cut at the last
    clause end that fits, else between words near an even share of what is left
    (no stub of a word or two at the end), else, inside a word longer than the
    limit, at the limit. The space a cut falls on is dropped."""
    if limit < 1:
        raise ValueError(f"a piece needs room for a phoneme, not {limit}")
    pieces: list[list[str]] = []
    rest = list(phonemes)
    while len(rest) > limit:
        gaps = [i for i in range(1, min(limit, len(rest) - 1) + 1) if rest[i] == " "]
        clauses = [i for i in gaps if rest[i - 1] in CLAUSE_ENDS]
        if clauses:
            cut = clauses[-1]
        elif gaps:
            share = len(rest) / -(-len(rest) // limit)  # even pieces, none over the limit
            cut = min(gaps, key=lambda i: abs(i - share))
        else:
            pieces.append(rest[:limit])
            rest = rest[limit:]
            continue
        pieces.append(rest[:cut])
        rest = rest[cut + 1:]
    if rest:
        pieces.append(rest)
    return pieces


def cut_between_words(piece: Sequence[str]) -> bool:
    """Whether a piece (not the sentence's last) ends inside a phrase, where
    the speaker would not pause."""
    return bool(piece) and piece[-1] not in CLAUSE_ENDS


def join_pieces(parts: Sequence[np.ndarray], pieces: Sequence[Sequence[str]],
                rate: int) -> np.ndarray:
    """One sentence's float audio from its pieces' audio: where a cut fell
    between words, the padding on both sides of the join is trimmed to
    WORD_GAP_SECONDS; a clause end keeps its pause."""
    tail, head = (int(rate * s) for s in WORD_GAP_SECONDS)
    fade = max(1, int(rate * FADE_SECONDS))
    out = [np.asarray(a, dtype=np.float32) for a in parts]
    for i in range(len(out) - 1):
        if not cut_between_words(pieces[i]):
            continue
        before, after = out[i], out[i + 1]
        loud = np.flatnonzero(np.abs(before) >= SILENT)
        if loud.size:
            end = min(len(before), loud[-1] + 1 + tail)
            if end < len(before):
                before = before[:end].copy()
                before[-fade:] *= np.linspace(1.0, 0.0, min(fade, end), dtype=np.float32)
        loud = np.flatnonzero(np.abs(after) >= SILENT)
        if loud.size:
            start = max(0, loud[0] - head)
            if start > 0:
                after = after[start:].copy()
                after[:fade] *= np.linspace(0.0, 1.0, min(fade, len(after)), dtype=np.float32)
        out[i], out[i + 1] = before, after
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def sentence_pcm(audio: np.ndarray) -> bytes:
    """int16 PCM of one sentence, scaled as Piper scales a sentence: its peak
    to full scale. Per sentence, not per piece, so a quiet piece is not raised
    above its neighbours."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak < 1e-8:
        return bytes(2 * audio.size)
    return (np.clip(audio / peak, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
