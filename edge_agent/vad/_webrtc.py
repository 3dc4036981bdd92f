"""webrtcvad behind one small class: frames in, speech yes/no out.

Used by the end-of-turn detector and as the wake detector's idle gate, so both
agree on what counts as a voice.
"""

from __future__ import annotations

import numpy as np
import webrtcvad

from edge_agent.errors import ModelError


class VoiceActivity:
    """Speech/non-speech decisions on fixed frames of 10, 20 or 30 ms (the
    only lengths webrtcvad accepts) of int16 audio."""

    def __init__(self, aggressiveness: int, *, rate: int = 16000, frame_ms: int = 30) -> None:
        try:
            self._vad = webrtcvad.Vad(aggressiveness)
        except Exception as exc:  # webrtcvad raises a bare Error/ValueError
            raise ModelError(f"webrtcvad rejected aggressiveness {aggressiveness!r}") from exc
        self.aggressiveness = aggressiveness
        if rate not in (8000, 16000, 32000, 48000):
            raise ModelError(f"webrtcvad cannot run at {rate} Hz")
        if frame_ms not in (10, 20, 30):
            raise ModelError(f"webrtcvad frames are 10, 20 or 30 ms, not {frame_ms}")
        self.rate = rate
        self.frame_samples = rate * frame_ms // 1000

    def reset(self) -> None:
        """Forget the noise estimate and hangover learned from past audio."""
        self._vad = webrtcvad.Vad(self.aggressiveness)

    def is_speech(self, frame: np.ndarray) -> bool:
        """One frame of exactly ``frame_samples`` int16 samples."""
        return self._vad.is_speech(np.ascontiguousarray(frame, dtype=np.int16).tobytes(),
                                   self.rate)

    def any_speech(self, samples: np.ndarray) -> bool:
        """Whether any whole frame in ``samples`` is speech (a trailing partial
        frame is ignored)."""
        n = self.frame_samples
        return any(self.is_speech(samples[i:i + n]) for i in range(0, len(samples) - n + 1, n))
