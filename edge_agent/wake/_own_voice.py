"""The speaker naming its own wake word.

Echo cancellation leaves a residual some 40 dB under the echo, near the
room's noise floor, and both stock engines read speech alike at any level: when
an answer says "hey jarvis", that residual can wake the speaker (the echo
bench, docs/bench-echo.json: 9 of the 52 answers naming the word in 30 minutes,
before this check). What the speaker played is known sample for sample, on the
capture clock (the echo reference). So a second detector scores the played
audio while it sounds, and a detection on the microphone is the speaker's own
when the played audio itself scored the word at the same time. A person who
says the word over an answer still wakes it: the answer did not hold the word.
One who says it in the same moment as the speaker does is taken for the
speaker, and says it again (the echo bench, where every fifth answer names the
word and a take comes every 5 s: 1 of its 30 takes in three runs before the
second detector waited for the microphone's look, none in the run after).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from edge_agent.wake._detector import WakeDetector

RATE = 16000
HEARD = 0.5
"""A score of the played audio at each engine's own operating point (0.5 on
the shared scale): the played audio alone would have woken the speaker."""
WITHIN_SECONDS = 0.25
"""The microphone's detection is the played audio's own when the played audio
scored HEARD this close to it. On 30 minutes of the echo bench's answers the
residual's detections came 0-0.4 s after the played audio first scored HEARD,
each while it still did (0 s from its last such step); 0.25 s is three steps
of margin. Any wider, and more of a person's words said just after the
speaker's would be taken for the speaker's."""
QUIET_SECONDS = 2.0
"""The played audio is scored until this long after its last sound (the echo's
tail and the detector's window), then not at all: nothing played, nothing spent."""


class Played(Protocol):
    """What the speaker played, on the capture clock (audio.echo.EchoReference)."""

    sound_end: int
    """Capture index just after the last non-silent sample played."""

    def take(self, start: int, n: int) -> np.ndarray:
        """The played samples heard with capture samples [start, start + n)."""
        ...


class OwnVoice:
    """Scores the played audio step by step beside the microphone's detector."""

    def __init__(self, detector: WakeDetector, played: Played) -> None:
        self._detector = detector
        self._played = played
        self._heard_at: list[int] = []
        """Capture indices of recent steps at which the played audio scored HEARD."""
        self.ignored = 0
        """Detections found to be the speaker's own voice."""

    def follow(self, start: int, n: int) -> None:
        """Score the played audio heard with capture samples [start, start + n),
        once the microphone's detector has seen them."""
        if self._played.sound_end < start - QUIET_SECONDS * RATE:
            return
        detector = self._detector
        audio = self._played.take(start, n)
        for at in range(0, n, detector.FRAME_SAMPLES):  # at most one step each
            piece = audio[at:at + detector.FRAME_SAMPLES]
            detector.process(piece, start + at + len(piece))
            if max(detector.last_scores.values(), default=0.0) >= HEARD:
                self._heard_at.append(start + at + len(piece))
        horizon = start + n - WITHIN_SECONDS * RATE
        self._heard_at = [i for i in self._heard_at if i >= horizon]

    def said(self, heard_at: int) -> bool:
        """Whether a detection on the microphone at capture index ``heard_at`` is
        the played audio's own wake word; counted if so."""
        own = any(abs(i - heard_at) <= WITHIN_SECONDS * RATE for i in self._heard_at)
        self.ignored += own
        return own
