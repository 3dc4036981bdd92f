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
from edge_agent.wake._models import Classifier, load_classifier


class _Vote:
    """One classifier's vote: the lowest of its last ``sustain`` scores (1 for
    openWakeWord's models), nothing until it has that many."""

    def __init__(self, net: Classifier, windows: int) -> None:
        self._net, self.windows = net, windows
        self._recent: deque[float] = deque(
            maxlen=net.sustain if isinstance(net, NumpyHead) else 1)

    def __call__(self, embeddings: np.ndarray) -> float:
        self._recent.append(float(self._net(embeddings[None, -self.windows:]).reshape(-1)[0]))
        return min(self._recent) if len(self._recent) == self._recent.maxlen else 0.0

    def forget(self) -> None:
        self._recent.clear()


class WakeWordScorer:
    def __init__(self, model: str, *, head: Path | None = None) -> None:
        """``model`` as in wake.models (a custom head named there keeps its
        sustain too); ``head`` a second head's .npz."""
        self.name = wake_model_name(model)
        self._votes = [_Vote(*load_classifier(model))]
        if head is not None:
            self._votes.append(_Vote(*load_classifier(str(head))))
        self.windows = max(vote.windows for vote in self._votes)

    def score(self, embeddings: np.ndarray) -> float:
        """The score of the newest step, the higher vote; ``embeddings`` are
        the last ``windows`` (or more), oldest first."""
        return max([vote(embeddings) for vote in self._votes])

    def forget(self) -> None:
        """Steps were skipped (idle gate, reset): the next ones start afresh."""
        for vote in self._votes:
            vote.forget()
