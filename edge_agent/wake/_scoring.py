"""One wake word's score per 80 ms step, from openWakeWord's classifier or,
where edge-agent ships one, its own head.

The head's vote is the lowest of its last ``sustain`` scores: a true "hey
jarvis" keeps it high for several 80 ms steps, a passing sound-alike in
ordinary speech mostly for one. ``sustain`` comes with the head, chosen on
held-out clips when it was trained (edge_agent/tools/train_wake.py).
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np

from edge_agent.config import wake_model_name
from edge_agent.wake._head import NumpyHead
from edge_agent.wake._models import load_classifier

DETECTION_LAG = {"hey_jarvis": 0.16, "alexa": 0.04, "hey_mycroft": 0.22,
                 "hey_rhasspy": 0.07, "okay_nabu": 0.40}
"""Seconds from the end of the spoken wake phrase to the end of the frame whose
score (openWakeWord's model alone) first crosses 0.5: about the medians over
Piper and espeak-ng voices at several speeds (edge_agent/bench/wake.py
prints them as "lag_s"), rounded down a little: starting the utterance early
only hands STT the wake word's tail (strip_wake_phrase removes it), starting
late clips the command. The detector subtracts the scorer's lag to place
``end_index``; a custom model gets ``DEFAULT_LAG``, a head
the lag measured when it was trained."""
DEFAULT_LAG = 0.16
MICRO_LAG = {"hey_jarvis": 0.15, "alexa": 0.25, "hey_mycroft": 0.13, "okay_nabu": 0.16}
"""The same for microWakeWord's bundled models, rounded down a little from
the medians over Piper's joe voice and the CMU voices of flite and festival
(first passing step after the phrase: hey_jarvis 0.17 s over 11 takes,
alexa 0.27 over 12, hey_mycroft 0.15 over 9, okay_nabu 0.18 over 13)."""


class WakeWordScorer:
    """One classifier's vote: the lowest of its last ``sustain`` scores (1 for
    openWakeWord's models), nothing until it has that many."""

    def __init__(self, model: str, *, head: Path | None = None,
                 engine: str = "openwakeword") -> None:
        """``model`` as in wake.models (a custom head named there keeps its
        sustain too); ``head`` edge-agent's own head (.npz), which then
        scores the wake word instead of openWakeWord's classifier; ``engine``
        what its scores are reported as."""
        self.name = wake_model_name(model)
        self.engine = engine
        self._net, self.windows = load_classifier(str(head) if head else model)
        own = self._net if isinstance(self._net, NumpyHead) else None
        self._recent: deque[float] = deque(maxlen=own.sustain if own else 1)
        self.phased = own is None
        """Whether wake.phases applies: openWakeWord's classifiers, not the
        heads, which were trained at one phase (docs/wake-word.md)."""
        self.lag = (own.lag if own and own.lag is not None
                    else DETECTION_LAG.get(self.name, DEFAULT_LAG))
        """Seconds from the phrase's end to the step it first scores on:
        heads fire sooner than openWakeWord's models."""

    def score(self, embeddings: np.ndarray) -> float:
        """The score of the newest step; ``embeddings`` are the last
        ``windows`` (or more), oldest first."""
        self._recent.append(self.raw(embeddings))
        return min(self._recent) if len(self._recent) == self._recent.maxlen else 0.0

    def raw(self, embeddings: np.ndarray) -> float:
        """The classifier's score of ``embeddings`` (another phase of the
        step), remembering nothing."""
        return float(self._net(embeddings[None, -self.windows:]).reshape(-1)[0])

    def forget(self) -> None:
        """Steps were skipped (idle gate, reset): the next ones start afresh."""
        self._recent.clear()
