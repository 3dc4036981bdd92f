"""edge-agent's own wake-word heads: small numpy MLPs on openWakeWord's
speech embeddings, stored as .npz.

A head reads the same [1, windows, 96] embeddings as a bundled classifier, so
it runs beside one for the price of two small matrix products per 80 ms.
edge_agent/tools/train_wake.py trains them; ``save_head`` and ``NumpyHead`` are the
file format's two ends.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from edge_agent.errors import ModelError

FORMAT = 1
_ARRAYS = ("w1", "b1", "w2", "b2")


def save_head(path: Path, params: Mapping[str, np.ndarray], *, windows: int, phrase: str,
              trained_with: str, sustain: int = 1, operating_point: float = 0.5,
              lag: float | None = None) -> None:
    """Write a head: its weights, how many embeddings it reads, the phrase it
    was trained on, how many steps in a row it must score and how late after
    the phrase it first does (see edge_agent/wake/_scoring.py), and the
    training settings (for the record).

    The output is shifted so that the net's ``operating_point`` reads 0.5:
    the wake threshold's default then means what was chosen at training."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.asarray(params[k], dtype=np.float32) for k in _ARRAYS}
    arrays["b2"] = arrays["b2"] - np.float32(np.log(operating_point / (1 - operating_point)))
    extra = {} if lag is None else {"lag": lag}
    np.savez_compressed(path, **arrays, **extra, format=FORMAT, windows=windows,
                        phrase=phrase, sustain=sustain, trained_with=trained_with)


class NumpyHead:
    """Flattened embeddings -> ReLU layer -> sigmoid score, in numpy."""

    def __init__(self, path: Path) -> None:
        try:
            with np.load(path, allow_pickle=False) as data:
                if int(data["format"]) != FORMAT:
                    raise ModelError(f"{path}: head format {int(data['format'])}, "
                                     f"this edge-agent reads {FORMAT}")
                self._w1, self._b1, self._w2, self._b2 = (flushed(data[k]) for k in _ARRAYS)
                windows = int(data["windows"])
                self.phrase = str(data["phrase"])
                self.sustain = max(1, int(data["sustain"])) if "sustain" in data else 1
                """Steps in a row the head must score for its vote to count."""
                self.lag = float(data["lag"]) if "lag" in data else None
                """Seconds from the phrase's end to its first passing vote (None:
                not measured; the model's lag is used)."""
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise ModelError(f"cannot load wake head {path}: {exc}") from exc
        if self.lag is not None and not 0.0 <= self.lag < 5.0:
            raise ModelError(f"{path}: lag {self.lag} s is not a time after the phrase")
        width, spare = divmod(self._w1.shape[0], max(1, windows))
        if spare or self._w2.shape != (self._w1.shape[1], 1):
            raise ModelError(f"{path}: weight shapes {self._w1.shape}, {self._w2.shape} "
                             f"do not fit {windows} embeddings")
        self.path = path
        self.input_shape = [1, windows, width]
        # Process-wide, on purpose: numpy's BLAS splits even a 1536 x 32
        # product over every core, and its idle threads then spin between
        # calls: the detector used 0.0257 CPU s per second of audio instead of
        # 0.0126. Nothing in edge-agent gains from threaded BLAS.
        threadpool_limits(limits=1, user_api="blas")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        hidden = np.maximum(x.reshape(len(x), -1) @ self._w1 + self._b1, 0.0)
        logits = hidden @ self._w2 + self._b2
        return 0.5 * (1.0 + np.tanh(0.5 * logits))  # the sigmoid, without overflow


def flushed(weights: np.ndarray) -> np.ndarray:
    """``weights`` with subnormal floats set to zero. Weight decay leaves the
    weights of dead ReLU units subnormal, and the CPU's slow path for those
    made one 1536 x 32 product take 112 us instead of 4."""
    weights = np.array(weights, dtype=np.float32)
    weights[np.abs(weights) < np.finfo(np.float32).tiny] = 0.0
    return weights
