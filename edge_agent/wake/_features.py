"""openWakeWord's streaming front end: audio -> log-mel frames -> speech
embeddings, one embedding per 80 ms, computed the way openwakeword's own
streaming code does (the same windows, so the classifiers see what they were
trained on) but without its per-frame Python list conversions.

Both nets can be skipped for frames known to hold no voice and run later,
from the kept audio, if the classifiers need those frames after all.

The embedding net reads 76 mel frames at a time, and its output moves with
where the phrase falls in that window: the same take scored 0.20 and 1.00
with its start 20 ms apart. So the embeddings can also be had at other
phases, windows ending 10-70 ms before the step's, from the same mel frames
(the mel net runs once whatever the phase).
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
    later gets exactly what computing every frame would have given. The same
    holds for each phase (``embeddings(phase)``): one asked for only now and
    then costs nothing in between.
    """

    def __init__(self, windows: int, phases: tuple[int, ...] = ()) -> None:
        """``phases``: offsets in mel frames (1-7) at which embeddings may be
        asked for besides the step's own."""
        models = bundled_models_dir()
        self._mel_net = TfliteModel(models / "melspectrogram.tflite", [1, CHUNK + MEL_CONTEXT])
        self._embedding_net = TfliteModel(models / "embedding_model.tflite")
        self.windows = windows
        if any(not 0 < p < MELS_PER_CHUNK for p in phases):
            raise ValueError(f"phases {phases}: each must be 1-{MELS_PER_CHUNK - 1} mel frames")
        # Enough mel history to recompute every embedding the classifiers see
        # (at every phase), and enough audio to recompute every one of those
        # mel frames.
        mel_frames = EMBEDDING_MELS + MELS_PER_CHUNK * (windows - 1) + max(phases, default=0)
        self._mel_chunks = -(-mel_frames // MELS_PER_CHUNK)
        self._mels = np.zeros((self._mel_chunks * MELS_PER_CHUNK, MEL_BINS), dtype=np.float32)
        self._audio = np.zeros(self._mel_chunks * CHUNK + MEL_CONTEXT, dtype=np.float32)
        self._embeddings = {p: np.zeros((windows, EMBEDDING_SIZE), dtype=np.float32)
                            for p in (0, *phases)}
        self._owed_mels = 0  # chunks whose mel frames are not computed yet
        self._owed_embeddings = dict.fromkeys(self._embeddings, 0)
        self.reset()

    def reset(self) -> None:
        """Back to the state of a stream of digital silence."""
        self._audio[:] = 0.0
        self._mels[:] = self._mel(self._audio[-CHUNK - MEL_CONTEXT:])[0]
        silent = self._embed(self._mels[-EMBEDDING_MELS:])
        for phase, embeddings in self._embeddings.items():
            embeddings[:] = silent
            self._owed_embeddings[phase] = 0
        self._owed_mels = 0

    def push(self, chunk: np.ndarray) -> None:
        """Add one 1280-sample chunk (cheap: a copy)."""
        self._audio[:-CHUNK] = self._audio[CHUNK:]
        self._audio[-CHUNK:] = chunk
        self._owed_mels = min(self._owed_mels + 1, self._mel_chunks)
        for phase, owed in self._owed_embeddings.items():
            self._owed_embeddings[phase] = min(owed + 1, self.windows)

    def embeddings(self, phase: int = 0) -> np.ndarray:
        """The last ``windows`` embeddings, oldest first, computing any owed;
        at ``phase`` (one given at construction) their windows end that many
        mel frames before the newest."""
        owed, self._owed_mels = self._owed_mels, 0
        if owed:
            self._mels[:-MELS_PER_CHUNK * owed] = self._mels[MELS_PER_CHUNK * owed:]
            for k in range(owed - 1, -1, -1):
                stop = len(self._audio) - CHUNK * k
                mels = self._mel(self._audio[stop - CHUNK - MEL_CONTEXT:stop])
                row = len(self._mels) - MELS_PER_CHUNK * (k + 1)
                self._mels[row:row + MELS_PER_CHUNK] = mels
        embeddings = self._embeddings[phase]
        owed, self._owed_embeddings[phase] = self._owed_embeddings[phase], 0
        if owed:
            embeddings[:-owed] = embeddings[owed:]
            end = len(self._mels) - phase
            for k in range(owed - 1, -1, -1):
                stop = end - MELS_PER_CHUNK * k
                embeddings[-1 - k] = self._embed(self._mels[stop - EMBEDDING_MELS:stop])
        return embeddings

    def _mel(self, audio: np.ndarray) -> np.ndarray:
        # The same rescaling openwakeword applies before its embedding net.
        return self._mel_net(audio[None]).reshape(MELS_PER_CHUNK, MEL_BINS) / 10.0 + 2.0

    def _embed(self, mels: np.ndarray) -> np.ndarray:
        return self._embedding_net(mels.reshape(1, EMBEDDING_MELS, MEL_BINS, 1)).reshape(-1)
