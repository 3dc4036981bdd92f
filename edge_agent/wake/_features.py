"""openWakeWord's streaming front end: audio -> log-mel frames -> speech
embeddings, one embedding per 80 ms, computed the way openwakeword's own
streaming code does (the same windows, so the classifiers see what they were
trained on) but without its per-frame Python list conversions.

Both nets can be skipped for frames known to hold no voice and run later,
from the kept audio, if the classifiers need those frames after all.
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
    """Keeps the last ``windows`` embeddings of a 16 kHz int16 stream.

    Work is lazy: ``push`` only stores audio, ``embeddings`` computes the mel
    frames and embeddings owed since the last call. A caller that skips
    ``embeddings`` while nobody speaks pays for neither net, and one that asks
    later gets exactly what computing every frame would have given.
    """

    def __init__(self, windows: int) -> None:
        models = bundled_models_dir()
        self._mel_net = TfliteModel(models / "melspectrogram.tflite", [1, CHUNK + MEL_CONTEXT])
        self._embedding_net = TfliteModel(models / "embedding_model.tflite")
        self.windows = windows
        # Enough mel history to recompute every embedding the classifiers see,
        # and enough audio to recompute every one of those mel frames.
        mel_frames = EMBEDDING_MELS + MELS_PER_CHUNK * (windows - 1)
        self._mel_chunks = -(-mel_frames // MELS_PER_CHUNK)
        self._mels = np.zeros((self._mel_chunks * MELS_PER_CHUNK, MEL_BINS), dtype=np.float32)
        self._audio = np.zeros(self._mel_chunks * CHUNK + MEL_CONTEXT, dtype=np.float32)
        self._embeddings = np.zeros((windows, EMBEDDING_SIZE), dtype=np.float32)
        self._owed_mels = 0  # chunks whose mel frames are not computed yet
        self._owed_embeddings = 0
        self.reset()

    def reset(self) -> None:
        """Back to the state of a stream of digital silence."""
        self._audio[:] = 0.0
        self._mels[:] = self._mel(self._audio[-CHUNK - MEL_CONTEXT:])[0]
        self._embeddings[:] = self._embed(self._mels[-EMBEDDING_MELS:])
        self._owed_mels = self._owed_embeddings = 0

    def push(self, chunk: np.ndarray) -> None:
        """Add one 1280-sample chunk (cheap: a copy)."""
        self._audio[:-CHUNK] = self._audio[CHUNK:]
        self._audio[-CHUNK:] = chunk
        self._owed_mels = min(self._owed_mels + 1, self._mel_chunks)
        self._owed_embeddings = min(self._owed_embeddings + 1, self.windows)

    def embeddings(self) -> np.ndarray:
        """The last ``windows`` embeddings, oldest first, computing any owed."""
        owed, self._owed_mels = self._owed_mels, 0
        if owed:
            self._mels[:-MELS_PER_CHUNK * owed] = self._mels[MELS_PER_CHUNK * owed:]
            for k in range(owed - 1, -1, -1):
                stop = len(self._audio) - CHUNK * k
                mels = self._mel(self._audio[stop - CHUNK - MEL_CONTEXT:stop])
                row = len(self._mels) - MELS_PER_CHUNK * (k + 1)
                self._mels[row:row + MELS_PER_CHUNK] = mels
        owed, self._owed_embeddings = self._owed_embeddings, 0
        if owed:
            self._embeddings[:-owed] = self._embeddings[owed:]
            end = len(self._mels)
            for k in range(owed - 1, -1, -1):
                stop = end - MELS_PER_CHUNK * k
                self._embeddings[-1 - k] = self._embed(self._mels[stop - EMBEDDING_MELS:stop])
        return self._embeddings

    def _mel(self, audio: np.ndarray) -> np.ndarray:
        # The same rescaling openwakeword applies before its embedding net.
        return self._mel_net(audio[None]).reshape(MELS_PER_CHUNK, MEL_BINS) / 10.0 + 2.0

    def _embed(self, mels: np.ndarray) -> np.ndarray:
        return self._embedding_net(mels.reshape(1, EMBEDDING_MELS, MEL_BINS, 1)).reshape(-1)
