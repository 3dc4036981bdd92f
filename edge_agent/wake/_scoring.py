"""One wake word's score per 80 ms step, from openWakeWord's classifier and,
where edge-agent ships one, a second head.

The head's vote is the lowest of its last ``sustain`` scores: a true "hey
jarvis" keeps it high for several 80 ms steps, a passing sound-alike in
ordinary speech mostly for one. ``sustain`` comes with the head, chosen on
held-out clips when it was trained (tests/bench/train_wake.py).
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np

from edge_agent.config import wake_model_name
from edge_agent.wake._head import NumpyHead
from edge_agent.wake._models import embeddings_read, load_classifier


class WakeWordScorer:
    def __init__(self, model: str, *, head: Path | None = None) -> None:
        """``model`` as in wake.models; ``head`` a second head's .npz."""
        self.name = wake_model_name(model)
        self._primary, self._primary_windows = load_classifier(model)
        self._head = NumpyHead(head) if head is not None else None
        self._head_windows = embeddings_read(self._head) if self._head is not None else 0
        sustain = self._head.sustain if self._head is not None else 1
        self._head_recent: deque[float] = deque(maxlen=sustain)
        self.windows = max(self._primary_windows, self._head_windows)

    def score(self, embeddings: np.ndarray) -> float:
        """The score of the newest step; ``embeddings`` are the last
        ``windows`` (or more), oldest first."""
        primary = float(self._primary(embeddings[None, -self._primary_windows:]).reshape(-1)[0])
        if self._head is None:
            return primary
        head = float(self._head(embeddings[None, -self._head_windows:]).reshape(-1)[0])
        self._head_recent.append(head)
        if len(self._head_recent) < self._head_recent.maxlen:
            return primary
        return max(primary, min(self._head_recent))

    def forget(self) -> None:
        """Steps were skipped (idle gate, reset): the next ones start afresh."""
        self._head_recent.clear()
