"""End of turn: when has the person finished speaking?

webrtcvad labels 30 ms frames; on top of it a small state machine decides.
Speech counts once ``min_speech`` of voiced frames gathered in one burst (a
cough or a click does not); a burst, or the turn, ends after ``end_silence``
without a voiced frame, so a shorter pause mid-sentence never ends the turn.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

import numpy as np

from edge_agent.config import TurnSettings
from edge_agent.vad._webrtc import VoiceActivity

log = logging.getLogger(__name__)

TAIL_SECONDS = 0.25
"""Audio kept after the last voiced frame (capped at end_silence): webrtcvad
drops soft word endings ("-s", "-t") a frame or two early, and STT clips a
last word that ends exactly at the cut."""


class Outcome(enum.StrEnum):
    SPEECH_END = "speech_end"
    MAX_LENGTH = "max_length"
    NO_SPEECH = "no_speech"
    RELEASED = "released"


@dataclass(frozen=True)
class TurnBounds:
    outcome: Outcome
    start_index: int
    """Absolute sample index where the utterance handed to STT starts."""
    end_index: int
    """Absolute sample index where it ends: speech end plus a short tail."""
    speech_start_index: int | None
    """Where speech was first heard; None when nobody spoke."""
    rate: int = 16000
    voiced_end_index: int | None = None
    """End of the last voiced frame heard."""

    @property
    def duration(self) -> float:
        """Seconds of audio between start_index and end_index."""
        return (self.end_index - self.start_index) / self.rate


@dataclass(frozen=True)
class Pause:
    """Silence after speech, before it is long enough to end the turn."""

    speech_start_index: int
    voiced_end_index: int
    """End of the last voiced frame: the same value later means no word since."""
    end_index: int
    """Where the utterance would end if the turn ended now (speech plus the tail)."""
    seconds: float
    """Silence so far."""

    def same_speech(self, bounds: TurnBounds) -> bool:
        """The turn ended with no word after this pause (same speech, same words)."""
        return (bounds.speech_start_index == self.speech_start_index
                and bounds.voiced_end_index == self.voiced_end_index)


class EndOfTurnDetector:
    """Feed audio from ``start_index`` on; ``process`` returns the bounds once
    the turn is over, then keeps returning the same bounds."""

    FRAME_SAMPLES = 480
    """30 ms at 16 kHz, the longest frame webrtcvad takes (set per instance for
    other rates)."""

    def __init__(self, turn: TurnSettings, *, start_index: int, rate: int = 16000) -> None:
        self.settings = turn
        self.rate = rate
        self.start_index = start_index
        self._vad = VoiceActivity(turn.vad_aggressiveness, rate=rate, frame_ms=30)
        self.FRAME_SAMPLES = self._vad.frame_samples
        self._pending = np.zeros(0, dtype=np.int16)
        self._burst_start: int | None = None  # first voiced frame of the current burst
        self._burst_voiced = 0  # voiced samples in the current burst
        self._last_voiced_end: int | None = None  # end of the last voiced frame
        self._speech_start: int | None = None  # set once a burst reaches min_speech
        self._position = start_index  # end of the last frame judged
        self._tail = int(min(TAIL_SECONDS, turn.end_silence) * rate)
        self.bounds: TurnBounds | None = None

    @property
    def speaking(self) -> bool:
        """Speech has been confirmed (min_speech reached) in this turn."""
        return self._speech_start is not None

    def pause(self) -> Pause | None:
        """The silence after confirmed speech so far (None before speech, or while a
        frame is voiced): what a speculative answer would be based on."""
        if self._speech_start is None or self._last_voiced_end is None:
            return None
        silent = self._position - self._last_voiced_end
        if silent <= 0:
            return None
        end = min(self._position, self._last_voiced_end + self._tail)
        return Pause(self._speech_start, self._last_voiced_end, end, silent / self.rate)

    def process(self, frame: np.ndarray, end_index: int) -> TurnBounds | None:
        """Feed audio ending at absolute sample ``end_index`` (any length;
        leftovers wait for the next call)."""
        if self.bounds is not None:
            return self.bounds
        n = self.FRAME_SAMPLES
        audio = np.concatenate([self._pending, frame]) if len(self._pending) else frame
        whole = len(audio) - len(audio) % n
        self._pending = audio[whole:].copy()
        first_end = end_index - len(self._pending) - whole + n
        for i, start in enumerate(range(0, whole, n)):
            self.bounds = self._step(audio[start:start + n], first_end + i * n)
            if self.bounds is not None:
                log.debug("end of turn: %s", self.bounds)
                break
        return self.bounds

    def release(self, end_index: int) -> TurnBounds:
        """Push-to-talk released: the turn ends here, whatever was heard."""
        if self.bounds is None:
            self.bounds = TurnBounds(Outcome.RELEASED, self.start_index, end_index,
                                     self._speech_start, self.rate, self._last_voiced_end)
        return self.bounds

    def _step(self, frame: np.ndarray, end: int) -> TurnBounds | None:
        s = self.settings
        self._position = end
        if self._vad.is_speech(frame):
            if self._burst_start is None:
                self._burst_start = end - len(frame)
                self._burst_voiced = 0
            self._burst_voiced += len(frame)
            self._last_voiced_end = end
            if self._speech_start is None and self._burst_voiced >= s.min_speech * self.rate:
                self._speech_start = self._burst_start
        elapsed = end - self.start_index
        silent = None if self._last_voiced_end is None else end - self._last_voiced_end
        burst_over = silent is not None and silent >= s.end_silence * self.rate
        if burst_over and self._speech_start is not None:
            return self._bounds(Outcome.SPEECH_END, min(end, self._last_voiced_end + self._tail))
        if burst_over:
            self._burst_start = None  # too short to be speech: forget it
        if elapsed >= s.max_seconds * self.rate:
            return self._bounds(Outcome.MAX_LENGTH, end)
        in_burst = self._burst_start is not None
        if (self._speech_start is None and not in_burst
                and elapsed >= s.no_speech_timeout * self.rate):
            return self._bounds(Outcome.NO_SPEECH, end)
        return None

    def _bounds(self, outcome: Outcome, end: int) -> TurnBounds:
        return TurnBounds(outcome, self.start_index, end, self._speech_start, self.rate,
                          self._last_voiced_end)
