"""What an owner who says "it doesn't hear me" needs to see: each engine's
recent peak score and the near misses, scores that came within ``MARGIN`` of
the threshold without passing it.

A near miss is counted once per burst: from the step a score rises into the
margin until it falls out of it again, keeping the burst's peak.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass

MARGIN = 0.1
"""How far below its threshold a peak still counts as a near miss."""
KEPT = 20
"""Near misses remembered (the newest)."""
PEAK_WINDOW = 60.0
"""Seconds of audio over which ``peaks`` reports each engine's highest score."""


@dataclass(frozen=True)
class NearMiss:
    model: str
    engine: str
    score: float
    threshold: float
    at: float
    """Wall-clock time (Unix seconds) of the burst's peak."""

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "score": round(self.score, 3), "at": round(self.at, 1)}


class WakeDiagnostics:
    """Fed one score per engine and model every step; cheap (a few compares)."""

    def __init__(self, step_seconds: float) -> None:
        self._steps = max(1, round(PEAK_WINDOW / step_seconds))
        self._history: dict[tuple[str, str], deque[float]] = {}
        self._burst: dict[tuple[str, str], tuple[float, float]] = {}
        self.near_misses: deque[NearMiss] = deque(maxlen=KEPT)
        self._unreported: list[NearMiss] = []

    def observe(self, model: str, engine: str, score: float,
                threshold: float) -> NearMiss | None:
        """Record a step's score; returns a near miss when its burst just ended."""
        key = (model, engine)
        self._history.setdefault(key, deque(maxlen=self._steps)).append(score)
        floor = threshold - MARGIN
        burst = self._burst.get(key)
        if score >= floor:
            if burst is None or score > burst[0]:
                self._burst[key] = (score, time.time())
            return None
        if burst is None:
            return None
        del self._burst[key]
        peak, at = burst
        if peak >= threshold:
            return None
        miss = NearMiss(model, engine, peak, threshold, at)
        self.near_misses.append(miss)
        self._unreported = [*self._unreported[-KEPT + 1:], miss]
        return miss

    def unreported(self) -> list[NearMiss]:
        """Near misses since the last call (for the event log), newest last."""
        out, self._unreported = self._unreported, []
        return out

    def fired(self, model: str) -> None:
        """A detection ends every burst of that wake word: it was heard."""
        for key in [k for k in self._burst if k[0] == model]:
            del self._burst[key]

    def peaks(self) -> dict[str, dict[str, float]]:
        """model -> engine -> highest score over the last ``PEAK_WINDOW`` s."""
        out: dict[str, dict[str, float]] = {}
        for (model, engine), scores in self._history.items():
            out.setdefault(model, {})[engine] = round(max(scores, default=0.0), 3)
        return out

    def to_dict(self) -> dict[str, object]:
        return {"peaks": self.peaks(),
                "near_misses": [m.to_dict() for m in self.near_misses]}
