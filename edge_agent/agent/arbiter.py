"""Who answers a wake word when several speakers heard it: the agent asks an
arbiter before it starts a wake-word turn. Alone (no broker, no group) the
answer is always yes, at once; edge_agent.mqtt's group arbiter asks the others.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from edge_agent.audio import RingBuffer
    from edge_agent.wake import WakeDetection

PHRASE_SECONDS = 1.0
"""Audio before a detection's end taken as the phrase: "hey jarvis" is about that long."""
SILENT_DBFS = -120.0
"""The level of digital silence (a muted ring, an empty range)."""


class WakeArbiter(Protocol):
    async def answer(self, detection: WakeDetection, *, level_dbfs: float,
                     heard_at: float, engaged: bool) -> bool:
        """True when this speaker should answer ``detection``: its phrase was
        ``level_dbfs`` loud and its last frame captured at monotonic ``heard_at``
        (before the detector's own delay). ``engaged``: this speaker is in a
        conversation, so the wake word is a barge-in meant for it."""
        ...


class AnswerAlways:
    """The arbiter of a lone speaker: every wake word is its own, without delay."""

    async def answer(self, detection: WakeDetection, *, level_dbfs: float,
                     heard_at: float, engaged: bool) -> bool:
        return True


def phrase_level_dbfs(ring: RingBuffer, end_index: int) -> float:
    """RMS level (dBFS) of the second of audio before ``end_index``: the speaker
    nearest the talker hears the phrase loudest, whatever the wake score says."""
    start = max(ring.oldest, end_index - int(PHRASE_SECONDS * ring.rate))
    end = min(end_index, ring.total)
    if end <= start:
        return SILENT_DBFS
    audio = ring.read_range(start, end).astype(np.float64) / 32768.0
    rms = math.sqrt(float(np.mean(audio * audio)))
    return max(SILENT_DBFS, 20.0 * math.log10(rms)) if rms > 0 else SILENT_DBFS
