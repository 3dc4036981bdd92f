"""The wake-word detector: openWakeWord's models on 80 ms frames, with the
guards a speaker needs around them (per-model thresholds, warm-up after a
reset, a refractory period, a stricter threshold while playing) and an idle
gate that skips the neural nets while nobody speaks.

A bundled wake word with a head of edge-agent's own (``wake.own_head``) is
scored by that head instead of openWakeWord's classifier (_scoring.py): the
model was trained on one family of voices, the head on others and in noise.
Both read the same embeddings. On held-out speech, taking the higher of the
two missed more takes at the same false wakes than the head alone: the
model's own false wakes cost more than the takes it alone caught."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from edge_agent.config import WakeSettings, wake_model_name
from edge_agent.errors import ModelError
from edge_agent.vad._webrtc import VoiceActivity
from edge_agent.wake._features import CHUNK, StreamingFeatures
from edge_agent.wake._models import bundled_head
from edge_agent.wake._scoring import WakeWordScorer

log = logging.getLogger(__name__)

RATE = 16000

GATE_AGGRESSIVENESS = 0
"""webrtcvad mode of the idle gate: the most permissive, so the gate only ever
closes on audio that surely holds no voice."""

EMBEDDING_SPAN = 12400
"""Samples behind one embedding: 76 mel frames, 160 apart, 400 wide (0.775 s)."""


@dataclass(frozen=True)
class WakeDetection:
    model: str
    """"hey_jarvis", or a custom model's file stem."""
    score: float
    end_index: int
    """Absolute sample index where the wake phrase is estimated to end."""


class WakeDetector:
    """openWakeWord on a 16 kHz int16 stream fed in 80 ms frames.

    ``process`` is CPU-bound (about a millisecond per frame on x86, a few on a
    Pi): call it from a worker thread, never on the event loop. Not
    thread-safe: one caller at a time.
    """

    FRAME_SAMPLES = CHUNK

    def __init__(self, settings: WakeSettings, *, gate: bool = True) -> None:
        """``gate=False`` runs the nets on every frame (benchmarks)."""
        if not settings.models:
            raise ModelError("no wake-word model configured (wake.models is empty)")
        self.settings = settings
        self.model_names = [wake_model_name(m) for m in settings.models]
        self._words = [WakeWordScorer(m, head=bundled_head(m) if settings.own_head else None)
                       for m in settings.models]
        windows = max(word.windows for word in self._words)
        self._features = StreamingFeatures(windows)
        # 20 ms frames tile an 80 ms chunk exactly.
        self._gate = VoiceActivity(GATE_AGGRESSIVENESS, frame_ms=20) if gate else None
        # The gate stays open while the audio the classifiers look at (16
        # embeddings for the bundled models: ~2 s) still holds a voiced frame.
        self._gate_hold = (windows - 1) * CHUNK + EMBEDDING_SPAN
        self._thresholds = {name: settings.thresholds.get(name, settings.threshold)
                            for name in self.model_names}
        self._playing = False
        self._pending = np.zeros(0, dtype=np.int16)
        self.last_scores: dict[str, float] = {}
        """Each model's score on the last 80 ms step (0.0 while the gate is closed)."""
        self.reset()

    def reset(self) -> None:
        """Forget all audio; detections stay suppressed for ``warmup_seconds``."""
        self._features.reset()
        self._pending = np.zeros(0, dtype=np.int16)
        self._warmup_left = int(self.settings.warmup_seconds * RATE)
        self._refractory_until: dict[str, int] = {}
        self._voice_quiet = self._gate_hold  # as if the last voice was long ago
        if self._gate is not None:
            self._gate.reset()
        self._unscored()

    def set_playing(self, playing: bool) -> None:
        """While the speaker talks, require ``playback_threshold`` (or a higher
        per-model threshold) so its own voice does not wake it."""
        self._playing = playing

    def threshold(self, model: str) -> float:
        base = self._thresholds[model]
        return max(base, self.settings.playback_threshold) if self._playing else base

    def process(self, frame: np.ndarray, end_index: int) -> WakeDetection | None:
        """Feed audio ending at absolute sample ``end_index``. Frames of any
        length work (leftovers wait for the next call); 1280 is the natural one."""
        audio = np.concatenate([self._pending, frame]) if len(self._pending) else frame
        whole = len(audio) - len(audio) % CHUNK
        self._pending = audio[whole:].copy()
        first_end = end_index - len(self._pending) - whole + CHUNK
        found: WakeDetection | None = None
        for i, start in enumerate(range(0, whole, CHUNK)):
            detection = self._step(audio[start:start + CHUNK], first_end + i * CHUNK)
            found = found or detection
        return found

    def _step(self, chunk: np.ndarray, end_index: int) -> WakeDetection | None:
        self._features.push(chunk)
        self._warmup_left = max(0, self._warmup_left - CHUNK)
        if not self._gate_open(chunk):
            self._unscored()
            return None
        embeddings = self._features.embeddings()
        best: WakeDetection | None = None
        for word in self._words:
            name, score = word.name, word.score(embeddings)
            self.last_scores[name] = score
            if score < self.threshold(name) or self._warmup_left:
                continue
            if end_index < self._refractory_until.get(name, 0):
                continue
            if best is None or score > best.score:
                best = WakeDetection(name, score, max(0, end_index - round(word.lag * RATE)))
        if best is not None:
            self._refractory_until[best.model] = (
                end_index + int(self.settings.refractory_seconds * RATE))
            log.info("wake word %s (score %.2f)", best.model, best.score)
        return best

    def _unscored(self) -> None:
        """No scores this step: the next scored step starts every vote afresh."""
        self.last_scores = dict.fromkeys(self.model_names, 0.0)
        for word in self._words:
            word.forget()

    def _gate_open(self, chunk: np.ndarray) -> bool:
        """Whether the last ~2 s held a voice; always True without a gate."""
        if self._gate is None:
            return True
        if self._gate.any_speech(chunk):
            self._voice_quiet = 0
        else:
            self._voice_quiet = min(self._voice_quiet + CHUNK, self._gate_hold)
        return self._voice_quiet < self._gate_hold
