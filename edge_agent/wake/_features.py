"""openWakeWord's streaming front end: audio -> log-mel frames -> speech
embeddings, one embedding per 80 ms, computed the way openwakeword's own
streaming code does (the same windows, so the classifiers see what they were
trained on) but without its per-frame Python list conversions.

The embedding net is ~85% of the cost, so it can be skipped for frames known
to hold no voice and computed later, from the kept mel frames, if the
classifiers need them after all (``skip`` / ``embeddings``).
"""

from __future__ import annotations

import numpy as np

from edge_agent.wake._models import EMBEDDING_SIZE, TfliteModel, bundled_models_dir

CHUNK = 1280
"""Samples per step (80 ms at 16 kHz): one embedding per step."""
MEL_CONTEXT = 480
"""Extra past samples given to the mel net so 1280 new samples yield 8 frames."""
MELS_PER_CHUNK = 8
MEL_BINS = 32
EMBEDDING_MELS = 76
"""Mel frames (~775 ms) behind one embedding."""


class StreamingFeatures:
    """Keeps the last ``windows`` embeddings of a 16 kHz int16 stream."""

    def __init__(self, windows: int) -> None:
        models = bundled_models_dir()
        self._mel_net = TfliteModel(models / "melspectrogram.tflite", [1, CHUNK + MEL_CONTEXT])
        self._embedding_net = TfliteModel(models / "embedding_model.tflite")
        self.windows = windows
        self._audio = np.zeros((1, CHUNK + MEL_CONTEXT), dtype=np.float32)
        # Enough mel history to recompute every embedding the classifiers see.
        self._mels = np.zeros((EMBEDDING_MELS + MELS_PER_CHUNK * (windows - 1), MEL_BINS),
                              dtype=np.float32)
        self._embeddings = np.zeros((windows, EMBEDDING_SIZE), dtype=np.float32)
        self._owed = 0
        self.reset()

    def reset(self) -> None:
        """Back to the state of a stream of digital silence."""
        self._audio[:] = 0.0
        self._mels[:] = self._mel(self._audio)[0]
        self._embeddings[:] = self._embed(self._mels[-EMBEDDING_MELS:])
        self._owed = 0

    def push(self, chunk: np.ndarray) -> None:
        """Add one 1280-sample chunk; updates the mel frames only."""
        self._audio[0, :MEL_CONTEXT] = self._audio[0, CHUNK:]
        self._audio[0, MEL_CONTEXT:] = chunk
        self._mels[:-MELS_PER_CHUNK] = self._mels[MELS_PER_CHUNK:]
        self._mels[-MELS_PER_CHUNK:] = self._mel(self._audio)
        self._owed = min(self._owed + 1, self.windows)

    def embeddings(self) -> np.ndarray:
        """The last ``windows`` embeddings, oldest first, computing any owed."""
        owed, self._owed = self._owed, 0
        if owed:
            self._embeddings[:-owed] = self._embeddings[owed:]
            end = len(self._mels)
            for k in range(owed - 1, -1, -1):
                stop = end - MELS_PER_CHUNK * k
                self._embeddings[-1 - k] = self._embed(self._mels[stop - EMBEDDING_MELS:stop])
        return self._embeddings

    def _mel(self, audio: np.ndarray) -> np.ndarray:
        # The same rescaling openwakeword applies before its embedding net.
        return self._mel_net(audio).reshape(MELS_PER_CHUNK, MEL_BINS) / 10.0 + 2.0

    def _embed(self, mels: np.ndarray) -> np.ndarray:
        return self._embedding_net(mels.reshape(1, EMBEDDING_MELS, MEL_BINS, 1)).reshape(-1)
