"""microWakeWord's engine (the pymicro-wakeword wheel) on the detector's clock.

microWakeWord was trained by other people on other data than openWakeWord, and
the two miss different takes, which is why the detector can run both on the
same audio (_detector.py fuses them). Its front end (TFLite Micro's audio
frontend: 10 ms log filterbank frames with per-channel gain control) adapts to
the input level, so very quiet and very loud microphones read alike.

Like openWakeWord's features this engine is lazy: while the idle gate is
closed it only keeps the last ``BACKLOG`` of audio, and when the gate opens it
starts afresh (front end and streaming model) on that backlog, so the phrase's
first syllable is never lost and a quiet room costs no inference.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections import deque
from pathlib import Path

import numpy as np

from edge_agent.errors import ModelError

log = logging.getLogger(__name__)

RATE = 16000
FEATURE_SAMPLES = 160
"""One front-end frame every 10 ms."""
BACKLOG = 24000
"""Samples (1.5 s) replayed when the gate opens: the front end's noise
estimate settles in about half of it, and it covers the phrase's start while
the gate's voice detector is still deciding."""


def bundled_micro_dir() -> Path:
    """Where the pymicro-wakeword wheel keeps its models (package data)."""
    try:
        import pymicro_wakeword
    except ImportError as exc:
        raise ModelError("the pymicro-wakeword package (microWakeWord engine) is not "
                         "installed") from exc
    return Path(pymicro_wakeword.__file__).parent / "models"


def bundled_micro_models() -> tuple[str, ...]:
    """Wake words microWakeWord ships, by name (hey_jarvis, okay_nabu, ...)."""
    try:
        return tuple(sorted(p.stem for p in bundled_micro_dir().glob("*.json")))
    except ModelError:
        return ()


def calibrated(probability: float, cutoff: float) -> float:
    """microWakeWord's probability on the detector's scale, where each model's
    own cutoff reads 0.5: one ``wake.threshold`` then means "as its authors
    chose" for every engine, and scores near 0.5 are near misses for all."""
    if probability < cutoff:
        return 0.5 * probability / cutoff
    return 0.5 + 0.5 * (probability - cutoff) / (1.0 - cutoff)


class MicroScorer:
    """One microWakeWord model, scoring 80 ms steps of a 16 kHz int16 stream.

    ``score`` returns the highest calibrated sliding-window mean among the
    model's inferences (every 30 ms) in the new audio. Not thread-safe.
    """

    engine = "microwakeword"

    def __init__(self, config: Path) -> None:
        """``config`` is a microWakeWord model's .json (its .tflite beside it)."""
        try:
            # pymicro-wakeword loads its own TensorFlow Lite C library with
            # RTLD_GLOBAL; tflite_runtime (openWakeWord's nets) imported after it
            # smashes the stack at its first interpreter. Imported first, both work.
            with contextlib.suppress(ImportError):
                import tflite_runtime.interpreter  # noqa: F401
            from pymicro_features import MicroFrontend
            from pymicro_wakeword import MicroWakeWord

            self._model = MicroWakeWord.from_config(config)
            self._frontend_type = MicroFrontend
            spec = json.loads(config.read_text(encoding="utf-8"))
            self.phrase = str(spec.get("wake_word", config.stem))
        except ImportError as exc:
            raise ModelError("the pymicro-wakeword package (microWakeWord engine) is not "
                             "installed") from exc
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise ModelError(f"cannot load microWakeWord model {config}: {exc}") from exc
        self.path = config
        self.name = config.stem
        self.cutoff = float(self._model.probability_cutoff)
        self._frontend = self._frontend_type()
        self._backlog: deque[np.ndarray] = deque()
        self._backlog_samples = 0
        self._live = False

    def reset(self) -> None:
        """Forget all audio (streaming state included)."""
        self._backlog.clear()
        self._backlog_samples = 0
        self._restart()

    def skip(self, chunk: np.ndarray) -> None:
        """Audio the gate judged voiceless: only kept for replay."""
        self._live = False
        self._backlog.append(chunk)
        self._backlog_samples += len(chunk)
        while self._backlog_samples - len(self._backlog[0]) >= BACKLOG:
            self._backlog_samples -= len(self._backlog.popleft())

    def score(self, chunk: np.ndarray) -> float:
        """Feed ``chunk`` (after replaying the backlog if the gate just
        opened) and return the best calibrated score it produced."""
        if not self._live:
            self._restart()
            for old in self._backlog:
                self._feed(old)
            self._backlog.clear()
            self._backlog_samples = 0
            self._live = True
        return calibrated(self._feed(chunk), self.cutoff)

    def _restart(self) -> None:
        self._live = False
        self._frontend = self._frontend_type()
        self._model.reset()

    def _feed(self, chunk: np.ndarray) -> float:
        best = 0.0
        samples = np.ascontiguousarray(chunk, dtype=np.int16).tobytes()
        while samples:
            result = self._frontend.process_samples(samples)
            read = result.samples_read * 2
            if read <= 0:
                break
            samples = samples[read:]
            if result.features:
                features = np.asarray(result.features, dtype=np.float32).reshape(1, 1, -1)
                probability = self._model.process_streaming_prob(features)
                if probability is not None:
                    best = max(best, probability)
        return best
